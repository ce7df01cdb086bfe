"""The durable spool of an SMTP source: accepted means on disk.

A message is accepted (250 to DATA) only once both of its files are in ``queue/`` and fsynced:
the content (``<id>.eml``, written first) and its envelope (``<id>.json``, whose arrival in
``queue/`` is the commit point). The pipeline works from these files, records each delivery in the
envelope before moving on, and removes both files when the message is done, so a crash at any
point leaves either nothing accepted or a message that the next start resumes.

Layout under the source's spool folder::

    incoming/   files being written (never read back; cleared at start)
    queue/      accepted messages: <id>.eml and <id>.json
    badmail/    messages kept aside: <id>.eml and <id>.json (with the reason)
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import secrets
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(slots=True)
class Envelope:
    """What the SMTP dialogue said about a message, plus its delivery state."""

    id: str
    mail_from: str
    recipients: list[str]
    received_at: float
    size: int
    ehlo: str | None = None
    peer: str | None = None
    delivered: list[str] = field(default_factory=list)
    """Recipients already stored: never delivered twice, even across a crash."""
    failed: dict[str, str] = field(default_factory=dict)
    """Recipients that failed for good, with the reason."""
    attempts: int = 0
    reason: str | None = None
    """Why the message went to badmail."""

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), ensure_ascii=False, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Envelope:
        fields: dict[str, Any] = json.loads(data)
        return cls(**fields)


def new_message_id() -> str:
    """Sortable by arrival, unique across processes: time, then randomness."""
    return f"{time.time_ns():x}-{secrets.token_hex(6)}"


class Spool:
    """The spool folder of one source."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.incoming = root / "incoming"
        self.queue = root / "queue"
        self.badmail = root / "badmail"

    def prepare(self) -> None:
        """Create the folders; clear half-written files an earlier crash left in incoming/."""
        for folder in (self.incoming, self.queue, self.badmail):
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        for leftover in self.incoming.iterdir():
            leftover.unlink(missing_ok=True)
        for content in self.queue.glob("*.eml"):
            if not content.with_suffix(".json").exists():
                # Content without an envelope was never acknowledged to the client.
                content.unlink(missing_ok=True)

    def accept(self, envelope: Envelope, content: bytes) -> None:
        """Write a message durably; when this returns, the server may say 250."""
        self.accept_group([(envelope, content)])

    def accept_group(self, messages: list[tuple[Envelope, bytes]]) -> None:
        """Write several messages durably, sharing the disk flushes.

        Every file of the group is written first and only then flushed, so the file system
        commits them together; contents go into queue/ before their envelopes, so an envelope
        in queue/ always has its content beside it, whatever moment a crash picks.
        """
        files = [(f"{e.id}.eml", content) for e, content in messages]
        files += [(f"{e.id}.json", e.to_json()) for e, _ in messages]
        self._write_all_durably(files)
        for name, _ in files:
            os.replace(self.incoming / name, self.queue / name)
        _fsync_folder(self.queue)

    def _write_all_durably(self, files: list[tuple[str, bytes]]) -> None:
        descriptors = []
        try:
            for name, data in files:
                fd = os.open(self.incoming / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                descriptors.append(fd)
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            if descriptors and not _sync_file_system(descriptors[0]):
                for fd in descriptors:
                    os.fsync(fd)
        finally:
            for fd in descriptors:
                os.close(fd)

    def finish_group(self, message_ids: list[str]) -> None:
        """Remove several finished messages, with one fsync of the folder for all of them."""
        for message_id in message_ids:
            (self.queue / f"{message_id}.eml").unlink(missing_ok=True)
            (self.queue / f"{message_id}.json").unlink(missing_ok=True)
        _fsync_folder(self.queue)

    def pending(self) -> list[str]:
        """IDs of the messages in the queue, oldest first."""
        return sorted(p.stem for p in self.queue.glob("*.json"))

    def load(self, message_id: str) -> tuple[Envelope, bytes]:
        envelope = Envelope.from_json((self.queue / f"{message_id}.json").read_bytes())
        return envelope, (self.queue / f"{message_id}.eml").read_bytes()

    def update(self, envelope: Envelope) -> None:
        """Record the envelope's new delivery state durably (atomic replace)."""
        meta = self._write_durably(f"{envelope.id}.json", envelope.to_json())
        os.replace(meta, self.queue / f"{envelope.id}.json")
        _fsync_folder(self.queue)

    def finish(self, message_id: str) -> None:
        """The message is done: remove it from the queue."""
        self.finish_group([message_id])

    def to_badmail(self, envelope: Envelope, content: bytes) -> Path:
        """Keep a message aside with its reason, then take it out of the queue."""
        eml = self._write_durably(f"{envelope.id}.eml", content)
        os.replace(eml, self.badmail / f"{envelope.id}.eml")
        meta = self._write_durably(f"{envelope.id}.json", envelope.to_json())
        os.replace(meta, self.badmail / f"{envelope.id}.json")
        _fsync_folder(self.badmail)
        self.finish(envelope.id)
        return self.badmail / f"{envelope.id}.eml"

    def _write_durably(self, name: str, data: bytes) -> Path:
        path = self.incoming / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        return path


def _load_syncfs() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        function: Callable[[int], int] = libc.syncfs
    except (OSError, AttributeError):
        return None
    return function


_SYNCFS = _load_syncfs() if sys.platform.startswith("linux") else None


def _sync_file_system(fd: int) -> bool:
    """Flush the whole file system holding ``fd`` at once (Linux ``syncfs``).

    One flush covers every file of a group, where one fsync per file would each force a
    journal commit of its own. Returns False where ``syncfs`` is not available.
    """
    if _SYNCFS is None:
        return False
    if _SYNCFS(fd) != 0:
        error = ctypes.get_errno()
        raise OSError(error, os.strerror(error))
    return True


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class GroupCommit:
    """Lets concurrent callers share one durable write: a group commit.

    Sessions that finish DATA at the same moment each need their message on disk before their
    250; one writer thread takes every request waiting, performs them together (so the disk
    flushes once per group instead of once per message), and answers each.
    """

    def __init__(self, perform: Callable[[list[Any]], None], name: str) -> None:
        self._perform = perform
        self._waiting: list[tuple[Any, Future[None]]] = []
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: Any) -> Future[None]:
        done: Future[None] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the spool writer is closed")
            self._waiting.append((item, done))
            self._wake.notify()
        return done

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._wake.notify()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._waiting and not self._closed:
                    self._wake.wait()
                group, self._waiting = self._waiting, []
                if not group and self._closed:
                    return
            try:
                self._perform([item for item, _ in group])
            except BaseException as exc:  # each waiter learns its write failed
                for _, done in group:
                    done.set_exception(exc)
            else:
                for _, done in group:
                    done.set_result(None)
