"""The fast path: per event, one generated function that calls the bound sinks in a row.

Most bindings have no rule, Expiration or MaxFirings budget, and most hook functions are plain
``def``. For an event whose calls are all like that, the general firing loop
(``Dispatcher._run``) spends more time on its own bookkeeping than trivial sinks take: per call
it tests flags, goes through the invoker to the hook function and counts the notification. Here
that loop is unrolled into Python source and compiled: each hook function is called directly
with its binding's fixed arguments, and only a SKIP_REMAINING verdict or an exception leaves
the straight line. (Any other return value is ignored, as the general loop ignores it when
debug logging is off.)

What the generated function leaves out is done elsewhere, so nothing observable changes:

* Counting: a completed run is counted once (:attr:`FastRun.runs`) and attributed to each of
  its calls when the statistics are written (:meth:`FastRun.settle`).
* Stopping early: on SKIP_REMAINING or an exception the function returns the call it was in
  and the exception, if any; the dispatcher counts the calls before it, logs the failure and
  goes on with the general loop after it (``Dispatcher._resume``).
* Timeouts: the function is named :data:`~seo_core.dispatcher.timeouts.RUNNER` and keeps the
  ``token`` and ``call`` locals the heartbeat reads, so an overrunning sink is cut off as in
  the general loop. Without the heartbeat (off the main thread) an overrun can only be seen by
  reading the clock around each call, so the dispatcher then takes the general loop.
* Logging: with debug logging on, every notification is logged with its duration, which the
  general loop does; the dispatcher then takes it too.

The function is compiled the first time its event fires, not when the plan is built, so a
reload costs what it did and events that never fire cost nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from seo_core.dispatcher.result import DispatchResult
from seo_core.dispatcher.timeouts import DEADLINE, RUNNER
from seo_core.events.contexts import Verdict

if TYPE_CHECKING:
    from seo_core.dispatcher.plan import PlannedCall

Stop = tuple["PlannedCall", BaseException | None]
"""Where a fast run left the straight line: the call it was in and what it raised, if anything
(nothing means the call returned SKIP_REMAINING)."""


@dataclass(slots=True, eq=False)
class FastRun:
    """The fast path of one event: its calls, the function running them, and its count."""

    calls: list[PlannedCall]
    done: DispatchResult
    """The result of a run that went through: every call notified, none failed."""
    runs: int = 0
    """Runs that went through since the statistics were last written."""
    run: Callable[[Any], Stop | None] = field(init=False)
    """Call every sink with the event; None when all of them returned, else where it stopped."""

    def __post_init__(self) -> None:
        self.run = self._compile_and_run

    def _compile_and_run(self, event: Any) -> Stop | None:
        self.run = compile_run(self.calls)
        return self.run(event)

    def settle(self) -> None:
        """Add the runs that went through to each call's count, for the statistics."""
        runs, self.runs = self.runs, 0
        if runs:
            for call in self.calls:
                call.count += runs


def fast_runs(calls: Mapping[str, list[PlannedCall]]) -> dict[str, FastRun]:
    """The fast runs of the events whose calls all qualify (see :func:`qualifies`)."""
    return {
        event: FastRun(planned, DispatchResult(len(planned)))
        for event, planned in calls.items()
        if all(qualifies(call) for call in planned)
    }


def qualifies(call: PlannedCall) -> bool:
    """True when a call needs nothing but the call: no checks before it and nothing to await."""
    return call.plain and not call.is_async


def compile_run(calls: list[PlannedCall]) -> Callable[[Any], Stop | None]:
    """Generate, compile and return the function that runs ``calls`` in a row.

    For two calls, whose hook functions take ``(event, sink_properties, binding)`` and
    ``(binding)``, it reads::

        def _run(event):
            _deadline.token += 1
            token = _deadline.token
            try:
                call = _c0
                if _f0(event, _a0_0, _a0_1) is _SKIP:
                    return call, None
                call = _c1
                if _f1(binding=_a1_0) is _SKIP:
                    return call, None
            except BaseException as exc:
                return call, exc
            return None

    ``token`` and ``call`` are for the timeout heartbeat. Every exception is caught, even one
    that is not an ``Exception``, so that the dispatcher can count the calls before it whatever
    happened; it raises again what the general loop would not have caught. The sinks'
    functions and arguments are globals of the generated code (one namespace per function):
    unlike default arguments they cost nothing per run however many calls there are, and
    reading one is about as cheap as reading a local.
    """
    namespace: dict[str, Any] = {"_deadline": DEADLINE, "_SKIP": Verdict.SKIP_REMAINING}
    lines = [
        f"def {RUNNER}(event):",
        "    _deadline.token += 1",
        "    token = _deadline.token",
        "    try:",
    ]
    for position, call in enumerate(calls):
        namespace[f"_c{position}"] = call
        lines += [
            f"        call = _c{position}",
            f"        if {_call_source(position, call, namespace)} is _SKIP:",
            "            return call, None",
        ]
    lines += [
        "    except BaseException as exc:",
        "        return call, exc",
        "    return None",
    ]
    source = "\n".join(lines) + "\n"
    exec(compile(source, f"<seo fast path of {len(calls)} calls>", "exec"), namespace)
    function: Callable[[Any], Stop | None] = namespace[RUNNER]
    return function


def _call_source(position: int, call: PlannedCall, namespace: dict[str, Any]) -> str:
    """The expression calling ``call``'s hook function; puts what it needs in ``namespace``.

    It passes the arguments as the call's invoker does (see ``plan.HookCall``). Calls without a
    fixed set of arguments go through the invoker.
    """
    function = f"_f{position}"
    hook = call.hook
    if hook is None:
        namespace[function] = call.invoke
        return f"{function}(event)"
    namespace[function] = hook.function
    names = [name for name in hook.names if name != "event"]
    values = [f"_a{position}_{n}" for n in range(len(names))]
    namespace.update(zip(values, hook.fixed, strict=True))
    if hook.positional:
        arguments = ["event", *values]
    else:
        arguments = [f"{name}={value}" for name, value in zip(names, values, strict=True)]
        if "event" in hook.names:
            arguments.insert(0, "event=event")
    return f"{function}({', '.join(arguments)})"
