"""How the CLI shows records: readable tables for people, ``--json`` for programs."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import click

from seo_core.metabase import Binding, BindingStats, Source


def binding_json(binding: Binding) -> dict[str, Any]:
    """A binding as plain JSON-ready data, every field included."""
    return {
        "id": binding.id,
        "source": binding.source,
        "event": binding.event,
        "display_name": binding.display_name,
        "sink_class": binding.sink_class,
        "enabled": binding.enabled,
        "priority": binding.priority,
        "rule": binding.rule,
        "max_firings": binding.max_firings,
        "fire_count": binding.fire_count,
        "expiration": binding.expiration.isoformat() if binding.expiration else None,
        "binding_properties": binding.binding_properties.to_dict(),
        "sink_properties": binding.sink_properties.to_dict(),
        "source_properties": binding.source_properties.to_dict(),
        "origin": binding.origin,
    }


def stats_json(stats: BindingStats) -> dict[str, Any]:
    return {
        "notifications": stats.notifications,
        "failures": stats.failures,
        "timeouts": stats.timeouts,
        "last_error": stats.last_error,
        "last_fired": stats.last_fired,
    }


def source_json(source: Source) -> dict[str, Any]:
    return {
        "name": source.name,
        "type": source.type,
        "instance": source.instance,
        "id": source.id,
        "display_name": source.display_name,
    }


def echo_json(data: object) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False, ensure_ascii=False))


def echo_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Left-aligned columns, two spaces apart, sized to their widest cell."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        click.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


def describe(binding: Binding) -> str:
    """One line naming a binding the way an administrator refers to it."""
    name = f" {binding.display_name!r}" if binding.display_name is not None else ""
    return f"{binding.id} {binding.source} {binding.event}{name} -> {binding.sink_class}"


def format_value(value: object) -> str:
    return json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value


def echo_binding(binding: Binding, stats: BindingStats | None = None) -> None:
    """The long form of ``seo bindings show``."""
    fields: list[tuple[str, object]] = [
        ("ID", binding.id),
        ("Source", binding.source),
        ("Event", binding.event),
        ("DisplayName", binding.display_name if binding.display_name is not None else "(none)"),
        ("SinkClass", binding.sink_class),
        ("Enabled", "yes" if binding.enabled else "no"),
        ("Priority", binding.priority),
        ("Rule", binding.rule or "(none: every event)"),
        ("MaxFirings", binding.max_firings or "unlimited"),
        ("FireCount", binding.fire_count),
        ("Expiration", binding.expiration.isoformat() if binding.expiration else "never"),
        ("Managed by", binding.origin or "hand (seo bindings)"),
    ]
    if stats is not None:
        fields += [
            ("Notifications", stats.notifications),
            ("Failures", stats.failures),
            ("Timeouts", stats.timeouts),
            ("LastError", stats.last_error or "(none)"),
            ("LastFired", stats.last_fired or "never"),
        ]
    width = max(len(label) for label, _ in fields)
    for label, value in fields:
        click.echo(f"{label.ljust(width)}  {value}")
    for title, bag in (
        ("EventBindingProperties", binding.binding_properties),
        ("SinkProperties", binding.sink_properties),
        ("SourceProperties", binding.source_properties),
    ):
        click.echo(f"{title}:")
        if not bag:
            click.echo("  (empty)")
        for name, value in bag.items():
            click.echo(f"  {name} = {format_value(value)}")
