"""Dispatch cost per event, beside the floor (a plain loop) and bare pluggy.

Run with ``nox -s bench``. Prints one table; each figure is the median of :data:`ROUNDS` timing
rounds, in microseconds per event, and each ratio the median of the per-round ratios.

Every round times everything, back to back: on a shared machine a burst of load then weighs on
both sides of a ratio alike, instead of on whichever figure happened to be measured during it.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import timeit
from collections.abc import Callable
from contextlib import ExitStack
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pluggy
import structlog

from seo_core.dispatcher import Dispatcher
from seo_core.metabase import BindingSpec, Metabase
from seo_core.registry import SinkRegistry, make_plugin_manager
from seo_core.sdk import MessageEvent, hookimpl

ROUNDS = 25
CASES = ((1, 0), (10, 0), (50, 0), (10, 10000))
"""(bound sinks, other bindings) per table row."""
CONTENDERS = ("seo", "floor", "pluggy")


class Trivial:
    """The cheapest sink there is: it looks at its arguments and returns."""

    @hookimpl
    def smtp_on_arrival(self, event: Any, sink_properties: Any, binding: Any) -> None:
        return None

    @hookimpl
    def smtp_on_pre_categorize(self, event: Any, sink_properties: Any, binding: Any) -> None:
        return None


def event() -> MessageEvent:
    return MessageEvent(
        source="smtp/1",
        name="OnArrival",
        message_id="m",
        message=EmailMessage(),
        mail_from="a@example.com",
        recipients=["b@example.com"],
    )


def prepare(
    count: int, noise: int, folder: Path, cleanup: ExitStack
) -> tuple[dict[str, Callable[[], object]], int]:
    """The three contenders for ``count`` sinks (seo, floor, pluggy), and calls per timing."""
    path = folder / f"bench-{count}-{noise}.db"
    metabase = Metabase.open(path)
    with metabase.transaction():
        for n in range(count):
            metabase.add_binding(
                BindingSpec(
                    source="smtp/1", event="OnArrival", sink_class="trivial", display_name=f"t{n}"
                )
            )
        for n in range(noise):
            metabase.add_binding(
                BindingSpec(
                    source=f"smtp/{2 + n % 5}" if n % 2 else "smtp/1",
                    event="OnPreCategorize" if n % 2 == 0 else "OnArrival",
                    sink_class="trivial",
                    display_name=f"noise{n}",
                )
            )
    registry = SinkRegistry.from_objects({"trivial": Trivial})
    cleanup.callback(metabase.close)
    dispatcher = Dispatcher("smtp/1", metabase, registry, stats_interval=3600)
    cleanup.callback(dispatcher.close)
    calls = dispatcher.calls("OnArrival")
    assert len(calls) == count, (len(calls), count)
    ctx = event()
    number = max(500, 50000 // max(count, 1))

    sinks = [Trivial() for _ in range(count)]
    bindings = [c.binding for c in calls]
    pairs = [
        (s.smtp_on_arrival, b.sink_properties, b) for s, b in zip(sinks, bindings, strict=True)
    ]

    def floor() -> None:
        for function, props, binding in pairs:
            function(event=ctx, sink_properties=props, binding=binding)

    pm = make_plugin_manager()
    for n, sink in enumerate(sinks):
        pm.register(sink, name=f"s{n}")
    props, binding = bindings[0].sink_properties, bindings[0]
    return {
        "seo": lambda: dispatcher.notify_sync(ctx),
        "floor": floor,
        "pluggy": lambda: pm.hook.smtp_on_arrival(
            event=ctx, sink_properties=props, source_properties=props, binding=binding
        ),
    }, number


Rounds = list[dict[tuple[int, int], dict[str, float]]]
"""Per timing round, per case, the microseconds per event of each contender."""


def measure(folder: Path) -> Rounds:
    rounds = []
    with ExitStack() as cleanup:
        cases = {case: prepare(*case, folder, cleanup) for case in CASES}
        for _ in range(ROUNDS):
            timings: dict[tuple[int, int], dict[str, float]] = {}
            for case, (contenders, number) in cases.items():
                timings[case] = {
                    name: timeit.timeit(function, number=number) / number * 1e6
                    for name, function in contenders.items()
                }
            rounds.append(timings)
    return rounds


def figure(rounds: Rounds, case: tuple[int, int], contender: str) -> float:
    return statistics.median(timings[case][contender] for timings in rounds)


def ratio(
    rounds: Rounds, case: tuple[int, int], over: str, other: tuple[int, int] | None = None
) -> float:
    """The median over the rounds of seo's time in ``case`` over ``over``'s in ``other``."""
    return statistics.median(
        timings[case]["seo"] / timings[other or case][over] for timings in rounds
    )


def main() -> int:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
    print(f"python {sys.version.split()[0]}, pluggy {pluggy.__version__}")
    print(
        f"{'sinks':>5} {'other bindings':>14} {'seo us':>8} {'floor us':>9} {'pluggy us':>10}"
        f" {'seo/floor':>9} {'seo/pluggy':>10}"
    )
    with tempfile.TemporaryDirectory() as folder:
        rounds = measure(Path(folder))
    for case in CASES:
        count, noise = case
        seo, floor, plug = (figure(rounds, case, contender) for contender in CONTENDERS)
        print(
            f"{count:>5} {noise:>14} {seo:>8.2f} {floor:>9.2f} {plug:>10.2f}"
            f" {ratio(rounds, case, 'floor'):>9.2f} {ratio(rounds, case, 'pluggy'):>10.2f}"
        )
    ten, noisy = (10, 0), (10, 10000)
    over_floor = ratio(rounds, ten, "floor")
    cheaper = ratio(rounds, ten, "pluggy") < 1
    noise_cost = ratio(rounds, noisy, "seo", ten) - 1
    print(
        f"target at 10 sinks: seo/floor <= 3.0 -> {over_floor:.2f} "
        f"({'met' if over_floor <= 3 else 'MISSED'}); seo < pluggy -> "
        f"{'met' if cheaper else 'MISSED'}"
    )
    print(
        f"target with 10,000 other bindings: within 10% -> {noise_cost:+.1%} "
        f"({'met' if abs(noise_cost) <= 0.10 else 'MISSED'})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
