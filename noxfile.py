"""Developer sessions: ``nox -s lint typing tests``; CI runs them all (see ``.ci/run``).

Python versions and dependencies come from ``pyproject.toml`` (``requires-python`` and the
dependency groups), so there is one list of each. Sessions that build many environments or
packages are ``default=False``: ``nox`` alone runs the quick ones.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nox

ROOT = Path(__file__).parent
PYPROJECT = nox.project.load_toml(ROOT / "pyproject.toml")
PYTHONS = nox.project.python_versions(PYPROJECT, max_version="3.13")
PYTHON = PYTHONS[0]
"""The oldest supported Python: what CI runs, so that nothing newer slips in."""

nox.options.default_venv_backend = "uv|venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "typing", "tests"]

SINK_PACKAGES = sorted(
    p for p in (ROOT / "sink_plugins").iterdir() if (p / "pyproject.toml").exists()
)
EXAMPLE_PACKAGES = sorted(
    p for p in (ROOT / "docs" / "examples").iterdir() if (p / "pyproject.toml").exists()
)
"""The tutorial's sink: a real package, built, typed and tested like the bundled ones."""
BENCH_PACKAGES = [ROOT / "bench" / "seo-sink-bench", ROOT / "sink_plugins" / "seo-sink-maildir"]


def group(name: str) -> list[str]:
    return nox.project.dependency_groups(PYPROJECT, name)


def module_of(package: Path) -> Path:
    """The import package of a sink distribution: ``seo-sink-log`` -> ``seo_sink_log``."""
    return package / package.name.replace("-", "_")


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The framework's tests, with seo-core and the bundled sinks installed."""
    session.install("-e", ".", *[str(p) for p in SINK_PACKAGES], *group("tests"))
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHON, default=False)
@nox.parametrize(
    "package",
    [str(p.relative_to(ROOT)) for p in [*SINK_PACKAGES, *EXAMPLE_PACKAGES]],
    ids=[p.name.removeprefix("seo-sink-") for p in [*SINK_PACKAGES, *EXAMPLE_PACKAGES]],
)
def sinks(session: nox.Session, package: str) -> None:
    """One sink package's own tests, in an environment of its own holding only it and seo-core.

    Installed, not editable, and run from outside its folder: the tests see the package as a
    user gets it, and a sink that quietly needs another one fails here.
    """
    folder = ROOT / package
    session.install(".", str(folder), *group("tests"))
    session.chdir(session.create_tmp())  # so that `import seo_sink_x` cannot find the sources
    session.run(
        "pytest",
        "-p",
        "no:cacheprovider",
        "--rootdir",
        str(folder),
        str(folder / "tests"),
        *session.posargs,
    )


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff: lint and format check."""
    session.install(*group("lint"))
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON)
def typing(session: nox.Session) -> None:
    """mypy --strict: the framework, every sink package, the typed SDK usage file, and the
    package ``seo sinks new`` writes (authors start from it, so it must pass as written)."""
    session.install("-e", ".", *group("typing"))
    example_tests = [str(p / "tests") for p in EXAMPLE_PACKAGES]
    sink_modules = [str(module_of(p)) for p in [*SINK_PACKAGES, *EXAMPLE_PACKAGES]]
    session.run(
        "mypy",
        "--strict",
        "seo_core",
        "tests/typing/sdk_usage.py",
        "docs/hooks",
        *sink_modules,
        *example_tests,
    )
    scratch = Path(session.create_tmp()) / "new-sink"
    shutil.rmtree(scratch, ignore_errors=True)  # from the templates as they are now
    session.run("seo", "sinks", "new", "typing-probe", "--dir", str(scratch), silent=True)
    generated = scratch / "seo-sink-typing-probe"
    session.run(
        "mypy",
        "--strict",
        "--config-file",
        str(generated / "pyproject.toml"),
        str(generated / "seo_sink_typing_probe"),
        str(generated / "tests"),
    )


@nox.session(python=PYTHON, default=False)
def docs(session: nox.Session) -> None:
    """The documentation site, built strictly: a broken link or a missing page fails it.

    The CLI reference page is regenerated from the commands first (a mkdocs hook does it).
    """
    session.install("-e", ".", *group("docs"))
    site = Path(session.create_tmp()) / "site"
    session.run("mkdocs", "build", "--strict", "--site-dir", str(site))


@nox.session(python=PYTHON, default=False)
def build(session: nox.Session) -> None:
    """Wheels and sdists of seo-core and every sink package, checked with ``twine check``."""
    session.install(*group("build"))
    dist = Path(session.create_tmp()) / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    for project in [ROOT, *SINK_PACKAGES, *EXAMPLE_PACKAGES]:
        session.run("python", "-m", "build", "--outdir", str(dist), str(project))
    built = sorted(str(p) for p in dist.iterdir())
    session.run("twine", "check", "--strict", *built)
    session.log(f"{len(built)} files in {dist}")


@nox.session(python=PYTHON, default=False)
def bench(session: nox.Session) -> None:
    """Speed and memory benchmarks; prints the figures the issues ask for."""
    session.install(".", *[str(p) for p in BENCH_PACKAGES], *group("bench"))
    for script in sorted((ROOT / "bench").glob("bench_*.py")):
        session.run("python", str(script), *session.posargs)
