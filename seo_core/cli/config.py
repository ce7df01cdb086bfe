"""``seo config``: make the metabase match a config file, or write it out as one."""

from __future__ import annotations

import os
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
    help="Write to this file instead of standard output; an existing file needs --force.",
)
@click.option("--force", is_flag=True, help="Overwrite the --output file if it exists.")
@pass_state
def export(state: State, output: Path | None, force: bool) -> None:
    """Write the metabase's sources and bindings as a config file.

    `seo config apply` turns the file back into the same bindings (same GUIDs, same
    properties). The file's `metabase` key is the absolute path of the metabase exported, so
    applying the file goes back to it unless --metabase or SEO_METABASE names another. Source
    settings are not stored in the metabase, so the file has none.

    \b
    Example:
      seo --metabase var/seo-metabase.db config export --output backup.toml
    """
    from seo_core.config import export_config

    # abspath, as a config file's own path is made absolute: no symlink is resolved away.
    path = Path(os.path.abspath(state.metabase_path))
    with state.open_metabase_at(path, create=False) as metabase:
        text = export_config(metabase, metabase_path=str(path))
    if output is None:
        click.echo(text, nl=False)
        return
    _write_new(output, text, force=force)
    click.echo(f"exported the metabase to {output}", err=True)


def _write_new(output: Path, text: str, *, force: bool) -> None:
    """Write ``text`` to ``output``; an existing file is refused unless ``force``.

    An export has no listen, spool or comments of its own, so writing it over a hand-written
    config file (often named seo.toml, as an export is) would lose them without a word. The
    file is created exclusively, so a file that appears meanwhile is not overwritten either.
    """
    try:
        with output.open("w" if force else "x", encoding="utf-8") as file:
            file.write(text)
    except FileExistsError as exc:
        raise ConfigError(str(output), "already exists; give --force to overwrite it") from exc
    except OSError as exc:
        raise ConfigError(str(output), f"cannot write: {exc.strerror or exc}") from exc
