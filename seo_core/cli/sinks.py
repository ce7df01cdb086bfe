"""``seo sinks``: the installed sinks and whether each one can be bound.

Discovery runs only when a ``sinks`` command does (never for ``seo --help``), and a broken sink
package shows up as a row with its error instead of stopping the listing.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from seo_core.cli.app import State, cli, pass_state
from seo_core.cli.output import echo_json, echo_table

if TYPE_CHECKING:
    from seo_core.registry import SinkInfo


@cli.group()
def sinks() -> None:
    """Sinks: the handlers installed packages advertise in the seo.sinks entry-point group."""


@sinks.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@pass_state
def list_(state: State, as_json: bool) -> None:
    """List installed sinks: name, distribution, version, events, CLSID and load status."""
    registry = state.registry
    for warning in registry.warnings:
        click.echo(f"seo: warning: {warning}", err=True)
    if as_json:
        echo_json([sink_json(sink) for sink in registry.sinks])
        return
    if not registry.sinks:
        click.echo('no sinks installed (a sink is an entry point in the group "seo.sinks")')
        return
    echo_table(
        ["NAME", "DISTRIBUTION", "VERSION", "EVENTS", "CLSID", "STATUS"],
        [
            [
                s.name,
                s.distribution,
                s.version,
                events_text(s.events),
                s.clsid or "-",
                status_text(s),
            ]
            for s in registry.sinks
        ],
    )


@sinks.command("new")
@click.argument("name")
@click.option(
    "--dir",
    "folder",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(),
    help="Where to create the package folder seo-sink-NAME (default: here); its parent must exist.",
)
@click.option(
    "--force",
    is_flag=True,
    help="Write the package even though an installed sink already has the name NAME.",
)
@pass_state
def new(state: State, name: str, folder: Path, force: bool) -> None:
    """Write a new sink package NAME: pyproject, module, README and tests.

    A NAME an installed sink already has is refused (installed, the new package would conflict
    with it), unless --force.

    \b
    The package passes its own tests as written; from there, change it:
      seo sinks new my-tagger && cd seo-sink-my-tagger
      pip install -e . pytest && pytest
    """
    from seo_core.cli.scaffold import check_name, new_sink_package
    from seo_core.errors import ConflictError, ValidationError

    try:
        names = check_name(name)
    except ValidationError as exc:
        raise click.BadParameter(exc.reason, param_hint="NAME") from None
    if not folder.exists() and not folder.parent.is_dir():
        raise ValidationError(
            "--dir", str(folder), f"its parent folder {folder.parent} does not exist"
        )
    if not force:
        taken = _installed_as(state, names.name, names.distribution)
        if taken:
            raise ConflictError(
                f"a sink named {names.name!r} is already installed, from {', '.join(taken)}; "
                "a new package of that name would conflict with it once installed: "
                "choose another NAME, or pass --force"
            )
    target, written = new_sink_package(name, folder)
    click.echo(f"created {target}")
    for path in written:
        click.echo(f"  {path.relative_to(target)}")
    click.echo(
        f"next: cd {target} && pip install -e . pytest && pytest; "
        f"`seo sinks list` then shows the sink {names.name!r}"
    )


def _installed_as(state: State, name: str, distribution: str) -> list[str]:
    """The installed distributions (with versions) that advertise a sink ``name``, or are
    called ``distribution``: what a new package of that name would clash with."""
    import contextlib
    import importlib.metadata

    found = {
        f"{sink.distribution} {sink.version}" for sink in state.registry.sinks if sink.name == name
    }
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        found.add(f"{distribution} {importlib.metadata.version(distribution)}")
    return sorted(found)


def sink_json(sink: SinkInfo) -> dict[str, Any]:
    """Every field of a sink record except the loaded object, plus its qualified name."""
    return {
        "name": sink.name,
        "qualified_name": sink.qualified_name,
        "distribution": sink.distribution,
        "version": sink.version,
        "location": sink.location,
        "value": sink.value,
        "hooks": list(sink.hooks),
        "events": list(sink.events),
        "clsid": sink.clsid,
        "cacheable": sink.cacheable,
        "status": sink.status.value,
        "error": sink.error,
        "conflicts": list(sink.conflicts),
    }


def events_text(events: tuple[str, ...], shown: int = 4) -> str:
    """The events a sink handles, shortened for a catch-all sink (``--json`` has them all)."""
    if not events:
        return "-"
    if len(events) <= shown:
        return ", ".join(events)
    return ", ".join(events[: shown - 1]) + f", +{len(events) - shown + 1} more"


def status_text(sink: SinkInfo) -> str:
    """``ok``, ``failed: <error>`` or ``shadowed``, plus how to bind around a name conflict."""
    text = sink.status.value
    if sink.error:
        text += f": {sink.error}"
    if sink.conflicts:
        text += f" (conflict: also in {', '.join(sink.conflicts)}; bind as {sink.qualified_name})"
    return text
