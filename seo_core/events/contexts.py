"""The context objects that events hand to sinks (the ``event`` argument).

A context is what a sink may read and change about one event. Sources build them; sinks act on
them through plain attributes and a few verbs (``reply``, ``refuse``, ``set_status``). Names here
are part of the sink API: they stay.
"""

from __future__ import annotations

import email
import email.errors
import email.message
import email.policy
import enum
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any


class Verdict(enum.Enum):
    """What a sink tells the dispatcher after handling an event."""

    CONTINUE = "continue"
    """Notify the next sink (also what returning ``None`` means)."""
    SKIP_REMAINING = "skip_remaining"
    """Notify no lower-priority sink for this event."""


class MessageStatus(enum.Enum):
    """What becomes of a message (the original's ``messagestatus``)."""

    DELIVER = "deliver"
    """Go on: categorize, route and deliver it."""
    ABORT = "abort"
    """Discard it, silently: nothing is delivered and no bounce is sent."""
    BADMAIL = "badmail"
    """Keep it aside in the badmail folder with the reason; nothing is delivered."""


@dataclass(slots=True)
class SessionInfo:
    """What is known about the SMTP client of a session. Never holds a password.

    ``data`` is a scratch dictionary that lives as long as the session, for sinks that need to
    remember something between commands (the original's session property bag).
    """

    id: str
    peer: tuple[str, int] | None = None
    ehlo_name: str | None = None
    tls: bool = False
    authenticated_as: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Reply:
    """An SMTP reply: a three-digit code and its text (several lines allowed)."""

    code: int
    text: str

    def __post_init__(self) -> None:
        if not 200 <= self.code <= 599:
            raise ValueError(f"SMTP reply code {self.code} is not between 200 and 599")

    def __str__(self) -> str:
        return f"{self.code} {self.text}"


@dataclass(slots=True, kw_only=True)
class EventContext:
    """What every event carries: which source fired it and its name."""

    source: str
    name: str


# -- SMTP protocol events ------------------------------------------------------------------


@dataclass(slots=True, kw_only=True)
class CommandEvent(EventContext):
    """OnInboundCommand: a client sent a command; the server has not handled it yet.

    ``reply(code, text)`` answers the client instead of the server (a 4xx or 5xx refuses the
    command; a 2xx or 3xx answer to an unknown verb implements it). ``drop_session()`` closes
    the connection after the reply. ``ehlo_keywords`` can be extended on EHLO.
    """

    command: str
    argument: str
    session: SessionInfo
    response: Reply | None = None
    drop: bool = False
    ehlo_keywords: list[str] = field(default_factory=list)

    def reply(self, code: int, text: str) -> None:
        self.response = Reply(code, text)

    def drop_session(self) -> None:
        self.drop = True


@dataclass(slots=True, kw_only=True)
class ResponseEvent(EventContext):
    """OnServerResponse: the server is about to send ``response`` for ``command``."""

    command: str
    argument: str
    session: SessionInfo
    response: Reply
    drop: bool = False

    def reply(self, code: int, text: str) -> None:
        """Send this reply instead."""
        self.response = Reply(code, text)

    def drop_session(self) -> None:
        self.drop = True


@dataclass(slots=True, kw_only=True)
class OutboundCommandEvent(EventContext):
    """OnSessionStart .. OnSessionEnd: the relay is about to send ``command`` to a remote host."""

    command: str
    argument: str
    remote: tuple[str, int] | None = None
    recipient: str | None = None
    stopped: bool = False

    def set_command(self, command: str, argument: str = "") -> None:
        self.command, self.argument = command, argument

    def stop(self) -> None:
        """Do not send this command (the step fails)."""
        self.stopped = True


# -- SMTP transport events -----------------------------------------------------------------


_LINE_BREAK = re.compile(r"\r\n|\r|\n")


class _MessagePolicy(email.policy.EmailPolicy):
    """The stdlib's SMTP policy, except that only CR and LF break a header line.

    ``str.splitlines`` also breaks at VT, FF and the ASCII separators; the stdlib folds header
    values with it, so a ``Subject: a<VT>X-Spam-Flag: NO`` received from a client would be
    written back as two headers: a header injection. Splitting on CR/LF alone writes such a
    value back exactly as received.
    """

    def _fold(self, name: str, value: Any, refold_binary: bool = False) -> str:
        if hasattr(value, "name") or not isinstance(value, str):
            return str(super()._fold(name, value, refold_binary))  # type: ignore[misc]
        lines = _LINE_BREAK.split(value)
        if lines and lines[-1] == "":
            lines.pop()
        if refold_binary and _has_surrogates(value):
            return str(self.header_factory(name, "".join(lines)).fold(policy=self))
        return name + ": " + self.linesep.join(lines) + self.linesep


