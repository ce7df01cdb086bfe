"""Running real sources in tests: a source on a free loopback port, in a background thread.

The server runs its own event loop in a thread, so a test can talk to it with blocking clients
(``smtplib``, ``nntplib``, ``swaks`` in a subprocess) and wait for its pipeline without sleeping.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Coroutine, Iterator, Mapping
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from seo_core.sources import event_loop

if TYPE_CHECKING:
    from seo_core.registry import SinkRegistry
    from seo_core.sources.nntp.service import NntpSource
    from seo_core.sources.runner import Running
    from seo_core.sources.smtp.service import SmtpSource

T = TypeVar("T")


class ServerThread:
    """An event loop in a thread, running the sources of one test.

    The loop is the one ``seo serve`` runs on (uvloop where installed, see
    :mod:`seo_core.sources.event_loop`), so tests exercise what production runs.
    """

    def __init__(self) -> None:
        self.loop = event_loop.new_loop()
        self._thread = threading.Thread(target=self._run, name="seo-test-server", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def call(self, coroutine: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run ``coroutine`` on the server's loop and wait for its result."""
        future: Future[T] = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        return future.result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


class RunningSource:
    """What :func:`running_smtp` and :func:`running_nntp` yield: the source and its port.

    ``kind`` names the source type, which is also the :class:`Running` attribute holding it.
    """

    kind = ""

    def __init__(self, server: ServerThread, running: Running) -> None:
        self.server = server
        self.running = running

    @property
    def _source(self) -> Any:
        return getattr(self.running, self.kind)[0]

    @property
    def port(self) -> int:
        return int(self._source.port)

    def flush_stats(self) -> None:
        """Write the dispatchers' batched statistics and fire counts to the metabase now.

        A source writes them about once a second; a test reading the metabase right after a
        message would otherwise see the counts of the last write. Run on the server's loop,
        the thread the dispatchers run in. Nothing to do once the server is stopped: stopping
        wrote them.
        """
        if self.server.loop.is_closed():
            return

        async def flush() -> None:
            for dispatcher in self.running.dispatchers:
                dispatcher.flush_stats()

        self.server.call(flush())

    def restart(self) -> None:
        """Stop the source and start it again on the same port, with its spool or store."""
        from seo_core.sources.runner import start_sources

        source = self._source
        port = self.port  # read before stopping: a closed listener has no port
        path, registry = self.running.metabase.path, source.dispatcher.registry
        self.server.call(self.running.stop(deadline=5.0))
        pinned = replace(source.settings, port=port)
        self.running = self.server.call(start_sources(path, registry, **{self.kind: [pinned]}))


class RunningSmtp(RunningSource):
    """A running ``smtp/1``; :meth:`wait_idle` waits for its pipeline."""

    kind = "smtp"

    @property
    def source(self) -> SmtpSource:
        source: SmtpSource = self._source
        return source

    def wait_idle(self, timeout: float = 30.0, *, retries: bool = True) -> None:
        """Block until the pipeline has processed everything queued so far: each message
        delivered, aborted or in badmail. A message waiting for a retry is not done yet, so
        this waits for its retries too (set the source's ``retry_schedule`` short in tests);
        with ``retries=False`` it returns once the first try of each is over."""

        async def idle() -> None:
            pipeline = self.source.pipeline
            while True:
                await asyncio.sleep(0)
                await pipeline.idle.wait()
                if not (retries and pipeline.retrying):
                    return
                await asyncio.sleep(0.01)  # a retry is due: look again once it has had a turn

        self.server.call(idle(), timeout)


class RunningNntp(RunningSource):
    """A running ``nntp/1``."""

    kind = "nntp"

    @property
    def source(self) -> NntpSource:
        source: NntpSource = self._source
        return source


H = TypeVar("H", bound=RunningSource)


@contextmanager
def _running(handle: type[H], metabase: Path, registry: SinkRegistry, settings: Any) -> Iterator[H]:
    from seo_core.sources.runner import start_sources

    server = ServerThread()
    try:
        running = server.call(start_sources(metabase, registry, **{handle.kind: [settings]}))
        started = handle(server, running)
        try:
            yield started
        finally:
            server.call(started.running.stop(deadline=5.0))
    finally:
        server.close()


@contextmanager
def running_smtp(
    metabase: Path,
    registry: SinkRegistry,
    *,
    spool: Path,
    local_domains: tuple[str, ...] = ("example.com",),
    settings: Mapping[str, Any] | None = None,
) -> Iterator[RunningSmtp]:
    """Run ``smtp/1`` on 127.0.0.1 with a free port until the ``with`` block ends.

    Delivery runs in the test's process (``delivery = "inline"``), so the sinks of a registry
    made from objects in the test are the ones called, and ``wait_idle`` can wait for them.
    """
    from seo_core.sources.smtp.settings import SmtpSettings

    values: dict[str, Any] = {
        "listen": "127.0.0.1:25",
        "hostname": "mx.test",
        "local_domains": list(local_domains),
        "spool": str(spool),
        "delivery": "inline",
        **(settings or {}),
    }
    smtp = replace(SmtpSettings.from_mapping("smtp/1", values), port=0)  # any free port
    with _running(RunningSmtp, metabase, registry, smtp) as handle:
        yield handle


@contextmanager
def running_nntp(
    metabase: Path,
    registry: SinkRegistry,
    *,
    store: Path,
    groups: tuple[str, ...] = ("local.test", "local.announce"),
    settings: Mapping[str, Any] | None = None,
) -> Iterator[RunningNntp]:
    """Run ``nntp/1`` on 127.0.0.1 with a free port until the ``with`` block ends."""
    from seo_core.sources.nntp.settings import NntpSettings

    values: dict[str, Any] = {
        "listen": "127.0.0.1:119",
        "hostname": "news.test",
        "groups": list(groups),
        "store": str(store),
        **(settings or {}),
    }
    nntp = replace(NntpSettings.from_mapping("nntp/1", values), port=0)  # any free port
    with _running(RunningNntp, metabase, registry, nntp) as handle:
        yield handle


_TRACE = re.compile(
    rb"(?:Return-Path: <[^>\r\n]*>\r?\n)?Received: from [^\r\n]*(?:\r?\n\t[^\r\n]*)*\r?\n"
)


def as_sent(message: bytes) -> bytes:
    """A delivered message as the client sent it: without the ``Received:`` line the SMTP
    source put on top, nor the ``Return-Path:`` line a Maildir delivery adds above it.

    For tests comparing what a sink stored with what was sent; raises ``ValueError`` when the
    message does not start with them.
    """
    trace = _TRACE.match(message)
    if trace is None:
        raise ValueError(f"no Received: line on top of {message[:80]!r}")
    return message[trace.end() :]
