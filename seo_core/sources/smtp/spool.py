"""The durable spool of an SMTP source: accepted means on disk.

Accepted messages are written to a journal, and a message is accepted (250 to DATA) only once its
record is flushed to disk. The journal is made of segments: files filled with zeros when they are
made, so that writing a record later changes no file size and no metadata, and flushing it
(``fdatasync``) is a pure data write, the cheapest durable write a file system offers. A spool of
one file per message pays for a new inode and a directory entry per message instead. Sessions that
finish DATA together share one flush (:class:`GroupCommit`).

Layout under the source's spool folder::

    journal/<n>.log     accepted messages in arrival order; each record is a header (magic,
                        lengths, CRC-32), the envelope as JSON, then the content; zeros follow
                        the last record
    journal/<n>.state   what became of them: JSON lines, a new delivery state or ``done``
    badmail/            messages kept aside: <id>.eml and <id>.json (with the reason)
    processed/          <id>.eml: a deferred message as the transport events left it, for its
                        retries (made when the first one is needed)

A spool has two roles, which may live in two processes: the *journal writer* (the SMTP listener,
:meth:`Spool.open_journal` and :meth:`Spool.accept_group`) and the *queue* (delivery,
:meth:`Spool.open_queue` and the rest). Each role holds a lock file, so two servers never share a
spool. A crash may leave a torn record at the end of a segment: its CRC fails, it was never
acknowledged, and reading stops there. The queue resumes every message without ``done`` and
removes a segment once a newer one exists and all of its messages are done.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import itertools
import json
import os
import secrets
import struct
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger("seo.smtp")

SEGMENT_BYTES = 16 * 1024 * 1024
"""The size of a journal segment (a bigger message gets a segment of its own size)."""

_RECORD = struct.Struct(">4sIII")
_MAGIC = b"SEO1"
_ZEROS = bytes(1024 * 1024)
_IOV_MAX = os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 16


class SpoolBusyError(OSError):
    """Another process holds this role of the spool."""


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
    categorized: list[str] | None = None
    """Once a delivery was deferred: the recipients the transport events resolved. A retry
    starts at StoreDriver with them, so OnArrival to OnPostCategorize run once per message (an
    audit line, a webhook or a MaxFirings budget is not spent again by each retry)."""
    processed: bool = False
    """The message as the sinks left it, when they changed it, is kept for the retries in
    ``processed/<id>.eml`` (the journal holds it as it was received)."""

    def to_json(self) -> bytes:
        # Not dataclasses.asdict: it deep-copies every list and costs more than the dump.
        record = {name: getattr(self, name) for name in _ENVELOPE_FIELDS}
        return json.dumps(record, ensure_ascii=False, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> Envelope:
        record: dict[str, Any] = json.loads(data)
        return cls(**record)

    def delivery_state(self) -> dict[str, Any]:
        """The fields the pipeline changes after acceptance."""
        return {
            "delivered": self.delivered,
            "failed": self.failed,
            "attempts": self.attempts,
            "reason": self.reason,
            "categorized": self.categorized,
            "processed": self.processed,
        }

    def copy(self) -> Envelope:
        return replace(
            self,
            recipients=list(self.recipients),
            delivered=list(self.delivered),
            failed=dict(self.failed),
            categorized=None if self.categorized is None else list(self.categorized),
        )


_ENVELOPE_FIELDS = tuple(sorted(item.name for item in fields(Envelope)))

_ID_PREFIX = secrets.token_hex(4)
_ID_COUNTER = itertools.count()


def new_message_id() -> str:
    """Sortable by arrival, unique across processes and restarts: the time, then randomness
    drawn once per process and a counter (no system call per message)."""
    return f"{time.time_ns():x}-{_ID_PREFIX}{next(_ID_COUNTER) & 0xFFFF:04x}"


@dataclass(frozen=True, slots=True)
class Location:
    """Where a message's content lies in the journal."""

    segment: int
    offset: int
    length: int
    record: int = 0
    """Where the message's record (header, envelope, content) starts."""


@dataclass(slots=True)
class _Entry:
    location: Location
    envelope: Envelope
    crashes: int = 0
    """Earlier runs that took the message in hand and never let go of it: they ended abruptly."""