def _has_surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


MESSAGE_POLICY = _MessagePolicy(
    linesep="\r\n", raise_on_defect=False, refold_source="none", max_line_length=0
)
"""How message bytes become an editable message, and back: headers a sink does not touch keep
their original folding (and their bytes) when the message is written out again."""


MAX_MIME_DEPTH = 100
"""MIME parts nested deeper than this are not parsed into parts (real mail nests a few levels;
the email package recurses once per level, and fails to write a message back at about 250)."""


class BodyNotParsedDefect(email.errors.MessageDefect):
    """The message's parts nest too deeply to parse: its headers were read, its body was not.

    Sinks can still read and change the headers; the body is delivered as received.
    """


def parse_message(raw: bytes) -> EmailMessage:
    """``raw`` as an editable message; one nested too deeply is read as its header block only,
    with a :class:`BodyNotParsedDefect`, so that sinks still see and change its headers."""
    try:
        message = email.message_from_bytes(raw, policy=MESSAGE_POLICY)
        if _mime_depth(message) <= MAX_MIME_DEPTH:
            assert isinstance(message, EmailMessage)
            return message
    except RecursionError:
        pass
    head = _header_block(raw)
    message = email.message_from_bytes(head, policy=MESSAGE_POLICY)
    assert isinstance(message, EmailMessage)
    message.set_payload("")  # the body is the received one (see body_not_parsed)
    message.defects.append(BodyNotParsedDefect(f"parts nested over {MAX_MIME_DEPTH} levels"))
    return message


def body_not_parsed(message: EmailMessage) -> bool:
    """Whether ``message`` holds only the headers of the message received (see parse_message)."""
    return any(isinstance(defect, BodyNotParsedDefect) for defect in message.defects)


def _header_block(raw: bytes) -> bytes:
    end = raw.find(b"\r\n\r\n")
    return raw if end < 0 else raw[: end + 4]


def _mime_depth(message: email.message.Message) -> int:
    """How deep the parts of ``message`` nest, counted without recursion."""
    deepest = 0
    waiting: list[tuple[Any, int]] = [(message, 1)]
    while waiting:
        part, depth = waiting.pop()
        deepest = max(deepest, depth)
        payload = part.get_payload() if isinstance(part, email.message.Message) else None
        if isinstance(payload, list):
            waiting.extend((child, depth + 1) for child in payload)
    return deepest


class _ParsedOnFirstUse:
    """The ``message`` of a transport event, parsed from ``raw`` only when a sink asks for it.

    Most sinks look at the envelope, not the content; parsing and writing back a message costs
    more than notifying several sinks, so it happens only for the sinks that read it. The event
    remembers that it handed the message out (``message_used``), so the source knows whether to
    write it back.
    """

    def __get__(self, event: MessageEvent | None, owner: type | None = None) -> Any:
        if event is None:
            return None  # the dataclass default: built from ``raw`` when omitted
        message = event.__dict__.get("_message")
        if message is None:
            if event.raw is None:
                raise AttributeError("this event carries neither a message nor its bytes")
            message = parse_message(event.raw)
            event.__dict__["_message"] = message
        event.__dict__["message_used"] = True
        return message

    def __set__(self, event: MessageEvent, message: EmailMessage | None) -> None:
        event.__dict__["_message"] = message


@dataclass(kw_only=True)
class MessageEvent(EventContext):
    """A transport event about one accepted message (OnArrival, OnPreCategorize, ...).

    ``message`` is an editable :class:`email.message.EmailMessage` (parsed from ``raw`` the first
    time a sink reads it); ``recipients`` is the editable envelope recipient list; ``status``
    decides what becomes of the message.
    """

    message_id: str
    mail_from: str
    recipients: list[str]
    message: EmailMessage = _ParsedOnFirstUse()  # type: ignore[assignment]
    raw: bytes | None = None
    """The message as bytes: as the client sent it, or as the sinks before this one left it."""
    session: SessionInfo | None = None
    status: MessageStatus = MessageStatus.DELIVER
    status_reason: str | None = None

    @property
    def message_used(self) -> bool:
        """True once a sink read ``message`` (it may have changed it)."""
        return bool(self.__dict__.get("message_used", False))

    def set_status(self, status: MessageStatus, reason: str | None = None) -> None:
        self.status = status
        self.status_reason = reason

    def abort(self, reason: str | None = None) -> None:
        """Discard the message."""
        self.set_status(MessageStatus.ABORT, reason)

    def badmail(self, reason: str) -> None:
        """Keep the message aside in badmail, with ``reason``."""
        self.set_status(MessageStatus.BADMAIL, reason)


