"""The delivery side of an SMTP source: the spool's queue, the pipeline and its workers.

The listener accepts messages into the spool's journal; this side takes each one through the
transport events and delivers it. It runs inside the listener's process (``delivery =
"inline"``) or in a process of its own (``delivery = "process"``, see
:mod:`seo_core.sources.smtp.delivery_process`); the work is the same.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from seo_core.sources.smtp.flush import flush_paths
from seo_core.sources.smtp.pipeline import Pipeline
from seo_core.sources.smtp.spool import Envelope, GroupCommit, Location, Spool

if TYPE_CHECKING:
    from seo_core.dispatcher import Dispatcher
    from seo_core.sources.smtp.settings import SmtpSettings

PIPELINE_WORKERS = 8
"""Messages taken through the pipeline at once; the disk flushes of their deliveries are shared."""


class Delivery:
    """Runs the transport pipeline over the spool of one SMTP source."""

    def __init__(self, settings: SmtpSettings, dispatcher: Dispatcher, spool: Spool) -> None:
        self.settings = settings
        self.name = settings.name
        self.dispatcher = dispatcher
        self.spool = spool
        self.pipeline = Pipeline(self)
        self.finishes: GroupCommit | None = None
        self.flushes: GroupCommit | None = None
        self._workers: list[asyncio.Task[None]] = []

    async def start(self) -> int:
        """Open the spool's queue (waiting for an earlier owner to let go), resume what it holds
        and start the workers; returns how many messages were resumed."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.spool.open_queue)
        self.finishes = GroupCommit(self.spool.finish_group, f"{self.name} spool cleaner")
        self.flushes = GroupCommit(flush_paths, f"{self.name} delivery flusher")
        resumed = self.pipeline.resume()
        self._workers = [
            asyncio.create_task(self.pipeline.run_suspects(), name=f"{self.name} suspects"),
            *(
                asyncio.create_task(self.pipeline.run(), name=f"{self.name} pipeline {n}")
                for n in range(PIPELINE_WORKERS)
            ),
        ]
        return resumed

    def deliver(self, envelope: Envelope, location: Location) -> None:
        """Take a message that is safely in the journal through the pipeline."""
        if self.spool.track(envelope, location):
            self.pipeline.enqueue(envelope.id)

    async def stop(self, end: float) -> None:
        """Let the messages in hand finish until the loop time ``end``; the rest stays queued."""
        loop = asyncio.get_running_loop()
        self.pipeline.stopping = True
        self.pipeline.cancel_retries()
        while self.pipeline.busy and loop.time() < end:
            await asyncio.sleep(0.05)
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        await self.pipeline.deliveries_done()
        for writer in (self.finishes, self.flushes):
            if writer is not None:
                await loop.run_in_executor(None, writer.close)
