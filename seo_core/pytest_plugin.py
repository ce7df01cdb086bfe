"""The sink author's test kit: pytest fixtures that run sinks the way seo runs them.

seo-core registers this module with pytest's ``pytest11`` entry point, so every project that has
seo-core installed gets the fixtures without any configuration:

- ``seo_event``: build the context of any event, ``seo_event("OnArrival", mail_from=...)``;
- ``seo_run_sink``: bind one sink in a throwaway metabase and fire one event at it through the
  real dispatcher, then look at its verdict and at the event as the sink left it;
- ``seo_smtp_server`` and ``seo_nntp_server``: a real source on a free loopback port, serving
  the bindings a test gives it;
- ``seo_logs``: the structlog events logged during the test, as dictionaries.

pytest imports this module at start-up in every project where seo-core is installed, including
projects that never use it, so it imports nothing of seo at module level: the framework is loaded
by the first fixture that needs it. The classes below are importable for type annotations
(``from seo_core.pytest_plugin import EventFactory, SinkRunner``); they are the fixtures' API.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import itertools
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Literal, Self, TypeAlias, TypeVar, overload

import pytest

if TYPE_CHECKING:
    from email.message import EmailMessage
    from types import TracebackType

    from seo_core.catalog import EventType, SourceType
    from seo_core.dispatcher import Dispatcher, DispatchResult
    from seo_core.events.contexts import (
        CategorizeEvent,
        CommandEvent,
        DeliveryEvent,
        DnsEvent,
        EventContext,
        MessageEvent,
        OutboundCommandEvent,
        PostEvent,
        ResponseEvent,
        RouterEvent,
        SizeEvent,
        TrackEvent,
        Verdict,
    )
    from seo_core.metabase import Binding, BindingSpec
    from seo_core.properties import PropertyValue
    from seo_core.registry import SinkRegistry
    from seo_core.rules import EventFacts
    from seo_core.testing import RunningNntp, RunningSmtp

__all__ = [
    "EventFactory",
    "LogEvents",
    "NntpServer",
    "NntpServerFactory",
    "SinkRun",
    "SinkRunner",
    "SmtpServer",
    "SmtpServerFactory",
    "context_class",
    "make_event",
]

E = TypeVar("E", bound="EventContext")

LogEvents: TypeAlias = list[MutableMapping[str, Any]]
"""What ``seo_logs`` holds: one dictionary per structlog event, with ``event`` and
``log_level`` keys beside the bound ones (``binding_id``, ``sink``, ``error``...)."""

BindingTable: TypeAlias = "Mapping[str, Any] | BindingSpec"
"""A binding for a test server: a ``[[bindings]]`` table of the config file, as a dictionary
(``{"event": "OnArrival", "sink": "tagger", "sink_properties": {...}}``; ``source`` may be left
out), or a ready :class:`~seo_core.metabase.BindingSpec`."""

SINK_UNDER_TEST = "sink-under-test"
"""The name a sink given as an object (not an entry-point name) is bound by."""

MAIL_FROM = "sender@example.org"
RECIPIENTS = ("rcpt@example.com",)
NEWSGROUPS = ("local.test",)

_COMMANDS = {
    "OnInboundCommand": "NOOP",
    "OnServerResponse": "NOOP",
    "OnSessionStart": "EHLO",
    "OnMessageStart": "MAIL",
    "OnPerRecipient": "RCPT",
    "OnBeforeData": "DATA",
    "OnSessionEnd": "QUIT",
}
"""The command an event is about when a test does not say: the one the event is named after."""

_BINDING_KEYS = (
    "source",
    "event",
    "name",
    "sink",
    "rule",
    "priority",
    "max_firings",
    "enabled",
    "id",
    "sink_properties",
    "source_properties",
    "binding_properties",
)


# -- events --------------------------------------------------------------------------------


def context_class(source_type: str, event: EventType) -> type[EventContext]:
    """The context class sources build for ``event``: the one its hook specification names.

    Reading it from the hookspec's ``event`` annotation keeps one source of truth: the reference
    documentation, the sink's type hints and this kit cannot disagree about it.
    """
    from seo_core.events import contexts, hookspecs

    spec = getattr(hookspecs, event.hook_name(source_type))
    annotation = inspect.signature(spec).parameters["event"].annotation
    found = annotation if isinstance(annotation, type) else getattr(contexts, str(annotation))
    assert isinstance(found, type)
    return found


def find_event(name: str, source: str | None = None) -> tuple[SourceType, EventType]:
    """The source type and event named ``name``: an event name or alias in any case, or a hook
    name (``smtp_on_arrival``); ``source`` (``nntp/2``) decides the source type when given.

    Without ``source`` the name is looked up among the events of every source type at once,
    by the catalogue's own lookup, so a misspelt name gets the CLI's "did you mean".
    """
    from seo_core.catalog import SOURCE_TYPES, event_for_hook, parse_source

    if source is not None:
        kind = parse_source(source).source_type
        return kind, kind.event(name)
    found = event_for_hook(name.strip())
    if found is not None:
        return found
    kinds = list(SOURCE_TYPES.values())
    every = dataclasses.replace(
        kinds[0],
        name=" or ".join(kind.name for kind in kinds),
        events=tuple(event for kind in kinds for event in kind.events),
    )
    event = every.event(name)
    return next(kind for kind in kinds if event in kind.events), event


def make_event(name: str, *, source: str | None = None, **fields: Any) -> EventContext:
    """Build the context a source hands sinks for the event ``name`` (see :class:`EventFactory`)."""
    kind, event = find_event(name, source)
    cls = context_class(kind.name, event)
    allowed = {f.name for f in dataclasses.fields(cls)} - {"source", "name"}
    unknown = sorted(set(fields) - allowed)
    if unknown:
        raise TypeError(
            f"{event.name} events ({cls.__name__}) have no field {', '.join(unknown)}; "
            f"they have: {', '.join(sorted(allowed))}"
        )
    values = _with_defaults(event.name, allowed, dict(fields))
    return cls(source=source or f"{kind.name}/1", name=event.name, **values)


def _with_defaults(event: str, allowed: set[str], values: dict[str, Any]) -> dict[str, Any]:
    """Plausible values for the fields a test left out, so that it states only what it tests."""
    from seo_core.events.contexts import Reply, SessionInfo

    def default(field: str, value: Any) -> None:
        if field in allowed and field not in values:
            values[field] = value

    default("command", _COMMANDS.get(event, "NOOP"))
    default("argument", "")
    if "session" in allowed and event in ("OnInboundCommand", "OnServerResponse"):
        default("session", SessionInfo(id="test-session", peer=("127.0.0.1", 50000)))
    response = values.get("response")
    if isinstance(response, tuple):
        values["response"] = Reply(*response)
    if event == "OnServerResponse":
        default("response", Reply(250, "OK"))
    if event == "MaxMsgSize":  # it fires during MAIL: no envelope yet
        default("mail_from", None)
        default("recipients", [])
    default("mail_from", MAIL_FROM)
    if "recipients" in allowed:
        values["recipients"] = list(values.get("recipients", RECIPIENTS))
    recipients = values.get("recipients") or list(RECIPIENTS)
    if event in ("OnCategorize", "StoreDriver", "OnPerRecipient"):
        default("recipient", recipients[0])
    if event == "OnTransportRouter":
        default("domain", recipients[0].rpartition("@")[2])
    default("domain", "example.net")
    default("step", "received")
    default("limit", 10 * 1024 * 1024)
    default("size", int(values.get("limit", 0)) + 1)
    if "newsgroups" in allowed:
        values["newsgroups"] = list(values.get("newsgroups", NEWSGROUPS))
        values["message"] = _article(values.get("message"), values["newsgroups"], event)
        default("message_id", "<test.1@news.test>")
    elif "raw" in allowed:
        default("message_id", "test-message-1")
        message = values.pop("message", None)
        if message is None and values.get("raw") is None:
            message = _mail_bytes(None, values["mail_from"], values["recipients"])
        if isinstance(message, bytes | str):
            values["raw"] = message.encode() if isinstance(message, str) else message
        elif message is not None:
            values["message"] = message
    return values


def _mail_bytes(
    message: bytes | str | EmailMessage | None, mail_from: str, recipients: Sequence[str]
) -> bytes:
    """A message as bytes: as given, or a small text message from and to the envelope."""
    if isinstance(message, bytes):
        return message
    if isinstance(message, str):
        return message.encode()
    if message is not None:
        return message.as_bytes()
    return (
        f"From: {mail_from or 'mailer-daemon@example.org'}\r\nTo: {', '.join(recipients)}\r\n"
        "Subject: Test message\r\nMessage-ID: <test.1@example.org>\r\n\r\nHello.\r\n"
    ).encode()


def _article(message: object, groups: Sequence[str], event: str) -> EmailMessage:
    """An article as a message: as given, or a small one; OnPostEarly sees the headers only."""
    import email
    from email.message import EmailMessage

    from seo_core.events.contexts import MESSAGE_POLICY

    if isinstance(message, EmailMessage):
        return message
    if message is None:
        body = "" if event == "OnPostEarly" else "Hello.\r\n"
        message = (
            f"From: poster@example.org\r\nNewsgroups: {','.join(groups)}\r\n"
            f"Subject: Test article\r\nMessage-ID: <test.1@news.test>\r\n\r\n{body}"
        )
    data = message.encode() if isinstance(message, str) else message
    if not isinstance(data, bytes):
        raise TypeError(f"an article is an EmailMessage, str or bytes, not {type(data).__name__}")
    parsed = email.message_from_bytes(data, policy=MESSAGE_POLICY)
    assert isinstance(parsed, EmailMessage)
    return parsed


def facts_for(event: EventContext) -> EventFacts:
    """What a source would match a binding's Rule against, read off the event itself."""
    from seo_core.rules import EventFacts

    session = getattr(event, "session", None)
    recipients = getattr(event, "recipients", None) or ()
    if event.name in ("OnCategorize", "StoreDriver"):
        recipients = (getattr(event, "recipient", ""),)  # as the source: this recipient only
    return EventFacts(
        ehlo=getattr(session, "ehlo_name", None),
        mail_from=getattr(event, "mail_from", None),
        rcpt_to=tuple(recipients),
        command=getattr(event, "command", None),
        argument=getattr(event, "argument", None),
        newsgroups=tuple(getattr(event, "newsgroups", None) or ()),
    )


