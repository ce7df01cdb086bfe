"""What importing seo loads: the SDK stays light, and nothing happens at import."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

PROBE = """
import json, sys
import {module}
print(json.dumps(sorted(sys.modules)))
"""


def loaded_by(module: str) -> set[str]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(module=module)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return set(json.loads(result.stdout))


@pytest.mark.parametrize("module", ["seo_core", "seo_core.sdk"], ids=["package", "sdk"])
def test_the_sdk_does_not_load_the_servers_or_the_command_line(module: str) -> None:
    loaded = loaded_by(module)
    assert not {m for m in loaded if m.startswith("aiosmtpd")}
    assert not {m for m in loaded if m.startswith(("seo_core.cli", "click"))}
    assert not {m for m in loaded if m.startswith("seo_core.sources")}


def test_importing_the_sdk_discovers_no_sinks() -> None:
    loaded = loaded_by("seo_core.sdk")
    assert "seo_core.registry" not in loaded
    assert "seo_sink_log" not in loaded


def test_the_package_exports_a_sorted_public_api() -> None:
    import seo_core
    import seo_core.sdk

    for module in (seo_core, seo_core.sdk):
        assert list(module.__all__) == sorted(module.__all__)
        for name in module.__all__:
            assert hasattr(module, name), name
