"""Shared fixtures: a real metabase file under tmp_path and a way to run the real CLI."""

from __future__ import annotations

import os
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
from seo_core.testing import as_sent

RunSeo = Callable[..., Result]


def without_trace(message: bytes) -> bytes:
    """The message as the client sent it (see :func:`seo_core.testing.as_sent`)."""
    return as_sent(message)


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
