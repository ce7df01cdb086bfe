"""The command-line reference page (docs/cli.md), written from the click command tree itself.

The page is the ``--help`` of every command, so it says what the installed ``seo`` says and
cannot drift from it. mkdocs runs this as a hook before each build (``hooks:`` in mkdocs.yml)
and rewrites the page when the commands changed; tests/test_docs.py fails while the committed
page is stale. By hand::

    python docs/hooks/cli_reference.py          # rewrite docs/cli.md
    python docs/hooks/cli_reference.py --check  # exit 1 if it is stale
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

PAGE = Path(__file__).resolve().parents[1] / "cli.md"
WIDTH = 100
"""Help is wrapped at a fixed width, so the page does not depend on the terminal it was made in."""

HEADER = """\
# Command-line reference

`seo` is the one command. This page is generated from the commands themselves (it is their
`--help`, by `docs/hooks/cli_reference.py`), so it matches the installed version; do not edit it
by hand. Every listing takes `--json`; errors print one line and exit 1, usage errors exit 2.
The pages [Bindings](bindings.md), [The config file](config.md) and
[Binding and serving](serving.md) explain the commands with examples.
"""


def render() -> str:
    """The whole page: ``seo``, then each group and command, depth first, in name order."""
    from seo_core.cli import cli

    root = click.Context(
        cli, info_name="seo", terminal_width=WIDTH, max_content_width=WIDTH, **cli.context_settings
    )
    sections = [HEADER]
    for ctx in _walk(root):
        path = ctx.command_path
        level = "###" if path.count(" ") > 1 else "##"  # seo and its direct commands: ##
        summary = ctx.command.get_short_help_str(limit=WIDTH)
        sections.append(
            f"{level} `{path}`\n\n{summary}\n\n```text\n{ctx.command.get_help(ctx).rstrip()}\n```\n"
        )
    return "\n".join(sections)


def _walk(ctx: click.Context) -> list[click.Context]:
    found = [ctx]
    command = ctx.command
    if isinstance(command, click.Group):
        for name in sorted(command.list_commands(ctx)):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                found.extend(_walk(click.Context(sub, info_name=name, parent=ctx)))
    return found


def write(page: Path = PAGE) -> bool:
    """Write the page if it changed; True when it did."""
    text = render()
    if page.exists() and page.read_text(encoding="utf-8") == text:
        return False
    page.write_text(text, encoding="utf-8")
    return True


def on_pre_build(config: Any) -> None:
    """mkdocs hook: refresh the page before the pages are read."""
    write()


if __name__ == "__main__":
    if sys.argv[1:] == ["--check"]:
        stale = not PAGE.exists() or PAGE.read_text(encoding="utf-8") != render()
        if stale:
            print(f"{PAGE} is stale: run python docs/hooks/cli_reference.py", file=sys.stderr)
        sys.exit(1 if stale else 0)
    print(f"{PAGE}: {'written' if write() else 'unchanged'}")
