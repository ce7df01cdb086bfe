"""A trivial sink for the benchmarks: the cost of a notification and nothing else."""

from __future__ import annotations

from typing import Any

from seo_core.sdk import hookimpl


class Trivial:
    @hookimpl
    def smtp_on_arrival(self, event: Any, sink_properties: Any, binding: Any) -> None:
        return None

    @hookimpl
    def smtp_on_pre_categorize(self, event: Any, sink_properties: Any, binding: Any) -> None:
        return None
