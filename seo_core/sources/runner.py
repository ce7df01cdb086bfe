"""Running the configured sources in one asyncio process, and stopping them gracefully."""

from __future__ import annotations

import asyncio
import errno
import signal
import socket
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from seo_core.dispatcher import Dispatcher
from seo_core.dispatcher.explain import explain
from seo_core.errors import SourceStartError
from seo_core.metabase import Binding, Metabase
from seo_core.rules import EventFacts
from seo_core.sources.nntp import store as nntp_store
from seo_core.sources.nntp.service import NntpSource
from seo_core.sources.nntp.settings import NntpSettings
from seo_core.sources.smtp import delivery_process, spool
from seo_core.sources.smtp.service import SmtpSource
from seo_core.sources.smtp.settings import SmtpSettings
from seo_core.sources.smtp.spool import SEGMENT_BYTES, SpoolBusyError

if TYPE_CHECKING:
    from seo_core.registry import SinkRegistry

log = structlog.get_logger("seo.serve")

RELOAD_INTERVAL = 0.5
"""Seconds between looks at the metabase while no event happens."""

JOURNAL_SPACE = (
    f"the journal needs {2 * SEGMENT_BYTES // 2**20} MiB free: "
    f"a {SEGMENT_BYTES // 2**20} MiB segment, and the next one, made ahead"
)
"""What a full disk under an SMTP spool is told: the space its journal takes (docs/config.md)."""


@dataclass(slots=True)
class Running:
    """The sources of one ``seo serve``, started; ``stop`` ends them."""

    metabase: Metabase
    smtp: list[SmtpSource] = field(default_factory=list)
    nntp: list[NntpSource] = field(default_factory=list)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    _watcher: asyncio.Task[None] | None = None

    @property
    def dispatchers(self) -> list[Dispatcher]:
        return [s.dispatcher for s in self.smtp] + [s.dispatcher for s in self.nntp]

    async def stop(self, deadline: float | None = None) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
        await asyncio.gather(
            *(source.stop(deadline) for source in self.smtp),
            *(source.stop(deadline) for source in self.nntp),
        )
        for dispatcher in self.dispatchers:
            dispatcher.close()
        self.metabase.close()


def check_can_start(smtp: Sequence[SmtpSettings] = (), nntp: Sequence[NntpSettings] = ()) -> None:
    """Refuse now what would stop a source from starting, before ``seo serve`` applies its
    config file: an address another program listens on, a spool another server writes.

    A server that would not start must not change the metabase that a running one reads.
    Creates nothing: each address is bound and let go (as the listener will bind it), each
    spool's lock is tried only if the spool exists. What this cannot foresee (a full disk, a
    port taken in the moment between) still stops the start, with the same one-line error.
    """
    listeners: list[SmtpSettings | NntpSettings] = [*smtp, *nntp]
    for settings in listeners:
        if settings.port:  # port 0 is any free port: nothing to check
            _check_address(settings)
    for mail in smtp:
        if spool.journal_in_use(mail.spool):
            raise SourceStartError(
                mail.name, f"the spool {mail.spool} is in use by another process"
            )


