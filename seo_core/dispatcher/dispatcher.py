"""The dispatcher: one per source; notifies the bound sinks of an event, in order.

For each event it takes the plan's calls for that event (enabled bindings, in priority then
binding-ID order), skips those whose rule does not match or whose Expiration passed, claims a
firing in the metabase for bindings with a MaxFirings budget, and calls each sink with that
binding's own properties. A sink that raises or overruns its timeout affects only its own
notification. SKIP_REMAINING stops the chain.

pluggy would stop a hook call at the first implementation that raises and would hand every
implementation the same arguments, so the dispatcher calls each binding's hook function itself;
pluggy supplies the markers, the specifications and their validation (see ``registry``).

The general loop (:meth:`Dispatcher._run`) handles every kind of binding. An event whose
bindings need no check and whose sinks are all synchronous usually takes a fast path instead: a
function generated for that event calls the sinks in a row, and hands over to the general loop
where it meets a SKIP_REMAINING or an exception (see ``fastpath``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from itertools import islice
from typing import TYPE_CHECKING, Any, NamedTuple

import structlog

from seo_core.dispatcher.fastpath import FastRun, Stop
from seo_core.dispatcher.plan import Plan, PlannedCall, build_plan
from seo_core.dispatcher.result import NOTHING, DispatchResult, result_from
from seo_core.dispatcher.timeouts import DEADLINE, SinkTimeout
from seo_core.events.contexts import EventContext, Verdict
from seo_core.metabase.records import Binding, StatsDelta
from seo_core.rules import EventFacts

if TYPE_CHECKING:
    from seo_core.metabase import Metabase
    from seo_core.registry import SinkRegistry

CHECK_INTERVAL = 0.25
"""Seconds between checks for a changed metabase: changes are seen well within one second."""
STATS_INTERVAL = 1.0
"""Seconds between writes of batched statistics."""

_CONTINUE = Verdict.CONTINUE
_SKIP = Verdict.SKIP_REMAINING


class _Pending(NamedTuple):
    """A chain stopped at an ``async def`` sink: what :meth:`Dispatcher._finish` takes over."""

    calls: list[PlannedCall]
    position: int
    pending: Any
    tally: list[Any]


class Dispatcher:
    """Notifies the sinks bound to the events of one source.

    Build it with the source name, an open metabase and a sink registry; it loads the bindings
    at once and reloads them whenever the metabase changes (checked at most every
    :data:`CHECK_INTERVAL` seconds, for the price of one small query). Call :meth:`close` to
    write the last statistics.
    """

    def __init__(
        self,
        source: str,
        metabase: Metabase,
        registry: SinkRegistry,
        *,
        check_interval: float = CHECK_INTERVAL,
        stats_interval: float = STATS_INTERVAL,
    ) -> None:
        self.source = source
        self.metabase = metabase
        self.registry = registry
        self.check_interval = check_interval
        self.stats_interval = stats_interval
        self._instances: dict[Binding, object] = {}
        self._reported: set[tuple[str, str]] = set()
        self._stats: dict[str, StatsDelta] = {}
        self._log = structlog.get_logger("seo.dispatcher").bind(source=source)
        self._verbose = True
        self._next_check = time.monotonic() + check_interval
        self._next_flush = time.monotonic() + stats_interval
        self._plan = Plan(-1)
        self._mark: tuple[int, int | None] | None = None
        """The metabase's change mark (generation, stamp) the plan was built at."""
        self._fast: dict[str, FastRun] = {}
        """The plan's fast runs, or none while debug logging is on (see ``fastpath``)."""
        self._retired: list[Plan] = []
        self._rescanned: tuple[int, int | None] | None = None
        self.reload()
        DEADLINE.start()
        self._closed = False

    # -- bindings --------------------------------------------------------------------------

    def reload(self) -> None:
        """Read this source's bindings again and rebuild the plan.

        While a binding names a sink that is not installed, each change of the bindings makes
        the registry look at the installed packages again: a sink pip-installed after the
        server started is picked up when it is bound, without a restart.
        """
        mark = self.metabase.change_mark()
        generation = mark[0]
        bindings = self.metabase.bindings(self.source)
        plan = self._build(bindings, generation)
        if any(u.not_installed for u in plan.unavailable) and mark != self._rescanned:
            self._rescanned = mark
            refreshed = self.registry.refresh()
            if refreshed is not self.registry:
                self.registry = refreshed
                plan = self._build(bindings, generation)
        # Reported only now: a binding to a sink installed since the last scan is not
        # unavailable, and saying so before the rescan would be a false alarm.
        for unavailable in plan.unavailable:
            self._report_unavailable(unavailable.binding, unavailable.reason)
        self._retired.append(self._plan)
        self._plan = plan
        self._mark = mark
        self._verbose = _debug_enabled(self._log)
        self._fast = {} if self._verbose else plan.fast
        self._log.info(
            "bindings_loaded",
            generation=generation,
            bindings=sum(len(calls) for calls in plan.calls.values()),
        )

    def _build(self, bindings: list[Binding], generation: int) -> Plan:
        plan, self._instances = build_plan(
            self.source,
            bindings,
            self.registry,
            generation,
            self._instances,
        )
        return plan

    def wants(self, event: str) -> bool:
        """True when ``event`` (canonical name) has bindings to notify.

        Sources ask before building an event's context, so an event nobody is bound to costs
        next to nothing. It also gives the dispatcher its regular look at the metabase.
        """
        self.tick()
        return event in self._plan.calls

    def tick(self) -> None:
        """Reload changed bindings and write statistics when their time has come."""
        now = time.monotonic()
        if now >= self._next_check or now >= self._next_flush:
            self._housekeeping(now)

    def calls(self, event: str) -> list[PlannedCall]:
        """The planned calls of ``event`` (canonical name), in firing order."""
        return list(self._plan.calls.get(event, ()))

    @property
    def plan(self) -> Plan:
        return self._plan

    def check_for_changes(self) -> bool:
        """Reload if the metabase's bindings changed since the last look; True if reloaded.

        One query reads the generation counter and its stamp; done at most every
        ``check_interval``, so its cost per event is a clock comparison. The stamp is compared
        too because the counter alone can come back to the number the plan was built at: a
        restored backup puts it back, and the next change moves it on to that number again.
        """
        self._next_check = time.monotonic() + self.check_interval
        if self.metabase.change_mark() == self._mark:
            return False
        self.reload()
        return True

    def _report_unavailable(self, binding: Binding, reason: str) -> None:
        key = (binding.id, reason)
        if key not in self._reported:
            self._reported.add(key)
            self._log.warning(
                "binding_unavailable",
                event_type=binding.event,
                binding_id=binding.id,
                sink=binding.sink_class,
                error=reason,
            )

    # -- firing ----------------------------------------------------------------------------

    async def notify(self, event: EventContext, facts: EventFacts | None = None) -> DispatchResult:
        """Notify every matching binding of ``event.name``, in order; await async sinks.

        Events whose sinks are all plain synchronous calls take the fast path (see
        ``fastpath``) while the timeout heartbeat runs and debug logging is off.
        """
        started = self._start(event, facts)
        if isinstance(started, DispatchResult):
            return started
        await self._finish(
            started.calls, started.position, started.pending, event, facts, started.tally
        )
        return result_from(started.tally)

    def notify_sync(self, event: EventContext, facts: EventFacts | None = None) -> DispatchResult:
        """:meth:`notify` for callers without a running event loop.

        Synchronous sinks need no loop; from the first ``async def`` sink on, the rest of the
        chain runs in a fresh event loop.
        """
        started = self._start(event, facts)
        if isinstance(started, DispatchResult):
            return started
        asyncio.run(
            self._finish(
                started.calls, started.position, started.pending, event, facts, started.tally
            )
        )
        return result_from(started.tally)

    def _start(self, event: EventContext, facts: EventFacts | None) -> DispatchResult | _Pending:
        """Run the chain up to its end, or up to its first ``async def`` sink."""
        now = time.monotonic()
        if now >= self._next_check or now >= self._next_flush:
            self._housekeeping(now)
        fast = self._fast.get(event.name)
        if fast is not None and DEADLINE.preemptive:
            stop = fast.run(event)
            if stop is None:
                fast.runs += 1
                return fast.done
            return self._resume(fast, stop, event, facts)
        calls = self._plan.calls.get(event.name)
        if not calls:
            return NOTHING
        tally: list[Any] = [0, 0, 0, None, None]
        index, pending = self._run(calls, 0, event, facts, tally)
        if pending is None:
            return result_from(tally)
        return _Pending(calls, index, pending, tally)

    def _resume(
        self, fast: FastRun, stop: Stop, event: EventContext, facts: EventFacts | None
    ) -> DispatchResult:
        """Take over from a fast run that stopped at ``call``, as the general loop would have.

        The calls before it were notified; they are counted here, since the run as a whole is
        not. Then ``call`` gets its verdict or its failure, and the general loop does the rest
        (it has no sink to await: a fast run's calls are all synchronous). What is not an
        ``Exception`` (KeyboardInterrupt, SystemExit) goes on up, as from the general loop.
        """
        call, error = stop
        calls = fast.calls
        index = calls.index(call)
        for notified in calls[:index]:
            notified.count += 1
        tally: list[Any] = [index, 0, 0, None, None]
        if error is None:
            tally[0] += 1
            call.count += 1
            tally[3] = call.binding.id
            return result_from(tally)
        if isinstance(error, SinkTimeout):
            self._failed(call, event, f"timed out after {call.timeout:g}s", tally, timeout=True)
        elif isinstance(error, Exception):
            self._failed(call, event, f"{type(error).__name__}: {error}", tally)
        else:
            raise error
        self._run(calls, index + 1, event, facts, tally)
        return result_from(tally)

    def _housekeeping(self, now: float) -> None:
        if now >= self._next_check:
            self.check_for_changes()
        if now >= self._next_flush:
            self.flush_stats()

    async def _finish(
        self,
        calls: list[PlannedCall],
        index: int,
        pending: Any,
        event: EventContext,
        facts: EventFacts | None,
        tally: list[Any],
    ) -> None:
        """Await the async sink at ``index``, then go on with the chain, to its end.

        With debug logging on, the await is timed for ``sink_notified``'s ``duration_ms``: the
        sink's own work happens here, not where its coroutine was made.
        """
        verbose = self._verbose
        started = 0.0
        while pending is not None:
            call = calls[index]
            if verbose:
                started = time.monotonic()
            try:
                async with asyncio.timeout(call.timeout):
                    result = await pending
            except TimeoutError:
                self._failed(call, event, f"timed out after {call.timeout:g}s", tally, timeout=True)
            except Exception as exc:
                self._failed(call, event, f"{type(exc).__name__}: {exc}", tally)
            else:
                tally[0] += 1
                call.count += 1
                if verbose:
                    self._notified(call, event, result, started)
                if result is _SKIP:
                    tally[3] = call.binding.id
                    return
            index, pending = self._run(calls, index + 1, event, facts, tally)

    def _run(
        self,
        calls: list[PlannedCall],
        index: int,
        event: EventContext,
        facts: EventFacts | None,
        tally: list[Any],
    ) -> tuple[int, Any]:
        """Call ``calls[index:]`` in order until one is ``async def``.

        Returns ``(position, coroutine)`` of that call for the caller to await, or
        ``(len(calls), None)`` when the chain is done. ``tally`` collects notified, failed and
        timed-out counts and the binding that stopped the chain.
        """
        deadline = DEADLINE
        deadline.token += 1
        token = deadline.token  # noqa: F841 - read by the timeout heartbeat (see timeouts.py)
        timed = self._verbose or not deadline.preemptive
        verbose = self._verbose
        notified = 0
        started = wall = 0.0
        for call in islice(calls, index, None) if index else calls:
            if not call.plain:
                if call.rule is not None and (facts is None or not call.rule.matches(facts)):
                    continue
                if call.expires is not None:
                    wall = wall or time.time()
                    if wall >= call.expires:
                        continue
                if call.limited and not self.metabase.claim_firing(call.binding.id):
                    self._next_check = 0.0  # its budget is spent: drop it at the next event
                    continue
            if timed:
                started = time.monotonic()
            try:
                result = call.invoke(event)
                if timed and not deadline.preemptive and time.monotonic() - started > call.timeout:
                    raise SinkTimeout
            except SinkTimeout:
                self._failed(call, event, f"timed out after {call.timeout:g}s", tally, timeout=True)
                continue
            except Exception as exc:
                self._failed(call, event, f"{type(exc).__name__}: {exc}", tally)
                continue
            if result is not None:
                if call.is_async:
                    tally[0] += notified
                    return calls.index(call), result
                if result is _SKIP:
                    notified += 1
                    call.count += 1
                    if verbose:
                        self._notified(call, event, result, started)
                    tally[3] = call.binding.id
                    break
            notified += 1
            call.count += 1
            if verbose:
                self._notified(call, event, result, started)
        tally[0] += notified
        return len(calls), None

    def _notified(
        self, call: PlannedCall, event: EventContext, result: object, started: float
    ) -> None:
        self._log.debug(
            "sink_notified",
            event_type=event.name,
            binding_id=call.binding.id,
            sink=call.sink,
            verdict=_verdict_name(result),
            duration_ms=round((time.monotonic() - started) * 1000, 3),
        )

    def _failed(
        self,
        call: PlannedCall,
        event: EventContext,
        error: str,
        tally: list[Any],
        *,
        timeout: bool = False,
    ) -> None:
        tally[2 if timeout else 1] += 1
        tally[4] = f"{call.sink}: {error}"
        delta = self._delta(call.binding.id)
        if timeout:
            delta.timeouts += 1
        else:
            delta.failures += 1
        delta.last_error = error
        if not call.limited:
            delta.unclaimed_firings += 1
        self._log.error(
            "sink_timed_out" if timeout else "sink_failed",
            event_type=event.name,
            binding_id=call.binding.id,
            sink=call.sink,
            error=error,
        )

    def _delta(self, binding_id: str) -> StatsDelta:
        delta = self._stats.get(binding_id)
        if delta is None:
            delta = self._stats[binding_id] = StatsDelta()
        return delta

    # -- statistics ------------------------------------------------------------------------

    def flush_stats(self) -> None:
        """Write the batched statistics and fire counts to the metabase."""
        self._next_flush = time.monotonic() + self.stats_interval
        for plan in (*self._retired, self._plan):
            for fast in plan.fast.values():
                fast.settle()
            for calls in plan.calls.values():
                for call in calls:
                    if call.count:
                        delta = self._delta(call.binding.id)
                        delta.notifications += call.count
                        if not call.limited:
                            delta.unclaimed_firings += call.count
                        call.count = 0
        self._retired.clear()
        if not self._stats:
            return
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        pending, self._stats = self._stats, {}
        for delta in pending.values():
            delta.last_fired = stamp
        try:
            self.metabase.record_stats(pending)
        except Exception as exc:  # statistics must never break mail flow
            self._log.warning("stats_not_written", error=str(exc))

    def close(self) -> None:
        """Write the last statistics and stop the timeout heartbeat."""
        if self._closed:
            return
        self._closed = True
        self.flush_stats()
        DEADLINE.stop()


def _verdict_name(result: object) -> str:
    if result is None or result is _CONTINUE:
        return "continue"
    if result is _SKIP:
        return "skip_remaining"
    return f"continue (ignored return value {type(result).__name__})"


def _debug_enabled(logger: Any) -> bool:
    checker = getattr(logger, "is_enabled_for", None)
    if checker is None:
        return True
    return bool(checker(logging.DEBUG))