# The names of the events of each context class, for precise types in typed tests.
_CommandNames: TypeAlias = Literal["OnInboundCommand", "smtp_on_inbound_command"]
_ResponseNames: TypeAlias = Literal["OnServerResponse", "smtp_on_server_response"]
_MessageNames: TypeAlias = Literal[
    "OnArrival",
    "OnTransportSubmission",
    "OnPreCategorize",
    "OnPostCategorize",
    "smtp_on_arrival",
    "smtp_on_transport_submission",
    "smtp_on_pre_categorize",
    "smtp_on_post_categorize",
]
_CategorizeNames: TypeAlias = Literal["OnCategorize", "smtp_on_categorize"]
_RouterNames: TypeAlias = Literal["OnTransportRouter", "smtp_on_transport_router"]
_DeliveryNames: TypeAlias = Literal["StoreDriver", "smtp_store_driver"]
_TrackNames: TypeAlias = Literal["MsgTrackLog", "smtp_msg_track_log"]
_SizeNames: TypeAlias = Literal["MaxMsgSize", "smtp_max_msg_size"]
_OutboundNames: TypeAlias = Literal[
    "OnSessionStart",
    "OnMessageStart",
    "OnPerRecipient",
    "OnBeforeData",
    "OnSessionEnd",
    "smtp_on_session_start",
    "smtp_on_message_start",
    "smtp_on_per_recipient",
    "smtp_on_before_data",
    "smtp_on_session_end",
]
_DnsNames: TypeAlias = Literal["DnsResolver", "smtp_dns_resolver"]
_PostNames: TypeAlias = Literal[
    "OnPostEarly",
    "OnPost",
    "OnPostFinal",
    "nntp_on_post_early",
    "nntp_on_post",
    "nntp_on_post_final",
]


