"""Path files (``*.pth``) that appeared in the site folders after the interpreter started.

Python reads the ``.pth`` files of its site folders once, at start-up. An editable install
(``pip install -e``) puts its code on the path through such a file only: its metadata is found
by a new scan, but importing it fails until the file is read. A running server reads the new
ones before it scans again, as the interpreter would have at start-up, so a sink installed in
editable mode is picked up like any other.
"""

from __future__ import annotations

import os
import site
import sys
from pathlib import Path

import structlog

log = structlog.get_logger("seo.registry")


def site_folders() -> list[Path]:
    """The folders whose ``.pth`` files the interpreter reads at start-up."""
    folders = list(site.getsitepackages())
    if site.ENABLE_USER_SITE:
        folders.append(site.getusersitepackages())
    return [Path(folder) for folder in dict.fromkeys(folders)]


def path_files() -> frozenset[Path]:
    """Every ``.pth`` file in the site folders now."""
    found: set[Path] = set()
    for folder in site_folders():
        try:
            found.update(folder.glob("*.pth"))
        except OSError:
            continue
    return frozenset(found)


def read_new_path_files(known: frozenset[Path]) -> frozenset[Path]:
    """Read the ``.pth`` files not in ``known`` the way ``site`` does; returns all there are now.

    A line names a folder to append to ``sys.path`` (relative to the site folder), or starts
    with ``import`` and is executed: that is how setuptools' editable installs add their finder.
    A file that cannot be read, or a line that fails, is logged and skipped, as ``site`` does.
    """
    now = path_files()
    for path in sorted(now - known):
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            log.warning("path_file_unreadable", path=str(path), error=str(exc))
            continue
        for line in lines:
            _apply(path, line)
    return now


def _apply(path: Path, line: str) -> None:
    if not line.strip() or line.startswith("#"):
        return
    if line.startswith(("import ", "import\t")):
        try:
            exec(line)  # what site.addpackage does with these lines
        except Exception as exc:
            log.warning("path_file_failed", path=str(path), line=line, error=str(exc))
        return
    folder = os.path.join(path.parent, line.rstrip())
    if os.path.isdir(folder) and folder not in sys.path:
        sys.path.append(folder)
        log.info("path_added", path=str(path), folder=folder)
