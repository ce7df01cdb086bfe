"""One running SMTP source: its listener, its spool, its delivery and its dispatcher."""

from __future__ import annotations

import asyncio
import itertools
import secrets
from typing import TYPE_CHECKING, Any, cast

import structlog

from seo_core.sources.smtp.delivery import Delivery
from seo_core.sources.smtp.delivery_process import DeliveryProcess
from seo_core.sources.smtp.handler import SmtpHandler
from seo_core.sources.smtp.protocol import SeoSMTP
from seo_core.sources.smtp.settings import SmtpSettings
from seo_core.sources.smtp.spool import Envelope, GroupCommit, Location, Spool

if TYPE_CHECKING:
    from seo_core.dispatcher import Dispatcher

log = structlog.get_logger("seo.smtp")

IDENT = "seo ESMTP"


class SmtpSource:
    """An SMTP virtual server: ``start()`` listens, ``stop()`` winds it down gracefully.

    The listener accepts messages into the spool; delivering them is the job of a
    :class:`Delivery`, in this process or (``delivery = "process"``) in one of its own.
    """

    def __init__(self, settings: SmtpSettings, dispatcher: Dispatcher) -> None:
        self.settings = settings
        self.name = settings.name
        self.dispatcher = dispatcher
        self.spool = Spool(settings.spool)
        self.delivery: Delivery | DeliveryProcess
        if settings.delivery == "process":
            self.delivery = DeliveryProcess(settings, dispatcher.metabase.path)
        else:
            self.delivery = Delivery(settings, dispatcher, self.spool)
        self.handler = SmtpHandler(self)
        self.sessions: set[SeoSMTP] = set()
        self._server: asyncio.Server | None = None
        self.accepts: GroupCommit | None = None
        self._session_ids = itertools.count(1)
        self._prefix = secrets.token_hex(3)
        self._hurry = False

    def hurry(self) -> None:
        """Stop now (a second Ctrl-C): close the sessions left, in the middle of DATA or not.

        Nothing acknowledged is lost: a message whose 250 was not sent is not accepted.
        """
        self._hurry = True

    @property
    def pipeline(self) -> Any:
        """The pipeline of in-process delivery (tests wait on it)."""
        if not isinstance(self.delivery, Delivery):
            raise AttributeError("delivery runs in a process of its own")
        return self.delivery.pipeline

    def new_session_id(self) -> str:
        return f"{self._prefix}-{next(self._session_ids)}"

    def _protocol(self) -> SeoSMTP | _TooMany:
        if len(self.sessions) >= self.settings.max_connections:
            return _TooMany(self)
        return SeoSMTP(
            self.handler,
            self,
            hostname=self.settings.hostname,
            ident=IDENT,
            data_size_limit=self.settings.max_message_size,
            enable_SMTPUTF8=True,
            decode_data=False,
            auth_require_tls=True,
            timeout=300,
        )

    async def start(self) -> None:
        """Open the spool, start delivery (which resumes what an earlier run left), listen."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.spool.open_journal)
        self.accepts = GroupCommit(self.spool.accept_group, f"{self.name} spool writer")
        try:
            resumed = await self.delivery.start()
            self._server = await loop.create_server(
                self._protocol, host=self.settings.host, port=self.settings.port
            )
        except BaseException:
            await self._close_spool(loop.time())
            raise
        log.info(
            "smtp_listening",
            source=self.name,
            address=self.address,
            delivery=self.settings.delivery,
            # In a process of its own, delivery says what it resumed (smtp_delivery_ready).
            **({"resumed": resumed} if isinstance(self.delivery, Delivery) else {}),
        )

    def deliver(self, envelope: Envelope, location: Location) -> None:
        """Hand a message that is safely in the spool to delivery."""
        self.delivery.deliver(envelope, location)

    @property
    def address(self) -> str:
        """Where it listens; the real port when the settings asked for port 0."""
        if self._server is not None and self._server.sockets:
            host, port = self._server.sockets[0].getsockname()[:2]
            return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        return self.settings.address

    @property
    def port(self) -> int:
        return int(self.address.rpartition(":")[2])

    async def stop(self, deadline: float | None = None) -> None:
        """Stop accepting, let sessions and the messages in hand finish up to ``deadline`` s.

        What is still queued stays in the spool for the next start: nothing accepted is lost.
        """
        timeout = self.settings.shutdown_timeout if deadline is None else deadline
        if self._server is not None:
            self._server.close()
        log.info("smtp_stopping", source=self.name, sessions=len(self.sessions), within=timeout)
        for session in list(self.sessions):
            session.shut_down()
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while self.sessions and loop.time() < end and not self._hurry:
            await asyncio.sleep(0.05)
        for session in list(self.sessions):
            if session.transport is not None:
                session.transport.close()
        await self._close_spool(end)
        if self._server is not None:
            await self._server.wait_closed()
        queued = await loop.run_in_executor(None, Spool(self.settings.spool).pending)
        log.info("smtp_stopped", source=self.name, queued=len(queued))

    async def _close_spool(self, end: float) -> None:
        loop = asyncio.get_running_loop()
        await self.delivery.stop(end)
        if self.accepts is not None:
            await loop.run_in_executor(None, self.accepts.close)
        self.spool.close()

    def describe(self) -> dict[str, Any]:
        return {"source": self.name, "address": self.address}


class _TooMany(asyncio.Protocol):
    """A connection over ``max_connections``: told 421 at once and closed (RFC 5321, 3.8).

    Every session may hold a message of up to ``max_message_size`` in memory while it
    arrives; the limit is what bounds the listener's memory.
    """

    def __init__(self, source: SmtpSource) -> None:
        self.source = source

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport, though not an asyncio.WriteTransport on every loop (uvloop's is not).
        cast(asyncio.WriteTransport, transport).write(
            b"421 4.7.0 Too many connections; try again later\r\n"
        )
        transport.close()
        log.info(
            "smtp_session_refused",
            source=self.source.name,
            reason="max_connections",
            sessions=len(self.source.sessions),
        )
