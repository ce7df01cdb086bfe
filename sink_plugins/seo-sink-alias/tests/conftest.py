"""Make sure these tests exercise the installed package, never the source tree beside them."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

SOURCE_TREE = Path(__file__).resolve().parents[1]

# `python -m pytest` run from the package folder puts that folder first on sys.path, where
# `import seo_sink_alias` would find the sources instead of the installed copy.
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != SOURCE_TREE]


@pytest.fixture(autouse=True)
def _structlog_defaults() -> Iterator[None]:
    """The CLI configures structlog for the process; give every test the defaults back."""
    yield
    structlog.reset_defaults()
