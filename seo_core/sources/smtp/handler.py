"""aiosmtpd's handler hooks for an SMTP source: who may receive mail, and accepting it.

Accepting is the one place a client is told 250 for a message, so it is strict: the content must
use CRLF line endings only (a bare LF or CR is how SMTP smuggling hides a second message), and the
message is in the spool and fsynced before the reply is sent.
"""

from __future__ import annotations

import email.utils
import functools
import time
from typing import TYPE_CHECKING, Any

import structlog

from seo_core.sources.smtp.settings import canonical_domain
from seo_core.sources.smtp.spool import Envelope, new_message_id

if TYPE_CHECKING:
    from seo_core.sources.smtp.protocol import SeoSMTP
    from seo_core.sources.smtp.service import SmtpSource

log = structlog.get_logger("seo.smtp")


def domain_of(address: str) -> str:
    """The canonical domain of an address: the text after the last ``@``."""
    return canonical_domain(address.rpartition("@")[2]) if "@" in address else ""


def has_bare_line_ending(content: bytes) -> bool:
    """True when ``content`` holds a LF not preceded by CR, or a CR not followed by LF."""
    pairs = content.count(b"\r\n")
    return content.count(b"\n") != pairs or content.count(b"\r") != pairs


def received_header(
    server: SeoSMTP, message_id: str, recipients: list[str], received_at: float
) -> bytes:
    """The trace line every SMTP server puts on top of a message it accepts (RFC 5321, 4.4).

    It names the client as it introduced itself and by its address, this server, the protocol,
    the queue ID the client was told, the recipient when there is only one (listing more would
    tell each recipient of the others), and the time.
    """
    info = server.state.info
    client = info.ehlo_name or "unknown"
    address = f" ([{address_literal(info.peer[0])}])" if info.peer else ""
    protocol = "ESMTP" if server.session is not None and server.session.extended_smtp else "SMTP"
    if server.envelope is not None and server.envelope.smtp_utf8:
        protocol = "UTF8SMTP"  # RFC 6531, 3.7.3
    if server.session is not None and server.session.authenticated:
        protocol += "A"
    recipient = f"\r\n\tfor <{recipients[0]}>" if len(recipients) == 1 else ""
    when = _date(int(received_at))
    return (
        f"Received: from {client}{address}\r\n\tby {server.hostname} (seo) with {protocol}"
        f" id {message_id}{recipient};\r\n\t{when}\r\n"
    ).encode()


def address_literal(host: str) -> str:
    """An IP address as RFC 5321 (4.1.3) writes it between brackets: ``IPv6:`` before an IPv6
    one (``[IPv6:::1]``), an IPv4 one as it is."""
    return f"IPv6:{host}" if ":" in host else host


@functools.lru_cache(maxsize=4)
def _date(second: int) -> str:
    """The RFC 5322 date of a second: formatting one costs more than the rest of the line, and a
    busy server accepts many messages in the same second."""
    return email.utils.formatdate(second, localtime=True)


NO_DOMAIN = "553 5.1.3 Bad recipient address syntax: a domain is needed (<name@domain>)"
"""The reply to ``RCPT TO:<name>``: only <postmaster> may go without a domain."""
NO_LOCAL_PART = "553 5.1.3 Bad recipient address syntax: the local part is empty"
"""The reply to ``RCPT TO:<""@example.com>``: valid syntax (an empty quoted string), but no
mailbox has an empty name, so it is refused while the client can still tell its sender."""


def empty_local_part(address: str) -> bool:
    """True for ``""@domain``: a local part that is a quoted string holding nothing."""
    local = address.rpartition("@")[0]
    return local in ("", '""')


class SmtpHandler:
    """The policy and acceptance side of one SMTP source."""

    def __init__(self, source: SmtpSource) -> None:
        self.source = source

    async def handle_EHLO(
        self, server: SeoSMTP, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        server.state.info.ehlo_name = hostname
        # Every reply after EHLO carries an enhanced status code (SeoSMTP.push sees to it).
        extra = ["250-ENHANCEDSTATUSCODES"]
        extra += [f"250-{keyword}" for keyword in server.state.ehlo_keywords]
        server.state.ehlo_keywords = []
        return [*responses[:-1], *extra, responses[-1]]

    async def handle_HELO(self, server: SeoSMTP, session: Any, envelope: Any, hostname: str) -> str:
        session.host_name = hostname
        server.state.info.ehlo_name = hostname
        return f"250 {server.hostname}"

    async def handle_RCPT(
        self, server: SeoSMTP, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        settings = self.source.settings
        if len(envelope.rcpt_tos) >= settings.max_recipients:
            return "452 4.5.3 Too many recipients"
        if "@" not in address:
            # RFC 5321, 4.1.1.3: <Postmaster> without a domain is this server's postmaster.
            if address.lower() != "postmaster" or not settings.local_domains:
                return NO_DOMAIN
            address = f"postmaster@{settings.local_domains[0]}"
        if empty_local_part(address):
            return NO_LOCAL_PART
        if not server.state.accepted_by_sink and domain_of(address) not in settings.local_domains:
            return f"550 5.7.1 Relaying denied: {domain_of(address) or address} is not local here"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.append(options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SeoSMTP, session: Any, envelope: Any) -> str:
        content: bytes = envelope.original_content
        if has_bare_line_ending(content):
            log.warning(
                "smtp_bare_line_ending", source=self.source.name, session=server.state.info.id
            )
            return "554 5.6.0 Message refused: bare LF or CR in the data (RFC 5321, 2.3.8)"
        info = server.state.info
        message_id = new_message_id()
        received_at = time.time()
        trace = received_header(server, message_id, envelope.rcpt_tos, received_at)
        accepted = Envelope(
            id=message_id,
            mail_from=envelope.mail_from or "",
            recipients=list(envelope.rcpt_tos),
            received_at=received_at,
            size=len(trace) + len(content),
            ehlo=info.ehlo_name,
            peer=None if info.peer is None else f"{info.peer[0]}:{info.peer[1]}",
        )
        try:
            assert self.source.accepts is not None
            # The trace line and the message as two pieces: a large message is not copied.
            location = await self.source.accepts.commit((accepted, (trace, content)))
        except (OSError, RuntimeError) as exc:
            log.error("smtp_spool_failed", source=self.source.name, error=str(exc))
            return "451 4.3.0 Could not store the message; try again later"
        log.info(
            "smtp_message_accepted",
            source=self.source.name,
            message_id=accepted.id,
            size=accepted.size,
            recipients=len(accepted.recipients),
        )
        self.source.deliver(accepted, location)
        return f"250 2.0.0 OK queued as {accepted.id}"
