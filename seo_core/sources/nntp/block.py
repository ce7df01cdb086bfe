"""Reading a multi-line data block (the article after POST or IHAVE) strictly.

RFC 3977 (3.1.1) ends a block with ``CRLF . CRLF`` and dot-stuffs every line that begins with a
dot. Servers that are lenient about either have been used to smuggle one article inside another,
so this reader is not:

- the block ends only at a line ``.`` CRLF that follows a CRLF (or starts the block, right after
  the command line); ``LF . CRLF`` or ``CRLF . LF`` is ordinary data;
- a line ending in a bare LF, or a CR not followed by LF anywhere, marks the block faulty (the
  server reads on to the real end and refuses it);
- a leading dot is removed once per line, header lines included, so ``..x`` is stored as ``.x``;
- bytes beyond ``limit`` are counted and dropped as they come, so a client cannot make the server
  buffer more than the limit however much it sends.

:class:`BlockReader` is a plain state machine fed one piece at a time (what
:func:`read_piece` returns), so it can be tested byte by byte without a socket.
"""

from __future__ import annotations

import asyncio

CR, LF = 0x0D, 0x0A
CRLF = b"\r\n"
TERMINATOR = b".\r\n"


async def read_piece(reader: asyncio.StreamReader, timeout: float | None = None) -> bytes:
    """The next line with its LF or, of a line longer than the stream's limit, the next part.

    Raises :class:`asyncio.IncompleteReadError` when the client goes away first, and
    :class:`TimeoutError` when nothing comes for ``timeout`` seconds.
    """
    async with asyncio.timeout(timeout):
        try:
            return await reader.readuntil(b"\n")
        except asyncio.LimitOverrunError as exc:
            return await reader.readexactly(exc.consumed)


class BlockReader:
    """One dot-terminated block, received a piece at a time.

    ``headers_complete`` turns true once the empty line after the header block is in, so a
    caller can act on the headers (fire OnPostEarly) before the body arrives.
    """

    __slots__ = (
        "_after_crlf",
        "_data",
        "_last",
        "_line_start",
        "bare_line_ending",
        "done",
        "header_length",
        "limit",
        "size",
    )

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        """Bytes of content received so far, dot-stuffing undone (also once over the limit)."""
        self.done = False
        self.bare_line_ending = False
        self.header_length: int | None = None
        """Length of the header block (its last CRLF included), once the empty line is in."""
        self._data = bytearray()
        self._line_start = True
        self._after_crlf = True  # the command line before the block ended with CRLF
        self._last = LF

    @property
    def too_big(self) -> bool:
        return self.size > self.limit

    @property
    def faulty(self) -> bool:
        """True when the block must be refused: a bare line ending, or over the limit."""
        return self.bare_line_ending or self.too_big

    @property
    def headers_complete(self) -> bool:
        return self.header_length is not None

    @property
    def headers(self) -> bytes:
        """The header block: everything up to the empty line, or the whole block if none came."""
        end = self.header_length if self.header_length is not None else len(self._data)
        return bytes(self._data[:end])

    @property
    def body(self) -> bytes:
        """What follows the empty line after the headers (empty when there was none)."""
        if self.header_length is None:
            return b""
        return bytes(self._data[self.header_length + len(CRLF) :])

    def feed(self, piece: bytes) -> bool:
        """Take the next piece; True when it was the terminating line."""
        if self._line_start:
            if self._after_crlf and piece == TERMINATOR:
                self.done = True
                return True
            if piece[:1] == b".":
                piece = piece[1:]
        if piece:
            self._check_line_endings(piece)
        ends_line = piece[-1:] == b"\n"
        if self._line_start and ends_line and piece == CRLF and self.header_length is None:
            self.header_length = len(self._data)
        self._line_start = ends_line
        if ends_line:
            before = piece[-2] if len(piece) >= 2 else self._last
            self._after_crlf = before == CR
        if piece:
            self._last = piece[-1]
        self.size += len(piece)
        if self.size > self.limit:
            self._data.clear()
        else:
            self._data += piece
        return False

    def _check_line_endings(self, piece: bytes) -> None:
        if self.bare_line_ending:
            return
        if self._last == CR and piece[0] != LF:
            self.bare_line_ending = True  # a CR that ended the previous part of a long line
            return
        lone_cr = piece.count(b"\r") - piece.count(b"\r\n") - (1 if piece[-1] == CR else 0)
        if lone_cr:
            self.bare_line_ending = True
            return
        if piece[-1] == LF:
            before = piece[-2] if len(piece) >= 2 else self._last
            if before != CR:
                self.bare_line_ending = True
