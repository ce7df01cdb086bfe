"""The ``Priority`` source property: an integer from 0 (runs first) to 32767 (runs last)."""

from __future__ import annotations

from seo_core.errors import ValidationError

PRIO_HIGHEST = 0
PRIO_HIGH = 8191
PRIO_MEDIUM = 16383
PRIO_LOW = 24575
PRIO_LOWEST = 32767
PRIO_DEFAULT = PRIO_LOW

PRIORITY_NAMES: dict[str, int] = {
    "PRIO_HIGHEST": PRIO_HIGHEST,
    "PRIO_HIGH": PRIO_HIGH,
    "PRIO_MEDIUM": PRIO_MEDIUM,
    "PRIO_LOW": PRIO_LOW,
    "PRIO_LOWEST": PRIO_LOWEST,
    "PRIO_DEFAULT": PRIO_DEFAULT,
    "PRIO_MIN": PRIO_HIGHEST,
    "PRIO_MAX": PRIO_LOWEST,
}


def parse_priority(value: object) -> int:
    """Turn an integer, a numeric string or a ``PRIO_*`` name into a priority.

    Names are case-insensitive and may drop the ``PRIO_`` prefix (``high``). Anything else,
    including ``True``/``False`` and numbers outside 0..32767, is refused.
    """
    if isinstance(value, bool):
        raise ValidationError("Priority", value, "must be an integer 0..32767 or a PRIO_* name")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str):
        text = value.strip()
        name = text.upper()
        if not name.startswith("PRIO_"):
            name = "PRIO_" + name
        if name in PRIORITY_NAMES:
            return PRIORITY_NAMES[name]
        try:
            number = int(text, 10)
        except ValueError:
            known = ", ".join(sorted(PRIORITY_NAMES))
            raise ValidationError(
                "Priority", value, f"not a number 0..32767 nor one of {known}"
            ) from None
    else:
        raise ValidationError("Priority", value, "must be an integer 0..32767 or a PRIO_* name")
    if not PRIO_HIGHEST <= number <= PRIO_LOWEST:
        raise ValidationError("Priority", value, "out of range 0..32767 (0 runs first)")
    return number