class EventFactory:
    """``seo_event(NAME, source=None, **fields)``: the context a source hands sinks for NAME.

    NAME is an event name in any case, an alias (``OnTransportSubmission``) or a hook name
    (``smtp_on_arrival``); the class is the one the event's hook specification names, so a test
    gets what a real source builds. ``source`` defaults to ``smtp/1`` or ``nntp/1``. Fields not
    given get plausible values: an envelope from ``sender@example.org`` to
    ``rcpt@example.com``, a small message, the command the event is named after. For message
    events, ``message`` may be an ``EmailMessage`` or the message as ``str`` or ``bytes`` (kept
    as ``raw`` and parsed when a sink reads ``event.message``, as the SMTP source does).
    """

    @overload
    def __call__(self, name: _CommandNames, **fields: Any) -> CommandEvent: ...
    @overload
    def __call__(self, name: _ResponseNames, **fields: Any) -> ResponseEvent: ...
    @overload
    def __call__(self, name: _MessageNames, **fields: Any) -> MessageEvent: ...
    @overload
    def __call__(self, name: _CategorizeNames, **fields: Any) -> CategorizeEvent: ...
    @overload
    def __call__(self, name: _RouterNames, **fields: Any) -> RouterEvent: ...
    @overload
    def __call__(self, name: _DeliveryNames, **fields: Any) -> DeliveryEvent: ...
    @overload
    def __call__(self, name: _TrackNames, **fields: Any) -> TrackEvent: ...
    @overload
    def __call__(self, name: _SizeNames, **fields: Any) -> SizeEvent: ...
    @overload
    def __call__(self, name: _OutboundNames, **fields: Any) -> OutboundCommandEvent: ...
    @overload
    def __call__(self, name: _DnsNames, **fields: Any) -> DnsEvent: ...
    @overload
    def __call__(self, name: _PostNames, **fields: Any) -> PostEvent: ...
    @overload
    def __call__(self, name: str, **fields: Any) -> EventContext: ...
    def __call__(self, name: str, *, source: str | None = None, **fields: Any) -> EventContext:
        return make_event(name, source=source, **fields)


