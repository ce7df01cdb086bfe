"""``seo serve``: run the configured sources until SIGINT, SIGTERM or SIGHUP."""

from __future__ import annotations

from pathlib import Path

import click

from seo_core.cli.app import State, cli, pass_state

DEFAULT_CONFIG = "seo.toml"


@cli.command("serve")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"The config file (default: ./{DEFAULT_CONFIG} if it exists).",
)
@pass_state
def serve(state: State, config_path: Path | None) -> None:
    """Apply the config file to the metabase, then run its sources (smtp/N and nntp/N).

    Without a config file, runs smtp/1 on 127.0.0.1:2525 for the domain localhost, spooling
    under ./var/spool/smtp-1, with the bindings already in the metabase.
    """
    from seo_core.sources.nntp.settings import NntpSettings
    from seo_core.sources.runner import check_can_start, serve_until_stopped
    from seo_core.sources.smtp.settings import SmtpSettings

    if config_path is None and Path(DEFAULT_CONFIG).exists():
        config_path = Path(DEFAULT_CONFIG)
    # Everything that can refuse the file or the start does so before the metabase or a spool
    # is touched: a server that would not start must not change what a running one reads.
    if config_path is None:
        smtp = [
            SmtpSettings.from_mapping(
                "smtp/1",
                {
                    "listen": "127.0.0.1:2525",
                    "local_domains": ["localhost"],
                    "spool": str(Path("var/spool/smtp-1").absolute()),
                },
            )
        ]
        nntp: list[NntpSettings] = []
        check_can_start(smtp, nntp)
        metabase_path = state.metabase_path
    else:
        from seo_core.config import apply_config, load_config

        config = load_config(config_path)
        smtp = [
            SmtpSettings.from_mapping(name, source.settings)
            for name, source in sorted(config.sources.items())
            if source.type == "smtp"
        ]
        nntp = [
            NntpSettings.from_mapping(name, source.settings)
            for name, source in sorted(config.sources.items())
            if source.type == "nntp"
        ]
        if not smtp and not nntp:
            raise click.UsageError("the config file declares no smtp or nntp source to run")
        check_can_start(smtp, nntp)
        metabase_path = state.prepare_metabase_for(config)
        with state.open_metabase_at(metabase_path) as metabase:
            changes = apply_config(config, metabase, state.registry)
        changed = [c for c in changes if c.action != "unchanged"]
        click.echo(f"applied {config.path}: {len(changed)} change(s)")

    from seo_core.sources import event_loop

    def report(lines: list[str]) -> None:
        click.echo(
            f"seo serving with metabase {metabase_path.absolute()} "
            f"(event loop: {event_loop.loop_name()})"
        )
        for line in lines:
            click.echo(line)

    event_loop.run(serve_until_stopped(metabase_path, state.registry, report, smtp=smtp, nntp=nntp))
