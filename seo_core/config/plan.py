"""Making the metabase match a config file: the plan (what differs) and applying it.

A file manages only the bindings whose origin is ``config:<its path>``. A binding the file
declares without an ``id`` is recognised by (source, event, name), so it keeps the GUID its
first apply gave it. Applying is one transaction: every change happens, or none. A file that
changes nothing is not written at all, so the metabase file and its generation counter stay as
they were and running servers have nothing to reload.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

import structlog

from seo_core.catalog import parse_source
from seo_core.config.load import binding_context, check_config
from seo_core.config.locate import Problems
from seo_core.config.model import ORIGIN_PREFIX, Action, Change, Config
from seo_core.guids import new_guid
from seo_core.metabase import Binding, BindingSpec, Metabase, validate_spec
from seo_core.properties import PropertyBag, PropertyValue
from seo_core.registry import SinkRegistry

_Identity = tuple[str, str, str | None]


@dataclass(frozen=True, slots=True)
class _Step:
    """One change and what carrying it out needs: the spec with its final ID."""

    change: Change
    spec: BindingSpec | None = None
    renamed: bool = False
    """An update that moves the binding to another (source, event, name)."""


def plan_config(
    config: Config, metabase: Metabase | None, *, registry: SinkRegistry | None = None
) -> list[Change]:
    """What applying ``config`` would do to ``metabase`` (``None``: a metabase not created yet).

    With ``registry`` the sinks are checked first and their path properties made absolute, as
    :func:`apply_config` does; without it, a relative path property shows as an update.
    Raises :class:`~seo_core.errors.ConfigFileError` when a binding of the file collides with
    one it does not manage: the same (source, event, name), or the same ``id``.
    """
    if registry is not None:
        config = check_config(config, registry)
    if metabase is None:
        return [step.change for step in _plan(config, [], set())]
    return [step.change for step in _plan(config, metabase.bindings(), _source_names(metabase))]


def apply_config(
    config: Config, metabase: Metabase, registry: SinkRegistry, *, dry_run: bool = False
) -> list[Change]:
    """Check every binding's sink, then make ``metabase`` match ``config`` in one transaction.

    Path properties of sinks are made absolute first (see :func:`check_config`).
    Returns the plan; with ``dry_run`` nothing is written. When nothing differs nothing is
    written either, not even an empty transaction's bookkeeping.
    """
    config = check_config(config, registry)
    planned = _plan(config, metabase.bindings(), _source_names(metabase))
    if dry_run or all(step.change.action == "unchanged" for step in planned):
        return [step.change for step in planned]
    with metabase.transaction():
        # Planned again under the write lock: another process may have changed the metabase
        # since the first look, and the plan carried out must be the one that is true now.
        steps = _plan(config, metabase.bindings(), _source_names(metabase))
        _carry_out(metabase, steps)
    changes = [step.change for step in steps]
    counts = {action: sum(c.action == action for c in changes) for action in _ACTIONS}
    structlog.get_logger().info("config_applied", config=str(config.path), **counts)
    return changes


_ACTIONS: tuple[Action, ...] = ("create", "update", "remove", "unchanged")


def _source_names(metabase: Metabase) -> set[str]:
    return {source.name for source in metabase.sources()}


def _carry_out(metabase: Metabase, steps: list[_Step]) -> None:
    """Removes first, then renames through a placeholder name, so that two bindings may swap
    names (the metabase refuses a duplicate name at each single write)."""
    for step in steps:
        if step.change.action == "remove":
            metabase.remove_binding(step.change.id)
    for step in steps:
        if step.change.action == "create" and step.change.event is None:
            metabase.ensure_source(step.change.source)
    for step in steps:
        if step.renamed and step.spec is not None:
            placeholder = f"(seo config apply: renaming {step.change.id})"
            metabase.replace_binding(step.change.id, replace(step.spec, display_name=placeholder))
    for step in steps:
        if step.spec is None or step.change.event is None:
            continue
        if step.change.action == "update":
            metabase.replace_binding(step.change.id, step.spec)
        elif step.change.action == "create":
            metabase.add_binding(step.spec)


def _plan(config: Config, existing: list[Binding], sources: set[str]) -> list[_Step]:
    managed = {b.id: b for b in existing if b.origin == config.origin}
    others = {b.id: b for b in existing if b.origin != config.origin}
    targets = _match(config, managed, others)
    steps = _new_sources(config, sources)
    for spec, target in zip(config.bindings, targets, strict=True):
        want = validate_spec(replace(spec, id=target or new_guid()))
        old = managed.get(want.id)
        if old is None:
            steps.append(_Step(_change("create", want), replace(spec, id=want.id)))
            continue
        details = _diff(old, want)
        steps.append(
            _Step(
                _change("update" if details else "unchanged", want, details),
                replace(spec, id=want.id),
                renamed=_identity(old) != _identity(want),
            )
        )
    kept = set(targets)
    gone = sorted(
        (b for b in managed.values() if b.id not in kept),
        key=lambda b: (b.source, b.event, b.display_name or "", b.id),
    )
    steps += [_Step(_change("remove", b)) for b in gone]
    return steps


def _match(
    config: Config, managed: Mapping[str, Binding], others: Mapping[str, Binding]
) -> list[str | None]:
    """The existing binding each file binding becomes (``None``: a new one); refuse collisions.

    Explicit ``id`` keys are matched first, so a binding that was given an ``id`` never loses
    its row to a binding recognised only by its name.
    """
    problems = Problems(config.path)
    targets: list[str | None] = [None] * len(config.bindings)
    for index, spec in enumerate(config.bindings):
        if spec.id is None:
            continue
        if spec.id in others:
            _collide(problems, config, index, "id", others[spec.id])
        else:
            targets[index] = spec.id
    claimed = {t for t in targets if t is not None}
    by_identity = {_identity(b): b for b in managed.values() if b.display_name is not None}
    other_identities = {_identity(b): b for b in others.values() if b.display_name is not None}
    for index, spec in enumerate(config.bindings):
        identity = _identity(spec)
        other = other_identities.get(identity)
        if other is not None and other.id != spec.id:
            _collide(problems, config, index, "name", other)
        if spec.id is None and spec.display_name is not None:
            mine = by_identity.get(identity)
            if mine is not None and mine.id not in claimed:
                targets[index] = mine.id
                claimed.add(mine.id)
    problems.check()
    return targets


def _collide(problems: Problems, config: Config, index: int, key: str, other: Binding) -> None:
    spec = config.bindings[index]
    if other.origin is None:
        owner = "it was made by hand with `seo bindings`"
    elif other.origin.startswith(ORIGIN_PREFIX):
        owner = f"it is managed by the config file {other.origin.removeprefix(ORIGIN_PREFIX)}"
    else:
        owner = f"its origin is {other.origin}"
    what = "id" if key == "id" else "source, event and name"
    problems.add(
        config.locator.binding(index, key),
        binding_context(spec, index),
        f"{key}: has the same {what} as binding {other.id} ({other.source} {other.event} "
        f"{json.dumps(other.display_name, ensure_ascii=False)} -> {other.sink_class}), which "
        f"this file does not manage: {owner}; remove or rename one of them",
    )


def _identity(binding: Binding | BindingSpec) -> _Identity:
    return (binding.source, binding.event, binding.display_name)


def _new_sources(config: Config, known: set[str]) -> list[_Step]:
    """Sources that come into being: those of ``[sources]`` and those bindings name."""
    wanted = sorted(
        {*config.sources, *(spec.source for spec in config.bindings)} - known,
        key=parse_source,
    )
    steps = []
    for name in wanted:
        parsed = parse_source(name)
        guid = parsed.source_type.source_guid(parsed.instance)
        steps.append(_Step(Change("create", name, None, None, guid)))
    return steps


def _change(action: Action, binding: Binding, details: Iterable[str] = ()) -> Change:
    return Change(
        action=action,
        source=binding.source,
        event=binding.event,
        binding_name=binding.display_name,
        id=binding.id,
        sink=binding.sink_class,
        details=tuple(details),
    )


def _diff(old: Binding, new: Binding) -> list[str]:
    """The config keys whose values differ, compared exactly (``1``, ``1.0`` and ``true`` are
    three values, and so are two spellings of one property name)."""
    pairs = [
        ("source", old.source, new.source),
        ("event", old.event, new.event),
        ("name", old.display_name, new.display_name),
        ("sink", old.sink_class, new.sink_class),
        ("enabled", old.enabled, new.enabled),
        ("max_firings", old.max_firings, new.max_firings),
        ("expires", old.expiration, new.expiration),
    ]
    changed = [key for key, a, b in pairs if a != b or type(a) is not type(b)]
    old_source = _split_source(old.source_properties)
    new_source = _split_source(new.source_properties)
    for key in ("rule", "priority"):
        if _canon(old_source[key]) != _canon(new_source[key]):
            changed.append(key)
    for key, a, b in (
        ("sink_properties", old.sink_properties, new.sink_properties),
        ("source_properties", old_source["rest"], new_source["rest"]),
        ("binding_properties", old.binding_properties, new.binding_properties),
    ):
        if _canon(a) != _canon(b):
            changed.append(key)
    return changed


def _split_source(bag: PropertyBag) -> dict[str, PropertyBag]:
    """SourceProperties as the file writes them: ``rule``, ``priority`` and the rest."""
    parts: dict[str, dict[str, PropertyValue]] = {"rule": {}, "priority": {}, "rest": {}}
    for name, value in bag.items():
        folded = name.casefold()
        parts[folded if folded in ("rule", "priority") else "rest"][name] = value
    return {key: PropertyBag(items) for key, items in parts.items()}


def _canon(bag: PropertyBag) -> str:
    return json.dumps(sorted(bag.items()), sort_keys=True, ensure_ascii=False)
