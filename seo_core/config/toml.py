"""A small TOML writer: exactly the values a binding can hold, nothing more.

The standard library reads TOML (``tomllib``) but does not write it, and seo takes no
dependency for the few shapes an exported config file needs: strings, integers, floats,
booleans, offset date-times, arrays and inline tables. Everything written here reads back
through ``tomllib`` as the same value (tested), which is what makes export and apply a round trip.
"""

from __future__ import annotations

import math
import re
from datetime import datetime

from seo_core.properties import PropertyValue

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}


def key(name: str) -> str:
    """A key: bare when TOML allows it (``File``), else quoted (``"X-Seo-Tagged"``)."""
    return name if _BARE_KEY.match(name) else string(name)


def string(text: str) -> str:
    """A basic string; control characters are escaped, everything else is written as is."""
    out = []
    for char in text:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def value(item: PropertyValue | datetime) -> str:
    """Any value a binding holds, on one line (tables as inline tables)."""
    if isinstance(item, bool):
        return "true" if item else "false"
    if isinstance(item, int):
        return str(item)
    if isinstance(item, float):
        if not math.isfinite(item):
            raise ValueError(f"TOML has no {item!r} that seo would store")
        return repr(item)
    if isinstance(item, str):
        return string(item)
    if isinstance(item, datetime):
        if item.tzinfo is None:
            raise ValueError("an instant must carry its time zone")
        return item.isoformat()
    if isinstance(item, list):
        return "[" + ", ".join(value(element) for element in item) + "]"
    if not item:
        return "{}"
    return "{ " + ", ".join(f"{key(k)} = {value(v)}" for k, v in item.items()) + " }"
