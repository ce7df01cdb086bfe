"""Reading installed distributions' metadata for advertised sinks, in ``sys.path`` order.

This module only reads metadata; it imports nothing. It decides which copy of a distribution
counts when several are installed: the first on the path, because that is the one ``import``
loads. Later copies are reported as shadowed rather than silently merged or dropped.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import structlog


@dataclass(frozen=True, slots=True)
class Advert:
    """One entry point of the sink group, from one copy of one distribution."""

    entry_point: importlib.metadata.EntryPoint
    distribution: str
    version: str
    location: str
    shadowed_by: str | None = None
    """For a shadowed copy: the location of the copy that is used instead."""


def normalize(name: str) -> str:
    """A distribution name in its comparable form: ``Seo_Sink.Tagger`` -> ``seo-sink-tagger``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def scan(group: str, path: Sequence[str] | None = None) -> tuple[list[Advert], list[str]]:
    """Every entry point of ``group`` on ``path`` (default ``sys.path``), plus warnings.

    Each path entry is read once, in order; within one entry, copies are taken in name order so
    the result never depends on the file system's listing order.
    """
    adverts: list[Advert] = []
    warnings: list[str] = []
    used: dict[str, tuple[str, str]] = {}
    for dist in _distributions(sys.path if path is None else path):
        try:
            published = dist.metadata["Name"]
            points = list(dist.entry_points.select(group=group))
            version = dist.version or "?"
        except Exception as exc:  # a corrupt metadata folder must not stop discovery
            warnings.append(f"unreadable distribution metadata at {location(dist)}: {exc}")
            continue
        if not published:
            if points:
                warnings.append(f"distribution metadata at {location(dist)} has no Name; skipped")
            continue
        key = normalize(published)
        here = location(dist)
        first = used.get(key)
        if first is None:
            used[key] = (here, version)
            adverts.extend(_unique(points, published, version, here, warnings))
            continue
        if not points:
            continue
        shadowing, shadowing_version = first
        warnings.append(
            f"{published} {version} at {here} is shadowed by {published} {shadowing_version} "
            f"at {shadowing}, earlier on sys.path; its sinks are not used"
        )
        structlog.get_logger().warning(
            "sink_shadowed", distribution=published, location=here, shadowed_by=shadowing
        )
        adverts.extend(
            Advert(point, published, version, here, shadowed_by=shadowing) for point in points
        )
    return adverts, warnings


def location(dist: importlib.metadata.Distribution) -> str:
    """The metadata folder of ``dist`` (what tells two copies apart), else its base folder."""
    folder = getattr(dist, "_path", None)
    where = str(folder if folder is not None else dist.locate_file(""))
    # Absolute, because the entry '' (the working folder) would otherwise give a bare name.
    return os.path.abspath(where)


def _distributions(path: Sequence[str]) -> Iterator[importlib.metadata.Distribution]:
    seen: set[str] = set()
    for entry in path:
        # The same folder listed twice (or via a symlink) is one copy, not a shadow.
        key = os.path.realpath(entry or os.curdir)
        if key in seen:
            continue
        seen.add(key)
        yield from sorted(importlib.metadata.distributions(path=[entry]), key=location)


def _unique(
    points: list[importlib.metadata.EntryPoint],
    distribution: str,
    version: str,
    here: str,
    warnings: list[str],
) -> Iterator[Advert]:
    names: set[str] = set()
    for point in points:
        if point.name in names:
            warnings.append(
                f"{distribution} advertises the sink {point.name!r} more than once; "
                "the first is used"
            )
            continue
        names.add(point.name)
        yield Advert(point, distribution, version, here)
