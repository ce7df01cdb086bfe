"""The ``seo`` command group and the one place where errors become exit codes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from seo_core.errors import ConfigError, SeoError

if TYPE_CHECKING:
    from seo_core.config import Config
    from seo_core.metabase import Metabase
    from seo_core.registry import SinkRegistry

DEFAULT_METABASE = "seo-metabase.db"


class SeoGroup(click.Group):
    """A click group that prints any :class:`SeoError` as one line and exits 1.

    Usage errors stay click's: a message with the usage line, exit 2.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SeoError as exc:
            # A config file's problems come as one line each; each gets its own prefix.
            for line in str(exc).splitlines() or [""]:
                click.echo(f"seo: error: {line}", err=True)
            ctx.exit(1)


class State:
    """What every subcommand needs: where the metabase is."""

    def __init__(self, metabase: str | None) -> None:
        self._metabase = metabase
        self._registry: SinkRegistry | None = None

    @property
    def metabase_path(self) -> Path:
        """``--metabase``, else ``SEO_METABASE``, else ``./seo-metabase.db``."""
        return self.metabase_path_for(None)

    def metabase_path_for(self, config: Config | None) -> Path:
        """``--metabase``, else ``SEO_METABASE``, else the config file's ``metabase`` key, else
        ``./seo-metabase.db``: the command line and environment beat the file, so one file can
        be tried against a scratch metabase."""
        explicit = self._metabase or os.environ.get("SEO_METABASE")
        if explicit:
            return Path(explicit)
        if config is not None and config.metabase is not None:
            return config.metabase
        return Path(DEFAULT_METABASE)

    def prepare_metabase_for(self, config: Config) -> Path:
        """The metabase path for ``config``, once its sinks are checked; a folder the file names
        for it is created.

        The sinks are checked first (installed, handling the event, taking the properties), so
        a file refused for its sinks creates nothing, neither folder nor metabase file.
        A config file that says where its metabase lives is a deployment's own layout (like its
        spool folders), so its folder is made; a path typed on the command line must exist.
        """
        from seo_core.config import check_config

        check_config(config, self.registry)
        path = self.metabase_path_for(config)
        if config.metabase is not None and path == config.metabase:
            try:
                path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            except OSError as exc:
                line = config.locator.top("metabase")
                raise ConfigError(
                    f"{config.path}:{line}" if line else str(config.path),
                    f"metabase {path}: {_cannot_make_folder(path.parent, exc)}",
                ) from exc
        return path

    def open_metabase(self, *, create: bool = True) -> Metabase:
        """The metabase; commands that only read pass ``create=False``, so that a mistyped
        path is an error instead of a new, empty metabase."""
        return self.open_metabase_at(self.metabase_path, create=create)

    def open_metabase_at(self, path: Path, *, create: bool = True) -> Metabase:
        from seo_core.metabase import Metabase

        return Metabase.open(path, create=create)

    @property
    def registry(self) -> SinkRegistry:
        """The installed sinks, discovered once per command."""
        if self._registry is None:
            from seo_core.registry import SinkRegistry

            self._registry = SinkRegistry.discover()
        return self._registry


def _cannot_make_folder(folder: Path, exc: OSError) -> str:
    """Why ``folder`` could not be made, naming the part of its path at fault."""
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is not None and existing.is_file():
        if existing == folder:
            return f"{folder} is a file, not a folder"
        return f"cannot create its folder {folder}: {existing} is a file, not a folder"
    where = exc.filename if exc.filename is not None else folder
    return f"cannot create its folder {where}: {exc.strerror or exc}"


pass_state = click.make_pass_decorator(State)


@click.group(cls=SeoGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--metabase",
    metavar="PATH",
    help=(
        "The metabase file (default: $SEO_METABASE, else the config file's `metabase`, "
        "else ./seo-metabase.db)."
    ),
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    default=None,
    help="Log level (default: warning; info for `seo serve`).",
)
@click.option(
    "--log-format",
    type=click.Choice(["auto", "console", "json"]),
    default="auto",
    show_default=True,
    help="Logs on stderr: readable on a terminal, JSON lines otherwise.",
)
@click.version_option(package_name="seo-core", prog_name="seo")
@click.pass_context
def cli(ctx: click.Context, metabase: str | None, log_level: str | None, log_format: str) -> None:
    """Bind event sinks to mail and news servers, and run the servers."""
    from seo_core.cli.logs import configure_logging

    default = "info" if ctx.invoked_subcommand == "serve" else "warning"
    configure_logging((log_level or default).lower(), log_format)
    ctx.obj = State(metabase)
