"""What the dispatcher reports for one event."""

from __future__ import annotations

from typing import Any, NamedTuple


class DispatchResult(NamedTuple):
    """What happened to one event: how many sinks ran, failed, timed out; who stopped it.

    A named tuple rather than a dataclass: one is made per event, and this is the cheap kind.
    """

    notified: int = 0
    failed: int = 0
    timed_out: int = 0
    stopped_by: str | None = None
    error: str | None = None
    """The last failure, as ``<sink>: <error>``: what a source reports as the reason (a badmail
    envelope's, say) when no sink gave one."""


NOTHING = DispatchResult()
"""The result for an event nobody is bound to."""


def result_from(tally: list[Any]) -> DispatchResult:
    """The result from a dispatcher's tally, skipping the named tuple's Python-level ``__new__``."""
    return tuple.__new__(DispatchResult, tally)
