"""Delivery in a process of its own, beside the listener rather than inside it.

Why a process: in one interpreter, the transport events and deliveries take turns with the SMTP
sessions on one event loop and one GIL, so delivering slows accepting. In a process of its own,
delivery runs on another core and at a lower CPU priority (``nice``): a burst of mail is
accepted at full speed and delivered as fast as the machine allows, and a sink that crashes the
interpreter stops delivery for a moment (the listener starts it again) rather than the listener.

The listener starts ``python -m seo_core.sources.smtp.delivery_process`` with the source's
settings, and writes one line to its standard input per accepted message: where the journal
holds its record (segment and offset). ``stop <seconds>`` (or the pipe closing, as when the
listener dies) asks it to finish the messages in hand within that time and exit, so it never
outlives the listener. The process reads the same metabase and discovers the same installed
sinks as the listener.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from seo_core.sources.smtp.settings import SmtpSettings
from seo_core.sources.smtp.spool import Envelope, Location, Spool

if TYPE_CHECKING:
    from seo_core.sources.smtp.delivery import Delivery

log = structlog.get_logger("seo.smtp")

NICE = {"idle": 19, "low": 10, "normal": 0}
"""The delivery process's nice value for each ``delivery_priority``."""
RESTART_DELAYS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
"""Seconds before starting the process again after it ended unasked, growing each time."""
HEALTHY_AFTER = 60.0
"""Seconds after which a delivery process that ends counts as having run well: the next restart
comes after the shortest delay again."""
TICK_INTERVAL = 0.5
"""Seconds between looks at the metabase for binding changes while no event comes."""
QUEUE_LIMIT = 2000
"""Messages the pipeline holds in memory (envelope and all, about 2 KB each) at once.

When mail comes in faster than it is delivered for long, the notices of the messages beyond
this wait as two numbers each (where their record lies in the journal), so the process's memory
stays flat however long the backlog grows; they are taken in as the pipeline catches up."""


class DeliveryProcess:
    """The listener's handle on the delivery process of one source."""

    def __init__(self, settings: SmtpSettings, metabase: Path) -> None:
        self.settings = settings
        self.metabase = metabase
        self._process: asyncio.subprocess.Process | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._stopping = False
        self._restarts = 0

    async def start(self) -> int:
        """Start the process; returns 0 (the process itself resumes what the spool holds)."""
        await self._spawn()
        self._watcher = asyncio.create_task(self._watch(), name=f"{self.settings.name} delivery")
        return 0

    def deliver(self, envelope: Envelope, location: Location) -> None:
        """Tell the process about a message that is safely in the journal.

        If the process is down, the message waits in the journal; the next process reads it.
        """
        process = self._process
        if process is None or process.stdin is None or process.returncode is not None:
            return
        with contextlib.suppress(ConnectionError, RuntimeError):
            process.stdin.write(b"%d %d\n" % (location.segment, location.record))

    async def stop(self, end: float) -> None:
        """Close the process's input and wait for it to finish, until the loop time ``end``
        (plus a little, since it has the same deadline); then end it."""
        self._stopping = True
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
        process = self._process
        if process is None or process.returncode is not None:
            return
        loop = asyncio.get_running_loop()
        left = max(end - loop.time(), 0.0)
        if process.stdin is not None:
            with contextlib.suppress(ConnectionError, RuntimeError):
                process.stdin.write(b"stop %.3f\n" % left)
            process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), timeout=left + 5)
        except TimeoutError:
            log.warning("smtp_delivery_process_killed", source=self.settings.name, pid=process.pid)
            process.kill()
            await process.wait()

    async def _spawn(self) -> None:
        from seo_core.cli.logs import current_logging

        spec = {
            "source": self.settings.name,
            "settings": self.settings.to_mapping(),
            "metabase": str(self.metabase),
            "logging": current_logging(),
            "parent": os.getpid(),
        }
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "seo_core.sources.smtp.delivery_process",
            json.dumps(spec),
            stdin=asyncio.subprocess.PIPE,
        )
        log.info("smtp_delivery_process_started", source=self.settings.name, pid=self._process.pid)

    async def _watch(self) -> None:
        """Start the process again whenever it ends without being asked to."""
        loop = asyncio.get_running_loop()
        while True:
            assert self._process is not None
            started = loop.time()
            code = await self._process.wait()
            if self._stopping:
                return
            if loop.time() - started > HEALTHY_AFTER:
                self._restarts = 0  # it had been running well: not a crash loop
            delay = RESTART_DELAYS[min(self._restarts, len(RESTART_DELAYS) - 1)]
            self._restarts += 1
            log.error(
                "smtp_delivery_process_ended",
                source=self.settings.name,
                pid=self._process.pid,
                returncode=code,
                restart_in=delay,
            )
            await asyncio.sleep(delay)
            await self._spawn()


