"""Discovery against real packages, pip-installed into throwaway virtual environments.

Each sink project here is a real distribution (a pyproject with a ``seo.sinks`` entry point,
built by hatchling) installed by a real ``pip install``; discovery then runs in a subprocess with
that environment's interpreter, exactly as ``seo`` would.

The environments are made fast and offline: ``venv`` without pip, a ``.pth`` file that adds the
outer environment's site-packages (so seo_core, pluggy and hatchling import), and the outer pip
driving the new interpreter through ``pip --python``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import sysconfig
import textwrap
import venv
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from seo_core.registry import SinkInfo

pytestmark = pytest.mark.slow

CLSID = "{6F1C2B2E-8F7D-4A53-9D1E-0C6A4B7E2F10}"

PROJECTS: dict[str, tuple[dict[str, str], dict[str, str]]] = {
    # distribution: ({file: source}, {entry-point name: value})
    "seo-sink-probe-good": (
        {
            "seo_sink_probe_good/__init__.py": f'''
                """A module sink, plus a class sink that wants a fresh instance per call."""
                from seo_core.sdk import hookimpl

                @hookimpl
                def smtp_on_arrival(event, sink_properties):
                    event.message["X-Probe"] = sink_properties.get("tag", "yes")

                class Fresh:
                    cacheable = False
                    clsid = "{CLSID}"

                    @hookimpl
                    def smtp_on_arrival(self, event):
                        pass
            ''',
            "seo_sink_probe_good/aio.py": """
                from seo_core.sdk import hookimpl

                @hookimpl
                async def smtp_store_driver(event):
                    pass
            """,
        },
        {
            "probe-good": "seo_sink_probe_good",
            "probe-async": "seo_sink_probe_good.aio",
            "probe-class": "seo_sink_probe_good:Fresh",
        },
    ),
    "seo-sink-probe-broken": (
        {
            "seo_sink_probe_broken/__init__.py": """
                from seo_core.sdk import hookimpl

                class Misspelt:
                    @hookimpl
                    def smtp_on_arival(self, event):
                        pass
            """,
            "seo_sink_probe_broken/noimport.py": "import nonexistent\n",
        },
        {
            "probe-noimport": "seo_sink_probe_broken.noimport",
            "probe-noattr": "seo_sink_probe_broken:Missing",
            "probe-misspelt": "seo_sink_probe_broken:Misspelt",
        },
    ),
    "seo-sink-probe-dup-a": (
        {
            "seo_sink_probe_dup_a/__init__.py": """
                from seo_core.sdk import hookimpl

                @hookimpl
                def smtp_on_arrival(event):
                    pass
            """
        },
        {"probe-dup": "seo_sink_probe_dup_a"},
    ),
    "seo-sink-probe-dup-b": (
        {
            "seo_sink_probe_dup_b/__init__.py": """
                from seo_core.sdk import hookimpl

                @hookimpl
                def nntp_on_post(event):
                    pass
            """
        },
        {"probe-dup": "seo_sink_probe_dup_b"},
    ),
}

DISCOVER = """
import json, sys
import structlog
structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
from seo_core.cli.sinks import sink_json
from seo_core.errors import SeoError
from seo_core.registry import SinkRegistry

registry = SinkRegistry.discover()
resolved = {}
for sink_class in sys.argv[1:]:
    try:
        resolved[sink_class] = registry.resolve(sink_class).qualified_name
    except SeoError as exc:
        resolved[sink_class] = f"{type(exc).__name__}: {exc}"
print(json.dumps({
    "sinks": [sink_json(s) for s in registry.sinks],
    "warnings": registry.warnings,
    "resolved": resolved,
}))
"""

HELP_IMPORTS = """
import sys
from seo_core.cli import cli
try:
    cli(["--help"], prog_name="seo")
except SystemExit as exc:
    code = exc.code
