"""The SMTP protocol on aiosmtpd, with seo's protocol events.

aiosmtpd parses the dialogue; this subclass puts the events around it:

- every command a client sends passes through :class:`CommandTable`, which fires
  OnInboundCommand before aiosmtpd's own handler runs (a sink may answer instead, refuse,
  implement a new verb, add EHLO keywords or drop the session);
- every reply passes through :meth:`SeoSMTP.push`, which fires OnServerResponse (a sink may
  rewrite it).

It also enforces what aiosmtpd leaves open: invalid UTF-8 in a command is a syntax error, the
null path ``<>`` is refused as a recipient, HELP lists AUTH only when EHLO offers it, and an
AUTH command's initial response (a credential) never reaches an event or a log.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import structlog
from aiosmtpd.smtp import SMTP

from seo_core.events.contexts import CommandEvent, Reply, ResponseEvent, SessionInfo, SizeEvent
from seo_core.rules import EventFacts

if TYPE_CHECKING:
    from seo_core.sources.smtp.service import SmtpSource

log = structlog.get_logger("seo.smtp")

BOGUS_LIMIT = 10
"""Unknown commands a session may send before it is closed."""

_ENHANCED = {
    "552 Error: message size exceeds fixed maximum message size": (
        "552 5.3.4 Message size exceeds the fixed maximum message size"
    ),
    "552 Error: Too much mail data": "552 5.3.4 Too much mail data",
    # Sent before the line is read as a command, so no command tells its code.
    "500 Command line too long": "500 5.5.2 Command line too long",
    "500 Line too long (see RFC5321 4.5.3.1.6)": (
        "500 5.5.2 Line too long (RFC 5321, 4.5.3.1.6: at most 1000 octets)"
    ),
}
"""aiosmtpd's own replies that lack an enhanced status code (RFC 3463), with one."""

_ENHANCED_DEFAULTS = {
    221: "2.0.0",
    250: "2.0.0",
    252: "2.0.0",
    421: "4.3.2",
    450: "4.2.0",
    451: "4.3.0",
    452: "4.3.1",
    454: "4.7.0",
    455: "4.5.4",
    500: "5.5.2",
    501: "5.5.4",
    502: "5.5.1",
    503: "5.5.1",
    504: "5.5.4",
    530: "5.7.0",
    550: "5.0.0",
    551: "5.1.6",
    552: "5.3.4",
    553: "5.1.3",
    554: "5.0.0",
    555: "5.5.4",
}
"""The enhanced status code (RFC 3463) of a reply that has none, by reply code."""

_ENHANCED_BY_COMMAND = {("MAIL", 250): "2.1.0", ("RCPT", 250): "2.1.5"}
_HAS_ENHANCED = re.compile(r"^[245]\d\d[ -][245]\.\d{1,3}\.\d{1,3}(?:\s|$)")
_WITHOUT_ENHANCED = frozenset({"CONNECT", "EHLO", "HELO"})
"""Replies RFC 2034 leaves without an enhanced code: the greeting, and to EHLO and HELO."""

_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_ADDRESS = re.compile(rf"<({_ATEXT}(?:\.{_ATEXT})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>[ \t]*")
"""``<local@domain>``, both dot-atoms in ASCII, then the parameters: nearly every address."""

NULL_RECIPIENT = "501 5.1.3 Bad recipient address syntax: <> is not a mailbox"
"""The reply to ``RCPT TO:<>``: the null path is a reverse-path only (RFC 5321, 4.1.1.3)."""

_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
"""Characters no SMTP command argument may hold (tab is white space and may)."""

_PLAIN_VERB = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,19}")

_SIZE = re.compile(r"(?:^|\s)SIZE=(\d+)", re.IGNORECASE)
_REPLY = re.compile(r"^(\d{3})([ -]?)(.*)$", re.DOTALL)

Method = Callable[[str | None], Awaitable[None]]


class SessionState:
    """Per-connection state seo keeps beside aiosmtpd's session."""

    __slots__ = (
        "accepted_by_sink",
        "after_auth",
        "answering",
        "bogus",
        "drop",
        "ehlo_keywords",
        "info",
        "override",
    )

    def __init__(self, info: SessionInfo) -> None:
        self.info = info
        self.answering: tuple[str, str] = ("CONNECT", "")
        self.override: Reply | None = None
        self.accepted_by_sink = False
        self.ehlo_keywords: list[str] = []
        self.drop = False
        self.bogus = 0
        self.after_auth = False
        """The last command was AUTH: an unknown line now may be a credential sent too soon."""


