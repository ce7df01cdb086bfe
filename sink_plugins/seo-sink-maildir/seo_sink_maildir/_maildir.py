"""Maildir delivery as the format's specification asks: write in ``tmp/``, then publish in ``new/``.

A reader only ever looks in ``new/`` and ``cur/``, and a file appears in ``new/`` in one atomic
step (a hard link, or a rename where links are not supported) only after its bytes are on disk,
so no reader ever sees a partial message. The file and the ``new/`` folder are flushed to disk
before delivery is reported (on this server, accepted means durable): by the delivery itself, or,
when the server offers it, by the server together with the other deliveries of that moment.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import secrets
import socket
import sys
import threading
import time
from pathlib import Path

SUBFOLDERS = ("tmp", "new", "cur")
FOLDER_MODE = 0o700

_COUNTER = itertools.count(1)
_NAME_ATTEMPTS = 5
# Errors with which os.link says "this file system has no hard links" rather than "failed".
_NO_LINKS = frozenset(
    {errno.EPERM, errno.ENOSYS, errno.EOPNOTSUPP, getattr(errno, "ENOTSUP", errno.EOPNOTSUPP)}
)


class NoSuchMailbox(Exception):
    """The Maildir is missing and the sink may not create it."""


class Abandoned(Exception):
    """The caller stopped waiting (its timeout passed) before the message was published."""


def unique_name(key: str | None = None) -> str:
    """``<seconds>.M<microseconds>P<pid>Q<counter>R<key>.<host>``: unique per delivery.

    Time, process, a per-process counter and 16 hex digits: the delivery's ``key`` (the same
    for one message and recipient in every run, so that a copy stored before a crash can be
    found) or, without one, 64 random bits. Neither two processes nor two threads nor a clock
    stepping back produce the same name. ``/`` and ``:`` in the host name are written
    ``\\057`` and ``\\072``, as the specification asks (``:`` starts a flag suffix in ``cur/``).
    """
    seconds, micros = divmod(time.time_ns() // 1000, 1_000_000)
    host = (socket.gethostname() or "localhost").replace("/", "\\057").replace(":", "\\072")
    tag = key or secrets.token_hex(8)
    return f"{seconds}.M{micros}P{os.getpid()}Q{next(_COUNTER)}R{tag}.{host}"


def stored_copy(folder: Path, key: str) -> Path | None:
    """The message a delivery with ``key`` stored in the Maildir ``folder`` (in ``new/``, or
    moved to ``cur/`` by a reader since), if any."""
    marker = f"R{key}."
    for sub in ("new", "cur"):
        with contextlib.suppress(FileNotFoundError), os.scandir(folder / sub) as entries:
            for entry in entries:
                if marker in entry.name:
                    return Path(entry.path)
    return None


def prepare(folder: Path, *, create: bool) -> None:
    """Make sure ``folder`` (``<root>/<domain>/<local part>``) is a Maildir: ``tmp``, ``new``
    and ``cur`` in it, creating what is missing, ``root`` included.

    Created folders get mode 0700 and their parent is fsynced, so a mailbox made for a
    delivery survives a crash as surely as the message does. With ``create`` false a missing
    piece raises :class:`NoSuchMailbox`.
    """
    if all((folder / name).is_dir() for name in SUBFOLDERS):
        return
    if not create:
        raise NoSuchMailbox(folder)
    root = folder.parent.parent
    if not root.is_dir():
        root.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
    for path in (folder.parent, folder, *(folder / name for name in SUBFOLDERS)):
        _make_folder(path)


def _make_folder(path: Path) -> None:
    try:
        path.mkdir(mode=FOLDER_MODE)
    except FileExistsError:
        if not path.is_dir():
            raise NotADirectoryError(
                errno.ENOTDIR, "exists and is not a folder", str(path)
            ) from None
        return
    _fsync_folder(path.parent)


class Delivery:
    """One message on its way into one Maildir; runs in a worker thread.

    The caller may stop waiting (its binding's Timeout passed) and call :meth:`abandon`. The
    thread cannot be stopped, so it checks before publishing and again before reporting
    success: an abandoned delivery removes its files, and ``abandon`` returns the path if the
    message was already committed. Either way the caller can tell the truth about it, so a
    retry never delivers twice and a reported failure never leaves a copy in ``new/``.
    """

    def __init__(
        self,
        folder: Path,
        data: bytes,
        *,
        mode: int,
        create: bool,
        flush: bool = True,
        key: str | None = None,
        look_first: bool = False,
    ) -> None:
        self.folder = folder
        self.data = data
        self.mode = mode
        self.create = create
        self.key = key
        """Names the file (see :func:`unique_name`)."""
        self.look_first = look_first
        """Report the copy stored under ``key`` by an earlier run, if there is one."""
        self.flush = flush
        """False: the caller flushes the published file and ``new/`` (see :meth:`unflushed`)."""
        self._lock = threading.Lock()
        self._abandoned = False
        self._committed: Path | None = None

    def abandon(self) -> Path | None:
        """Give up on this delivery; returns the message's path if it is already delivered."""
        with self._lock:
            self._abandoned = True
            return self._committed

    def _checkpoint(self, committed: Path | None = None) -> None:
        with self._lock:
            if self._abandoned:
                raise Abandoned(self.folder)
            self._committed = committed

    def run(self) -> Path:
        """Deliver; return the path in ``new/``. Raises ``OSError``, :class:`NoSuchMailbox` or
        :class:`Abandoned`, and then nothing of this message is left in ``tmp/`` or ``new/``.
        """
        prepare(self.folder, create=self.create)
        self._checkpoint()
        if self.look_first and self.key is not None:
            earlier = stored_copy(self.folder, self.key)
            if earlier is not None:
                self._checkpoint(committed=earlier)
                return earlier
        temporary, fd = self._create()
        published = self.folder / "new" / temporary.name
        linked = renamed = False
        try:
            try:
                if sys.platform != "win32":
                    os.fchmod(fd, self.mode)  # exactly ``mode``, whatever the umask
                _write_all(fd, self.data)
                if self.flush:
                    os.fsync(fd)
            finally:
                os.close(fd)
            self._checkpoint()
            try:
                os.link(temporary, published)  # fails rather than replace an existing file
                linked = True
            except OSError as exc:
                if exc.errno not in _NO_LINKS:
                    raise
                os.rename(temporary, published)
                renamed = True
            if self.flush:
                _fsync_folder(published.parent)
            self._checkpoint(committed=published)
        except BaseException:
            if linked or renamed:
                _remove(published)
            _remove(temporary)
            raise
        if linked:
            _remove(temporary)
        return published

    def _create(self) -> tuple[Path, int]:
        """A new file in ``tmp/`` under a fresh unique name, open for writing."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
        attempts = 0
        while True:
            path = self.folder / "tmp" / unique_name(self.key)
            try:
                return path, os.open(path, flags, self.mode)
            except FileExistsError:
                attempts += 1
                if attempts == _NAME_ATTEMPTS:
                    raise


def unflushed(published: Path) -> list[str]:
    """What a delivery made without ``flush`` leaves to flush: the file and its ``new/`` folder."""
    return [str(published), str(published.parent)]


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _fsync_folder(path: Path) -> None:
    """Make a folder's new entries durable (POSIX: fsync the folder itself)."""
    if sys.platform == "win32":
        return  # a folder cannot be opened as a file there; NTFS journals its entries
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)
