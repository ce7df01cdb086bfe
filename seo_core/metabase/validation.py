"""Checks a binding must pass before it is written.

Everything here is pure: it takes what an administrator typed and returns the normalized form the
metabase stores, or raises a :class:`~seo_core.errors.ValidationError` that names the field and
the value at fault. Nothing reaches the database unless all of it passes.
"""

from __future__ import annotations

import difflib
import unicodedata
from collections.abc import Mapping
from datetime import UTC, datetime

from seo_core.catalog import EventType, SourceName, parse_source
from seo_core.errors import ValidationError
from seo_core.guids import parse_guid
from seo_core.priority import parse_priority
from seo_core.properties import (
    PropertyBag,
    PropertyValue,
    check_env_ref,
    check_name,
    check_value,
    is_env_ref,
)
from seo_core.rules import parse_rule

SOURCE_PROPERTIES = ("Rule", "Priority")
"""The SourceProperties the SMTP and NNTP sources read; any other name is a typo and refused."""

BINDING_PROPERTIES = ("Timeout",)
"""The EventBindingProperties seo reads. Others are free-form, but a close misspelling of one of
these is refused: ``Timeot = 5`` would otherwise leave the default timeout, silently."""

MAX_FIRINGS_LIMIT = 2**63 - 1
"""The largest MaxFirings: SQLite's largest integer, the most the metabase can store. A budget
that large never runs out, but a larger number must be refused here, not by SQLite mid-write."""

EARLIEST_EXPIRATION = datetime.min.replace(tzinfo=UTC)
LATEST_EXPIRATION = datetime.max.replace(microsecond=0, tzinfo=UTC)
EXPIRATION_RANGE = (
    f"out of range {EARLIEST_EXPIRATION.isoformat().replace('+00:00', 'Z')}.."
    f"{LATEST_EXPIRATION.isoformat().replace('+00:00', 'Z')} (in UTC, as it is stored)"
)
"""Why an Expiration is refused that has no UTC form: the metabase stores instants in UTC, and
``9999-12-31T23:59:59-05:00`` is in the year 10000 there, which no ``datetime`` can hold."""

BAG_FIELDS = {
    "binding": "EventBindingProperties",
    "sink": "SinkProperties",
    "source": "SourceProperties",
}


def resolve_event(source: str, event: str) -> tuple[SourceName, EventType]:
    """Parse a source name and look its event up (aliases and any case accepted)."""
    name = parse_source(source)
    return name, name.source_type.event(event)


def check_display_name(name: str | None) -> str | None:
    """DisplayName is optional; when given it is non-empty, does not start with ``{`` and holds
    no control character.

    A leading brace is reserved so that an argument starting with ``{`` always means a GUID.
    A control character (C0, DEL, C1) or a line or paragraph separator would break the one line
    per binding of ``seo bindings list`` and of every message that names the binding, and
    cannot be typed back to name it.
    """
    if name is None:
        return None
    if not name.strip():
        raise ValidationError("DisplayName", name, "must not be empty (omit it instead)")
    if name.startswith("{"):
        raise ValidationError("DisplayName", name, "must not start with '{' (reserved for GUIDs)")
    for position, char in enumerate(name, 1):
        kind = _LINE_BREAKERS.get(unicodedata.category(char))
        if kind is not None:
            # The message shows the name escaped: printed as is, the character would break the
            # one-line error too. The error still carries the name as it was given.
            error = ValidationError(
                "DisplayName",
                None,
                f"{escaped(name)} holds {kind}, {escaped(char)[1:-1]} (U+{ord(char):04X}), at "
                f"character {position}; a DisplayName must print on one line",
            )
            error.value = name
            raise error
    return name


def escaped(text: str) -> str:
    """``text`` as a double-quoted string with every control character as an escape (``\\n``,
    ``\\u0085``), so that a message quoting it stays on one line whatever it holds."""
    out = []
    for char in text:
        if char in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[char])
        elif unicodedata.category(char) in _LINE_BREAKERS:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


_LINE_BREAKERS = {
    "Cc": "a control character",
    "Zl": "a line separator",
    "Zp": "a paragraph separator",
}
"""The Unicode categories a DisplayName may not hold: C0, DEL and C1 (``Cc``), U+2028, U+2029."""
_SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}


