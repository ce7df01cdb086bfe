"""The ``seo`` command line.

Importing this package builds the click command tree; nothing else happens until :func:`main`.
"""

from __future__ import annotations

from seo_core.cli import bindings, config, explain, serve, sinks, sources
from seo_core.cli.app import cli

__all__ = ["cli", "main"]

_COMMAND_MODULES = (bindings, config, explain, serve, sinks, sources)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="seo")
