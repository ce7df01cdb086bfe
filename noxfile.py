"""Developer sessions: ``nox -s lint typing tests``.

Dependencies come from the dependency groups in ``pyproject.toml``, so there is one list of them.
"""

from __future__ import annotations

from pathlib import Path

import nox

ROOT = Path(__file__).parent
PYPROJECT = nox.project.load_toml(ROOT / "pyproject.toml")

nox.options.default_venv_backend = "uv|venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "typing", "tests", "sinks"]

SINK_PACKAGES = sorted(
    p for p in (ROOT / "sink_plugins").iterdir() if (p / "pyproject.toml").exists()
)


def group(name: str) -> list[str]:
    return nox.project.dependency_groups(PYPROJECT, name)


@nox.session
def tests(session: nox.Session) -> None:
    """The framework's tests, with seo-core and the bundled sinks installed."""
    session.install("-e", ".", *[str(p) for p in SINK_PACKAGES], *group("tests"))
    session.run("pytest", *session.posargs)


@nox.session
def sinks(session: nox.Session) -> None:
    """Each bundled sink's own tests, run against the sink as installed (not the source tree)."""
    session.install(".", *group("tests"))
    for package in SINK_PACKAGES:
        session.install("--force-reinstall", "--no-deps", str(package))
        session.run(
            "pytest",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(package),
            str(package / "tests"),
            *session.posargs,
        )


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: lint and format check."""
    session.install(*group("lint"))
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typing(session: nox.Session) -> None:
    """mypy --strict on the framework."""
    session.install("-e", ".", *group("typing"))
    session.run("mypy", "--strict", "seo_core")


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """Speed and memory benchmarks; prints the figures the issues ask for."""
    session.install(".", *group("bench"))
    for script in sorted((ROOT / "bench").glob("bench_*.py")):
        session.run("python", str(script), *session.posargs)