# -- running one sink ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class SinkRun(Generic[E]):
    """What became of one event fired at one sink by :class:`SinkRunner`."""

    event: E
    """The event as the sink left it (the very object that was passed in)."""
    verdict: Verdict
    """``SKIP_REMAINING`` when the sink stopped the chain, else ``CONTINUE`` (also after a
    failure: the dispatcher goes on with the next sink)."""
    notified: bool
    """False when the binding's Rule (or an Expiration, or a spent MaxFirings) kept the sink
    from being called."""
    failed: bool
    """The sink raised or overran its Timeout; ``error`` says how."""
    timed_out: bool
    error: str | None
    """``ValueError: bad header`` or ``timed out after 2s``, as the dispatcher logged it."""
    binding: Binding
    """The binding as stored after the event (``fire_count`` included)."""
    result: DispatchResult
    """The dispatcher's own tally for the event."""


class SinkRunner:
    """``seo_run_sink(SINK, EVENT, sink_properties=..., rule=...)``: fire EVENT at one sink.

    SINK is an entry-point name (``"tagger"``, ``"dist:name"`` or ``"{CLSID}"``), looked up
    among the installed sinks exactly as ``seo bindings add`` does; or the sink itself (a class,
    a module or any object with hooks), checked the way discovery checks installed ones. The sink
    is bound in a fresh metabase under ``tmp_path``, with its properties validated as the CLI
    validates them (a refused property raises :class:`~seo_core.errors.SinkPropertyError`), and
    the event goes through the real dispatcher: rules, timeouts and failure isolation included.
    """

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self._numbers = itertools.count(1)
        self._installed: SinkRegistry | None = None

    def __call__(
        self,
        sink: object,
        event: E,
        *,
        sink_properties: Mapping[str, Any] | None = None,
        source_properties: Mapping[str, Any] | None = None,
        binding_properties: Mapping[str, Any] | None = None,
        rule: str | None = None,
        priority: int | str | None = None,
        max_firings: int = 0,
        name: str = "test binding",
    ) -> SinkRun[E]:
        from seo_core.catalog import parse_source
        from seo_core.dispatcher import Dispatcher
        from seo_core.events.contexts import Verdict
        from seo_core.metabase import BindingSpec, Metabase

        canonical = parse_source(event.source).source_type.event(event.name).name
        if canonical != event.name:
            raise ValueError(
                f"event.name must be the event's own name, {canonical!r}, not {event.name!r} "
                "(seo_event builds it right)"
            )
        registry, sink_class = self._registry_for(sink)
        sink_props = _paths_from_here(registry, sink_class, dict(sink_properties or {}))
        props = dict(source_properties or {})
        if rule is not None:
            props["Rule"] = rule
        if priority is not None:
            props["Priority"] = priority
        spec = BindingSpec(
            source=event.source,
            event=event.name,
            sink_class=sink_class,
            display_name=name,
            max_firings=max_firings,
            sink_properties=sink_props,
            source_properties=props,
            binding_properties=dict(binding_properties or {}),
        )
        self._folder.mkdir(parents=True, exist_ok=True)
        path = self._folder / f"metabase-{next(self._numbers)}.db"
        with Metabase.open(path) as metabase:
            binding = metabase.add_binding(spec, check=_checker(registry))
            dispatcher = Dispatcher(event.source, metabase, registry)
            try:
                result = _notify(dispatcher, event, facts_for(event))
            finally:
                dispatcher.close()
            stats = metabase.stats(binding.id)
            binding = metabase.binding(binding.id)
        failed = bool(result.failed or result.timed_out)
        return SinkRun(
            event=event,
            verdict=Verdict.SKIP_REMAINING if result.stopped_by == binding.id else Verdict.CONTINUE,
            notified=bool(result.notified or failed),
            failed=failed,
            timed_out=bool(result.timed_out),
            error=stats.last_error if failed else None,
            binding=binding,
            result=result,
        )

    def _registry_for(self, sink: object) -> tuple[SinkRegistry, str]:
        from seo_core.registry import SinkRegistry

        if isinstance(sink, str):
            if self._installed is None:
                self._installed = SinkRegistry.discover()
            return self._installed, sink
        return SinkRegistry.from_objects({SINK_UNDER_TEST: sink}), SINK_UNDER_TEST


