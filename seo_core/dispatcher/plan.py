"""Turning bindings into a firing plan: the ordered calls for each event of one source.

Everything that can be decided once per metabase change is decided here (which sink, which hook
function, which arguments it takes, the parsed rule, the timeout), so that firing an event is a
short loop over ready-made calls.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from seo_core.catalog import parse_source
from seo_core.dispatcher.fastpath import FastRun, fast_runs
from seo_core.errors import SeoError, SinkNotFoundError
from seo_core.events.schema import Schema
from seo_core.metabase.records import Binding
from seo_core.properties import PropertyBag
from seo_core.rules import EventFacts, Rule, parse_rule

if TYPE_CHECKING:
    from seo_core.registry import SinkInfo, SinkRegistry

HOOK_ARGUMENTS = ("event", "sink_properties", "source_properties", "binding")


@dataclass(slots=True, eq=False)
class PlannedCall:
    """One binding, ready to be notified.

    ``plain`` is true when nothing but the call itself is needed (no rule, no Expiration, no
    MaxFirings budget), which lets the firing loop skip every check for the common case.
    ``hook`` is what ``invoke`` calls, for the fast path to call it without going through
    ``invoke`` (None when ``invoke`` does more than that call).
    ``count`` gathers notifications between two writes of the statistics.
    """

    binding: Binding
    sink: str
    rule: Rule | None
    timeout: float
    expires: float | None
    limited: bool
    invoke: Callable[[Any], Any]
    is_async: bool = False
    plain: bool = False
    hook: HookCall | None = None
    count: int = 0

    def matches(self, facts: EventFacts | None) -> bool:
        if self.rule is None:
            return True
        return facts is not None and self.rule.matches(facts)


@dataclass(frozen=True, slots=True)
class Unavailable:
    """A binding that cannot be notified now, and why (its sink is missing or broken)."""

    binding: Binding
    reason: str
    not_installed: bool = False
    """True when no installed sink answers to the binding's SinkClass (yet)."""


@dataclass(slots=True)
class Plan:
    """The firing plan of one source: per canonical event name, the calls in order.

    ``fast`` holds the fast path (see ``fastpath``) of the events that can take it.
    """

    generation: int
    calls: dict[str, list[PlannedCall]] = field(default_factory=dict)
    unavailable: list[Unavailable] = field(default_factory=list)
    fast: dict[str, FastRun] = field(default_factory=dict)


def instance_key(binding: Binding) -> Binding:
    """What identifies "the same binding" for keeping its sink instance: all but the count."""
    return replace(binding, fire_count=0)


def hook_for(target: object, source_type: str, event_names: tuple[str, ...]) -> str | None:
    """The name of the hook ``target`` implements for an event (or one of its aliases)."""
    from seo_core.catalog import snake_case

    for name in event_names:
        hook = f"{source_type}_{snake_case(name)}"
        function = getattr(target, hook, None)
        if function is not None and getattr(function, "seo_impl", None) is not None:
            return hook
    return None


@dataclass(frozen=True, slots=True)
class HookCall:
    """A hook function with the arguments one binding passes it, besides the event.

    Both the invoker (:func:`make_invoker`) and the dispatcher's fast path (``fastpath``) call
    it from this one description, the same way: positionally, in the function's own parameter
    order, when ``event`` is its first hook argument (the usual shape, and the cheapest call);
    by keyword otherwise.
    """

    function: Callable[..., Any]
    names: tuple[str, ...]
    """The hook arguments the function accepts, in its parameter order."""
    fixed: tuple[Any, ...]
    """The values of ``names`` other than ``event``, in the same order."""

    @property
    def positional(self) -> bool:
        return self.names[:1] == ("event",)

    @property
    def keywords(self) -> dict[str, Any]:
        return dict(zip([name for name in self.names if name != "event"], self.fixed, strict=True))


def sink_properties_for(target: object, binding: Binding) -> PropertyBag:
    """The SinkProperties a sink's hook receives: the binding's, plus the schema's defaults.

    Worked out once per plan, so a default costs nothing per event. The metabase keeps only
    what the administrator set (``seo bindings show`` shows that), so a default changed in a
    new release of the sink reaches every binding that never chose a value.
    """
    schema = getattr(target, "properties_schema", None)
    if isinstance(schema, Schema):
        return schema.with_defaults(binding.sink_properties)
    return binding.sink_properties


def make_invoker(
    function: Callable[..., Any], binding: Binding, sink_properties: PropertyBag
) -> tuple[Callable[[Any], Any], bool, HookCall | None]:
    """Bind a hook function to this binding's arguments: the caller, "is async" and the call.

    A sink's hook may accept any subset of the arguments (pluggy's rule); only those it names
    are passed. The common shapes get a direct call without building keyword dictionaries.
    ``sink_properties`` is what the hook gets as such (see :func:`sink_properties_for`).
    The :class:`HookCall` is None when the arguments must be worked out at each call (the
    sink properties name environment variables).
    """
    accepted = [name for name in inspect.signature(function).parameters if name in HOOK_ARGUMENTS]
    fixed: dict[str, Any] = {
        "sink_properties": sink_properties,
        "source_properties": binding.source_properties,
        "binding": binding,
    }
    is_async = inspect.iscoroutinefunction(function)
    if "sink_properties" in accepted and sink_properties.has_env_refs:
        return _resolving_env(function, accepted, fixed), is_async, None
    hook = HookCall(
        function, tuple(accepted), tuple(fixed[name] for name in accepted if name != "event")
    )
    return _invoker(hook), is_async, hook


