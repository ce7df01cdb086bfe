"""Checking one loaded sink against the hook specifications and the sink API.

Everything a sink declares is checked here, once, when it is discovered, so that a mistake (a
misspelt hook, an argument no hookspec passes, a malformed ``clsid``) shows up in
``seo sinks list`` instead of as a sink that silently never fires.
"""

from __future__ import annotations

import difflib
import inspect
from dataclasses import dataclass

from pluggy import HookCaller, PluginValidationError

from seo_core.catalog import event_for_hook, hook_names
from seo_core.events.schema import Schema
from seo_core.guids import parse_guid
from seo_core.registry.manager import make_plugin_manager


@dataclass(frozen=True, slots=True)
class Inspection:
    """What a valid sink declares."""

    hooks: tuple[str, ...]
    events: tuple[str, ...]
    clsid: str | None
    cacheable: bool


def inspect_sink(target: object, name: str) -> Inspection:
    """Validate ``target`` (a module or class) as the sink ``name``; raise on the first problem.

    The target is registered into a fresh plugin manager, so pluggy itself checks each hook's
    arguments; the rest are the rules of the sink API that pluggy does not know.
    """
    clsid = declared_clsid(target)
    cacheable = getattr(target, "cacheable", True)
    if not isinstance(cacheable, bool):
        raise TypeError(f"cacheable must be True or False, not {cacheable!r}")
    _check_property_declarations(target)

    manager = make_plugin_manager()
    manager.register(target, name=name)
    callers = manager.get_hookcallers(target) or []
    unknown = sorted(caller.name for caller in callers if event_for_hook(caller.name) is None)
    if unknown:
        raise PluginValidationError(target, "; ".join(_unknown_hook(hook) for hook in unknown))
    # pluggy's own rule, kept as a backstop should the catalogue and the hookspecs drift apart.
    manager.check_pending()
    for caller in callers:
        _refuse_unsupported_options(target, caller)
    if not callers:
        raise PluginValidationError(
            target,
            "implements no seo hook (mark a function such as smtp_on_arrival with "
            "seo_core.sdk.hookimpl)",
        )
    hooks = tuple(sorted(caller.name for caller in callers))
    events = sorted({found[1].name for hook in hooks if (found := event_for_hook(hook))})
    return Inspection(hooks=hooks, events=tuple(events), clsid=clsid, cacheable=cacheable)


def declared_clsid(target: object) -> str | None:
    """The sink's ``clsid`` in registry form, or ``None`` when it declares none."""
    raw = getattr(target, "clsid", None)
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise TypeError(f"clsid must be a GUID string, not {raw!r}")
    return parse_guid(raw, field="clsid")


def _check_property_declarations(target: object) -> None:
    """Refuse declarations that would only fail later, when a binding is written."""
    schema = getattr(target, "properties_schema", None)
    if schema is not None and not isinstance(schema, Schema):
        raise TypeError(f"properties_schema must be a seo_core.sdk.Schema, not {schema!r}")
    validator = getattr(target, "validate_properties", None)
    if validator is None:
        return
    if not callable(validator):
        raise TypeError(f"validate_properties must be callable, not {validator!r}")
    if inspect.isclass(target) and inspect.isfunction(
        inspect.getattr_static(target, "validate_properties")
    ):
        # seo validates properties before any instance exists, so it calls this on the class.
        raise TypeError(
            "validate_properties of a class sink must be a staticmethod or classmethod: "
            "seo calls it without an instance"
        )


def _refuse_unsupported_options(target: object, caller: HookCaller) -> None:
    for impl in caller.get_hookimpls():
        if impl.plugin is not target:
            continue
        if impl.hookwrapper or impl.wrapper:
            # The dispatcher calls one binding at a time, with its own timeout and isolation; a
            # wrapper around that call would see, and could break, other bindings' sinks.
            raise PluginValidationError(
                target,
                f"{caller.name}: sinks cannot wrap the dispatcher's calls "
                "(hookwrapper=True and wrapper=True are refused)",
            )
        if impl.opts.get("specname"):
            # The dispatcher finds a sink's hook by attribute name; specname would hide it.
            raise PluginValidationError(
                target,
                f"{caller.name}: specname= is not supported; name the function {caller.name}",
            )


def _unknown_hook(hook: str) -> str:
    close = difflib.get_close_matches(hook, list(hook_names()), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown hook {hook!r}{hint}"
