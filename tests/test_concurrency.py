"""Many writers, one metabase: every change lands, none sees "database is locked"."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.conftest import run_process

WRITERS = 8
BINDINGS_EACH = 50

ADD_MANY = """
import sys
from seo_core.metabase import BindingSpec, Metabase

path, writer, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for n in range(count):
    with Metabase.open(path) as metabase:
        metabase.add_binding(BindingSpec(
            source=f"smtp/{1 + n % 3}", event="OnArrival", sink_class="log",
            display_name=f"writer {writer} binding {n}",
            sink_properties={"writer": writer, "n": n},
        ))
"""


def test_eight_processes_adding_fifty_bindings_each(tmp_path: Path) -> None:
    import sys

    path = tmp_path / "shared.db"
    with ThreadPoolExecutor(WRITERS) as pool:
        results = list(
            pool.map(
                lambda w: run_process(
                    sys.executable, "-c", ADD_MANY, str(path), str(w), str(BINDINGS_EACH)
                ),
                range(WRITERS),
            )
        )
    for result in results:
        assert result.returncode == 0, result.stderr
        assert "locked" not in result.stderr
    listed = run_process(
        sys.executable, "-m", "seo_core", "--metabase", str(path), "bindings", "list", "--json"
    )
    assert listed.returncode == 0, listed.stderr
    names = {b["display_name"] for b in json.loads(listed.stdout)}
    assert len(names) == WRITERS * BINDINGS_EACH
    assert names == {
        f"writer {w} binding {n}" for w in range(WRITERS) for n in range(BINDINGS_EACH)
    }