def _paths_from_here(
    registry: SinkRegistry, sink_class: str, properties: dict[str, PropertyValue]
) -> dict[str, PropertyValue]:
    """The sink's path properties made absolute against the current folder, as
    ``seo bindings add`` stores them (the same function does it for both)."""
    from seo_core.config.load import absolute_path_properties
    from seo_core.errors import SeoError

    try:
        info = registry.resolve(sink_class)
    except SeoError:
        return properties  # the binding's check says what is wrong with the sink
    return absolute_path_properties(properties, info.target, Path.cwd())


def _checker(registry: SinkRegistry) -> Any:
    """The check ``seo bindings add`` makes: the sink exists, loads, handles the event and
    accepts the properties."""

    def check(binding: Binding) -> None:
        registry.check_binding(binding)

    return check


def _notify(dispatcher: Dispatcher, event: EventContext, facts: EventFacts) -> DispatchResult:
    """Fire ``event``; from inside a running event loop (an async test), in a worker thread,
    because the dispatcher's synchronous entry runs async sinks in a loop of its own."""
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return dispatcher.notify_sync(event, facts)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1, thread_name_prefix="seo-run-sink") as pool:
        return pool.submit(dispatcher.notify_sync, event, facts).result()


# -- real servers --------------------------------------------------------------------------


