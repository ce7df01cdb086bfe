"""Dispatch cost per event, beside the floor (a plain loop) and bare pluggy.

Run with ``nox -s bench``. Prints one table; each figure is the best median of several timing
rounds, in microseconds per event.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import timeit
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pluggy
import structlog

from seo_core.dispatcher import Dispatcher
from seo_core.metabase import BindingSpec, Metabase
from seo_core.registry import SinkRegistry, make_plugin_manager
from seo_core.sdk import MessageEvent, hookimpl

ROUNDS = 7


class Trivial:
    """The cheapest sink there is: it looks at its arguments and returns."""

    @hookimpl
    def smtp_on_arrival(self, event: Any, sink_properties: Any, binding: Any) -> None:
        return None

    @hookimpl
    def smtp_on_pre_categorize(self, event: Any, sink_properties: Any, binding: Any) -> None:
        return None


def per_event(function: Any, number: int) -> float:
    runs = timeit.repeat(function, number=number, repeat=ROUNDS)
    return statistics.median(runs) / number * 1e6


def event() -> MessageEvent:
    return MessageEvent(
        source="smtp/1",
        name="OnArrival",
        message_id="m",
        message=EmailMessage(),
        mail_from="a@example.com",
        recipients=["b@example.com"],
    )


def measure(count: int, noise: int, folder: Path) -> dict[str, float]:
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
    dispatcher = Dispatcher("smtp/1", metabase, registry, stats_interval=3600)
    calls = dispatcher.calls("OnArrival")
    assert len(calls) == count, (len(calls), count)
    ctx = event()
    number = max(2000, 200000 // max(count, 1))
    seo = per_event(lambda: dispatcher.notify_sync(ctx), number)

    sinks = [Trivial() for _ in range(count)]
    bindings = [c.binding for c in calls]
    pairs = [
        (s.smtp_on_arrival, b.sink_properties, b) for s, b in zip(sinks, bindings, strict=True)
    ]

    def floor() -> None:
        for function, props, binding in pairs:
            function(event=ctx, sink_properties=props, binding=binding)

    floor_us = per_event(floor, number)

    pm = make_plugin_manager()
    for n, sink in enumerate(sinks):
        pm.register(sink, name=f"s{n}")
    props, binding = bindings[0].sink_properties, bindings[0]
    pluggy_us = per_event(
        lambda: pm.hook.smtp_on_arrival(
            event=ctx, sink_properties=props, source_properties=props, binding=binding
        ),
        number,
    )
    dispatcher.close()
    metabase.close()
    return {"seo": seo, "floor": floor_us, "pluggy": pluggy_us}


def main() -> int:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
    print(f"python {sys.version.split()[0]}, pluggy {pluggy.__version__}")
    print(
        f"{'sinks':>5} {'other bindings':>14} {'seo us':>8} {'floor us':>9} {'pluggy us':>10}"
        f" {'seo/floor':>9} {'seo/pluggy':>10}"
    )
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        for count, noise in ((1, 0), (10, 0), (50, 0), (10, 10000)):
            r = measure(count, noise, Path(folder))
            results[(count, noise)] = r
            print(
                f"{count:>5} {noise:>14} {r['seo']:>8.2f} {r['floor']:>9.2f} {r['pluggy']:>10.2f}"
                f" {r['seo'] / r['floor']:>9.2f} {r['seo'] / r['pluggy']:>10.2f}"
            )
    ten, noisy = results[(10, 0)], results[(10, 10000)]
    ratio = ten["seo"] / ten["floor"]
    noise_cost = noisy["seo"] / ten["seo"] - 1
    print(
        f"target at 10 sinks: seo/floor <= 3.0 -> {ratio:.2f} "
        f"({'met' if ratio <= 3 else 'MISSED'}); seo < pluggy -> "
        f"{'met' if ten['seo'] < ten['pluggy'] else 'MISSED'}"
    )
    print(
        f"target with 10,000 other bindings: within 10% -> {noise_cost:+.1%} "
        f"({'met' if abs(noise_cost) <= 0.10 else 'MISSED'})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
