"""Declared SinkProperties: how a sink states what properties it takes.

A sink sets ``properties_schema = Schema({...})`` (and/or defines a ``validate_properties``
callable); seo checks a binding's SinkProperties against it when the binding is written, so a
typo is refused by ``seo bindings add`` instead of being found at mail time.
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Mapping
from dataclasses import dataclass

from seo_core.errors import SinkPropertyError
from seo_core.properties import PropertyBag, PropertyValue, is_env_ref

_TYPE_NAMES = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    list: "list",
    dict: "table",
}


@dataclass(frozen=True, slots=True)
class Prop:
    """One property a sink takes: its type(s), whether it is required, its default, its help.

    ``path=True`` marks a file or folder name: a relative one written in a config file is made
    absolute against the config file's folder when the file is applied, because the server
    that calls the sink may run in any folder.
    """

    type: type | tuple[type, ...] = str
    required: bool = False
    default: PropertyValue | None = None
    help: str = ""
    choices: tuple[PropertyValue, ...] | None = None
    path: bool = False

    def check(self, name: str, value: PropertyValue) -> None:
        """Refuse a value of the wrong type or outside ``choices``.

        A string property also takes an environment reference, ``{ env = "NAME" }``: its value
        is only known when the sink is called, so its type and choices cannot be checked now.
        """
        kinds = self.type if isinstance(self.type, tuple) else (self.type,)
        if str in kinds and is_env_ref(value):
            return
        if not any(_is_instance(value, kind) for kind in kinds):
            wanted = " or ".join(_TYPE_NAMES.get(k, k.__name__) for k in kinds)
            raise SinkPropertyError(
                f"SinkProperties.{name}", value, f"must be {_article(wanted)} {wanted}"
            )
        if self.choices is not None and value not in self.choices:
            listed = ", ".join(repr(c) for c in self.choices)
            raise SinkPropertyError(f"SinkProperties.{name}", value, f"must be one of {listed}")


def _is_instance(value: object, kind: type) -> bool:
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


class Schema:
    """The SinkProperties a sink accepts. Unknown names are refused unless ``allow_unknown``."""

    def __init__(self, properties: Mapping[str, Prop], *, allow_unknown: bool = False) -> None:
        self.properties = dict(properties)
        self.allow_unknown = allow_unknown
        self._folded = {name.casefold(): name for name in self.properties}

    def validate(self, values: Mapping[str, PropertyValue]) -> None:
        """Raise :class:`SinkPropertyError` naming the first property at fault.

        Unknown names come first: a required property that seems missing is most often one
        whose name was mistyped, and the typo is what to name.
        """
        given = {name.casefold(): name for name in values}
        for folded, name in given.items():
            if folded not in self._folded and not self.allow_unknown:
                close = difflib.get_close_matches(name, list(self.properties), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                known = ", ".join(self.properties) or "none"
                raise SinkPropertyError(
                    f"SinkProperties.{name}",
                    values[name],
                    f"unknown property{hint}; this sink takes: {known}",
                )
        for folded, declared in self._folded.items():
            prop = self.properties[declared]
            if folded in given:
                prop.check(given[folded], values[given[folded]])
            elif prop.required:
                raise SinkPropertyError(
                    f"SinkProperties.{declared}", None, "is required" + _help(prop)
                )

    def path_properties(self) -> tuple[str, ...]:
        """The declared names of the properties that are file or folder paths."""
        return tuple(name for name, prop in self.properties.items() if prop.path)

    def defaults(self) -> dict[str, PropertyValue]:
        """The declared defaults, by declared name; properties without one are left out."""
        return {name: p.default for name, p in self.properties.items() if p.default is not None}

    def with_defaults(self, properties: PropertyBag) -> PropertyBag:
        """``properties`` plus the default of each declared property they do not set.

        This is what a sink's hook receives: it may read ``sink_properties["Header"]`` and get
        the default when the binding leaves Header out. The binding itself keeps only what was
        set, so a changed default reaches every binding that never chose a value. Each default
        is copied, so a sink that changes a list it was given cannot change the declaration.
        Returns ``properties`` itself when nothing is missing.
        """
        missing = {
            name: copy.deepcopy(value)
            for name, value in self.defaults().items()
            if name not in properties
        }
        if not missing:
            return properties
        return PropertyBag({**properties.to_dict(), **missing})


def _help(prop: Prop) -> str:
    return f" ({prop.help})" if prop.help else ""


def _article(noun: str) -> str:
    return "an" if noun[:1] in "aeiou" else "a"