loaded = sorted(m for m in sys.modules if m.startswith(("seo_sink_", "seo_core.registry")))
print("EXIT", code, "LOADED", loaded)
"""


@dataclass(frozen=True)
class Env:
    """A throwaway virtual environment that sees the outer one's packages through a .pth."""

    root: Path
    python: Path
    site_packages: Path

    def run(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return run(str(self.python), *args, cwd=cwd)

    def install(self, *projects: Path | str) -> None:
        """pip-install the projects with the outer pip: offline, no build isolation."""
        done = run(
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(self.python),
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            *map(str, projects),
        )
        assert done.returncode == 0, done.stderr

    def sinks_list(
        self, *options: str, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """``seo sinks list`` run by this environment's interpreter."""
        return self.run("-m", "seo_core", "sinks", "list", *options, cwd=cwd)

    def discover(self, *sink_classes: str, cwd: Path | None = None) -> Discovery:
        done = self.run("-c", DISCOVER, *sink_classes, cwd=cwd)
        assert done.returncode == 0, done.stderr
        data = json.loads(done.stdout)
        return Discovery(ours(data["sinks"]), data["warnings"], data["resolved"], done.stderr)


@dataclass(frozen=True)
class Discovery:
    sinks: list[dict[str, Any]]
    warnings: list[str]
    resolved: dict[str, str]
    log: str


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    # The outer test run's own path settings must not leak into the environment under test.
    leaky = {"PYTHONPATH", "PYTHONHOME", "PYTHONSAFEPATH", "PYTHONSTARTUP", "PYTHONUSERBASE"}
    env = {k: v for k, v in os.environ.items() if k not in leaky and not k.startswith("PIP_")}
    env |= {"PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "NO_COLOR": "1"}
    return subprocess.run(
        args, capture_output=True, text=True, timeout=120, check=False, env=env, cwd=cwd
    )


def ours(sinks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The probe sinks only: the outer environment may have real sinks installed too."""
    return [s for s in sinks if s["name"].startswith("probe-")]


def write_project(root: Path, distribution: str) -> Path:
    files, entry_points = PROJECTS[distribution]
    project = root / distribution
    package = distribution.replace("-", "_")
    points = "\n".join(f'"{name}" = "{value}"' for name, value in entry_points.items())
    files = {
        "pyproject.toml": f"""
            [build-system]
            requires = ["hatchling"]
            build-backend = "hatchling.build"

            [project]
            name = "{distribution}"
            version = "1.0"

            [project.entry-points."seo.sinks"]
            {points}

            [tool.hatch.build.targets.wheel]
            packages = ["{package}"]
        """,
        **files,
    }
    for name, text in files.items():
        path = project / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return project


@pytest.fixture(scope="module")
def projects(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("projects")
    return {name: write_project(root, name) for name in PROJECTS}


@pytest.fixture(scope="module")
def make_env(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Env]:
    outer = sorted({sysconfig.get_path("purelib"), sysconfig.get_path("platlib")})

    def make(name: str) -> Env:
        root = tmp_path_factory.mktemp(name)
        venv.EnvBuilder(with_pip=False, symlinks=os.name != "nt").create(root)
        where = {"base": str(root), "platbase": str(root)}
        site_packages = Path(sysconfig.get_path("purelib", scheme="venv", vars=where))
        # addsitedir (not a bare path line) so the outer .pth files run too: seo-core is an
        # editable install, found only through its own .pth.
        lines = "".join(f"import site; site.addsitedir({path!r})\n" for path in outer)
        (site_packages / "_outer_environment.pth").write_text(lines, encoding="utf-8")
        scripts = Path(sysconfig.get_path("scripts", scheme="venv", vars=where))
        python = scripts / ("python.exe" if os.name == "nt" else "python")
        return Env(root, python, site_packages)

    return make


@pytest.fixture(scope="module")
def env(make_env: Callable[[str], Env], projects: Mapping[str, Path]) -> Env:
    """Good, broken and both duplicates, installed dup-a first."""
    made = make_env("env-ab")
    made.install(
        projects["seo-sink-probe-good"],
        projects["seo-sink-probe-broken"],
        projects["seo-sink-probe-dup-a"],
    )
    made.install(projects["seo-sink-probe-dup-b"])
    return made


@pytest.fixture(scope="module")
def env_reversed(make_env: Callable[[str], Env], projects: Mapping[str, Path]) -> Env:
    """Only the duplicates, installed dup-b first."""
    made = make_env("env-ba")
    made.install(projects["seo-sink-probe-dup-b"])
    made.install(projects["seo-sink-probe-dup-a"])
    return made


@pytest.fixture(scope="module")
def listing(env: Env) -> dict[str, dict[str, Any]]:
    """``seo sinks list --json`` in ``env``, by qualified name."""
    done = env.sinks_list("--json")
    assert done.returncode == 0, done.stderr
    return {s["qualified_name"]: s for s in ours(json.loads(done.stdout))}


@pytest.mark.parametrize(
    ("qualified_name", "expected"),
    [
        (
            "seo-sink-probe-good:probe-good",
            {
                "status": "ok",
                "value": "seo_sink_probe_good",
                "hooks": ["smtp_on_arrival"],
                "events": ["OnArrival"],
                "version": "1.0",
                "cacheable": True,
                "clsid": None,
                "error": None,
            },
        ),
        (
            "seo-sink-probe-good:probe-async",
            {"status": "ok", "hooks": ["smtp_store_driver"], "events": ["StoreDriver"]},
        ),
        (
            "seo-sink-probe-good:probe-class",
            {
                "status": "ok",
                "value": "seo_sink_probe_good:Fresh",
                "cacheable": False,
                "clsid": CLSID.lower(),
            },
        ),
        (
            "seo-sink-probe-broken:probe-noimport",
            {"status": "failed", "error": "ModuleNotFoundError: No module named 'nonexistent'"},
        ),
        (
            "seo-sink-probe-broken:probe-noattr",
            {
                "status": "failed",
                "error": "AttributeError: module 'seo_sink_probe_broken' "
                "has no attribute 'Missing'",
            },
        ),
        (
            "seo-sink-probe-broken:probe-misspelt",
            {
                "status": "failed",
                "error": "PluginValidationError: unknown hook 'smtp_on_arival' "
                "(did you mean 'smtp_on_arrival'?)",
                "hooks": [],
            },
        ),
    ],
    ids=["module", "async", "class-not-cacheable", "import-error", "missing-attribute", "misspelt"],
)
def test_each_installed_sink_is_listed_with_its_load_status(
    listing: dict[str, dict[str, Any]], qualified_name: str, expected: dict[str, Any]
) -> None:
    sink = listing[qualified_name]
    assert {key: sink[key] for key in expected} == expected
    assert Path(sink["location"]).name.startswith(sink["distribution"].replace("-", "_"))


def test_json_gives_every_field_but_the_loaded_object(listing: dict[str, dict[str, Any]]) -> None:
    fields = {field.name for field in dataclasses.fields(SinkInfo)} - {"target"}
    for sink in listing.values():
        assert set(sink) == fields | {"qualified_name"}


def test_broken_sinks_stay_out_of_a_commands_output_unless_asked(env: Env) -> None:
    """The listing shows each failure; a command's stderr is not filled with them."""
    done = env.sinks_list("--json")
    assert done.returncode == 0
    json.loads(done.stdout)
    assert "sink_load_failed" not in done.stderr


def test_broken_sinks_are_logged_once_each_at_info_level_and_stdout_stays_json(env: Env) -> None:
    done = env.run("-m", "seo_core", "--log-level", "info", "sinks", "list", "--json")
    assert done.returncode == 0
    json.loads(done.stdout)
    failures = [
        line for line in done.stderr.splitlines() if "sink_load_failed" in line and "probe-" in line
    ]
    assert len(failures) == 3, done.stderr


def test_the_table_shows_failures_and_how_to_bind_around_a_conflict(env: Env) -> None:
    done = env.sinks_list()
    assert done.returncode == 0, done.stderr
    headers = ["NAME", "DISTRIBUTION", "VERSION", "EVENTS", "CLSID", "STATUS"]
    assert done.stdout.split()[: len(headers)] == headers
    assert "failed: ModuleNotFoundError: No module named 'nonexistent'" in done.stdout
    assert (
        "ok (conflict: also in seo-sink-probe-dup-b; bind as seo-sink-probe-dup-a:probe-dup)"
        in done.stdout
    )


DUPLICATE_CLASSES = [
    "probe-dup",
    "seo-sink-probe-dup-a:probe-dup",
    "SEO_Sink_Probe_Dup_B:probe-dup",
]


def test_a_duplicate_name_gives_the_same_outcome_in_either_install_order(
    env: Env, env_reversed: Env
) -> None:
    def outcome(found: Discovery) -> tuple[list[dict[str, Any]], dict[str, str]]:
        dups = [
            {k: v for k, v in s.items() if k != "location"}
            for s in found.sinks
            if s["name"] == "probe-dup"
        ]
        return dups, found.resolved

    forward = env.discover(*DUPLICATE_CLASSES)
    backward = env_reversed.discover(*DUPLICATE_CLASSES)
    assert outcome(forward) == outcome(backward)

    dups, resolved = outcome(forward)
    assert [(s["distribution"], s["conflicts"]) for s in dups] == [
        ("seo-sink-probe-dup-a", ["seo-sink-probe-dup-b"]),
        ("seo-sink-probe-dup-b", ["seo-sink-probe-dup-a"]),
    ]
    ambiguous = resolved["probe-dup"]
    assert ambiguous.startswith("AmbiguousSinkError: ")
    assert "seo-sink-probe-dup-a:probe-dup" in ambiguous
    assert "seo-sink-probe-dup-b:probe-dup" in ambiguous
    assert resolved["seo-sink-probe-dup-a:probe-dup"] == "seo-sink-probe-dup-a:probe-dup"
    assert resolved["SEO_Sink_Probe_Dup_B:probe-dup"] == "seo-sink-probe-dup-b:probe-dup"


def test_a_stale_egg_info_earlier_on_the_path_shadows_the_installed_copy(
    env: Env, tmp_path: Path
) -> None:
    stale = tmp_path / "seo_sink_probe_good.egg-info"
    stale.mkdir()
    (stale / "PKG-INFO").write_text(
        "Metadata-Version: 2.1\nName: seo-sink-probe-good\nVersion: 0.9\n", encoding="utf-8"
    )
    (stale / "entry_points.txt").write_text(
        "[seo.sinks]\nprobe-good = seo_sink_probe_good\n", encoding="utf-8"
    )
    installed = env.site_packages / "seo_sink_probe_good-1.0.dist-info"

    # `python -c` and `python -m` put the working folder first on sys.path, where a stale
    # checkout's metadata would be found before the installed copy.
    found = env.discover("probe-good", "probe-class", cwd=tmp_path)

    good = [s for s in found.sinks if s["distribution"] == "seo-sink-probe-good"]
    assert [(s["name"], s["version"], s["status"]) for s in good] == [
        ("probe-async", "1.0", "shadowed"),
        ("probe-class", "1.0", "shadowed"),
        ("probe-good", "0.9", "ok"),
        ("probe-good", "1.0", "shadowed"),
    ]
    assert found.resolved == {
        "probe-good": "seo-sink-probe-good:probe-good",
        "probe-class": "SinkNotFoundError: SinkClass 'probe-class': no installed sink has this "
        "name or CLSID (see `seo sinks list`)",
    }
    (warning,) = [w for w in found.warnings if "seo-sink-probe-good" in w]
    assert str(installed) in warning
    assert str(stale) in warning

    listed = env.sinks_list(cwd=tmp_path)
    assert listed.returncode == 0
    assert f"seo: warning: seo-sink-probe-good 1.0 at {installed} is shadowed" in listed.stderr


def test_help_works_and_imports_no_sink_with_a_broken_one_installed(env: Env) -> None:
    done = env.run("-m", "seo_core", "--help")
    assert done.returncode == 0, done.stderr
    assert "sinks" in done.stdout

    probe = env.run("-c", HELP_IMPORTS)
    assert probe.stdout.splitlines()[-1] == "EXIT 0 LOADED []"


RESCAN_AFTER_INPUT = """
import json, sys
from seo_core.registry import SinkRegistry

registry = SinkRegistry.discover()
before = [s.name for s in registry.sinks if s.name.startswith("probe-")]
print("ready", flush=True)
sys.stdin.readline()  # the test installs the sink meanwhile
registry = registry.refresh().refresh()  # the second rescan must not read the .pth again
info = registry.resolve("probe-good")
print(json.dumps({"before": before, "status": info.status.value, "error": info.error,
                  "paths": sys.path.count(sys.argv[1])}))
"""


def test_a_sink_installed_in_editable_mode_is_found_by_a_running_process(
    make_env: Callable[[str], Env], tmp_path: Path
) -> None:
    """``pip install -e`` puts the code on the path through a .pth file, read at start-up
    only: a process that rescans reads the new file too (what ``seo serve`` does when a
    binding names a sink it has not seen)."""
    made = make_env("env-editable")
    project = write_project(tmp_path, "seo-sink-probe-good")
    with subprocess.Popen(
        [str(made.python), "-c", RESCAN_AFTER_INPUT, str(project)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as running:  # the with closes its pipes, whatever fails
        try:
            assert running.stdout is not None
            assert running.stdout.readline() == "ready\n"
            made.install("--editable", project)
            out, err = running.communicate("go\n", timeout=60)
        finally:
            if running.poll() is None:
                running.kill()
    assert running.returncode == 0, err
    result = json.loads(out.splitlines()[-1])
    assert result == {"before": [], "status": "ok", "error": None, "paths": 1}
