"""Why a binding would or would not fire: the answer behind ``seo explain``.

It applies the same tests as the dispatcher, in the same order, to every binding of an event, but
reports each test's verdict instead of acting on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from seo_core.catalog import EventType, parse_source
from seo_core.errors import SeoError
from seo_core.metabase.records import Binding
from seo_core.rules import EventFacts, parse_rule

if TYPE_CHECKING:
    from seo_core.registry import SinkRegistry


@dataclass(frozen=True, slots=True)
class Explanation:
    """One binding of the event: whether it would fire and, if not, why."""

    binding: Binding
    fires: bool
    reason: str


def explain(
    bindings: list[Binding],
    registry: SinkRegistry,
    source: str,
    event: str,
    facts: EventFacts,
    now: datetime,
) -> list[Explanation]:
    """Every binding of ``source``/``event`` in firing order, with its verdict.

    A binding that fires is listed with the rule it matched; one that does not names the first
    reason: disabled, fired out, expired, sink unavailable, or rule.
    """
    kind = parse_source(source).source_type
    event_type = kind.event(event)
    result = []
    for binding in bindings:
        if binding.source != str(parse_source(source)) or binding.event != event_type.name:
            continue
        result.append(Explanation(binding, *_verdict(binding, registry, event_type, facts, now)))
    return result


def _verdict(
    binding: Binding,
    registry: SinkRegistry,
    event_type: EventType,
    facts: EventFacts,
    now: datetime,
) -> tuple[bool, str]:
    if not binding.enabled:
        if binding.fired_out:
            return False, f"fired out ({binding.fire_count} of MaxFirings {binding.max_firings})"
        return False, "disabled"
    if binding.fired_out:
        return False, f"fired out ({binding.fire_count} of MaxFirings {binding.max_firings})"
    if binding.is_expired(now):
        assert binding.expiration is not None
        return False, f"expired at {binding.expiration.isoformat()}"
    try:
        registry.check_binding(binding)
    except SeoError as exc:
        return False, f"sink unavailable: {exc}"
    if not binding.rule.strip():
        return True, "no rule: matches every event"
    try:
        rule = parse_rule(binding.rule, event_type.rule_kind)
    except SeoError as exc:
        return False, f"rule cannot be read: {exc}"
    if rule.matches(facts):
        return True, f"rule matches: {binding.rule}"
    return False, f"rule does not match: {binding.rule}"
