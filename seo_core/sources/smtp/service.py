"""One running SMTP source: its listener, its spool, its pipeline and its dispatcher."""

from __future__ import annotations

import asyncio
import itertools
import secrets
from typing import TYPE_CHECKING, Any

import structlog

from seo_core.sources.smtp.handler import SmtpHandler
from seo_core.sources.smtp.pipeline import Pipeline
from seo_core.sources.smtp.protocol import SeoSMTP
from seo_core.sources.smtp.settings import SmtpSettings
from seo_core.sources.smtp.spool import Envelope, GroupCommit, Location, Spool

if TYPE_CHECKING:
    from seo_core.dispatcher import Dispatcher

log = structlog.get_logger("seo.smtp")

IDENT = "seo ESMTP"
PIPELINE_WORKERS = 2
"""Messages taken through the pipeline at once: their disk flushes are committed together."""


class SmtpSource:
    """An SMTP virtual server: ``start()`` listens, ``stop()`` winds it down gracefully."""

    def __init__(self, settings: SmtpSettings, dispatcher: Dispatcher) -> None:
        self.settings = settings
        self.name = settings.name
        self.dispatcher = dispatcher
        self.spool = Spool(settings.spool)
        self.pipeline = Pipeline(self)
        self.handler = SmtpHandler(self)
        self.sessions: set[SeoSMTP] = set()
        self._server: asyncio.Server | None = None
        self._workers: list[asyncio.Task[None]] = []
        self.accepts: GroupCommit | None = None
        self.finishes: GroupCommit | None = None
        self._session_ids = itertools.count(1)
        self._prefix = secrets.token_hex(3)

    def new_session_id(self) -> str:
        return f"{self._prefix}-{next(self._session_ids)}"

    def _protocol(self) -> SeoSMTP:
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
        """Prepare the spool, resume what an earlier run left, and start listening."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.spool.open_journal)
        await loop.run_in_executor(None, self.spool.open_queue)
        self.accepts = GroupCommit(self.spool.accept_group, f"{self.name} spool writer")
        self.finishes = GroupCommit(self.spool.finish_group, f"{self.name} spool cleaner")
        resumed = self.pipeline.resume()
        self._workers = [
            asyncio.create_task(self.pipeline.run(), name=f"{self.name} pipeline {n}")
            for n in range(PIPELINE_WORKERS)
        ]
        self._server = await loop.create_server(
            self._protocol, host=self.settings.host, port=self.settings.port
        )
        log.info("smtp_listening", source=self.name, address=self.address, resumed=resumed)

    def deliver(self, envelope: Envelope, location: Location) -> None:
        """Hand a message that is safely in the spool to the transport pipeline."""
        if self.spool.track(envelope, location):
            self.pipeline.enqueue(envelope.id)

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
        """Stop accepting, let sessions and the message in hand finish up to ``deadline`` s.

        What is still queued stays in the spool for the next start: nothing accepted is lost.
        """
        timeout = self.settings.shutdown_timeout if deadline is None else deadline
        if self._server is not None:
            self._server.close()
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while self.sessions and loop.time() < end:
            await asyncio.sleep(0.05)
        for session in list(self.sessions):
            if session.transport is not None:
                session.transport.close()
        self.pipeline.cancel_retries()
        while self.pipeline.busy and loop.time() < end:
            await asyncio.sleep(0.05)
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        for writer in (self.accepts, self.finishes):
            if writer is not None:
                await loop.run_in_executor(None, writer.close)
        queued = len(self.spool.pending())
        self.spool.close()
        if self._server is not None:
            await self._server.wait_closed()
        log.info("smtp_stopped", source=self.name, queued=queued)

    def describe(self) -> dict[str, Any]:
        return {"source": self.name, "address": self.address}