def _registry_with(base: SinkRegistry, sinks: Mapping[str, object] | None) -> SinkRegistry:
    """The installed sinks plus a test's own, as one registry (the test's need no package)."""
    from seo_core.registry import SinkRegistry

    if not sinks:
        return base
    return SinkRegistry([*base.sinks, *SinkRegistry.from_objects(sinks).sinks])


def _binding_spec(table: BindingTable, default_source: str) -> BindingSpec:
    from seo_core.metabase import BindingSpec

    if isinstance(table, BindingSpec):
        return table
    unknown = sorted(set(table) - set(_BINDING_KEYS))
    if unknown:
        raise TypeError(
            f"unknown binding key {', '.join(unknown)}; known: {', '.join(_BINDING_KEYS)}"
        )
    source_properties: dict[str, PropertyValue] = dict(table.get("source_properties") or {})
    if "rule" in table:
        source_properties["Rule"] = table["rule"]
    if "priority" in table:
        source_properties["Priority"] = table["priority"]
    return BindingSpec(
        source=table.get("source", default_source),
        event=table["event"],
        sink_class=table["sink"],
        display_name=table.get("name"),
        id=table.get("id"),
        enabled=table.get("enabled", True),
        max_firings=table.get("max_firings", 0),
        sink_properties=dict(table.get("sink_properties") or {}),
        source_properties=source_properties,
        binding_properties=dict(table.get("binding_properties") or {}),
    )


def _bind(
    path: Path, registry: SinkRegistry, bindings: Sequence[BindingTable], source: str
) -> None:
    """Write ``bindings`` to the metabase at ``path``, checked and with absolute paths as
    ``seo bindings add`` writes them."""
    from seo_core.metabase import Metabase

    path.parent.mkdir(parents=True, exist_ok=True)
    with Metabase.open(path) as metabase:
        for table in bindings:
            spec = _binding_spec(table, source)
            properties = _paths_from_here(registry, spec.sink_class, dict(spec.sink_properties))
            spec = dataclasses.replace(spec, sink_properties=properties)
            metabase.add_binding(spec, check=_checker(registry))


