"""Secrets in property bags: ``{ env = "NAME" }`` is replaced by ``$NAME`` when a sink is called.

A password written into a config file ends up in version control and in every export; a
reference does not. The metabase stores the reference, listings and exports show it, and only
the sink, at call time, sees the value.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from seo_core.errors import EnvReferenceError
from seo_core.properties import ENV_KEY, PropertyBag, PropertyValue, is_env_ref


def resolve_env(bag: PropertyBag, environ: Mapping[str, str] | None = None) -> PropertyBag:
    """``bag`` with each ``{ env = "NAME" }`` value replaced by the variable's value.

    Returns ``bag`` itself when it holds no reference, which costs one cached attribute read,
    so the dispatcher may call this on every notification. Raises :class:`EnvReferenceError`
    naming the variable when it is not set. Only top-level values are references: a table
    nested deeper is the sink's own data, even if its one key happens to be ``env``.
    """
    if not bag.has_env_refs:
        return bag
    source = os.environ if environ is None else environ
    resolved: dict[str, PropertyValue] = {}
    for name, value in bag.items():
        if is_env_ref(value):
            variable = str(value[ENV_KEY])
            if variable not in source:
                raise EnvReferenceError(variable, name)
            resolved[name] = source[variable]
        else:
            resolved[name] = value
    return PropertyBag(resolved)
