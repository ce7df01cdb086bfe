"""The sink registry: every advertised sink, loaded once, and how a SinkClass finds one.

Discovery follows stevedore's policy: each entry point is loaded on its own, a failure is kept
with the entry point and the exception (and logged once), and the scan carries on, so one broken
package never takes the other sinks down. Duplicate names are decided by an explicit rule: a
second distribution advertising the same name is a reported conflict, and a binding must then
qualify the name as ``distribution:name``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import inspect
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path

import structlog

from seo_core.catalog import event_for_hook, parse_source
from seo_core.errors import (
    AmbiguousSinkError,
    SinkError,
    SinkLoadError,
    SinkNotFoundError,
    SinkPropertyError,
)
from seo_core.events.schema import Schema
from seo_core.guids import parse_guid
from seo_core.metabase.records import Binding
from seo_core.registry.info import SinkInfo, SinkStatus
from seo_core.registry.inspection import declared_clsid, inspect_sink
from seo_core.registry.scan import Advert, normalize, scan
from seo_core.registry.sitedirs import path_files, read_new_path_files

DEFAULT_GROUP = "seo.sinks"


class SinkRegistry:
    """The sinks one process can bind and fire, found by a single metadata scan.

    Build it with :meth:`discover` (installed packages) or :meth:`from_objects` (ready-made sinks,
    for tests); the constructor itself takes finished :class:`SinkInfo` records.
    """

    def __init__(self, sinks: Iterable[SinkInfo], warnings: Iterable[str] = ()) -> None:
        self.sinks: list[SinkInfo] = _with_conflicts(sinks)
        self.warnings: list[str] = list(warnings)
        self._scanned: tuple[str, list[str] | None] | None = None
        self._path_files: frozenset[Path] = frozenset()
        """The site folders' ``.pth`` files this process has read."""

    @classmethod
    def discover(cls, group: str = DEFAULT_GROUP, *, path: list[str] | None = None) -> SinkRegistry:
        """Scan the distributions on ``path`` (default ``sys.path``) once and load their sinks.

        ``path`` only limits where metadata is read; the sinks themselves are imported the
        usual way, through ``sys.path``. Never raises for a broken sink: it is recorded as
        FAILED and logged once.
        """
        return cls._discover(group, path, reported=frozenset(), read=path_files())

    @classmethod
    def _discover(
        cls,
        group: str,
        path: list[str] | None,
        reported: frozenset[tuple[str, str | None]],
        read: frozenset[Path],
    ) -> SinkRegistry:
        adverts, warnings = scan(group, path)
        registry = cls((_load(advert) for advert in adverts), warnings)
        registry._scanned = (group, path)
        registry._path_files = read
        _log_failures(registry.sinks, reported)
        return registry

    def refresh(self) -> SinkRegistry:
        """The installed sinks as they are now: a new scan for a discovered registry.

        Packages installed since the first scan appear, editable installs too (their ``.pth``
        files are read first); sinks already imported are reused by the import system. A
        registry made from objects has nothing to rescan: it is returned.
        """
        if self._scanned is None:
            return self
        importlib.invalidate_caches()
        read = read_new_path_files(self._path_files)
        group, path = self._scanned
        return type(self)._discover(group, path, _failures(self.sinks), read)

    @classmethod
    def from_objects(
        cls, sinks: Mapping[str, object], *, distribution: str = "test-sinks", version: str = "0"
    ) -> SinkRegistry:
        """A registry of ready-made sink targets (modules, classes, namespaces), no scan.

        This is the test seam (stevedore's ``make_test_instance``): the targets are validated
        exactly as discovered ones are, so a test sees the same FAILED records and log events.
        """
        infos = []
        for name, target in sinks.items():
            info = SinkInfo(
                name=name,
                distribution=distribution,
                version=version,
                location=_source_file(target),
                value=_describe(target),
            )
            infos.append(_validated(info, target))
        registry = cls(infos)
        _log_failures(registry.sinks, frozenset())
        return registry

    def resolve(self, sink_class: str) -> SinkInfo:
        """The usable sink a binding's SinkClass names.

        ``sink_class`` is an entry-point name, ``distribution:name`` (the distribution compared
        in normalized form), or ``{CLSID}`` in any case, optionally qualified the same way.
        Raises :class:`SinkNotFoundError`, :class:`AmbiguousSinkError` when two distributions
        advertise it, or :class:`SinkLoadError` when the sink failed to load.
        """
        text = sink_class.strip()
        # Distribution names never contain ":", so the first one ends the qualifier.
        wanted_dist, _, wanted = text.partition(":") if ":" in text else ("", "", text)
        candidates = [s for s in self.sinks if s.status is not SinkStatus.SHADOWED]
        if wanted_dist:
            candidates = [
                s for s in candidates if normalize(s.distribution) == normalize(wanted_dist)
            ]
        if wanted.startswith("{"):
            clsid = parse_guid(wanted, field="SinkClass")
            candidates = [s for s in candidates if s.clsid == clsid]
        else:
            candidates = [s for s in candidates if s.name == wanted]
        if not candidates:
            raise SinkNotFoundError(sink_class)
        distributions = tuple(sorted({s.distribution for s in candidates}))
        if len(distributions) > 1:
            raise AmbiguousSinkError(wanted, distributions)
        found = candidates[0]
        if any(s.target is not found.target or s.status is not found.status for s in candidates):
            names = ", ".join(s.name for s in candidates)
            raise SinkError(
                f"SinkClass {sink_class!r} is declared by several sinks of {found.distribution} "
                f"({names}); bind one of them by name"
            )
        if found.status is SinkStatus.FAILED:
            raise SinkLoadError(sink_class, found.error or "failed to load")
        return found

    def check_binding(self, binding: Binding) -> SinkInfo:
        """Refuse a binding its sink cannot serve; return the sink it names.

        Checked when a binding is written, so that the administrator hears about a sink that does
        not handle the event, or SinkProperties it refuses, from ``seo bindings add`` rather than
        from a server log at mail time.
        """
        info = self.resolve(binding.sink_class)
        kind = parse_source(binding.source).source_type
        event = kind.event(binding.event)
        if not any(event_for_hook(hook) == (kind, event) for hook in info.hooks):
            # Not a SinkLoadError: the sink is installed and loads, so an "allow missing sinks"
            # caller must still refuse this binding.
            handled = ", ".join(info.events) or "no event"
            raise SinkError(
                f"sink {binding.sink_class!r} ({info.qualified_name}) does not handle "
                f"{event.name} of {kind.name} sources (it has no {event.hook_name(kind.name)} "
                f"hook); it handles: {handled}"
            )
        _check_properties(info, binding)
        return info


