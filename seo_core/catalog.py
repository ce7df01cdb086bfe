"""The catalogue of source types and the events each can fire.

This is the one table that knows event names, their aliases, their hook names and which rule
keywords they understand. The metabase validates bindings against it, the hook specifications are
checked against it, and sources look their events up here.
"""

from __future__ import annotations

import difflib
import enum
import re
from dataclasses import dataclass

from seo_core.errors import UnknownEventError, UnknownSourceError
from seo_core.guids import indexed_guid


class RuleKind(enum.Enum):
    """Which rule grammar an event's ``Rule`` source property is read with."""

    NONE = "none"
    """The event takes no rule; any non-empty rule is refused."""
    TRANSPORT = "transport"
    """Envelope rules: ``ehlo``/``helo``, ``mail from``, ``rcpt to``."""
    PROTOCOL = "protocol"
    """Command rules: a bare verb (``EHLO``) or ``verb=pattern`` (``mail from=*@x``)."""
    NNTP = "nntp"
    """News rules: ``newsgroups=pattern``."""


@dataclass(frozen=True, slots=True)
class EventType:
    """One event a source type can fire."""

    name: str
    catid: str
    rule_kind: RuleKind
    description: str
    aliases: tuple[str, ...] = ()

    def hook_name(self, source_type: str) -> str:
        """The pluggy hook that sinks implement for this event (``smtp_on_arrival``)."""
        return f"{source_type}_{snake_case(self.name)}"


@dataclass(frozen=True, slots=True)
class SourceType:
    """A kind of server that fires events (``smtp``, ``nntp``)."""

    name: str
    guid: str
    base_guid: str
    display_prefix: str
    events: tuple[EventType, ...]

    def event(self, name: str) -> EventType:
        """Look an event up by name or alias, case-insensitively."""
        wanted = name.strip().casefold()
        for event in self.events:
            if event.name.casefold() == wanted or wanted in (a.casefold() for a in event.aliases):
                return event
        names = [n for e in self.events for n in (e.name, *e.aliases)]
        close = difflib.get_close_matches(name.strip(), names, n=1, cutoff=0.75)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        known = ", ".join(e.name for e in self.events)
        raise UnknownEventError(
            "event", name, f"not an event of {self.name} sources{hint}; known: {known}"
        )

    def source_guid(self, instance: int) -> str:
        """The stable GUID of instance ``instance`` (the original's GetIndexedGUID)."""
        return indexed_guid(self.base_guid, instance)

    def display_name(self, instance: int) -> str:
        """``smtpsvc 1``: the name the original's admin scripts looked sources up by."""
        return f"{self.display_prefix} {instance}"