def _invoker(hook: HookCall) -> Callable[[Any], Any]:
    function, rest = hook.function, hook.fixed
    if hook.positional:
        if not rest:
            return function
        if len(rest) == 1:
            (a,) = rest
            return lambda event: function(event, a)
        if len(rest) == 2:
            a, b = rest
            return lambda event: function(event, a, b)
        a, b, c = rest
        return lambda event: function(event, a, b, c)
    keywords = hook.keywords
    if "event" in hook.names:
        return lambda event: function(event=event, **keywords)
    return lambda event: function(**keywords)


def _resolving_env(
    function: Callable[..., Any], accepted: list[str], fixed: dict[str, Any]
) -> Callable[[Any], Any]:
    """An invoker that reads ``{ env = "NAME" }`` properties at each call, never storing them.

    A variable that is not set makes this notification fail (logged with the variable's name);
    the other bindings are not affected.
    """
    from seo_core.config.secrets import resolve_env

    properties = fixed["sink_properties"]
    keywords = {name: fixed[name] for name in accepted if name not in ("event", "sink_properties")}
    wants_event = "event" in accepted

    def invoke(event: Any) -> Any:
        resolved = resolve_env(properties)
        if wants_event:
            return function(event=event, sink_properties=resolved, **keywords)
        return function(sink_properties=resolved, **keywords)

    return invoke


def build_plan(
    source: str,
    bindings: list[Binding],
    registry: SinkRegistry,
    generation: int,
    instances: Mapping[Binding, object],
) -> tuple[Plan, dict[Binding, object]]:
    """Build the plan for ``source`` from its bindings (already in priority, ID order).

    Disabled and fired-out bindings are left out; one with an Expiration stays, and each event
    checks it (it may expire while the plan is in use). Cached sink
    instances from ``instances`` are reused for bindings that did not change; the instances the
    new plan uses are returned to be kept for the next build.
    """
    kind = parse_source(source).source_type
    plan = Plan(generation)
    kept: dict[Binding, object] = {}
    for binding in bindings:
        if not binding.enabled or binding.fired_out:
            continue
        event = kind.event(binding.event)
        rule_text = binding.rule
        try:
            rule = parse_rule(rule_text, event.rule_kind) if rule_text.strip() else None
        except SeoError as exc:
            plan.unavailable.append(Unavailable(binding, f"bad rule: {exc}"))
            continue
        expires = binding.expiration.timestamp() if binding.expiration else None
        try:
            info = registry.resolve(binding.sink_class)
            invoke, is_async, hook = _invoker_for(
                info, binding, kind.name, event.name, event.aliases, instances, kept
            )
        except SeoError as exc:
            plan.unavailable.append(
                Unavailable(binding, str(exc), not_installed=isinstance(exc, SinkNotFoundError))
            )
            continue
        plan.calls.setdefault(event.name, []).append(
            PlannedCall(
                binding=binding,
                sink=info.name,
                rule=rule,
                timeout=binding.timeout,
                expires=expires,
                limited=binding.max_firings > 0,
                invoke=invoke,
                is_async=is_async,
                plain=rule is None and expires is None and binding.max_firings == 0,
                hook=hook,
            )
        )
    plan.fast = fast_runs(plan.calls)
    return plan, kept


def _invoker_for(
    info: SinkInfo,
    binding: Binding,
    source_type: str,
    event: str,
    aliases: tuple[str, ...],
    instances: Mapping[Binding, object],
    kept: dict[Binding, object],
) -> tuple[Callable[[Any], Any], bool, HookCall | None]:
    from seo_core.errors import SinkLoadError

    target = info.target
    hook = hook_for(target, source_type, (event, *aliases))
    if hook is None:
        raise SinkLoadError(binding.sink_class, f"sink {info.name!r} does not handle {event}")
    properties = sink_properties_for(target, binding)
    if not inspect.isclass(target):
        return make_invoker(getattr(target, hook), binding, properties)
    if not info.cacheable:
        factory = target

        def fresh(event_context: Any) -> Any:
            invoke, _, _ = make_invoker(getattr(factory(), hook), binding, properties)
            return invoke(event_context)

        return fresh, inspect.iscoroutinefunction(getattr(target, hook)), None
    key = instance_key(binding)
    instance = instances.get(key)
    if instance is None:
        instance = target()
    kept[key] = instance
    return make_invoker(getattr(instance, hook), binding, properties)