class _Server:
    """What both test servers share: a metabase, the bindings in it, and a way to stop."""

    host = "127.0.0.1"

    running: RunningSmtp | RunningNntp

    def __init__(self, metabase: Path, stack: contextlib.ExitStack) -> None:
        self.metabase = metabase
        """The metabase file the source reads; change bindings in it while the server runs
        (the CLI's ``--metabase``) and the source picks the change up."""
        self._stack = stack

    @property
    def bindings(self) -> list[Binding]:
        """Every binding in the metabase as stored now, read at each access, in the
        metabase's order (source, event, firing order).

        The source writes its fire counts and statistics about once a second; they are
        written first, so ``fire_count`` counts every notification so far.
        """
        from seo_core.metabase import Metabase

        self.running.flush_stats()
        with Metabase.open(self.metabase) as metabase:
            return metabase.bindings()

    def close(self) -> None:
        """Stop the source: sessions in progress end, the listener closes. Idempotent."""
        self._stack.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class SmtpServer(_Server):
    """A running ``smtp/1`` on 127.0.0.1 (what ``seo_smtp_server(...)`` returns).

    Talk to it with any client on ``(host, port)``, or with :meth:`send`. It is stopped when the
    test ends, or at the end of a ``with`` block.
    """

    def __init__(
        self,
        running: RunningSmtp,
        metabase: Path,
        spool: Path,
        stack: contextlib.ExitStack,
    ) -> None:
        super().__init__(metabase, stack)
        self.running: RunningSmtp = running
        """The underlying :class:`seo_core.testing.RunningSmtp` (``source``, ``restart()``)."""
        self.spool = spool
        """The spool folder; kept-aside messages are in its ``badmail`` folder."""

    @property
    def port(self) -> int:
        return self.running.port

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Block until every accepted message went through the pipeline (categorized,
        delivered or kept aside): then a test can look at what the sinks did."""
        self.running.wait_idle(timeout)

    def send(
        self,
        message: bytes | str | EmailMessage | None = None,
        *,
        mail_from: str = MAIL_FROM,
        recipients: Sequence[str] = RECIPIENTS,
    ) -> dict[str, tuple[int, bytes]]:
        """Send one message with :mod:`smtplib`, then :meth:`wait_idle`.

        Returns the recipients the server refused (as ``smtplib`` does); a refused message
        raises ``smtplib``'s exception, whose ``smtp_code`` a test can check.
        """
        import smtplib

        data = _mail_bytes(message, mail_from, recipients)
        with smtplib.SMTP(self.host, self.port, timeout=30) as client:
            refused = client.sendmail(mail_from, list(recipients), data)
        self.wait_idle()
        return refused

    def restart(self) -> None:
        """Stop and start the source on the same port, as after a crash-free restart."""
        self.running.restart()


class NntpServer(_Server):
    """A running ``nntp/1`` on 127.0.0.1 (what ``seo_nntp_server(...)`` returns)."""

    def __init__(
        self,
        running: RunningNntp,
        metabase: Path,
        store: Path,
        stack: contextlib.ExitStack,
    ) -> None:
        super().__init__(metabase, stack)
        self.running: RunningNntp = running
        """The underlying :class:`seo_core.testing.RunningNntp`."""
        self.store = store
        """The folder the articles are stored in."""

    @property
    def port(self) -> int:
        return self.running.port

    def post(self, article: bytes | str | EmailMessage | None = None) -> str:
        """POST one article and return the server's final reply line (``240 ...`` when it was
        accepted, ``441 reason`` when a sink refused it). Without ``article``, a small one to
        ``local.test``."""
        import socket

        if article is None:
            data = _article(None, NEWSGROUPS, "OnPost").as_bytes()
        elif isinstance(article, str):
            data = article.encode()
        elif isinstance(article, bytes):
            data = article
        else:
            data = article.as_bytes()
        lines = data.replace(b"\r\n", b"\n").split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        stuffed = b"".join(
            (b"." + line if line.startswith(b".") else line) + b"\r\n" for line in lines
        )
        with (
            socket.create_connection((self.host, self.port), timeout=30) as connection,
            connection.makefile("rwb") as stream,
        ):

            def say(line: bytes) -> str:
                stream.write(line)
                stream.flush()
                return stream.readline().decode("utf-8", "replace").rstrip("\r\n")

            stream.readline()  # the greeting
            reply = say(b"POST\r\n")
            if reply.startswith("340"):
                reply = say(stuffed + b".\r\n")
            say(b"QUIT\r\n")
        return reply


class _ServerFactory:
    """What both server fixtures share: a folder per server, the installed sinks found once,
    the bindings written to a fresh metabase, and a clean stop when the test ends."""

    kind = ""

    def __init__(self, folder: Path, stack: contextlib.ExitStack) -> None:
        self._folder = folder
        self._stack = stack
        self._numbers = itertools.count(1)
        self._installed: SinkRegistry | None = None

    def _prepare(
        self, bindings: Sequence[BindingTable], sinks: Mapping[str, object] | None
    ) -> tuple[SinkRegistry, Path, Path]:
        """The registry, the server's folder and its metabase, the bindings written there."""
        from seo_core.registry import SinkRegistry

        if self._installed is None:
            self._installed = SinkRegistry.discover()
        registry = _registry_with(self._installed, sinks)
        folder = self._folder / f"seo-{self.kind}-{next(self._numbers)}"
        metabase = folder / "seo-metabase.db"
        _bind(metabase, registry, bindings, f"{self.kind}/1")
        return registry, folder, metabase

    def _keep(self, server: Any) -> None:
        self._stack.callback(server.close)


