"""The records the metabase stores: sources and bindings.

They are frozen and slotted: a dispatcher hands the same :class:`Binding` to a sink as its
read-only ``binding`` argument, and nothing a sink does to it can change what is stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from seo_core.errors import ValidationError
from seo_core.priority import PRIO_DEFAULT, parse_priority
from seo_core.properties import PropertyBag, PropertyValue

DEFAULT_TIMEOUT = 30.0
"""Seconds a sink may take for one notification unless EventBindingProperties ``Timeout`` says."""


@dataclass(frozen=True, slots=True)
class Source:
    """One running instance of a source type, such as ``smtp/1``."""

    name: str
    type: str
    instance: int
    id: str
    display_name: str


@dataclass(frozen=True, slots=True)
class Binding:
    """One binding: an event of a source tied to a sink, with its properties.

    ``id`` is the GUID in registry form. ``origin`` says who manages the binding: ``None`` for a
    binding made by hand, ``config:<path>`` for one a config file declared.
    """

    id: str
    source: str
    event: str
    sink_class: str
    display_name: str | None = None
    enabled: bool = True
    max_firings: int = 0
    fire_count: int = 0
    expiration: datetime | None = None
    binding_properties: PropertyBag = field(default_factory=PropertyBag)
    sink_properties: PropertyBag = field(default_factory=PropertyBag)
    source_properties: PropertyBag = field(default_factory=PropertyBag)
    origin: str | None = None

    @property
    def priority(self) -> int:
        """The ``Priority`` source property, or the default when absent or unreadable."""
        value = self.source_properties.get("Priority")
        if value is None:
            return PRIO_DEFAULT
        try:
            return parse_priority(value)
        except ValidationError:
            return PRIO_DEFAULT

    @property
    def rule(self) -> str:
        """The ``Rule`` source property; empty when absent (matches every event)."""
        value = self.source_properties.get("Rule")
        return value if isinstance(value, str) else ""

    @property
    def timeout(self) -> float:
        """Seconds one notification may take (EventBindingProperties ``Timeout``)."""
        value = self.binding_properties.get("Timeout")
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            return float(value)
        return DEFAULT_TIMEOUT

    @property
    def fired_out(self) -> bool:
        """True once a MaxFirings budget is used up."""
        return self.max_firings > 0 and self.fire_count >= self.max_firings

    def is_expired(self, now: datetime) -> bool:
        """True when an Expiration is set and ``now`` is past it."""
        return self.expiration is not None and now >= self.expiration

    def bag(self, name: str) -> PropertyBag:
        """One of the three bags by its CLI name: ``binding``, ``sink`` or ``source``."""
        return {
            "binding": self.binding_properties,
            "sink": self.sink_properties,
            "source": self.source_properties,
        }[name]


@dataclass(frozen=True, slots=True)
class BindingSpec:
    """What an administrator asks for when adding a binding; the metabase validates it.

    ``source_properties`` holds ``Rule`` and ``Priority`` (priority names are accepted and stored
    as their number).
    """

    source: str
    event: str
    sink_class: str
    display_name: str | None = None
    id: str | None = None
    enabled: bool = True
    max_firings: int = 0
    expiration: datetime | None = None
    binding_properties: Mapping[str, PropertyValue] = field(default_factory=dict)
    sink_properties: Mapping[str, PropertyValue] = field(default_factory=dict)
    source_properties: Mapping[str, PropertyValue] = field(default_factory=dict)
    origin: str | None = None


BindingRef = str | tuple[str, str, str]
"""A binding named by its GUID, or by ``(source, event, display name)``."""


@dataclass(frozen=True, slots=True)
class BindingStats:
    """What a binding's sink has been through: kept in the metabase, shown by ``bindings show``."""

    notifications: int = 0
    failures: int = 0
    timeouts: int = 0
    last_error: str | None = None
    last_fired: str | None = None


@dataclass(slots=True)
class StatsDelta:
    """Statistics gathered in memory by a dispatcher, written to the metabase in batches.

    ``unclaimed_firings`` counts notifications of bindings without a MaxFirings budget, whose
    fire count is not claimed one by one.
    """

    notifications: int = 0
    failures: int = 0
    timeouts: int = 0
    unclaimed_firings: int = 0
    last_error: str | None = None
    last_fired: str | None = None