RecordContent = bytes | tuple[bytes, ...]
"""A message's content, whole or in pieces written one after the other (the server's trace
line, then the message as received): pieces are never joined in memory."""


def _encode(envelope: Envelope, content: RecordContent) -> list[bytes]:
    """A journal record as the pieces to write in a row: header, envelope, content."""
    pieces = (content,) if isinstance(content, bytes) else content
    header = envelope.to_json()
    checksum = zlib.crc32(header)
    for piece in pieces:
        checksum = zlib.crc32(piece, checksum)
    length = sum(map(len, pieces))
    return [_RECORD.pack(_MAGIC, len(header), length, checksum), header, *pieces]


def _records(data: bytes) -> Iterator[tuple[Envelope, int, int]]:
    """The whole records of a segment, as (envelope, content offset, content length).

    Stops at the zeros after the last record, or at a torn or damaged record: nothing after it
    was acknowledged.
    """
    position = 0
    while position + _RECORD.size <= len(data):
        magic, header_length, content_length, checksum = _RECORD.unpack_from(data, position)
        start = position + _RECORD.size
        end = start + header_length + content_length
        if magic != _MAGIC or end > len(data):
            return
        header = data[start : start + header_length]
        if zlib.crc32(data[start + header_length : end], zlib.crc32(header)) != checksum:
            return
        yield Envelope.from_json(header), start + header_length, content_length
        position = end


def _state_lines(data: bytes) -> Iterator[dict[str, Any]]:
    for line in data.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line torn by a crash: it was never relied on
        if isinstance(record, dict) and isinstance(record.get("id"), str):
            yield record


