"""``seo sources``: the sources the metabase knows."""

from __future__ import annotations

import click

from seo_core.cli.app import State, cli, pass_state
from seo_core.cli.output import echo_json, echo_table, source_json


@cli.group()
def sources() -> None:
    """Sources: running instances of a server type, such as smtp/1."""


@sources.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@pass_state
def list_(state: State, as_json: bool) -> None:
    """List the sources, with their GUIDs and how many bindings each has."""
    with state.open_metabase(create=False) as metabase:
        found = metabase.sources()
        counts: dict[str, int] = {}
        for binding in metabase.bindings():
            counts[binding.source] = counts.get(binding.source, 0) + 1
    if as_json:
        echo_json([{**source_json(s), "bindings": counts.get(s.name, 0)} for s in found])
        return
    if not found:
        click.echo("no sources (a source comes into being when a binding or config names it)")
        return
    echo_table(
        ["SOURCE", "ID", "DISPLAY NAME", "BINDINGS"],
        [[s.name, s.id, s.display_name, counts.get(s.name, 0)] for s in found],
    )