def snake_case(name: str) -> str:
    """``OnInboundCommand`` -> ``on_inbound_command``; ``MsgTrackLog`` -> ``msg_track_log``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


_T = RuleKind.TRANSPORT
_P = RuleKind.PROTOCOL

SMTP = SourceType(
    name="smtp",
    guid="{fb65c4dc-e468-11d1-aa67-00c04fa345f6}",
    base_guid="{1b3c0666-e470-11d1-aa67-00c04fa345f6}",
    display_prefix="smtpsvc",
    events=(
        EventType(
            "OnInboundCommand",
            "{f6628c8d-0d5e-11d2-aa68-00c04fa35b82}",
            _P,
            "each command a client sends, before the server's own handling",
        ),
        EventType(
            "OnServerResponse",
            "{f6628c8e-0d5e-11d2-aa68-00c04fa35b82}",
            _P,
            "before each reply is sent to the client",
        ),
        EventType(
            "OnSessionStart",
            "{f6628c8f-0d5e-11d2-aa68-00c04fa35b82}",
            _P,
            "outbound relay: before EHLO is sent",
        ),
        EventType(
            "OnMessageStart",
            "{f6628c90-0d5e-11d2-aa68-00c04fa35b82}",
            _P,
            "outbound relay: before MAIL FROM is sent",
        ),
        EventType(
            "OnPerRecipient",
            "{f6628c91-0d5e-11d2-aa68-00c04fa35b82}",
            _P,
            "outbound relay: before each RCPT TO is sent",
        ),
        EventType(
            "OnBeforeData",
            "{f6628c92-0d5e-11d2-aa68-00c04fa35b82}",
            _P,
            "outbound relay: before DATA is sent",
        ),
        EventType(
            "OnSessionEnd",
            "{f6628c93-0d5e-11d2-aa68-00c04fa35b82}",
            _P,
            "outbound relay: before QUIT is sent",
        ),
        EventType(
            "StoreDriver",
            "{59175850-e533-11d1-aa67-00c04fa345f6}",
            _T,
            "local delivery of a message to one recipient",
        ),
        EventType(
            "OnArrival",
            "{ff3caa23-00b9-11d2-9dfb-00c04fa322ba}",
            _T,
            "a message was received completely and is safely spooled",
            aliases=("OnTransportSubmission",),
        ),
        EventType(
            "OnPreCategorize",
            "{a3acfb0d-83ff-11d2-9e14-00c04fa322ba}",
            _T,
            "before the recipients of a message are resolved",
        ),
        EventType(
            "OnCategorize",
            "{960252a3-0a3a-11d2-9e00-00c04fa322ba}",
            _T,
            "once per recipient, to resolve it",
        ),
        EventType(
            "OnPostCategorize",
            "{76719654-05a6-11d2-9dfd-00c04fa322ba}",
            _T,
            "after the recipients were resolved",
        ),
        EventType(
            "OnTransportRouter",
            "{283430c9-1850-11d2-9e03-00c04fa322ba}",
            _T,
            "per recipient domain: choose the next hop",
        ),
        EventType(
            "MsgTrackLog",
            "{c6df52aa-7db0-11d2-94f4-00c04f79f1d6}",
            _T,
            "each tracking step of a message",
        ),
        EventType(
            "DnsResolver",
            "{bd0b4366-8e03-11d2-94f6-00c04f79f1d6}",
            RuleKind.NONE,
            "the relay needs the hosts of a domain",
        ),
        EventType(
            "MaxMsgSize",
            "{ebf159de-a67e-11d2-94f7-00c04f79f1d6}",
            _T,
            "a message exceeds the size limit",
        ),
    ),
)

NNTP = SourceType(
    name="nntp",
    guid="{c028fd82-f943-11d0-85bd-00c04fb960ea}",
    base_guid="{c028fd82-f943-11d0-85bd-00c04fb960eb}",
    display_prefix="nntpsvc",
    events=(
        EventType(
            "OnPostEarly",
            "{c028fd86-f943-11d0-85bd-00c04fb960ea}",
            RuleKind.NNTP,
            "the headers of a posted article were received",
        ),
        EventType(
            "OnPost",
            "{c028fd83-f943-11d0-85bd-00c04fb960ea}",
            RuleKind.NNTP,
            "a whole posted article was received",
        ),
        EventType(
            "OnPostFinal",
            "{c028fd85-f943-11d0-85bd-00c04fb960ea}",
            RuleKind.NNTP,
            "a posted article was stored",
        ),
    ),
)

SOURCE_TYPES: dict[str, SourceType] = {SMTP.name: SMTP, NNTP.name: NNTP}

_SOURCE_NAME = re.compile(r"^([A-Za-z][A-Za-z0-9_]*)/([0-9]+)$")


@dataclass(frozen=True, slots=True, order=True)
class SourceName:
    """A parsed source name such as ``smtp/1``."""

    type: str
    instance: int

    def __str__(self) -> str:
        return f"{self.type}/{self.instance}"

    @property
    def source_type(self) -> SourceType:
        return SOURCE_TYPES[self.type]


def source_type(name: str) -> SourceType:
    """Look a source type up by name, case-insensitively."""
    try:
        return SOURCE_TYPES[name.strip().lower()]
    except KeyError:
        known = ", ".join(sorted(SOURCE_TYPES))
        raise UnknownSourceError("source type", name, f"unknown; known: {known}") from None


def parse_source(text: str) -> SourceName:
    """Parse ``smtp/1`` into a :class:`SourceName`; the type must be known, the instance >= 1."""
    match = _SOURCE_NAME.match(text.strip())
    if match is None:
        raise UnknownSourceError("source", text, "expected TYPE/N, for example smtp/1")
    kind = source_type(match.group(1))
    instance = int(match.group(2))
    if instance < 1:
        raise UnknownSourceError("source", text, "instance numbers start at 1")
    return SourceName(kind.name, instance)


def event_for_hook(hook: str) -> tuple[SourceType, EventType] | None:
    """The source type and event behind a hook name, aliases included, or ``None``."""
    return _HOOKS.get(hook)


def hook_names() -> dict[str, tuple[SourceType, EventType]]:
    """Every hook name (aliases included) mapped to its source type and event."""
    return dict(_HOOKS)


def _build_hooks() -> dict[str, tuple[SourceType, EventType]]:
    hooks: dict[str, tuple[SourceType, EventType]] = {}
    for kind in SOURCE_TYPES.values():
        for event in kind.events:
            for name in (event.name, *event.aliases):
                hooks[f"{kind.name}_{snake_case(name)}"] = (kind, event)
    return hooks


_HOOKS = _build_hooks()
