"""The install test: seo as a user gets it, from wheels, in a fresh virtual environment.

Wheels of seo-core and of every bundled sink are built from this tree, then installed with pip
into a new virtual environment that cannot see the source tree (its own interpreter, run from a
scratch folder, no PYTHONPATH). There, ``seo sinks list`` must find every bundled sink, and
``seo serve`` must take one message over SMTP and deliver it to a Maildir. This is what catches a
module, a template or an entry point missing from a wheel, which every other test (run against
the source tree) would miss.

Dependencies (pluggy, structlog, click, aiosmtpd) come from the package index pip is configured
with, as they do for a user; pip's cache makes that quick after the first run.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import smtplib
import socket
import subprocess
import sys
import threading
import venv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SINKS = sorted(p for p in (ROOT / "sink_plugins").iterdir() if (p / "pyproject.toml").exists())


def clean_env() -> dict[str, str]:
    """This environment less what would let the new one see the source tree or this venv."""
    leaky = {"PYTHONPATH", "PYTHONHOME", "PYTHONSAFEPATH", "PYTHONSTARTUP", "VIRTUAL_ENV"}
    return {k: v for k, v in os.environ.items() if k not in leaky} | {"NO_COLOR": "1"}


def run(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=clean_env(),
        cwd=cwd,
    )
    assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
    return done


@dataclass(frozen=True)
class Installed:
    folder: Path
    """A scratch folder outside the source tree, where every command runs."""
    bin: Path

    def seo(self, *args: str | Path) -> subprocess.CompletedProcess[str]:
        return run(self.bin / "seo", *args, cwd=self.folder)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    wheels = tmp_path_factory.mktemp("wheels")
    scratch = tmp_path_factory.mktemp("scratch")
    run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--quiet",
        "--no-deps",
        "--no-build-isolation",
        "--wheel-dir",
        wheels,
        ROOT,
        *SINKS,
        cwd=scratch,
    )
    built = sorted(wheels.glob("*.whl"))
    assert len(built) == 1 + len(SINKS)
    env = tmp_path_factory.mktemp("env")
    venv.EnvBuilder(with_pip=True).create(env)
    python = env / "bin" / "python"
    run(
        python,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        *built,
        cwd=scratch,
    )
    return Installed(scratch, env / "bin")


def test_seo_core_comes_from_the_wheel_not_the_source_tree(installed: Installed) -> None:
    code = (
        "import importlib.metadata as m, json, seo_core\n"
        "dist = m.distribution('seo-core')\n"
        "print(json.dumps([seo_core.__file__, dist.read_text('direct_url.json'),"
        " sorted(e.value for e in m.entry_points(group='pytest11', name='seo'))]))\n"
    )
    done = run(installed.bin / "python", "-c", code, cwd=installed.folder)
    location, direct_url, plugin = json.loads(done.stdout)
    assert Path(location).is_relative_to(installed.bin.parent)
    assert not Path(location).is_relative_to(ROOT)
    assert direct_url is None or '"editable": true' not in direct_url
    assert plugin == ["seo_core.pytest_plugin"]


def test_seo_sinks_list_finds_every_bundled_sink(installed: Installed) -> None:
    listed = json.loads(installed.seo("sinks", "list", "--json").stdout)
    found = {s["distribution"]: s for s in listed}
    assert sorted(found) == [p.name for p in SINKS]
    assert {name: s["status"] for name, s in found.items()} == {p.name: "ok" for p in SINKS}


def test_seo_sinks_new_writes_a_package_from_the_wheels_templates(installed: Installed) -> None:
    installed.seo("sinks", "new", "from-wheel", "--dir", installed.folder / "new")
    made = installed.folder / "new" / "seo-sink-from-wheel"
    assert (made / "seo_sink_from_wheel" / "__init__.py").read_text().count("FromWheelSink") >= 1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


CONFIG = """
metabase = "var/seo-metabase.db"

[sources."smtp/1"]
listen = "127.0.0.1:{port}"
hostname = "mx.test"
local_domains = ["example.com"]
spool = "var/spool"

[[bindings]]
source = "smtp/1"
event = "StoreDriver"
name = "Local mailboxes"
sink = "maildir"
sink_properties = {{ root = "var/mail" }}
"""


@pytest.fixture
def served(installed: Installed) -> Iterator[tuple[subprocess.Popen[str], int, queue.Queue[str]]]:
    """``seo serve`` from the installed console script; its JSON log lines arrive in a queue."""
    port = free_port()
    folder = installed.folder / "server"
    folder.mkdir()
    (folder / "seo.toml").write_text(CONFIG.format(port=port), encoding="utf-8")
    process = subprocess.Popen(
        [str(installed.bin / "seo"), "--log-format", "json", "serve", "--config", "seo.toml"],
        cwd=folder,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    logs: queue.Queue[str] = queue.Queue()
    stderr = process.stderr
    assert stderr is not None

    def read_logs() -> None:
        for line in stderr:
            logs.put(line)

    reader = threading.Thread(target=read_logs, daemon=True)
    reader.start()
    try:
        yield process, port, logs
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)
        reader.join(timeout=10)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def wait_for_log(logs: queue.Queue[str], event: str) -> dict[str, object]:
    """The first JSON log line of ``event``; blocks on the server's output, never sleeps."""
    while True:
        line = logs.get(timeout=60)
        if line.startswith("{") and json.loads(line).get("event") == event:
            found: dict[str, object] = json.loads(line)
            return found


def test_seo_serve_delivers_a_message_over_smtp(
    installed: Installed, served: tuple[subprocess.Popen[str], int, queue.Queue[str]]
) -> None:
    process, port, logs = served
    wait_for_log(logs, "smtp_listening")
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        refused = client.sendmail(
            "alice@example.net", ["bob@example.com"], b"Subject: installed\r\n\r\nhello\r\n"
        )
    assert refused == {}
    done = wait_for_log(logs, "smtp_message_done")
    assert done["delivered"] == 1
    (stored,) = (
        installed.folder / "server" / "var" / "mail" / "example.com" / "bob" / "new"
    ).iterdir()
    assert b"Subject: installed" in stored.read_bytes()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    assert process.stdout is not None
    assert f"smtp/1 listening on 127.0.0.1:{port}" in process.stdout.read()