class Spool:
    """The spool folder of one source.

    :meth:`pending` and :meth:`load` also work on a spool that another process owns, without
    opening it: that reads the folder as it is on disk.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.journal = root / "journal"
        self.badmail = root / "badmail"
        self.processed = root / "processed"
        # the journal writer
        self._segment = 0
        self._segment_fd = -1
        self._capacity = 0
        self._size = 0
        self._spare: threading.Thread | None = None
        # the queue
        self._lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._entries: dict[str, _Entry] | None = None
        self._live: Counter[int] = Counter()
        self._scanned: dict[int, int] = {}
        self._newest = 0
        self._state_fds: dict[int, int] = {}
        self._unrecorded: list[tuple[int, str]] = []
        """(segment, message id) of finished messages whose ``done`` record is not written yet."""
        self._locks: list[int] = []

    # -- the journal writer ----------------------------------------------------------------

    def open_journal(self) -> None:
        """Take the writer's lock, and go on writing after the last whole record of the newest
        segment (over a torn one a crash may have left: it was never acknowledged)."""
        self._prepare_folders()
        self._locks.append(_lock_file(self.root / "journal.lock"))
        (self.journal / "spare.part").unlink(missing_ok=True)
        segments = self._segments()
        if segments:
            newest = segments[-1]
            path = self._segment_path(newest, ".log")
            end = 0
            for _, offset, length in _records(path.read_bytes()):
                end = offset + length
            self._segment_fd = os.open(path, os.O_WRONLY)
            self._segment, self._size = newest, end
            self._capacity = os.fstat(self._segment_fd).st_size
        else:
            self._start_segment(1, SEGMENT_BYTES)
        self._import_legacy_queue()

    def accept_group(self, messages: list[tuple[Envelope, RecordContent]]) -> list[Location]:
        """Write messages durably, with one flush for all; then the server may say 250.

        Called by one thread at a time (the :class:`GroupCommit` writer). The records go to
        disk in one vectored write from the messages' own buffers: a group of large messages
        is never copied into one.
        """
        if self._segment_fd < 0:
            raise RuntimeError(f"the spool {self.root} is not open for accepting")
        records = [_encode(envelope, content) for envelope, content in messages]
        size = sum(len(piece) for record in records for piece in record)
        if self._size + size > self._capacity:
            self._start_segment(self._segment + 1, max(SEGMENT_BYTES, size))
        try:
            _write_all_at(self._segment_fd, [p for record in records for p in record], self._size)
            os.fdatasync(self._segment_fd)
        except OSError:
            # What the segment holds past its last good record is unknown now; the next
            # group goes to a new segment, and reading this one stops at the damage.
            self._capacity = 0
            raise
        locations = []
        position = self._size
        for record in records:
            length = sum(map(len, record[2:]))
            start, position = position, position + len(record[0]) + len(record[1]) + length
            locations.append(Location(self._segment, position - length, length, record=start))
        self._size = position
        if self._size > self._capacity // 2 and self._spare is None:
            self._spare = threading.Thread(target=self._make_spare, daemon=True)
            self._spare.start()
        return locations

    def _start_segment(self, segment: int, capacity: int) -> None:
        if self._spare is not None:
            self._spare.join()
            self._spare = None
        spare = self.journal / "spare.tmp"
        path = self._segment_path(segment, ".log")
        if capacity == SEGMENT_BYTES and spare.exists():
            os.replace(spare, path)
        else:
            _make_zero_file(path, capacity)
        _fsync_folder(self.journal)
        if self._segment_fd >= 0:
            os.close(self._segment_fd)
        self._segment_fd = os.open(path, os.O_WRONLY)
        self._segment, self._size = segment, 0
        self._capacity = os.fstat(self._segment_fd).st_size

    def _make_spare(self) -> None:
        """Prepare the next segment in the background, so a rotation costs no wait.

        If the disk has no room for it, the rotation tries again (and a client whose message
        does not fit is told to try later).
        """
        spare = self.journal / "spare.tmp"
        if spare.exists():
            return
        try:
            _make_zero_file(spare.with_suffix(".part"), SEGMENT_BYTES)
            os.replace(spare.with_suffix(".part"), spare)
        except OSError as exc:
            log.warning("smtp_spool_spare_failed", spool=str(self.root), error=str(exc))

    # -- the queue -------------------------------------------------------------------------

    def open_queue(self) -> None:
        """Take the queue's lock (waiting for an earlier owner to finish), and read the spool."""
        self._prepare_folders()
        self._locks.append(_lock_file(self.root / "queue.lock", wait=True))
        for part in self.badmail.glob(".*.part"):
            part.unlink()  # a badmail pair half-written when delivery died: still queued
        with self._lock:
            entries = self._scan()
            self._live = Counter(entry.location.segment for entry in entries.values())
            segments = self._segments()
            self._newest = max(segments, default=0)
            for segment in segments:
                if segment < self._newest and not self._live[segment]:
                    self._remove_segment(segment)
            self._entries = entries
        for path in self.processed.glob("*.eml*") if self.processed.is_dir() else ():
            entry = entries.get(path.stem)
            if entry is None or not entry.envelope.processed or path.suffix != ".eml":
                path.unlink()  # kept by a run that died before recording it, or finished

    def track(self, envelope: Envelope, location: Location) -> bool:
        """Take a newly accepted message into the queue; False when it is known already."""
        entries = self._queue()
        with self._lock:
            if envelope.id in entries or location.offset < self._scanned.get(location.segment, 0):
                return False
            entries[envelope.id] = _Entry(location, envelope.copy())
            self._live[location.segment] += 1
            if location.segment > self._newest:
                self._newest = location.segment
                retired = [s for s in self._live if s < self._newest and not self._live[s]]
            else:
                retired = []
        for segment in retired:
            self._retire(segment)
        return True

    def read_record(self, segment: int, record: int) -> tuple[Envelope, Location]:
        """The envelope and location of the record at ``record`` in ``segment``.

        How a delivery process learns of a message the listener accepted: the listener tells
        it where the record is, and it reads the rest from the journal. Raises ValueError for a
        damaged record.
        """
        fd = os.open(self._segment_path(segment, ".log"), os.O_RDONLY)
        try:
            head = os.pread(fd, _RECORD.size, record)
            if len(head) < _RECORD.size:
                raise ValueError(f"no record at {segment}:{record}")
            _, header_length, content_length, _ = _RECORD.unpack(head)
            data = head + os.pread(fd, header_length + content_length, record + _RECORD.size)
        finally:
            os.close(fd)
        for envelope, offset, length in _records(data):
            return envelope, Location(segment, record + offset, length, record=record)
        raise ValueError(f"damaged record at {segment}:{record}")

    def pending(self) -> list[str]:
        """IDs of the messages in the queue, oldest first."""
        with self._lock:
            entries = self._scan() if self._entries is None else self._entries
            return sorted(entries)

    def holds(self, message_id: str) -> bool:
        """True while the message is queued (not finished, nor set aside)."""
        with self._lock:
            return message_id in self._queue()

    def load(self, message_id: str) -> tuple[Envelope, bytes]:
        """A queued message's envelope (a copy: record changes with :meth:`update`) and content.

        Raises KeyError when the message is not (or no longer) queued.
        """
        with self._lock:
            entries = self._scan() if self._entries is None else self._entries
            entry = entries[message_id]
            envelope = entry.envelope.copy()
        location = entry.location
        fd = os.open(self._segment_path(location.segment, ".log"), os.O_RDONLY)
        try:
            content = os.pread(fd, location.length, location.offset)
        finally:
            os.close(fd)
        return envelope, content

    def crashes(self, message_id: str) -> int:
        """How many earlier runs ended abruptly with this message in hand (0 if none, or if the
        message is not queued)."""
        with self._lock:
            entry = self._queue().get(message_id)
            return 0 if entry is None else entry.crashes

    def mark(self, message_id: str, step: str) -> None:
        """Note that delivery took the message in hand (``started``) or let go (``ended``).

        Written without a flush: the note must outlive the process, not the machine. A message
        started more often than ended was in hand when delivery died. The note is a hint for
        telling crashes apart, so a full disk skips it rather than stop delivery.
        """
        with self._lock:
            entry = self._queue().get(message_id)
            if entry is None:
                return
            segment = entry.location.segment
        try:
            self._append_states({segment: [{"id": message_id, step: True}]}, flush=False)
        except OSError as exc:
            log.warning(
                "smtp_spool_mark_failed",
                spool=str(self.root),
                message_id=message_id,
                error=str(exc),
            )

    def update(self, envelope: Envelope) -> None:
        """Record the envelope's new delivery state durably."""
        entries = self._queue()
        with self._lock:
            entry = entries.get(envelope.id)
            if entry is None:
                return
            entry.envelope = replace(entry.envelope, **envelope.copy().delivery_state())
            segment = entry.location.segment
        self._append_states({segment: [{"id": envelope.id, **envelope.delivery_state()}]})

    def finish(self, message_id: str) -> None:
        """The message is done: take it out of the queue."""
        self.finish_group([message_id])

    def finish_group(self, message_ids: list[str]) -> None:
        """Take finished messages out of the queue, with one flush per segment.

        They leave the queue at once, even when their record cannot be written (a full disk):
        this process never takes them again, and the record is written with the next group.
        """
        entries = self._queue()
        kept: list[str] = []
        with self._lock:
            for message_id in message_ids:
                entry = entries.pop(message_id, None)
                if entry is not None:
                    self._unrecorded.append((entry.location.segment, message_id))
                    if entry.envelope.processed:
                        kept.append(message_id)
            unrecorded, self._unrecorded = self._unrecorded, []
        records: dict[int, list[dict[str, Any]]] = {}
        for segment, message_id in unrecorded:
            records.setdefault(segment, []).append({"id": message_id, "done": True})
        try:
            self._append_states(records)
        except OSError:
            with self._lock:
                self._unrecorded[:0] = unrecorded
            raise
        with self._lock:
            for segment, _ in unrecorded:
                self._live[segment] -= 1
        for segment in records:
            self._retire(segment)
        for message_id in kept:
            self._processed_path(message_id).unlink(missing_ok=True)

    def keep_processed(self, message_id: str, content: bytes) -> None:
        """Store ``content``, the message as the transport events left it, for its retries.

        Durably, and whole or not at all (a temporary name, flushed, then renamed): the state
        that says it is there (:attr:`Envelope.processed`) is recorded after this returns.
        """
        self.processed.mkdir(mode=0o700, exist_ok=True)
        path = self._processed_path(message_id)
        part = path.with_name(f".{path.name}.part")
        try:
            _write_durably(part, content)
            os.replace(part, path)
            _fsync_folder(self.processed)
        except OSError:
            part.unlink(missing_ok=True)
            raise

    def load_processed(self, message_id: str) -> bytes:
        """The content :meth:`keep_processed` stored for the message."""
        return self._processed_path(message_id).read_bytes()

    def _processed_path(self, message_id: str) -> Path:
        return self.processed / f"{message_id}.eml"

    def to_badmail(self, envelope: Envelope, content: bytes) -> Path:
        """Keep a message aside with its reason, then take it out of the queue.

        Both files are written under temporary names first, so ``badmail/`` only ever holds
        whole pairs; if that fails (a full disk), nothing is left and the message stays queued.
        """
        files = ((".eml", content), (".json", envelope.to_json() + b"\n"))
        parts = [self.badmail / f".{envelope.id}{suffix}.part" for suffix, _ in files]
        try:
            for part, (_, data) in zip(parts, files, strict=True):
                _write_durably(part, data)
            for part, (suffix, _) in zip(parts, files, strict=True):
                os.replace(part, self.badmail / f"{envelope.id}{suffix}")
            _fsync_folder(self.badmail)
        except OSError:
            for part in parts:
                part.unlink(missing_ok=True)
            raise
        self.finish(envelope.id)
        return self.badmail / f"{envelope.id}.eml"

    def close(self) -> None:
        """Close the files and release the locks of whichever roles this object held."""
        if self._spare is not None:
            self._spare.join()
            self._spare = None
        if self._segment_fd >= 0:
            os.close(self._segment_fd)
            self._segment_fd = -1
        with self._state_lock:
            for fd in self._state_fds.values():
                os.close(fd)
            self._state_fds.clear()
        for fd in self._locks:
            os.close(fd)
        self._locks.clear()

    # -- on disk ---------------------------------------------------------------------------

    def _prepare_folders(self) -> None:
        for folder in (self.journal, self.badmail):
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _queue(self) -> dict[str, _Entry]:
        if self._entries is None:
            raise RuntimeError(f"the spool {self.root} is not open for delivery")
        return self._entries

    def _segments(self) -> list[int]:
        if not self.journal.is_dir():
            return []
        return sorted(int(path.stem) for path in self.journal.glob("*.log") if path.stem.isdigit())

    def _segment_path(self, segment: int, suffix: str) -> Path:
        return self.journal / f"{segment:08d}{suffix}"

    def _scan(self) -> dict[str, _Entry]:
        """Every message the journal holds that is not done, with its latest delivery state."""
        entries: dict[str, _Entry] = {}
        for segment in self._segments():
            data = self._segment_path(segment, ".log").read_bytes()
            found: dict[str, _Entry] = {}
            end = 0
            for envelope, offset, length in _records(data):
                found[envelope.id] = _Entry(Location(segment, offset, length), envelope)
                end = offset + length
            self._scanned[segment] = end
            state = self._segment_path(segment, ".state")
            if state.exists():
                for record in _state_lines(state.read_bytes()):
                    entry = found.get(record["id"])
                    if entry is None:
                        continue
                    if record.get("done"):
                        del found[record["id"]]
                    elif record.get("started"):
                        entry.crashes += 1
                    elif record.get("ended"):
                        entry.crashes -= 1
                    else:
                        entry.envelope = _with_state(entry.envelope, record)
            entries.update(found)
        return entries

    def _append_states(
        self, records: dict[int, list[dict[str, Any]]], *, flush: bool = True
    ) -> None:
        with self._state_lock:
            written = []
            for segment, lines in records.items():
                fd = self._state_fds.get(segment)
                if fd is None:
                    path = self._segment_path(segment, ".state")
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                    _fsync_folder(self.journal)
                    self._state_fds[segment] = fd
                text = b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in lines)
                end = os.fstat(fd).st_size
                try:
                    _write_all(fd, text)
                except OSError:
                    # Take back a part-written line, so the next line starts on its own.
                    with contextlib.suppress(OSError):
                        os.ftruncate(fd, end)
                    raise
                written.append(fd)
            for fd in written if flush else ():
                os.fdatasync(fd)

    def _retire(self, segment: int) -> None:
        """Remove a segment once a newer one exists and all of its messages are done."""
        with self._lock:
            if segment >= self._newest or self._live[segment]:
                return
            del self._live[segment]
        self._remove_segment(segment)

    def _remove_segment(self, segment: int) -> None:
        with self._state_lock:
            fd = self._state_fds.pop(segment, None)
            if fd is not None:
                os.close(fd)
        self._segment_path(segment, ".log").unlink(missing_ok=True)
        self._segment_path(segment, ".state").unlink(missing_ok=True)

    def _import_legacy_queue(self) -> None:
        """Take over messages that a spool of files (seo before the journal) left in queue/."""
        queue = self.root / "queue"
        if not queue.is_dir():
            return
        for meta in sorted(queue.glob("*.json")):
            content = meta.with_suffix(".eml")
            if content.exists():
                self.accept_group([(Envelope.from_json(meta.read_bytes()), content.read_bytes())])
            meta.unlink()
            content.unlink(missing_ok=True)
        incoming = self.root / "incoming"
        for leftover in [*queue.iterdir(), *incoming.glob("*")]:
            leftover.unlink()  # content without an envelope was never acknowledged
        queue.rmdir()
        if incoming.is_dir():
            incoming.rmdir()


