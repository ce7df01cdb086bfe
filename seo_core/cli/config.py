"""``seo config``: make the metabase match a config file, or write it out as one."""

from __future__ import annotations

from pathlib import Path

import click

from seo_core.cli.app import State, cli, pass_state
from seo_core.errors import ConfigError, UnmadeMetabaseError

_SUMMARY = ("create", "update", "remove", "unchanged")
_DONE = {"create": "created", "update": "updated", "remove": "removed", "unchanged": "unchanged"}


@cli.group("config")
def config_() -> None:
    """Declare sources and bindings in a TOML file; apply it, or export the metabase as one."""


@config_.command("apply")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Print the plan and change nothing.")
@pass_state
def apply(state: State, file: Path, dry_run: bool) -> None:
    """Make the metabase match FILE: create, update and remove the bindings FILE manages.

    The whole file is checked first (syntax, keys, sources, events, rules, priorities, sinks and
    their properties); a file with any problem changes nothing. Bindings made by hand, or by
    another file, are left alone.

    \b
    Example:
      seo config apply /etc/seo/seo.toml --dry-run
    """
    from seo_core.config import apply_config, load_config, plan_config

    config = load_config(file, require_listen=False)
    path = state.metabase_path_for(config)
    if dry_run:
        try:
            metabase = state.open_metabase_at(path, create=False)
        except UnmadeMetabaseError:
            # A dry run must not make the metabase it would fill: plan against an empty one.
            changes = plan_config(config, None, registry=state.registry)
        else:
            with metabase:
                changes = apply_config(config, metabase, state.registry, dry_run=True)
    else:
        path = state.prepare_metabase_for(config)
        with state.open_metabase_at(path) as metabase:
            changes = apply_config(config, metabase, state.registry)
    for change in changes:
        click.echo(str(change))
    counts = {action: sum(c.action == action for c in changes) for action in _SUMMARY}
    if dry_run:
        summary = ", ".join(f"{counts[a]} to {a}" for a in _SUMMARY[:3])
        click.echo(
            f"dry run of {config.path} on {path}: {summary}, {counts['unchanged']} unchanged; "
            "nothing was changed"
        )
    else:
        summary = ", ".join(f"{counts[a]} {_DONE[a]}" for a in _SUMMARY)
        click.echo(f"applied {config.path} to {path}: {summary}")


@config_.command("export")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to this file instead of standard output.",
)
@pass_state
def export(state: State, output: Path | None) -> None:
    """Write the metabase's sources and bindings as a config file.

    `seo config apply` turns the file back into the same bindings (same GUIDs, same
    properties). Source settings are not stored in the metabase, so the file has none.
    """
    from seo_core.config import export_config

    with state.open_metabase_at(state.metabase_path, create=False) as metabase:
        text = export_config(metabase)
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(output), f"cannot write: {exc.strerror or exc}") from exc
    click.echo(f"exported the metabase to {output}", err=True)
