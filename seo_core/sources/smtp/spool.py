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

import json
import os
import secrets
import time
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
        eml = self._write_durably(f"{envelope.id}.eml", content)
        os.replace(eml, self.queue / f"{envelope.id}.eml")
        meta = self._write_durably(f"{envelope.id}.json", envelope.to_json())
        os.replace(meta, self.queue / f"{envelope.id}.json")
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
        """The message is done: remove it from the queue (envelope last)."""
        (self.queue / f"{message_id}.eml").unlink(missing_ok=True)
        (self.queue / f"{message_id}.json").unlink(missing_ok=True)
        _fsync_folder(self.queue)

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


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