def _with_state(envelope: Envelope, record: dict[str, Any]) -> Envelope:
    changes = {key: record[key] for key in envelope.delivery_state() if key in record}
    return replace(envelope, **changes)


def journal_in_use(root: Path) -> bool:
    """Whether a running server writes the journal of the spool at ``root``; creates nothing."""
    try:
        fd = os.open(root / "journal.lock", os.O_RDWR)
    except OSError:
        return False  # no spool there, or none usable: starting it will say why
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # which also lets go of a lock taken here
    return False


def _lock_file(path: Path, wait: bool = False) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        if not wait:
            os.close(fd)
            raise SpoolBusyError(f"the spool {path.parent} is in use by another process") from None
        # An earlier delivery process still finishing its messages: they come first.
        log.warning("smtp_spool_waiting", spool=str(path.parent), lock=path.name)
        fcntl.flock(fd, fcntl.LOCK_EX)
        log.info("smtp_spool_taken", spool=str(path.parent), lock=path.name)
    return fd


def _make_zero_file(path: Path, size: int) -> None:
    """A file of ``size`` zero bytes on disk; nothing is left of it if that fails."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        written = 0
        while written < size:
            written += os.write(fd, _ZEROS[: min(len(_ZEROS), size - written)])
        os.fsync(fd)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _write_all_at(fd: int, pieces: list[bytes], offset: int) -> None:
    """Write ``pieces`` one after the other at ``offset``, with as few system calls as the
    kernel allows (``pwritev`` may write less than asked, and takes at most IOV_MAX pieces)."""
    views = [memoryview(piece) for piece in pieces if piece]
    first = 0
    while first < len(views):
        written = os.pwritev(fd, views[first : first + _IOV_MAX], offset)
        offset += written
        while first < len(views) and written >= len(views[first]):
            written -= len(views[first])
            first += 1
        if written:
            views[first] = views[first][written:]


def _write_durably(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        _write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


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
    flushes once per group instead of once per message), and wakes the event loop once per
    group to answer them all.
    """

    def __init__(self, perform: Callable[[list[Any]], list[Any] | None], name: str) -> None:
        self._perform = perform
        self._waiting: list[tuple[Any, asyncio.Future[Any]]] = []
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    async def commit(self, item: Any) -> Any:
        """Perform ``item`` with whatever else is waiting; returns what ``perform`` gave for it."""
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the spool writer is closed")
            self._waiting.append((item, done))
            self._wake.notify()
        return await done

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
                results = self._perform([item for item, _ in group])
            except BaseException as exc:  # each waiter learns its write failed
                outcome: list[Any] | BaseException = exc
            else:
                outcome = results if results is not None else [None] * len(group)
            by_loop: dict[asyncio.AbstractEventLoop, list[Any]] = {}
            for position, (_, done) in enumerate(group):
                value = outcome if isinstance(outcome, BaseException) else outcome[position]
                by_loop.setdefault(done.get_loop(), []).append((done, value))
            for loop, answers in by_loop.items():
                with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                    loop.call_soon_threadsafe(_answer, answers)


def _answer(answers: list[tuple[asyncio.Future[Any], Any]]) -> None:
    for done, value in answers:
        if done.done():
            continue
        if isinstance(value, BaseException):
            done.set_exception(value)
        else:
            done.set_result(value)