class _Command:
    """What aiosmtpd's command loop calls for one verb: seo's events, then aiosmtpd's method."""

    __slots__ = ("method", "protocol", "verb")

    def __init__(self, protocol: SeoSMTP, verb: str, method: Method | None) -> None:
        self.protocol = protocol
        self.verb = verb
        self.method = method

    async def __call__(self, arg: str | None) -> None:
        await self.protocol.run_command(self.verb, self.method, arg)

    def __getattr__(self, name: str) -> Any:
        # aiosmtpd's HELP reads the syntax attributes of the method.
        return getattr(self.method, name)


class CommandTable(dict[str, Any]):
    """aiosmtpd's verb-to-method table, answering every verb (known or not) with a wrapper."""

    def __init__(self, protocol: SeoSMTP, methods: dict[str, Any]) -> None:
        super().__init__(methods)
        self.protocol = protocol

    def get(self, verb: str, default: Any = None) -> Any:
        return _Command(self.protocol, verb, super().get(verb))


class SeoSMTP(SMTP):
    """aiosmtpd's SMTP with seo's protocol events and stricter input checks."""

    def __init__(self, handler: Any, source: SmtpSource, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.source = source
        self.default_size_limit = self.data_size_limit
        self._smtp_methods = CommandTable(self, self._smtp_methods)
        self.state = SessionState(SessionInfo(id=""))
        self._in_command = False
        self._closing = False
        self._closer: asyncio.Task[None] | None = None
        self._bare_lf = False
        self._read_command_line: Callable[[bytes], Awaitable[bytes]] | None = None

    async def _readuntil(self, separator: bytes = b"\n") -> bytes:
        """aiosmtpd's reader, noting whether a command line ended in a bare LF.

        aiosmtpd reads commands up to LF and strips CR and LF, so ``MAIL FROM:<a>\n`` would pass
        for a whole line: one way to hide a command inside another line of a pipelined batch.
        RFC 5321 (2.3.8) ends lines with CRLF only; :meth:`_run_command` refuses the others.
        (DATA is read up to CRLF, and its content checked as a whole when it ends.)
        """
        assert self._read_command_line is not None
        line = await self._read_command_line(separator)
        self._bare_lf = separator == b"\n" and not line.endswith(b"\r\n")
        return line

    # -- connection ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if self._read_command_line is None:  # the reader aiosmtpd made (STARTTLS keeps it)
            self._read_command_line = self._reader.readuntil
            self._reader.readuntil = self._readuntil  # type: ignore[method-assign,assignment]
        peer = transport.get_extra_info("peername")
        self.state = SessionState(
            SessionInfo(id=self.source.new_session_id(), peer=tuple(peer[:2]) if peer else None)
        )
        self.source.sessions.add(self)
        log.info(
            "smtp_session_start",
            source=self.source.name,
            session=self.state.info.id,
            peer=_peer(self.state.info),
        )

    def connection_lost(self, error: Exception | None) -> None:
        if self in self.source.sessions:
            self.source.sessions.discard(self)
            log.info(
                "smtp_session_end",
                source=self.source.name,
                session=self.state.info.id,
                reason="reset" if error else "closed",
            )
        super().connection_lost(error)

    # -- commands --------------------------------------------------------------------------

    def shut_down(self) -> None:
        """The server is stopping: end the session with 421 as soon as no transaction is open.

        A client between transactions is told at once; one in the middle of a transaction
        (after MAIL, during DATA) finishes it first, so a message under way is not cut off.
        """
        self._closing = True
        if not self._in_command:
            self._closer = self.loop.create_task(self._leave_if_done())

    async def _leave_if_done(self) -> None:
        envelope = self.envelope
        if envelope is not None and envelope.mail_from is not None:
            return  # a transaction is open: the command that ends it comes back here
        if self.transport is None or self.transport.is_closing():
            return
        await self.push("421 4.3.2 Service shutting down; try again later")
        if self.transport is not None:
            self.transport.close()

    async def run_command(self, verb: str, method: Method | None, arg: str | None) -> None:
        """Fire OnInboundCommand for one command, then let aiosmtpd handle it (or not)."""
        self._in_command = True
        try:
            await self._run_command(verb, method, arg)
        finally:
            self._in_command = False
        if self._closing:
            await self._leave_if_done()

    async def _run_command(self, verb: str, method: Method | None, arg: str | None) -> None:
        state = self.state
        if self._bare_lf:
            await self.push("500 5.5.2 Syntax error: a line must end with CRLF, not a bare LF")
            return
        if arg is not None and not _valid_utf8(arg):
            await self.push("500 5.5.2 Syntax error: the command is not valid UTF-8")
            return
        if _CONTROL.search(verb) or (arg is not None and _CONTROL.search(arg)):
            # A CR inside a line is how a header gets injected through the trace fields: the
            # EHLO name goes into Received:, the sender into Return-Path: (RFC 5321, 2.3.8).
            await self.push("501 5.5.2 Syntax error: a control character in the command")
            return
        if arg and not arg.isascii() and not self._utf8_allowed(verb, arg):
            await self.push("553 5.6.7 Non-ASCII addresses need MAIL FROM with SMTPUTF8 (RFC 6531)")
            return
        if method is None and state.after_auth:
            # A client that sends its credentials without waiting for the 334 prompt, to an
            # AUTH that was refused: the line is a secret, not a command. No event sees it and
            # the reply does not repeat it.
            await self._unknown(None)
            return
        state.after_auth = verb == "AUTH"
        argument = _safe_argument(verb, arg or "")
        state.answering = (verb, argument)
        state.override = None
        state.accepted_by_sink = False
        dispatcher = self.source.dispatcher
        if dispatcher.wants("OnInboundCommand"):
            event = CommandEvent(
                source=self.source.name,
                name="OnInboundCommand",
                command=verb,
                argument=argument,
                session=state.info,
            )
            await dispatcher.notify(event, EventFacts(command=verb, argument=argument))
            state.ehlo_keywords = list(event.ehlo_keywords)
            if event.drop:
                state.drop = True
            if event.response is not None:
                if event.response.code >= 400 or method is None:
                    await self.push(str(event.response))
                    return
                state.override = event.response
                state.accepted_by_sink = True
            elif event.drop:
                await self.push("421 4.7.0 Closing connection")
                return
        if method is None:
            await self._unknown(verb)
            return
        if verb == "MAIL" and arg:
            await self._check_declared_size(arg)
        await method(arg)

    def _utf8_allowed(self, verb: str, arg: str) -> bool:
        """RFC 6531: a transaction may use UTF-8 addresses only if its MAIL said SMTPUTF8."""
        if verb == "MAIL":
            return any(param.upper() == "SMTPUTF8" for param in arg.rpartition(">")[2].split())
        if verb == "RCPT":
            envelope = self.envelope
            return envelope is None or envelope.mail_from is None or bool(envelope.smtp_utf8)
        return True

    async def _unknown(self, verb: str | None) -> None:
        """Refuse an unknown verb, repeating it only when it is a plain word (``None``: never)."""
        self.state.bogus += 1
        if self.state.bogus >= BOGUS_LIMIT:
            self.state.drop = True
            await self.push("502 5.5.1 Too many unrecognized commands, goodbye")
            return
        if verb is None or not _PLAIN_VERB.fullmatch(verb):
            await self.push("500 5.5.2 Error: command not recognized")
            return
        await self.push(f'500 5.5.2 Error: command "{verb}" not recognized')

    async def _check_declared_size(self, arg: str) -> None:
        """MaxMsgSize: a client declared a SIZE over the limit; a sink may let it through."""
        match = _SIZE.search(arg)
        if match is None:
            return
        declared = int(match.group(1))
        limit = self.default_size_limit
        if not limit or declared <= limit or not self.source.dispatcher.wants("MaxMsgSize"):
            return
        event = SizeEvent(
            source=self.source.name,
            name="MaxMsgSize",
            size=declared,
            limit=limit,
            mail_from=None,
            recipients=[],
            session=self.state.info,
        )
        await self.source.dispatcher.notify(event, EventFacts(ehlo=self.state.info.ehlo_name))
        if event.allowed:
            self.data_size_limit = declared

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """aiosmtpd's address parser, with a short cut for the plain ``<local@domain>`` form.

        aiosmtpd parses with the e-mail package's header grammar, which costs more CPU than
        anything else in a transaction; a plain address gets the same result from one regular
        expression, and every other form (quoted, source-routed, commented, UTF-8, literal)
        still goes to aiosmtpd.
        """
        plain = plain_address(arg)
        if plain is None:
            if arg.startswith("<") and ">" not in arg:
                # ``<a@x.example`` or ``<a"``: aiosmtpd's lenient grammar would take an address
                # out of it (``a``, which then stands in Return-Path:); RFC 5321 wants the ``>``.
                return None, None
            found: tuple[str | None, str | None] = super()._getaddr(arg)
            return found
        address, rest = plain
        limit = self.local_part_limit
        if limit and len(address.rpartition("@")[0]) > limit:
            return None, None
        return address, rest

    async def _call_handler_hook(self, command: str, *args: Any) -> Any:
        # aiosmtpd parses ``RCPT TO:<>`` as the address "<>" and hands it to the handler, which
        # would call it a domain that is not local (or, after a sink accepted the command, take
        # it as a recipient). It is a syntax error whatever a sink said, so the reply is not
        # replaced by a sink's either.
        if command == "RCPT" and args and args[0] == "<>":
            self.state.override = None
            return NULL_RECIPIENT
        return await super()._call_handler_hook(command, *args)

    def _syntax_available(self, method: Callable[..., Any]) -> bool:
        # HELP lists AUTH only when EHLO advertises it (no TLS here, and AUTH requires it).
        if getattr(method, "__name__", "") == "smtp_AUTH" and not self._auth_offered():
            return False
        available: bool = super()._syntax_available(method)
        return available

    def _auth_offered(self) -> bool:
        """Whether EHLO lists AUTH: the same condition as aiosmtpd's ``smtp_EHLO``."""
        return not self._auth_require_tls or bool(self._tls_protocol)

    def _set_post_data_state(self) -> None:
        super()._set_post_data_state()  # type: ignore[no-untyped-call]
        self.data_size_limit = self.default_size_limit

    # -- replies ---------------------------------------------------------------------------

    async def push(self, status: str | bytes) -> None:
        """Send one reply line, after OnServerResponse (and a sink's own reply) had their say."""
        text = status.decode("utf-8", "replace") if isinstance(status, bytes) else status
        text = _ENHANCED.get(text, text)
        state = self.state
        if state.override is not None and not text.startswith("354"):
            override, state.override = state.override, None
            separator = "-" if text[3:4] == "-" else " "
            text = f"{override.code}{separator}{override.text}"
        text = self._enhanced(text)
        dispatcher = self.source.dispatcher
        if dispatcher.wants("OnServerResponse"):
            text = self._enhanced(await self._server_response(text))
        await super().push(text)
        if state.drop and text[3:4] != "-":
            state.drop = False
            if self.transport is not None:
                self.transport.close()

    def _enhanced(self, text: str) -> str:
        """``text`` with an enhanced status code, as EHLO's ENHANCEDSTATUSCODES promises.

        aiosmtpd's own replies and those a sink sets may have none: each 2xx, 4xx and 5xx reply
        gets the code its command and reply code call for (RFC 2034, 3463).
        """
        if text[:1] not in "245" or _HAS_ENHANCED.match(text):
            return text
        verb = self.state.answering[0]
        if verb in _WITHOUT_ENHANCED or not text[:3].isdigit() or text[3:4] not in (" ", "-"):
            return text
        code = int(text[:3])
        enhanced = _ENHANCED_BY_COMMAND.get((verb, code)) or _ENHANCED_DEFAULTS.get(code)
        if enhanced is None:
            enhanced = f"{text[0]}.0.0"
        return f"{text[:4]}{enhanced} {text[4:]}" if text[4:] else f"{text[:4]}{enhanced}"

    async def _server_response(self, text: str) -> str:
        match = _REPLY.match(text)
        if match is None:
            return text
        code, separator, rest = match.groups()
        verb, argument = self.state.answering
        event = ResponseEvent(
            source=self.source.name,
            name="OnServerResponse",
            command=verb,
            argument=argument,
            session=self.state.info,
            response=Reply(int(code), rest),
        )
        await self.source.dispatcher.notify(event, EventFacts(command=verb, argument=argument))
        if event.drop:
            self.state.drop = True
        return f"{event.response.code}{separator or ' '}{event.response.text}"


def plain_address(arg: str) -> tuple[str, str] | None:
    """``(address, parameters)`` of a plain ``<local@domain> PARAMS`` argument, else None."""
    match = _PLAIN_ADDRESS.match(arg)
    if match is None or arg.startswith("(", match.end()):
        return None
    return match.group(1), arg[match.end() :]


def _valid_utf8(text: str) -> bool:
    """aiosmtpd decodes arguments with surrogateescape; a lone surrogate means invalid UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _safe_argument(verb: str, argument: str) -> str:
    """What events and logs may see of an argument: AUTH keeps only its mechanism name."""
    if verb == "AUTH":
        return argument.split(" ", 1)[0]
    return argument


def _peer(info: SessionInfo) -> str | None:
    return None if info.peer is None else f"{info.peer[0]}:{info.peer[1]}"
