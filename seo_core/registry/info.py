"""What discovery knows about one advertised sink, whether it loaded or not."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class SinkStatus(enum.Enum):
    """Whether a sink can be bound and fired."""

    OK = "ok"
    """Loaded and validated against the hook specifications."""
    FAILED = "failed"
    """Could not be used: import error, missing attribute, bad hook name or argument, a wrapper
    implementation, no hook at all, or a malformed declaration (``clsid``, ``cacheable``)."""
    SHADOWED = "shadowed"
    """A second copy of a distribution found later on ``sys.path``; ``import`` would never load
    it, so it is listed but never used."""


@dataclass(frozen=True, slots=True)
class SinkInfo:
    """One entry point of the ``seo.sinks`` group and what discovery made of it.

    Failed and shadowed sinks are kept (never dropped) so that ``seo sinks list`` can show why a
    binding to them is unavailable.
    """

    name: str
    """The entry-point name: what a binding's SinkClass names (the ProgID)."""
    distribution: str
    """The distribution's name as published (``seo-sink-tagger``)."""
    version: str
    location: str
    """Where this copy lives: the distribution's metadata folder, or the module file of a
    ready-made sink; it tells two copies of one distribution apart."""
    value: str
    """The entry point's value, ``package.module:Class``."""
    hooks: tuple[str, ...] = ()
    """Hook names the sink implements, sorted."""
    events: tuple[str, ...] = ()
    """Canonical event names those hooks handle (``OnArrival``), sorted, without repeats."""
    clsid: str | None = None
    """The declared class id in registry form, if any."""
    cacheable: bool = True
    """False when a class sink wants a fresh instance for every notification."""
    status: SinkStatus = SinkStatus.OK
    error: str | None = None
    """For a failed sink, one line: the exception type and its message."""
    target: object | None = field(default=None, compare=False, repr=False)
    """The loaded module or class, whose hooks the dispatcher calls; ``None`` when the import
    failed or the copy is shadowed (a sink that imported but failed validation keeps it)."""
    conflicts: tuple[str, ...] = ()
    """Other distributions advertising the same name; the bare name is then ambiguous."""

    @property
    def qualified_name(self) -> str:
        """``distribution:name``: the form that stays unambiguous when names clash."""
        return f"{self.distribution}:{self.name}"