@dataclass(kw_only=True)
class CategorizeEvent(MessageEvent):
    """OnCategorize: resolve one ``recipient``.

    A sink may ``rewrite`` it to one or more addresses (an alias), or ``mark_unknown`` it. The
    result is in ``resolved`` (``None`` until a sink decides; the server then resolves it
    itself) and ``unknown``.
    """

    recipient: str
    resolved: list[str] | None = None
    unknown: bool = False

    def rewrite(self, *addresses: str) -> None:
        self.resolved = list(addresses)

    def mark_unknown(self) -> None:
        self.unknown = True


@dataclass(kw_only=True)
class RouterEvent(MessageEvent):
    """OnTransportRouter: choose the next hop for the recipients of ``domain``."""

    domain: str
    route: tuple[str, int] | None = None
    local: bool | None = None

    def relay_to(self, host: str, port: int = 25) -> None:
        self.route, self.local = (host, port), False

    def deliver_locally(self) -> None:
        self.route, self.local = None, True


@dataclass(kw_only=True)
class DeliveryEvent(MessageEvent):
    """StoreDriver: store the message for one local ``recipient``.

    A sink that stored it calls ``delivered(where)``; one that failed calls ``fail(reason)``
    (``permanent=True`` for a failure a retry will not fix) or raises.

    Where ``source_flushes`` is true, a sink that writes files may leave flushing them to the
    source: it names them in ``delivered(where, unflushed=[...])``, and the source makes them
    durable before it counts the delivery, with one flush for every delivery finishing at that
    moment rather than one or two per message.
    """

    recipient: str
    stored_at: str | None = None
    failure: str | None = None
    permanent_failure: bool = False
    source_flushes: bool = False
    """True when the source flushes the files a sink names in ``delivered(unflushed=...)``."""
    unflushed: list[str] = field(default_factory=list)
    """Files and folders written for this delivery that the source is to flush to disk."""
    resumed: bool = False
    """True when an earlier run of the server was delivering this message when it died, so it
    may have stored it already: a sink that names what it stores by :attr:`key` looks for it,
    and reports the copy it finds instead of storing a second one."""

    @property
    def key(self) -> str:
        """16 hex digits, the same for this message and recipient in every run and no other."""
        digest = hashlib.sha256(f"{self.message_id}\0{self.recipient}".encode())
        return digest.hexdigest()[:16]

    def delivered(self, where: str, *, unflushed: Iterable[str] = ()) -> None:
        self.stored_at = where
        self.unflushed = list(unflushed)

    def fail(self, reason: str, *, permanent: bool = False) -> None:
        self.failure, self.permanent_failure = reason, permanent


@dataclass(kw_only=True)
class TrackEvent(MessageEvent):
    """MsgTrackLog: one tracking step of a message (received, categorized, delivered, failed)."""

    step: str
    recipient: str | None = None
    detail: str | None = None


@dataclass(slots=True, kw_only=True)
class SizeEvent(EventContext):
    """MaxMsgSize: a message of ``size`` bytes is over ``limit``; ``allow()`` lets it through."""

    size: int
    limit: int
    mail_from: str | None
    recipients: list[str]
    session: SessionInfo | None = None
    allowed: bool = False

    def allow(self) -> None:
        self.allowed = True


@dataclass(slots=True, kw_only=True)
class DnsEvent(EventContext):
    """DnsResolver: the relay needs the mail hosts of ``domain``; sinks may supply them."""

    domain: str
    hosts: list[tuple[str, int]] = field(default_factory=list)


# -- NNTP events ---------------------------------------------------------------------------


@dataclass(slots=True, kw_only=True)
class PostEvent(EventContext):
    """OnPostEarly, OnPost and OnPostFinal: an article posted to a news source.

    In OnPostEarly ``message`` holds the headers only. ``newsgroups`` is the list of groups the
    article will be filed in (editable in OnPostEarly and OnPost); ``refuse(reason)`` rejects
    the post and the reason reaches the client.
    """

    message: EmailMessage
    newsgroups: list[str]
    message_id: str | None = None
    refused: str | None = None

    def refuse(self, reason: str) -> None:
        self.refused = reason
