"""GUIDs in the forms administrators type and the one form seo shows.

Binding IDs, source IDs and sink CLSIDs are GUIDs. They are accepted with or without braces and in
any case, and always shown in registry form, ``{xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx}`` in lower
case, so that the text form sorts in the same order as the 128-bit value (the tie-break order of
bindings with equal priority).
"""

from __future__ import annotations

import re
import uuid

from seo_core.errors import ValidationError

_GUID = re.compile(
    r"^\{?([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})\}?$"
)


def parse_guid(text: str, *, field: str = "ID") -> str:
    """Return ``text`` as a registry-form GUID, or raise :class:`ValidationError`.

    Braces must be balanced: ``{abc...}`` and ``abc...`` are fine, ``{abc...`` is not.
    """
    stripped = text.strip()
    match = _GUID.match(stripped)
    if match is None or stripped.startswith("{") != stripped.endswith("}"):
        raise ValidationError(
            field, text, "not a GUID; expected {xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx}"
        )
    return "{" + match.group(1).lower() + "}"


def looks_like_guid(text: str) -> bool:
    """True when ``text`` is meant as a GUID: it starts with ``{`` or parses as one."""
    if text.startswith("{"):
        return True
    return _GUID.match(text.strip()) is not None


def new_guid() -> str:
    """A fresh random GUID in registry form."""
    return "{" + str(uuid.uuid4()) + "}"


def indexed_guid(base: str, index: int) -> str:
    """The GUID of instance ``index`` of a source type whose base GUID is ``base``.

    The original's ``GetIndexedGUID`` algorithm is undocumented; all that matters is that the
    mapping is stable and deterministic, which a name-based UUID (version 5) gives.
    """
    namespace = uuid.UUID(parse_guid(base))
    return "{" + str(uuid.uuid5(namespace, str(index))) + "}"
