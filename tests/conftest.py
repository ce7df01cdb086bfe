"""Shared fixtures: a real metabase file under tmp_path and a way to run the real CLI."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import structlog
from click.testing import CliRunner, Result

from seo_core.cli import cli
from seo_core.metabase import Metabase

RunSeo = Callable[..., Result]

TRACE = re.compile(
    rb"(?:Return-Path: <[^>\r\n]*>\r?\n)?Received: from [^\r\n]*(?:\r?\n\t[^\r\n]*)*\r?\n"
)


def without_trace(message: bytes) -> bytes:
    """The message as the client sent it: without the ``Received:`` line the server put on top
    (which must be there), nor the ``Return-Path:`` line a Maildir delivery adds above it."""
    trace = TRACE.match(message)
    assert trace is not None, f"no Received: line on top of {message[:80]!r}"
    return message[trace.end() :]


@pytest.fixture(autouse=True)
def _structlog_defaults() -> Iterator[None]:
    """The CLI configures structlog for the process; give every test the defaults back."""
    yield
    structlog.reset_defaults()


@pytest.fixture
def metabase_path(tmp_path: Path) -> Path:
    return tmp_path / "seo-metabase.db"


@pytest.fixture
def metabase(metabase_path: Path) -> Iterator[Metabase]:
    with Metabase.open(metabase_path) as opened:
        yield opened


@pytest.fixture
def seo(metabase_path: Path) -> RunSeo:
    """Run ``seo --metabase <tmp file> ARGS...`` in-process and return click's Result."""
    runner = CliRunner()

    def run(*args: str) -> Result:
        return runner.invoke(cli, ["--metabase", str(metabase_path), *args], prog_name="seo")

    return run


@pytest.fixture
def seo_exe() -> str:
    """The installed ``seo`` console script of the environment running the tests."""
    found = Path(sys.executable).with_name("seo")
    if not found.exists():
        located = shutil.which("seo")
        assert located, "the seo console script is not installed in this environment"
        return located
    return str(found)


def run_process(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )
