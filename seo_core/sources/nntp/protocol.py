"""The NNTP dialogue (RFC 3977, reader and posting parts) of one client, on asyncio streams.

One :class:`NntpSession` per connection reads a command line, answers it, and reads the next:
there is no pipelining state to get out of step. Command lines are read as strictly as articles:
they end with CRLF, hold valid UTF-8 and fit in 512 octets (RFC 3977, 3.1), or get a 501 and
the session goes on. POST and IHAVE hand the article to :class:`~.posting.Posting`.

Replies to commands that name no group, article or range that exists use the RFC's codes
(411, 412, 420-423, 430); a client sending too many unknown commands is disconnected. An article
number is ASCII digits of any size (:func:`parse_number`): one past what the store can hold is
a number no article has, not an error.
"""

from __future__ import annotations

import asyncio
import fnmatch
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import structlog

from seo_core.sources.nntp.article import OVERVIEW_FORMAT, valid_message_id
from seo_core.sources.nntp.block import read_piece
from seo_core.sources.nntp.posting import IHAVE, POST, Posting, Replies
from seo_core.sources.nntp.store import ArticleRef, GroupInfo

if TYPE_CHECKING:
    from seo_core.sources.nntp.service import NntpSource

log = structlog.get_logger("seo.nntp")

MAX_COMMAND = 512
"""Octets of a command line, CRLF included (RFC 3977, 3.1)."""
BOGUS_LIMIT = 10
"""Unknown commands a session may send before it is closed."""
NO_DESCRIPTION = "No description."
"""What LIST NEWSGROUPS gives for a group: the config names groups without describing them."""

CAPABILITIES = (
    "VERSION 2",
    "IMPLEMENTATION seo",
    "READER",
    "POST",
    "IHAVE",
    "LIST ACTIVE NEWSGROUPS OVERVIEW.FMT",
    "OVER MSGID",
)
HELP = (
    "ARTICLE [message-id|number]",
    "BODY [message-id|number]",
    "CAPABILITIES",
    "DATE",
    "GROUP newsgroup",
    "HEAD [message-id|number]",
    "HELP",
    "IHAVE message-id",
    "LAST",
    "LIST [ACTIVE [wildmat]|NEWSGROUPS [wildmat]|OVERVIEW.FMT]",
    "LISTGROUP [newsgroup [range]]",
    "MODE READER",
    "NEXT",
    "OVER [range|message-id]",
    "POST",
    "QUIT",
    "STAT [message-id|number]",
)

Handler = Callable[[list[str]], Awaitable[None]]


class CommandLineError(Exception):
    """A command line that cannot be read as one; the message is the 501 text."""


class NntpSession:
    """The dialogue with one client: the selected group, the current article, the commands."""

    def __init__(
        self, source: NntpSource, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.source = source
        self.reader = reader
        self.writer = writer
        self.id = source.new_session_id()
        peer = writer.get_extra_info("peername")
        self.peer = None if not peer else f"{peer[0]}:{peer[1]}"
        self.group: str | None = None
        self.article: int | None = None
        """The current article number in ``group``; ``None`` when there is none."""
        self.busy = False
        """True from reading a command to sending its reply: stopping waits for it."""
        self.closing = False
        self.farewell = "400 service shutting down"
        """The last line a closing session sends (after QUIT, 205)."""
        self.bogus = 0
        self.task: asyncio.Task[None] | None = None
        self.commands: dict[str, Handler] = {
            "ARTICLE": self.article_cmd,
            "BODY": self.article_cmd,
            "CAPABILITIES": self.capabilities,
            "DATE": self.date,
            "GROUP": self.group_cmd,
            "HEAD": self.article_cmd,
            "HELP": self.help,
            "IHAVE": self.ihave,
            "LAST": self.next_or_last,
            "LIST": self.list_cmd,
            "LISTGROUP": self.listgroup,
            "MODE": self.mode,
            "NEXT": self.next_or_last,
            "OVER": self.over,
            "POST": self.post,
            "QUIT": self.quit,
            "STAT": self.article_cmd,
            "XOVER": self.over,
        }
        self._verb = ""

    # -- the loop --------------------------------------------------------------------------

    async def run(self) -> None:
        """Greet, then answer commands until QUIT, end of input, or the source stopping."""
        self.task = asyncio.current_task()
        log.info("nntp_session_start", source=self.source.name, session=self.id, peer=self.peer)
        reason = "closed"
        try:
            hostname = self.source.settings.hostname
            await self.send(f"200 {hostname} seo NNTP service ready, posting allowed")
            while not self.closing:
                try:
                    line = await self._command_line()
                except CommandLineError as exc:
                    await self.send(f"501 {exc}")
                    continue
                if line is None or self.closing:
                    break
                self.busy = True
                try:
                    await self._dispatch(line)
                finally:
                    self.busy = False
        except (ConnectionError, asyncio.IncompleteReadError):
            reason = "reset"
        except TimeoutError:
            reason = "idle"
            self.closing = True
            self.farewell = "400 idle for too long, closing the connection"
        except asyncio.CancelledError:
            reason = "stopped"
            raise
        except Exception as exc:  # a bug here must end this session only, visibly
            reason = "error"
            log.exception(
                "nntp_session_error", source=self.source.name, session=self.id, error=str(exc)
            )
        finally:
            # Logged before the farewell is sent: a client that has its 205 (or 400) knows the
            # session is over on the server too.
            log.info("nntp_session_end", source=self.source.name, session=self.id, reason=reason)
            if not self.writer.is_closing():
                if self.closing:
                    self.writer.write(self.farewell.encode() + b"\r\n")
                self.writer.close()

    def shut_down(self) -> None:
        """Stopping: an idle session is told 400 and closed; a busy one finishes its command."""
        self.closing = True
        if not self.busy and not self.writer.is_closing():
            self.writer.write(self.farewell.encode() + b"\r\n")
            self.writer.close()

    async def _command_line(self) -> str | None:
        """The next command line without its CRLF; ``None`` when the client has gone."""
        timeout = self.source.settings.idle_timeout
        try:
            piece = await read_piece(self.reader, timeout)
        except asyncio.IncompleteReadError:
            return None
        if not piece.endswith(b"\n"):
            while not piece.endswith(b"\n"):
                piece = await read_piece(self.reader, timeout)
            raise CommandLineError(f"command line too long (over {MAX_COMMAND} octets)")
        if len(piece) > MAX_COMMAND:
            raise CommandLineError(f"command line too long (over {MAX_COMMAND} octets)")
        if not piece.endswith(b"\r\n") or b"\r" in piece[:-2]:
            raise CommandLineError("a command line ends with CRLF")
        try:
            return piece[:-2].decode("utf-8")
        except UnicodeDecodeError:
            raise CommandLineError("the command is not valid UTF-8") from None

    async def _dispatch(self, line: str) -> None:
        verb, *args = line.split() or [""]
        self._verb = verb.upper()
        handler = self.commands.get(self._verb)
        if handler is None:
            self.bogus += 1
            if self.bogus >= BOGUS_LIMIT:
                self.farewell = "400 too many unknown commands, goodbye"
                self.closing = True
                return
            await self.send(f"500 unknown command {verb[:40]!r}")
            return
        await handler(args)

    # -- output ----------------------------------------------------------------------------

    async def send(self, line: str) -> None:
        self.writer.write(line.encode("utf-8", "surrogateescape") + b"\r\n")
        await self.writer.drain()

    async def send_lines(self, first: str, lines: Iterable[str]) -> None:
        """A multi-line reply: ``first``, then ``lines`` dot-stuffed, then the ``.`` line."""
        data = b"".join(
            ("." + line if line.startswith(".") else line).encode("utf-8", "surrogateescape")
            + b"\r\n"
            for line in lines
        )
        await self.send_data(first, data)

    async def send_data(self, first: str, data: bytes) -> None:
        """``first``, then ``data`` (CRLF-terminated lines) dot-stuffed, then ``.``."""
        if data.startswith(b"."):
            data = b"." + data
        data = data.replace(b"\r\n.", b"\r\n..")
        if data and not data.endswith(b"\r\n"):
            data += b"\r\n"
        self.writer.write(first.encode("utf-8", "surrogateescape") + b"\r\n" + data + b".\r\n")
        await self.writer.drain()

    # -- session commands ------------------------------------------------------------------

    async def capabilities(self, args: list[str]) -> None:
        await self.send_lines("101 capability list follows", CAPABILITIES)

    async def mode(self, args: list[str]) -> None:
        if [a.upper() for a in args] != ["READER"]:
            await self.send("501 only MODE READER is known")
            return
        await self.send("200 reader mode, posting allowed")

    async def date(self, args: list[str]) -> None:
        await self.send(f"111 {datetime.now(UTC):%Y%m%d%H%M%S}")

    async def help(self, args: list[str]) -> None:
        await self.send_lines("100 help text follows", HELP)

    async def quit(self, args: list[str]) -> None:
        self.farewell = "205 closing connection"
        self.closing = True

    # -- groups ----------------------------------------------------------------------------

    async def list_cmd(self, args: list[str]) -> None:
        keyword = args[0].upper() if args else "ACTIVE"
        pattern = args[1] if len(args) > 1 else None
        if len(args) > 2 or (keyword == "OVERVIEW.FMT" and pattern is not None):
            await self.send("501 syntax error in LIST")
            return
        if keyword == "OVERVIEW.FMT":
            await self.send_lines("215 order of fields in overview database", OVERVIEW_FORMAT)
            return
        if keyword not in ("ACTIVE", "NEWSGROUPS"):
            await self.send(f"501 unknown LIST keyword {keyword[:40]}")
            return
        store = self.source.store
        names = [g for g in self.source.settings.groups if pattern is None or wildmat(pattern, g)]
        groups = await store.call(store.groups, names)
        if keyword == "ACTIVE":
            moderated = self.source.settings.moderated
            lines = [
                f"{g.name} {g.high} {g.low} {'m' if g.name in moderated else 'y'}" for g in groups
            ]
            await self.send_lines("215 list of newsgroups follows", lines)
        else:
            lines = [f"{g.name}\t{NO_DESCRIPTION}" for g in groups]
            await self.send_lines("215 list of newsgroups follows", lines)

    async def group_cmd(self, args: list[str]) -> None:
        if len(args) != 1:
            await self.send("501 syntax: GROUP newsgroup")
            return
        info = await self._select(args[0])
        if info is not None:
            await self.send(f"211 {info.count} {info.low} {info.high} {info.name}")

    async def listgroup(self, args: list[str]) -> None:
        if len(args) > 2 or (len(args) == 2 and parse_range(args[1], 0) is None):
            await self.send("501 syntax: LISTGROUP [newsgroup [range]]")
            return
        name = args[0] if args else self.group
        if name is None:
            await self.send("412 no newsgroup selected")
            return
        info = await self._select(name)
        if info is None:
            return
        low, high = info.low, info.high
        if len(args) == 2:
            low, high = parse_range(args[1], info.high) or (low, high)
        store = self.source.store
        numbers = await store.call(store.numbers, info.name, low, high)
        first = f"211 {info.count} {info.low} {info.high} {info.name} list follows"
        await self.send_lines(first, map(str, numbers))

    async def _select(self, name: str) -> GroupInfo | None:
        """Make ``name`` the selected group (its first article current), or reply 411."""
        store = self.source.store
        info = await store.call(store.group, name) if name in self.source.carried else None
        if info is None:
            await self.send(f"411 no such newsgroup {name[:80]}")
            return None
        self.group = info.name
        self.article = info.low if info.count else None
        return info

    # -- articles --------------------------------------------------------------------------

    async def article_cmd(self, args: list[str]) -> None:
        if len(args) > 1:
            await self.send(f"501 syntax: {self._verb} [message-id|number]")
            return
        ref = await self._find(args[0] if args else None)
        if ref is None:
            return
        code, what = {
            "ARTICLE": (220, "article"),
            "HEAD": (221, "head"),
            "BODY": (222, "body"),
            "STAT": (223, "status"),
        }[self._verb]
        first = f"{code} {ref.number} {ref.message_id} {what}"
        if self._verb == "STAT":
            await self.send(first)
            return
        store = self.source.store
        data = await store.call(store.read, ref)
        head, _, body = data.partition(b"\r\n\r\n")
        if self._verb == "ARTICLE":
            await self.send_data(first, data)
        elif self._verb == "HEAD":
            await self.send_data(first, head + b"\r\n")
        else:
            await self.send_data(first, body)

    async def _find(self, spec: str | None) -> ArticleRef | None:
        """The article ``spec`` names (a Message-ID, a number, or the current one), or a reply.

        A number makes that article current; a Message-ID leaves the selection alone.
        """
        store = self.source.store
        if spec is not None and spec.startswith("<"):
            ref = await store.call(store.by_message_id, spec) if valid_message_id(spec) else None
            if ref is None:
                await self.send("430 no article with that message-id")
            return ref
        number = None if spec is None else parse_number(spec)
        if spec is not None and number is None:
            await self.send("501 expected a message-id or an article number")
            return None
        if self.group is None:
            await self.send("412 no newsgroup selected")
            return None
        if number is None:
            if self.article is None:
                await self.send("420 current article number is invalid")
                return None
            number = self.article
        ref = await store.call(store.by_number, self.group, number)
        if ref is None:
            await self.send("423 no article with that number")
            return None
        self.article = number
        return ref

    async def next_or_last(self, args: list[str]) -> None:
        if args:
            await self.send(f"501 syntax: {self._verb}")
            return
        if self.group is None:
            await self.send("412 no newsgroup selected")
            return
        if self.article is None:
            await self.send("420 current article number is invalid")
            return
        after = self._verb == "NEXT"
        store = self.source.store
        ref = await store.call(store.neighbour, self.group, self.article, after=after)
        if ref is None:
            await self.send("421 no next article" if after else "422 no previous article")
            return
        self.article = ref.number
        await self.send(f"223 {ref.number} {ref.message_id} retrieved")

    async def over(self, args: list[str]) -> None:
        if len(args) > 1:
            await self.send("501 syntax: OVER [range|message-id]")
            return
        store = self.source.store
        spec = args[0] if args else None
        if spec is not None and spec.startswith("<"):
            found = await store.call(store.overview_of, spec) if valid_message_id(spec) else None
            if found is None:
                await self.send("430 no article with that message-id")
                return
            await self.send_lines("224 overview information follows", [found.line(0)])
            return
        if self.group is None:
            await self.send("412 no newsgroup selected")
            return
        if spec is None:
            if self.article is None:
                await self.send("420 current article number is invalid")
                return
            low = high = self.article
        else:
            info = await store.call(store.group, self.group)
            parsed = parse_range(spec, info.high if info else 0)
            if parsed is None:
                await self.send("501 syntax error in range")
                return
            low, high = parsed
        rows = await store.call(store.overview, self.group, low, high)
        if not rows:
            await self.send(
                "423 no articles in that range" if spec else "420 current article number is invalid"
            )
            return
        await self.send_lines("224 overview information follows", [o.line(n) for n, o in rows])

    # -- posting ---------------------------------------------------------------------------

    async def post(self, args: list[str]) -> None:
        if args:
            await self.send("501 syntax: POST")
            return
        await self.send("340 send article to be posted; end with <CR-LF>.<CR-LF>")
        await self._receive(POST)

    async def ihave(self, args: list[str]) -> None:
        if len(args) != 1 or not valid_message_id(args[0]):
            await self.send("501 syntax: IHAVE message-id")
            return
        store = self.source.store
        if await store.call(store.has, args[0]):
            await self.send("435 article not wanted: already have it")
            return
        await self.send("335 send article to be transferred; end with <CR-LF>.<CR-LF>")
        await self._receive(IHAVE, offered=args[0])

    async def _receive(self, replies: Replies, offered: str | None = None) -> None:
        posting = Posting(self.source, self.reader, replies, self.id, offered)
        await self.send(await posting.run())


def parse_number(text: str) -> int | None:
    """``text`` as an article number; ``None`` when it is not one, which gets a 501.

    RFC 3977 (9.8) numbers are ASCII digits only: ``-1`` and ``+5`` are syntax errors, not
    numbers no article has. ``str.isdigit`` alone would pass other Unicode digits too (``²``,
    which ``int`` refuses, and ``٣``, which it reads as 3). Any size is a number here: the store
    answers for numbers beyond the ones it can hold (see :data:`.store.MAX_NUMBER`).
    """
    return int(text) if text.isascii() and text.isdigit() else None


def parse_range(text: str, high: int) -> tuple[int, int] | None:
    """``n``, ``n-`` or ``n-m`` as ``(low, high)``; ``n-`` runs to ``high``. ``None``: invalid."""
    first, dash, last = text.partition("-")
    low = parse_number(first)
    if low is None:
        return None
    if not dash:
        return low, low
    if not last:
        return low, max(high, low)
    end = parse_number(last)
    return None if end is None else (low, end)


def wildmat(pattern: str, name: str) -> bool:
    """RFC 3977 (4.1) wildmat: comma-separated patterns, ``!`` negates, the last match decides."""
    matched = False
    for part in pattern.split(","):
        negated = part.startswith("!")
        glob = part[1:] if negated else part
        if fnmatch.fnmatchcase(name, glob.replace("[^", "[!")):
            matched = not negated
    return matched
