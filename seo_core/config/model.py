"""The records a config file turns into: the whole file, one source's settings, one change.

A config file manages the bindings it declares and nothing else. It marks them with the origin
``config:<absolute path of the file>``, so that a later apply of the same file knows which
bindings are its own to update or remove, and leaves bindings made by hand, or by another file,
alone.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from seo_core.config.locate import Locator
from seo_core.metabase import BindingSpec

ORIGIN_PREFIX = "config:"

Action = Literal["create", "update", "remove", "unchanged"]


def origin_for(path: Path) -> str:
    """The origin a file marks its bindings with: ``config:`` and the file's absolute path."""
    return ORIGIN_PREFIX + str(path)


@dataclass(frozen=True, slots=True)
class SourceSettings:
    """One ``[sources."TYPE/N"]`` table: typed, defaulted, validated.

    ``settings`` maps every key the source type knows to its value: defaults filled in,
    relative paths made absolute against the config file's folder (see ``docs/config.md``).
    """

    name: str
    """The canonical source name, ``smtp/1``."""
    type: str
    """The source type, ``smtp`` or ``nntp``."""
    settings: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Config:
    """A config file, parsed and validated (its sinks are checked later, against a registry).

    Each binding spec carries the origin ``config:<path>``; ``id`` is ``None`` when the file
    gives none, and the binding then keeps the GUID its first apply gave it.
    """

    path: Path
    """The file, absolute."""
    metabase: Path | None
    """The ``metabase`` key, made absolute; ``None`` when the file does not say."""
    sources: dict[str, SourceSettings]
    bindings: list[BindingSpec]
    locator: Locator = field(default_factory=Locator, compare=False, repr=False)
    """Finds the line of a binding or key in the file's text, for error messages."""

    @property
    def origin(self) -> str:
        """The origin of the bindings this file manages."""
        return origin_for(self.path)


@dataclass(frozen=True, slots=True)
class Change:
    """One line of a plan: what ``apply`` does (or did) to one source or binding.

    A source change has ``event`` ``None``; only new sources are listed, because a source is
    never changed or removed by a config file. ``details`` names the keys an update changes.
    """

    action: Action
    source: str
    event: str | None
    binding_name: str | None
    id: str
    sink: str | None = None
    details: tuple[str, ...] = ()

    def __str__(self) -> str:
        if self.event is None:
            return f"{self.action:<9}  source {self.source} {self.id}"
        name = f" {json.dumps(self.binding_name, ensure_ascii=False)}" if self.binding_name else ""
        text = f"{self.action:<9}  {self.source} {self.event}{name} -> {self.sink}"
        if self.binding_name is None:
            text += f" {self.id}"
        if self.details:
            text += f" ({', '.join(self.details)})"
        return text