def check_sink_class(sink_class: str) -> str:
    """SinkClass is an entry-point name, ``distribution:name``, or a ``{CLSID}``."""
    text = sink_class.strip()
    if not text:
        raise ValidationError("SinkClass", sink_class, "must name a sink")
    if text.startswith("{"):
        return parse_guid(text, field="SinkClass")
    if any(ch.isspace() for ch in text):
        raise ValidationError("SinkClass", sink_class, "sink names contain no white space")
    return text


def check_max_firings(value: object) -> int:
    """MaxFirings: 0 (unlimited) or a positive number of notifications, up to
    :data:`MAX_FIRINGS_LIMIT`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValidationError("MaxFirings", value, "must be a whole number >= 0 (0 = unlimited)")
    if value > MAX_FIRINGS_LIMIT:
        raise ValidationError(
            "MaxFirings", value, f"out of range 0..{MAX_FIRINGS_LIMIT} (0 = unlimited)"
        )
    return value


def check_expiration(value: datetime | None) -> datetime | None:
    """Expiration is an instant, so it must carry its time zone, and it is stored in UTC, so it
    must have a UTC form (see :data:`EXPIRATION_RANGE`)."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValidationError("Expiration", value.isoformat(), "needs a time zone")
    try:
        value.astimezone(UTC)
    except OverflowError:
        raise ValidationError("Expiration", value, EXPIRATION_RANGE) from None
    return value


def check_bag(bag: str, items: Mapping[str, PropertyValue], event: EventType) -> PropertyBag:
    """Validate one property bag; source and binding properties that seo reads are checked.

    ``Priority`` names are stored as their number, so listings and ordering agree.
    """
    field = BAG_FIELDS[bag]
    checked: dict[str, PropertyValue] = {}
    seen: dict[str, str] = {}
    for name, value in items.items():
        check_name(f"{field} name", name)
        folded = name.casefold()
        if folded in seen:
            raise ValidationError(
                f"{field}.{name}", value, f"given twice (as {seen[folded]!r} and {name!r})"
            )
        seen[folded] = name
        checked[name] = check_value(f"{field}.{name}", value)
        if is_env_ref(value):
            check_env_ref(f"{field}.{name}", value)
    if bag == "source":
        return PropertyBag(_check_source_properties(checked, event))
    if bag == "binding":
        _check_binding_properties(checked)
    return PropertyBag(checked)


def _check_source_properties(
    items: dict[str, PropertyValue], event: EventType
) -> dict[str, PropertyValue]:
    result = dict(items)
    for name, value in items.items():
        folded = name.casefold()
        if folded not in {known.casefold() for known in SOURCE_PROPERTIES}:
            raise ValidationError(
                f"SourceProperties.{name}",
                value,
                f"unknown property{_hint(name, SOURCE_PROPERTIES)}; "
                f"sources read only: {', '.join(SOURCE_PROPERTIES)}",
            )
        if folded == "priority":
            result[name] = parse_priority(value)
        elif folded == "rule":
            if not isinstance(value, str):
                raise ValidationError("Rule", value, "must be a string")
            parse_rule(value, event.rule_kind)
            result[name] = value.strip()
    return result


def _check_binding_properties(items: dict[str, PropertyValue]) -> None:
    known = {name.casefold() for name in BINDING_PROPERTIES}
    for name, value in items.items():
        hint = _hint(name, BINDING_PROPERTIES, cutoff=0.8)
        if name.casefold() not in known and hint:
            raise ValidationError(
                f"EventBindingProperties.{name}",
                value,
                f"unknown property{hint}; seo reads {', '.join(BINDING_PROPERTIES)}, "
                "other names are free-form",
            )
        if name.casefold() == "timeout" and (
            isinstance(value, bool) or not isinstance(value, int | float) or value <= 0
        ):
            raise ValidationError(
                "EventBindingProperties.Timeout", value, "must be a number of seconds > 0"
            )


def _hint(name: str, known: tuple[str, ...], *, cutoff: float = 0.6) -> str:
    """`` (did you mean 'Priority'?)`` when ``name`` is close to one of ``known``."""
    folded = {k.casefold(): k for k in known}
    close = difflib.get_close_matches(name.casefold(), list(folded), n=1, cutoff=cutoff)
    return f" (did you mean {folded[close[0]]!r}?)" if close else ""