def _check_address(settings: SmtpSettings | NntpSettings) -> None:
    try:
        found = socket.getaddrinfo(
            settings.host, settings.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        reason = f"cannot listen on {settings.address}: the host name does not resolve"
        raise SourceStartError(settings.name, reason) from exc
    for family, kind, protocol, _, address in dict.fromkeys(found):
        with socket.socket(family, kind, protocol) as probe:
            # As asyncio binds a listener: the same options, so the same answer.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                reason = f"cannot listen on {settings.address}: {exc.strerror or exc}"
                raise SourceStartError(settings.name, reason) from exc


async def start_sources(
    metabase_path: Path,
    registry: SinkRegistry,
    smtp: Sequence[SmtpSettings] = (),
    nntp: Sequence[NntpSettings] = (),
) -> Running:
    """Open the metabase, build one dispatcher per source, and start every source."""
    metabase = Metabase.open(metabase_path)
    running = Running(metabase)
    try:
        for settings in smtp:
            source = SmtpSource(settings, Dispatcher(settings.name, metabase, registry))
            await _start(source)
            running.smtp.append(source)
        for news in nntp:
            nntp_source = NntpSource(news, Dispatcher(news.name, metabase, registry))
            await _start(nntp_source)
            running.nntp.append(nntp_source)
    except BaseException:
        await running.stop(deadline=1.0)
        raise
    running._watcher = asyncio.create_task(_watch(running), name="binding watcher")
    return running


async def _start(source: SmtpSource | NntpSource) -> None:
    """Start one source; if it cannot start, close its dispatcher (the caller stops the rest)."""
    try:
        await source.start()
    except OSError as exc:
        source.dispatcher.close()
        raise SourceStartError(source.name, _reason(source, exc)) from exc
    except BaseException:
        source.dispatcher.close()
        raise


def _reason(source: SmtpSource | NntpSource, exc: OSError) -> str:
    """What went wrong, in words an administrator can act on.

    A source's ``start()`` opens its folder, starts its delivery and listens, and each step
    fails with a plain ``OSError``: a full disk carries no file name, any more than a taken
    port does. So the step is told by where the error was raised, and only an error that no
    other step raised is about listening.
    """
    if isinstance(exc, SpoolBusyError):
        return str(exc)
    if isinstance(exc, socket.gaierror):
        return f"cannot listen on {source.settings.address}: the host name does not resolve"
    text = str(exc.strerror or exc)
    if _raised_in(exc, delivery_process.__name__):
        where = f" ({exc.filename})" if exc.filename else ""
        return f"cannot start its delivery process: {text}{where}"
    storage = spool.__name__ if isinstance(source, SmtpSource) else nntp_store.__name__
    if exc.filename or _raised_in(exc, storage):
        folder = source.settings.spool if isinstance(source, SmtpSource) else source.settings.store
        notes = [str(exc.filename)] if exc.filename else []
        if exc.errno == errno.ENOSPC and isinstance(source, SmtpSource):
            notes.append(JOURNAL_SPACE)
        return f"cannot use {folder}: {text}" + (f" ({'; '.join(notes)})" if notes else "")
    return f"cannot listen on {source.settings.address}: {text}"


def _raised_in(exc: BaseException, module: str) -> bool:
    """Whether ``exc`` came from code of ``module`` (also in a worker thread: an executor's
    future raises the exception with the traceback it was raised with)."""
    return any(
        frame.f_globals.get("__name__") == module
        for frame, _line in traceback.walk_tb(exc.__traceback__)
    )


async def _watch(running: Running) -> None:
    """Let dispatchers see binding changes and write statistics even when no event comes."""
    while True:
        await asyncio.sleep(RELOAD_INTERVAL)
        for dispatcher in running.dispatchers:
            try:
                dispatcher.tick()
            except Exception as exc:
                log.warning("reload_failed", source=dispatcher.source, error=str(exc))


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""The signals that stop ``seo serve`` gracefully (a second one stops it now)."""


def describe(running: Running, now: datetime | None = None) -> list[str]:
    """What ``seo serve`` prints at start: sources, addresses, and per event the bindings that
    fire, in order, then those that will not, with why."""
    at = now or datetime.now(UTC)
    lines = []
    for source in running.smtp:
        lines.append(
            f"{source.name} listening on {source.address} "
            f"(local domains: {', '.join(source.settings.local_domains)}; "
            f"spool: {source.settings.spool})"
        )
        lines.extend(_describe_bindings(source.dispatcher, at))
    for news in running.nntp:
        lines.append(
            f"{news.name} listening on {news.address} "
            f"(groups: {', '.join(news.settings.groups) or 'none'}; "
            f"store: {news.settings.store})"
        )
        lines.extend(_describe_bindings(news.dispatcher, at))
    return lines


def _describe_bindings(dispatcher: Dispatcher, now: datetime) -> list[str]:
    """Per event: the bindings that fire, numbered in firing order; then, in priority order,
    each that will not: ``NOT FIRING`` with ``seo explain``'s reason (disabled, fired out,
    expired) or ``UNAVAILABLE`` with its sink's or rule's fault.

    The plan alone would mislead: it leaves out disabled and fired-out bindings, and keeps an
    expired one (expiry is checked at each event), so each binding of the metabase is asked.
    """
    plan = dispatcher.plan
    unavailable = {missing.binding.id: missing for missing in plan.unavailable}
    bindings = dispatcher.metabase.bindings(dispatcher.source)
    why_not = {b.id: why for b in bindings if (why := _why_not(dispatcher, b, now)) is not None}
    lines = []
    for event in sorted({*plan.calls, *(b.event for b in bindings)}):
        firing = [call for call in plan.calls.get(event, ()) if call.binding.id not in why_not]
        for position, call in enumerate(firing, 1):
            binding = call.binding
            rule = f" rule {binding.rule!r}" if binding.rule else ""
            lines.append(
                f"  {event} {position}. {_name(binding)} -> "
                f"{call.sink} (priority {binding.priority}){rule}"
            )
        for binding in (b for b in bindings if b.event == event):
            if binding.id in why_not:
                label, reason = "NOT FIRING", why_not[binding.id]
            elif binding.id in unavailable:
                label, reason = "UNAVAILABLE", unavailable[binding.id].reason
            else:
                continue
            lines.append(f"  {event} {label} {_name(binding)} -> {binding.sink_class}: {reason}")
    return lines or ["  (no bindings)"]


def _why_not(dispatcher: Dispatcher, binding: Binding, now: datetime) -> str | None:
    """Why ``binding`` fires for no event at all, in ``seo explain``'s words; None if it may.

    Only the reasons that hold whatever the event are asked of explain (its first checks), so
    neither the sink nor the rule is looked at here: the plan has their verdict.
    """
    if binding.enabled and not binding.fired_out and not binding.is_expired(now):
        return None
    (verdict,) = explain(
        [binding], dispatcher.registry, binding.source, binding.event, EventFacts(), now
    )
    return verdict.reason


def _name(binding: Binding) -> str:
    return binding.display_name or binding.id


async def serve_until_stopped(
    metabase_path: Path,
    registry: SinkRegistry,
    report: Callable[[list[str]], None],
    *,
    smtp: Sequence[SmtpSettings] = (),
    nntp: Sequence[NntpSettings] = (),
) -> None:
    """Start the sources, report them, and run until SIGINT, SIGTERM or SIGHUP.

    SIGHUP (the terminal that started it went away) stops it as gracefully as the others: a
    server that dies with its terminal would cut the sessions under way.
    """
    running = await start_sources(metabase_path, registry, smtp=smtp, nntp=nntp)
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if not running.stopping.is_set():
            running.stopping.set()
            return
        # A second Ctrl-C: the sessions left are cut now (delivery in hand still finishes).
        log.warning("serve_stopping_now")
        for mail in running.smtp:
            mail.hurry()
        for news in running.nntp:
            news.hurry()

    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, on_signal)
    report(describe(running))
    try:
        await running.stopping.wait()
        log.info("serve_stopping")
    finally:
        try:
            await running.stop()
        finally:
            for signum in STOP_SIGNALS:
                loop.remove_signal_handler(signum)
    log.info("serve_stopped")