class SmtpServerFactory(_ServerFactory):
    """``seo_smtp_server(bindings, sinks=None, local_domains=..., settings=None)``.

    Starts ``smtp/1`` on a free loopback port with a fresh metabase holding ``bindings`` (each a
    ``[[bindings]]`` table of the config file as a dictionary, or a ``BindingSpec``), checked
    as ``seo bindings add`` checks them. ``sinks`` adds sinks that are not installed
    (``{"capture": Capture}``), for a test's own helpers. ``settings`` are more keys of the
    config file's ``[sources."smtp/1"]`` table (``max_message_size``...).
    """

    kind = "smtp"

    def __call__(
        self,
        bindings: Sequence[BindingTable] = (),
        *,
        sinks: Mapping[str, object] | None = None,
        local_domains: Sequence[str] = ("example.com",),
        settings: Mapping[str, Any] | None = None,
    ) -> SmtpServer:
        from seo_core.testing import running_smtp

        registry, folder, metabase = self._prepare(bindings, sinks)
        spool = folder / "spool"
        stack = contextlib.ExitStack()
        running = stack.enter_context(
            running_smtp(
                metabase,
                registry,
                spool=spool,
                local_domains=tuple(local_domains),
                settings=settings,
            )
        )
        server = SmtpServer(running, metabase, spool, stack)
        self._keep(server)
        return server


class NntpServerFactory(_ServerFactory):
    """``seo_nntp_server(bindings, sinks=None, groups=..., settings=None)``: as
    :class:`SmtpServerFactory`, for ``nntp/1`` carrying ``groups``."""

    kind = "nntp"

    def __call__(
        self,
        bindings: Sequence[BindingTable] = (),
        *,
        sinks: Mapping[str, object] | None = None,
        groups: Sequence[str] = ("local.test", "local.announce"),
        settings: Mapping[str, Any] | None = None,
    ) -> NntpServer:
        from seo_core.testing import running_nntp

        registry, folder, metabase = self._prepare(bindings, sinks)
        store = folder / "news"
        stack = contextlib.ExitStack()
        running = stack.enter_context(
            running_nntp(metabase, registry, store=store, groups=tuple(groups), settings=settings)
        )
        server = NntpServer(running, metabase, store, stack)
        self._keep(server)
        return server


# -- the fixtures --------------------------------------------------------------------------


@pytest.fixture
def seo_event() -> EventFactory:
    """Build the context of any event: ``seo_event("OnArrival", mail_from="a@example.com")``."""
    return EventFactory()


@pytest.fixture
def seo_run_sink(tmp_path: Path) -> SinkRunner:
    """Fire one event at one sink through the real dispatcher:
    ``run = seo_run_sink("tagger", event, sink_properties={...})``."""
    return SinkRunner(tmp_path / "seo-run-sink")


@pytest.fixture
def seo_smtp_server(tmp_path: Path) -> Iterator[SmtpServerFactory]:
    """Start a real SMTP source with given bindings: ``server = seo_smtp_server([...])``."""
    with contextlib.ExitStack() as stack:
        yield SmtpServerFactory(tmp_path, stack)


@pytest.fixture
def seo_nntp_server(tmp_path: Path) -> Iterator[NntpServerFactory]:
    """Start a real NNTP source with given bindings: ``server = seo_nntp_server([...])``."""
    with contextlib.ExitStack() as stack:
        yield NntpServerFactory(tmp_path, stack)


@pytest.fixture
def seo_logs() -> Iterator[LogEvents]:
    """The structlog events logged during the test, one dictionary each, in order."""
    from structlog.testing import capture_logs

    with capture_logs() as captured:
        yield captured
