"""Property bags: string-keyed, case-insensitive, keeping the case they were written with.

The original wrote ``priority`` in one sample and ``Priority`` in another and meant the same
property, so lookups fold case; listings still show the name as the administrator wrote it.
Values are what TOML and JSON can both represent: strings, integers, floats, booleans, lists and
tables of those.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Iterator, Mapping
from typing import TypeAlias, TypeGuard

from seo_core.errors import ValidationError

PropertyValue: TypeAlias = (
    str | int | float | bool | list["PropertyValue"] | dict[str, "PropertyValue"]
)

BAGS = ("binding", "sink", "source")
"""The three bags of a binding, as the CLI names them."""

ENV_KEY = "env"
"""The one key of an environment reference: ``{ env = "NAME" }``."""

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def is_env_ref(value: object) -> TypeGuard[dict[str, PropertyValue]]:
    """True for a table whose only key is ``env``: a secret kept in the environment.

    Such a value is stored as written (the reference, never the secret) and replaced by the
    variable's value only when the sink is called.
    """
    return isinstance(value, dict) and len(value) == 1 and ENV_KEY in value


def check_env_ref(field: str, value: dict[str, PropertyValue]) -> str:
    """The variable name of an environment reference, or :class:`ValidationError`."""
    name = value[ENV_KEY]
    if not isinstance(name, str) or not _ENV_NAME.match(name):
        raise ValidationError(
            field,
            value,
            'an environment reference is { env = "NAME" }, NAME made of letters, digits and _, '
            "not starting with a digit",
        )
    return name


class PropertyBag(Mapping[str, PropertyValue]):
    """An immutable mapping whose keys match case-insensitively and keep their written case.

    Sinks receive their SinkProperties as one of these: ``props["TAG"]`` and ``props["tag"]``
    find the same value, and iterating yields the names as written.
    """

    __slots__ = ("_has_env_refs", "_items")

    def __init__(self, items: Mapping[str, PropertyValue] | None = None) -> None:
        folded: dict[str, tuple[str, PropertyValue]] = {}
        for name, value in (items or {}).items():
            folded[name.casefold()] = (name, value)
        self._items = folded
        self._has_env_refs: bool | None = None

    @property
    def has_env_refs(self) -> bool:
        """True when a value is ``{ env = "NAME" }``; worked out once, then remembered.

        The dispatcher asks on every notification, and almost every bag has no reference, so
        the answer must cost an attribute read, not a walk over the values.
        """
        if self._has_env_refs is None:
            self._has_env_refs = any(is_env_ref(value) for _, value in self._items.values())
        return self._has_env_refs

    def __getitem__(self, name: str) -> PropertyValue:
        try:
            return self._items[name.casefold()][1]
        except KeyError:
            # The folded key would name 'tag' where the sink wrote 'Tag'.
            raise KeyError(name) from None

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.casefold() in self._items

    def get(self, name: str, default: PropertyValue | None = None) -> PropertyValue | None:  # type: ignore[override]
        item = self._items.get(name.casefold())
        return default if item is None else item[1]

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"PropertyBag({self.to_dict()!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PropertyBag):
            return self._items == other._items
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(sorted(self._items)))

    def to_dict(self) -> dict[str, PropertyValue]:
        """A plain dict with the names as written (for JSON and TOML output)."""
        return dict(self._items.values())

    def with_value(self, name: str, value: PropertyValue) -> PropertyBag:
        """A copy with ``name`` added or overwritten (the new spelling of the name wins)."""
        items = self.to_dict()
        for existing in list(items):
            if existing.casefold() == name.casefold():
                del items[existing]
        items[name] = value
        return PropertyBag(items)

    def without(self, name: str) -> PropertyBag:
        """A copy without ``name`` (matched case-insensitively)."""
        return PropertyBag(
            {k: v for k, v in self.to_dict().items() if k.casefold() != name.casefold()}
        )


def check_value(field: str, value: object) -> PropertyValue:
    """Return ``value`` if TOML and JSON can both hold it, else raise :class:`ValidationError`.

    ``field`` names where the value came from (``SinkProperties.tag``), for the message.
    """
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValidationError(field, value, "NaN and infinities cannot be stored")
        return value
    if isinstance(value, list):
        return [check_value(f"{field}[{i}]", item) for i, item in enumerate(value)]
    if isinstance(value, dict):
        table: dict[str, PropertyValue] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValidationError(field, value, "table keys must be strings")
            table[key] = check_value(f"{field}.{key}", item)
        return table
    raise ValidationError(
        field,
        value,
        f"{type(value).__name__} values cannot be stored; use a string, number, "
        "boolean, list or table",
    )


def check_name(field: str, name: str) -> str:
    """Property names are non-empty strings without surrounding white space."""
    if not name or name != name.strip():
        raise ValidationError(
            field, name, "property names must be non-empty, without spaces around"
        )
    return name


def parse_cli_value(text: str) -> PropertyValue:
    """Read a value typed on the command line.

    Text that is a TOML literal becomes that value (``10`` an integer, ``true`` a boolean,
    ``["a", "b"]`` a list, ``"quoted"`` a string); anything else, such as ``var/mail`` or
    ``yes``, stays a plain string. Dates are kept as the text typed.
    """
    try:
        parsed = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text
    try:
        return check_value("value", parsed)
    except ValidationError:
        return text


def parse_assignment(option: str, text: str) -> tuple[str, PropertyValue]:
    """Split ``KEY=VALUE`` from an option such as ``--sink-prop``."""
    key, sep, value = text.partition("=")
    if not sep:
        raise ValidationError(option, text, "expected KEY=VALUE")
    key = key.strip()
    if not key:
        raise ValidationError(option, text, "the key before '=' is empty")
    return key, parse_cli_value(value)
