"""``seo sinks new``: the package it writes installs, passes its own tests and is discovered."""

from __future__ import annotations

import importlib.metadata
import json
import os
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

from tests.conftest import RunSeo, run_process
from tests.test_discovery import Env

pytestmark = pytest.mark.slow


def throwaway_env(root: Path) -> Env:
    """A venv without pip that sees this environment's packages (seo-core, pytest) via a .pth."""
    venv.EnvBuilder(with_pip=False, symlinks=os.name != "nt").create(root)
    where = {"base": str(root), "platbase": str(root)}
    site_packages = Path(sysconfig.get_path("purelib", scheme="venv", vars=where))
    outer = sorted({sysconfig.get_path("purelib"), sysconfig.get_path("platlib")})
    lines = "".join(f"import site; site.addsitedir({path!r})\n" for path in outer)
    (site_packages / "_outer_environment.pth").write_text(lines, encoding="utf-8")
    python = Path(sysconfig.get_path("scripts", scheme="venv", vars=where)) / "python"
    return Env(root, python, site_packages)


def test_the_new_package_passes_its_tests_and_is_listed_once_installed(
    seo: RunSeo, tmp_path: Path
) -> None:
    result = seo("sinks", "new", "demo-tagger", "--dir", str(tmp_path / "work"))
    assert result.exit_code == 0, result.output
    project = tmp_path / "work" / "seo-sink-demo-tagger"
    assert result.output.splitlines()[:6] == [
        f"created {project}",
        "  pyproject.toml",
        "  README.md",
        "  seo_sink_demo_tagger/__init__.py",
        "  seo_sink_demo_tagger/py.typed",
        "  tests/test_demo_tagger.py",
    ]
    env = throwaway_env(tmp_path / "env")
    env.install(project)

    # From another folder, so that the tests import the installed package, not the sources.
    tested = env.run("-m", "pytest", "-p", "no:cacheprovider", str(project), cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "6 passed" in tested.stdout

    listed = env.sinks_list("--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    (sink,) = [s for s in json.loads(listed.stdout) if s["name"] == "demo-tagger"]
    assert {k: sink[k] for k in ("distribution", "value", "events", "status")} == {
        "distribution": "seo-sink-demo-tagger",
        "value": "seo_sink_demo_tagger:DemoTaggerSink",
        "events": ["OnArrival"],
        "status": "ok",
    }


def test_the_new_package_builds_with_a_license_and_passes_twine_check(
    seo: RunSeo, tmp_path: Path
) -> None:
    """docs/publishing.md expects a license in the metadata; the package builds with one."""
    assert seo("sinks", "new", "demo-tagger", "--dir", str(tmp_path)).exit_code == 0
    project, dist = tmp_path / "seo-sink-demo-tagger", tmp_path / "dist"
    built = run_process(
        sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(project)
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = dist.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        metadata = archive.read("seo_sink_demo_tagger-0.1.0.dist-info/METADATA").decode()
    assert "License-Expression: MIT" in metadata.splitlines()
    checked = run_process(
        sys.executable, "-m", "twine", "check", "--strict", *map(str, dist.iterdir())
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("My-Tagger", "lower-case letters"),
        ("tagger_2", "lower-case letters"),
        ("2fa", "starting with a letter"),
        ("double--hyphen", "single hyphens"),
        ("seo-sink-tagger", "without seo-sink-"),
    ],
    ids=["upper-case", "underscore", "digit-first", "double-hyphen", "full-distribution-name"],
)
def test_a_bad_name_is_a_usage_error(seo: RunSeo, tmp_path: Path, name: str, reason: str) -> None:
    result = seo("sinks", "new", name, "--dir", str(tmp_path))
    assert result.exit_code == 2
    assert "Invalid value for NAME: " in result.output
    assert reason in result.output
    assert list(tmp_path.iterdir()) == []


def test_an_existing_folder_is_refused_and_left_alone(seo: RunSeo, tmp_path: Path) -> None:
    mine = tmp_path / "seo-sink-tagger"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    result = seo("sinks", "new", "tagger", "--dir", str(tmp_path))
    assert result.exit_code == 1
    assert result.output == f"seo: error: {mine} already exists; choose another NAME or --dir\n"
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]


def test_the_name_of_an_installed_sink_is_refused_naming_its_distribution(
    seo: RunSeo, tmp_path: Path
) -> None:
    result = seo("sinks", "new", "log", "--dir", str(tmp_path))
    assert result.exit_code == 1
    version = importlib.metadata.version("seo-sink-log")
    assert result.output == (
        f"seo: error: a sink named 'log' is already installed, from seo-sink-log {version}; "
        "a new package of that name would conflict with it once installed: "
        "choose another NAME, or pass --force\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_force_writes_it_anyway(seo: RunSeo, tmp_path: Path) -> None:
    result = seo("sinks", "new", "log", "--dir", str(tmp_path), "--force")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "seo-sink-log" / "seo_sink_log" / "__init__.py").is_file()


def test_a_dir_whose_parent_does_not_exist_is_refused(seo: RunSeo, tmp_path: Path) -> None:
    target = tmp_path / "missing" / "d"
    result = seo("sinks", "new", "tagger", "--dir", str(target))
    assert result.exit_code == 1
    assert result.output == (
        f"seo: error: --dir '{target}': its parent folder {tmp_path / 'missing'} does not exist\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_a_dir_that_does_not_exist_yet_is_made_when_its_parent_exists(
    seo: RunSeo, tmp_path: Path
) -> None:
    result = seo("sinks", "new", "tagger", "--dir", str(tmp_path / "new"))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "new" / "seo-sink-tagger" / "pyproject.toml").is_file()
