"""Making the files of many deliveries durable together.

Deliveries that finish at the same moment each need their files on disk before they count. One
thread flushes the files of every delivery waiting, files before folders: the first flush commits
the file system's journal for all of them, so the others find little left to do, where each
delivery flushing on its own would wait for a journal commit of its own.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path


def flush_paths(groups: Iterable[Iterable[str]]) -> None:
    """Make every file and folder named in ``groups`` durable; raises OSError if one cannot be."""
    paths = list(dict.fromkeys(path for group in groups for path in group))
    folders = [path for path in paths if Path(path).is_dir()]
    for path in [*(p for p in paths if p not in folders), *folders]:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