def _check_properties(info: SinkInfo, binding: Binding) -> None:
    schema = getattr(info.target, "properties_schema", None)
    if isinstance(schema, Schema):
        schema.validate(binding.sink_properties)
    validator = getattr(info.target, "validate_properties", None)
    if not callable(validator):
        return
    try:
        validator(binding.sink_properties)
    except SinkPropertyError:
        raise
    except (ValueError, TypeError) as exc:
        raise SinkPropertyError(
            "SinkProperties", binding.sink_properties.to_dict(), str(exc)
        ) from exc
    except Exception as exc:
        # A bug in the sink's validator is the sink's failure, not a refusal of the properties.
        raise SinkLoadError(
            binding.sink_class, f"its validate_properties raised {one_line(exc)}"
        ) from exc


def _load(advert: Advert) -> SinkInfo:
    point = advert.entry_point
    info = SinkInfo(
        name=point.name,
        distribution=advert.distribution,
        version=advert.version,
        location=advert.location,
        value=point.value,
    )
    if advert.shadowed_by is not None:
        return dataclasses.replace(info, status=SinkStatus.SHADOWED)
    try:
        target = point.load()
    except Exception as exc:  # KeyboardInterrupt and SystemExit are not Exceptions: they pass
        return _failed(info, exc)
    return _validated(info, target)


def _validated(info: SinkInfo, target: object) -> SinkInfo:
    try:
        found = inspect_sink(target, info.qualified_name)
    except Exception as exc:
        clsid = None
        # Still say which CLSID it declares, so that a binding by CLSID reports why it is down.
        with contextlib.suppress(Exception):
            clsid = declared_clsid(target)
        return _failed(dataclasses.replace(info, target=target, clsid=clsid), exc)
    return dataclasses.replace(
        info,
        target=target,
        hooks=found.hooks,
        events=found.events,
        clsid=found.clsid,
        cacheable=found.cacheable,
    )


def _failed(info: SinkInfo, exc: BaseException) -> SinkInfo:
    return dataclasses.replace(info, status=SinkStatus.FAILED, error=one_line(exc))


def _failures(sinks: Iterable[SinkInfo]) -> frozenset[tuple[str, str | None]]:
    return frozenset((s.qualified_name, s.error) for s in sinks if s.status is SinkStatus.FAILED)


def _log_failures(sinks: Iterable[SinkInfo], reported: frozenset[tuple[str, str | None]]) -> None:
    """Log each sink that failed to load, unless an earlier scan of this process logged it.

    At info level: a broken package nobody binds is worth knowing, not a warning; a binding to
    it is the warning (the dispatcher's ``binding_unavailable``), and ``seo sinks list`` shows
    every failure with its error.
    """
    for sink in sinks:
        if sink.status is SinkStatus.FAILED and (sink.qualified_name, sink.error) not in reported:
            structlog.get_logger().info(
                "sink_load_failed", sink=sink.name, distribution=sink.distribution, error=sink.error
            )


def one_line(exc: BaseException) -> str:
    """``ModuleNotFoundError: No module named 'x'``: type and message, white space folded."""
    message = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _with_conflicts(sinks: Iterable[SinkInfo]) -> list[SinkInfo]:
    """Sort by (name, distribution) and mark names that several distributions advertise."""
    ordered = sorted(
        sinks,
        key=lambda s: (s.name, normalize(s.distribution), s.status is SinkStatus.SHADOWED),
    )
    advertisers: defaultdict[str, set[str]] = defaultdict(set)
    for sink in ordered:
        if sink.status is not SinkStatus.SHADOWED:
            advertisers[sink.name].add(sink.distribution)
    return [
        dataclasses.replace(
            sink, conflicts=tuple(sorted(advertisers[sink.name] - {sink.distribution}))
        )
        if sink.status is not SinkStatus.SHADOWED
        else sink
        for sink in ordered
    ]


def _source_file(target: object) -> str:
    module = inspect.getmodule(target)
    file = getattr(module, "__file__", None)
    return str(Path(file)) if isinstance(file, str) else ""


def _describe(target: object) -> str:
    """An entry-point-like value for a ready-made target: ``module:Qualname`` or ``module``."""
    if inspect.ismodule(target):
        return target.__name__
    module = getattr(target, "__module__", None)
    qualname = getattr(target, "__qualname__", None)
    if isinstance(module, str) and isinstance(qualname, str):
        return f"{module}:{qualname}"
    return f"<{type(target).__name__} object>"
