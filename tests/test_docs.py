"""The documentation keeps up with the code: hooks, context fields, commands and pages.

The strict ``mkdocs build`` of ``nox -s docs`` checks links; these checks need no mkdocs, so
they run with the framework's tests and fail as soon as a hookspec, a context field or a command
is added without its documentation (or a hookspec without a test).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest

from seo_core.catalog import SOURCE_TYPES
from seo_core.events import contexts, hookspecs
from seo_core.events.markers import PROJECT
from seo_core.pytest_plugin import context_class

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
EVENTS_PAGE = (DOCS / "events.md").read_text(encoding="utf-8")

HOOKSPECS = sorted(
    name
    for name, value in vars(hookspecs).items()
    if callable(value) and getattr(value, f"{PROJECT}_spec", None) is not None
)


def reference_sections(page: str) -> set[str]:
    """The hook names the events page has a section for: headings ending in ``{#hook}``."""
    return set(re.findall(r"^#{2,4} .*\{#([a-z_]+)\}\s*$", page, flags=re.MULTILINE))


def test_every_hookspec_has_a_reference_section_and_every_section_a_hookspec() -> None:
    assert HOOKSPECS, "no hookspecs found: the marker attribute changed?"
    sections = sorted(reference_sections(EVENTS_PAGE))
    assert sections == HOOKSPECS, "docs/events.md needs a '### Event {#hook_name}' per hookspec"


def test_every_hookspec_has_a_test() -> None:
    """A hook is tested when a test under tests/ or a sink package's tests names it."""
    folders = [
        ROOT / "tests",
        *ROOT.glob("sink_plugins/*/tests"),
        *ROOT.glob("docs/examples/*/tests"),
    ]
    sources = "\n".join(
        path.read_text(encoding="utf-8")
        for folder in folders
        for path in folder.rglob("test_*.py")
        if path != Path(__file__).resolve()
    )
    untested = [hook for hook in HOOKSPECS if not re.search(rf"\b{hook}\b", sources)]
    assert untested == []


def _own_fields(cls: type) -> list[str]:
    """The fields a class declares itself (its page section lists them; a base's are elsewhere)."""
    own = vars(cls).get("__annotations__", {})
    return [f.name for f in dataclasses.fields(cls) if f.name in own]


CONTEXTS = sorted(
    {context_class(k.name, e) for k in SOURCE_TYPES.values() for e in k.events}
    | {contexts.SessionInfo},
    key=lambda cls: cls.__name__,
)


@pytest.mark.parametrize("cls", CONTEXTS, ids=[cls.__name__ for cls in CONTEXTS])
def test_every_context_field_is_documented(cls: type) -> None:
    match = re.search(
        rf"^### {cls.__name__}\n(.*?)(?=^#{{2,3}} |\Z)", EVENTS_PAGE, flags=re.MULTILINE | re.DOTALL
    )
    assert match, f"docs/events.md has no '### {cls.__name__}' section"
    missing = [name for name in _own_fields(cls) if f"`{name}`" not in match.group(1)]
    assert missing == []


def _cli_reference() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "cli_reference", DOCS / "hooks" / "cli_reference.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_cli_reference_is_current() -> None:
    """docs/cli.md is generated; regenerate it with ``python docs/hooks/cli_reference.py``."""
    current = (DOCS / "cli.md").read_text(encoding="utf-8")
    assert current == _cli_reference().render(), "stale: run python docs/hooks/cli_reference.py"


def test_every_page_is_in_the_nav_and_every_nav_entry_is_a_page() -> None:
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    nav = config[config.index("\nnav:") :]
    listed = re.findall(r'^\s+- (?:"[^"]*"|[^:"]+): (\S+\.md)$', nav, flags=re.MULTILINE)
    assert len(listed) == len(set(listed))
    pages = sorted(p.name for p in DOCS.glob("*.md"))
    assert sorted(listed) == pages, "every page of docs/ belongs in the nav of mkdocs.yml"


SNIPPET = re.compile(r'^--8<-- "([^":]+)(?::([a-z-]+))?"$', re.MULTILINE)


def test_every_snippet_names_a_file_and_section_that_exist() -> None:
    """The tutorial's code comes from the example package; a renamed section must fail here."""
    found = 0
    for page in DOCS.glob("*.md"):
        for path, section in SNIPPET.findall(page.read_text(encoding="utf-8")):
            found += 1
            source = DOCS / "examples" / path
            assert source.is_file(), f"{page.name}: {path} does not exist"
            if section:
                text = source.read_text(encoding="utf-8")
                assert f"--8<-- [start:{section}]" in text, f"{page.name}: {path}:{section}"
                assert f"--8<-- [end:{section}]" in text, f"{page.name}: {path}:{section}"
    assert found >= 8
