"""The ``archive`` sink class and the file it writes."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import tempfile
from collections.abc import Mapping
from email.generator import BytesGenerator
from email.message import Message
from email.policy import EmailPolicy
from pathlib import Path

from seo_core.sdk import (
    MessageEvent,
    PostEvent,
    Prop,
    PropertyBag,
    PropertyValue,
    Schema,
    SinkPropertyError,
    hookimpl,
)

MAX_ID_BYTES = 120
"""How much of the message id a file name keeps; the digest after it keeps names unique."""
_SAFE = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-.=@_~")


class ArchiveSink:
    """Writes each message it is notified of to ``ArchiveLocation``, one ``.eml`` file each.

    The file appears whole or not at all: it is written under a temporary name in the same
    folder, fsynced, renamed into place, and the folder is fsynced. Its name is the message id
    made safe, then a digest of the content, so a message archived again (the source resumed it
    after a crash) lands on the same file, and two different messages never share one. A failure
    raises, so that the dispatcher logs it with the binding; the message goes on regardless.
    """

    properties_schema = Schema(
        {
            "ArchiveLocation": Prop(
                str,
                required=True,
                path=True,
                help="folder to write the copies to (in a config file: relative to the file)",
            ),
            "DoArchive": Prop(bool, default=True, help="false: keep the binding, archive nothing"),
        }
    )

    @staticmethod
    def validate_properties(properties: Mapping[str, PropertyValue]) -> None:
        """Refuse an empty ``ArchiveLocation``, which would archive into the server's folder."""
        location = PropertyBag(properties).get("ArchiveLocation")
        if isinstance(location, str) and (not location.strip() or "\0" in location):
            raise SinkPropertyError(
                "SinkProperties.ArchiveLocation", location, "must name a folder"
            )

    @hookimpl
    async def smtp_on_arrival(self, event: MessageEvent, sink_properties: PropertyBag) -> None:
        folder = _folder(sink_properties)
        if folder is None:
            return
        await asyncio.to_thread(archive, folder, event.message_id, message_bytes(event))

    @hookimpl
    async def nntp_on_post_final(self, event: PostEvent, sink_properties: PropertyBag) -> None:
        folder = _folder(sink_properties)
        if folder is None:
            return
        await asyncio.to_thread(archive, folder, event.message_id, serialize(event.message))


def _folder(properties: PropertyBag) -> Path | None:
    """Where to archive, or ``None`` when ``DoArchive`` is false."""
    ArchiveSink.validate_properties(properties)
    do_archive = properties.get("DoArchive", True)
    if not isinstance(do_archive, bool):
        raise SinkPropertyError("SinkProperties.DoArchive", do_archive, "must be a boolean")
    location = properties.get("ArchiveLocation")
    if not isinstance(location, str):
        raise SinkPropertyError(
            "SinkProperties.ArchiveLocation", location, "is required and must be a string"
        )
    return Path(location) if do_archive else None


def message_bytes(event: MessageEvent) -> bytes:
    """The message as it stands: its bytes, unless some sink has read the parsed message.

    A sink before this one that read ``event.message`` may have changed it, and then the parsed
    message is what the source will deliver, not the raw bytes it was parsed from.
    """
    if event.message_used or event.raw is None:
        return serialize(event.message)
    return event.raw


def serialize(message: Message) -> bytes:
    """The message written out with CRLF line ends, its parsed headers not refolded."""
    policy = message.policy
    if isinstance(policy, EmailPolicy):
        policy = policy.clone(linesep="\r\n", refold_source="none")
    else:
        policy = policy.clone(linesep="\r\n")
    buffer = io.BytesIO()
    BytesGenerator(buffer, mangle_from_=False, policy=policy).flatten(message)
    return buffer.getvalue()


def file_name(message_id: str | None, data: bytes) -> str:
    """``<message id, made safe>.<digest of data>.eml``.

    The id loses its angle brackets; every byte of it outside ``A-Z a-z 0-9 + - . = @ _ ~`` is
    written ``%XX``, and so is a leading dot, so the name is one plain file name in the folder
    (never hidden, never ``..``, never with ``/``), whatever the id.
    """
    text = (message_id or "").strip().removeprefix("<").removesuffix(">") or "no-id"
    safe = []
    size = 0
    for index, char in enumerate(text):
        encoded = char.encode("utf-8", "surrogatepass")
        if all(byte in _SAFE for byte in encoded) and not (index == 0 and char == "."):
            piece = char
        else:
            piece = "".join(f"%{byte:02X}" for byte in encoded)
        size += len(piece)
        if size > MAX_ID_BYTES:
            break
        safe.append(piece)
    digest = hashlib.sha256(data).hexdigest()[:16]
    return f"{''.join(safe)}.{digest}.eml"


def archive(folder: Path, message_id: str | None, data: bytes) -> Path:
    """Write ``data`` to its file in ``folder`` atomically and durably; return the path."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    name = file_name(message_id, data)
    fd, temporary = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        path = folder / name
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _fsync_folder(folder)
    return path


def _fsync_folder(folder: Path) -> None:
    """Make the rename durable: the folder entry is only on disk once the folder is synced."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
