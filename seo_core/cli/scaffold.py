"""``seo sinks new``: write a complete sink package from the templates beside this module.

The package follows the one naming triad of sink packages (distribution ``seo-sink-NAME``,
import package ``seo_sink_NAME``, entry point ``NAME``) and passes its own tests as written, so
an author starts from something that works and changes it, instead of from a blank page.
"""

from __future__ import annotations

import importlib.metadata
import re
import string
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from seo_core.errors import SeoError, ValidationError

NAME = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$")
"""A sink name: lower-case letters, digits and single hyphens, starting with a letter."""


@dataclass(frozen=True, slots=True)
class SinkNames:
    """Every name of one sink package, derived from the sink's name."""

    name: str
    """The entry-point name, what bindings name: ``my-tagger``."""

    @property
    def distribution(self) -> str:
        return f"seo-sink-{self.name}"

    @property
    def package(self) -> str:
        return f"seo_sink_{self.name.replace('-', '_')}"

    @property
    def cls(self) -> str:
        """``MyTaggerSink``."""
        return "".join(part.capitalize() for part in self.name.split("-")) + "Sink"

    @property
    def header(self) -> str:
        """``X-Seo-My-Tagger``: the header the example sink adds."""
        return "X-Seo-" + "-".join(part.capitalize() for part in self.name.split("-"))

    @property
    def title(self) -> str:
        """``Tag with my-tagger``: a display name for the example binding."""
        return f"Tag with {self.name}"


def check_name(name: str) -> SinkNames:
    """Refuse a NAME that would not make the three names of a sink package."""
    if name.startswith("seo-sink-"):
        raise ValidationError("NAME", name, "give the sink's own name, without seo-sink-")
    if not NAME.match(name):
        raise ValidationError(
            "NAME",
            name,
            "use lower-case letters, digits and single hyphens, starting with a letter "
            "(for example: my-tagger)",
        )
    return SinkNames(name)


def new_sink_package(name: str, folder: Path) -> tuple[Path, list[Path]]:
    """Write the package for sink ``name`` into ``folder/seo-sink-NAME``; return it and its files.

    An existing target is refused, never merged into: the author's own files stay untouched.
    """
    names = check_name(name)
    target = folder / names.distribution
    if target.exists():
        raise SeoError(f"{target} already exists; choose another NAME or --dir")
    values = {
        "name": names.name,
        "distribution": names.distribution,
        "package": names.package,
        "cls": names.cls,
        "header": names.header,
        "title": names.title,
        "core_version": _core_version(),
    }
    layout = {
        "pyproject.toml": "pyproject.toml.tmpl",
        "README.md": "README.md.tmpl",
        f"{names.package}/__init__.py": "sink.py.tmpl",
        f"{names.package}/py.typed": None,
        f"tests/test_{names.package.removeprefix('seo_sink_')}.py": "test_sink.py.tmpl",
    }
    templates = files("seo_core.cli").joinpath("sink_template")
    rendered = {
        target / relative: ""
        if template is None
        else string.Template(templates.joinpath(template).read_text("utf-8")).substitute(values)
        for relative, template in layout.items()
    }
    for path, text in rendered.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return target, list(rendered)


def _core_version() -> str:
    """``0.1``: the generated package needs at least this seo-core's minor release."""
    try:
        version = importlib.metadata.version("seo-core")
    except importlib.metadata.PackageNotFoundError:
        return "0.1"
    return ".".join(version.split(".")[:2])