# -- the process itself ----------------------------------------------------------------------


async def _serve(spec: dict[str, Any]) -> None:
    from seo_core.dispatcher import Dispatcher
    from seo_core.metabase import Metabase
    from seo_core.registry import SinkRegistry
    from seo_core.sources.smtp.delivery import Delivery

    settings = SmtpSettings.from_mapping(spec["source"], spec["settings"])
    metabase = Metabase.open(Path(spec["metabase"]))
    dispatcher = Dispatcher(settings.name, metabase, SinkRegistry.discover())
    spool = Spool(settings.spool)
    delivery = Delivery(settings, dispatcher, spool)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**24)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    resumed = await delivery.start()
    log.info("smtp_delivery_ready", source=settings.name, pid=os.getpid(), resumed=resumed)
    ticker = asyncio.create_task(_tick(dispatcher))
    notices = Notices(settings.name, spool, delivery)
    feeder = asyncio.create_task(notices.feed())
    deadline = settings.shutdown_timeout  # unless the listener says how long is left
    try:
        # Read every line as it comes, however far behind delivery is: ``stop`` must be seen.
        while line := await reader.readline():
            if line.startswith(b"stop "):
                deadline = float(line.split()[1])
                break
            segment, record = map(int, line.split())
            notices.add(segment, record)
    finally:
        ticker.cancel()
        feeder.cancel()
        await delivery.stop(loop.time() + deadline)
        spool.close()
        dispatcher.close()
        metabase.close()
        log.info("smtp_delivery_stopped", source=settings.name, pid=os.getpid())


class Notices:
    """The listener's notices of accepted messages, taken into the pipeline up to
    :data:`QUEUE_LIMIT` at a time; the rest wait, in order, as their journal positions.

    Notices left waiting when delivery stops are not lost: the messages are in the journal,
    and the next start resumes them from there.
    """

    def __init__(self, source: str, spool: Spool, delivery: Delivery) -> None:
        self.source = source
        self.spool = spool
        self.delivery = delivery
        self.waiting: collections.deque[tuple[int, int]] = collections.deque()
        self._room = asyncio.Event()

    @property
    def in_hand(self) -> int:
        pipeline = self.delivery.pipeline
        return pipeline.queue.qsize() + pipeline.working

    def add(self, segment: int, record: int) -> None:
        if self.waiting or self.in_hand >= QUEUE_LIMIT:
            self.waiting.append((segment, record))
            self._room.set()
        else:
            self._take(segment, record)

    async def feed(self) -> None:
        """Take waiting notices in as the pipeline makes room (looked at every 50 ms: with
        thousands of messages in hand, the pipeline never runs dry in that time)."""
        while True:
            await self._room.wait()
            while self.waiting and self.in_hand < QUEUE_LIMIT:
                self._take(*self.waiting.popleft())
            if not self.waiting:
                self._room.clear()
            await asyncio.sleep(0.05)

    def _take(self, segment: int, record: int) -> None:
        try:
            envelope, location = self.spool.read_record(segment, record)
        except (OSError, ValueError) as exc:
            # Not lost: it is in the journal, and the next start reads it from there.
            log.error("smtp_delivery_notice_unreadable", source=self.source, error=str(exc))
            return
        self.delivery.deliver(envelope, location)


async def _tick(dispatcher: Any) -> None:
    while True:
        await asyncio.sleep(TICK_INTERVAL)
        try:
            dispatcher.tick()
        except Exception as exc:
            log.warning("reload_failed", source=dispatcher.source, error=str(exc))


def _lower_priority(priority: str) -> None:
    """Give the delivery process the CPU priority the source's settings ask for.

    ``idle`` (the default): Linux's SCHED_IDLE, the policy for background work, which runs on
    the cycles nothing else wants, so that accepting mail always comes first and delivery takes
    the rest (on an idle machine, all of it); ``low`` and ``normal``: nice 10 and 0.
    """
    with contextlib.suppress(OSError):
        os.nice(NICE.get(priority, 0))
    if priority == "idle" and hasattr(os, "SCHED_IDLE"):
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))


def main(argv: list[str]) -> int:
    from seo_core.cli.logs import configure_logging
    from seo_core.sources import event_loop

    spec = json.loads(argv[0])
    level, fmt = spec["logging"] or ("warning", "auto")
    configure_logging(level, fmt, process="delivery")
    # The listener decides when this process stops (by closing its input), also when a
    # terminal's Ctrl-C or hang-up or a service manager's SIGTERM reaches the whole process group.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    _lower_priority(spec["settings"].get("delivery_priority", "idle"))
    event_loop.run(_serve(spec))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
