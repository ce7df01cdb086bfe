"""Receiving one posted article: OnPostEarly, OnPost, the store, OnPostFinal.

The order, for POST and IHAVE alike:

1. The whole article is read to its terminating line. If it is faulty (a bare LF or CR, over
   the size limit), malformed, lacks Newsgroups, From or Subject, names no group this server
   carries, or names a Message-ID already stored, the post is refused and no event fires; a
   client that goes away mid-article fires none either.
2. The server adds Path, and Message-ID and Date when absent; OnPostEarly fires with a message
   holding these headers only. A sink may ``refuse(reason)`` or change ``newsgroups``.
3. (Reading is done first so that the faults of step 1 are known before any event.)
4. OnPost fires with the whole article; a sink may refuse it or change ``newsgroups``.
5. The groups this server does not carry are dropped (the events saw every group the article
   names); none left means "no such newsgroup".
6. The article is stored (durably, with its Xref) and OnPostFinal fires; then the client gets
   its 240 (or 235), so a client that has its reply knows every sink has seen the article.

Whatever happens, the article is read to its terminating line before the reply is sent, so the
session stays in step with the client. A client that goes away mid-article raises
:class:`asyncio.IncompleteReadError` (one that falls silent, :class:`TimeoutError`) out of
:meth:`Posting.run`: nothing is stored and no further event fires.
"""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

from seo_core.events.contexts import PostEvent
from seo_core.rules import EventFacts
from seo_core.sources.nntp.article import (
    CRLF,
    ArticleError,
    Field,
    inject,
    new_message_id,
    parse_message,
    render,
    split_fields,
    split_newsgroups,
    valid_message_id,
    value_of,
)
from seo_core.sources.nntp.block import BlockReader, read_piece
from seo_core.sources.nntp.store import DuplicateArticle

if TYPE_CHECKING:
    from seo_core.sources.nntp.service import NntpSource

log = structlog.get_logger("seo.nntp")

MAX_REASON = 400
"""Characters of a refusal reason sent to the client (a reply line may have 512 octets)."""
REQUIRED = ("Newsgroups", "From", "Subject")


@dataclass(frozen=True, slots=True)
class Replies:
    """How one way of submitting an article answers: POST (readers) or IHAVE (peers)."""

    command: str
    accepted: str
    refused: int
    retry: int


POST = Replies("POST", "240 article received", 441, 441)
SINGLE = ("Newsgroups", "Message-ID", "From", "Subject", "Date", "References")
"""Headers an article has at most once (RFC 5536, 3.1 and 3.2; RFC 5322, 3.6)."""
MAX_HEADER_LINE = 998
"""Octets in one line of the header block, CRLF aside (RFC 5322, 2.1.1). A longer one is
refused: the overview and HEAD would hand it to readers whose clients refuse such lines
(Python's nntplib stops at 2048)."""
IHAVE = Replies("IHAVE", "235 article transferred", 437, 436)


class Refused(Exception):
    """The article is not taken; ``reason`` goes to the client after the refusal code."""

    def __init__(self, reason: str, *, stage: str, retry: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.stage = stage
        self.retry = retry


class Posting:
    """One article being received on a session, from the line after 340 (or 335) to the reply."""

    def __init__(
        self,
        source: NntpSource,
        reader: asyncio.StreamReader,
        replies: Replies,
        session: str,
        offered: str | None = None,
    ) -> None:
        self.source = source
        self.reader = reader
        self.replies = replies
        self.session = session
        self.offered = offered
        """The Message-ID an IHAVE named."""
        self.block = BlockReader(source.settings.max_article_size)

    async def run(self) -> str:
        """Receive the article, run it through the events and the store; return the reply."""
        try:
            # The whole article is in and checked before any event: a faulty, oversized or
            # unfinished article fires none (OnPostEarly still sees the headers only).
            await self._read()
            self._check_block()
            fields, message_id, groups = await self._headers()
            groups = await self._fire("OnPostEarly", fields, b"", message_id, groups)
            groups = await self._fire("OnPost", fields, self.block.body, message_id, groups)
            return await self._store(fields, message_id, groups)
        except Refused as refusal:
            await self._read()
            return self._refusal(refusal)

    # -- reading ---------------------------------------------------------------------------

    async def _read(self, *, until_headers: bool = False) -> None:
        block = self.block
        timeout = self.source.settings.idle_timeout
        while not block.done and not (until_headers and block.headers_complete):
            block.feed(await read_piece(self.reader, timeout))

    def _check_block(self) -> None:
        block = self.block
        if block.bare_line_ending:
            log.warning(
                "nntp_bare_line_ending",
                source=self.source.name,
                session=self.session,
                command=self.replies.command,
            )
            raise Refused(
                "bare LF or CR in the article; lines end with CRLF (RFC 3977, 3.1.1)",
                stage="input",
            )
        if block.too_big:
            raise Refused(f"article too big: the limit is {block.limit} bytes", stage="input")

    async def _headers(self) -> tuple[list[Field], str, list[str]]:
        """Read and check the header block; add the server's headers."""
        await self._read(until_headers=True)
        self._check_block()
        if any(len(line) > MAX_HEADER_LINE for line in self.block.headers.split(b"\r\n")):
            raise Refused(
                f"a header line is longer than {MAX_HEADER_LINE} octets; fold it (RFC 5322, 2.1.1)",
                stage="input",
            )
        try:
            fields = split_fields(self.block.headers)
        except ArticleError as exc:
            raise Refused(str(exc), stage="input") from None
        for name in REQUIRED:
            if not value_of(fields, name):
                raise Refused(f"the article has no {name} header", stage="input")
        for name in SINGLE:
            if sum(1 for found in fields if found.name.lower() == name.lower()) > 1:
                # Which one counts would differ from one server or reader to the next.
                raise Refused(f"the article has more than one {name} header", stage="input")
        groups = split_newsgroups(value_of(fields, "Newsgroups"))
        if not groups:
            raise Refused("the Newsgroups header names no group", stage="input")
        if not self.source.carried.intersection(groups):
            raise Refused("no such newsgroup", stage="input")
        message_id = self._message_id(fields)
        store = self.source.store
        if await store.call(store.has, message_id):
            raise Refused(f"duplicate article {message_id}", stage="input")
        hostname = self.source.settings.hostname
        return inject(fields, hostname=hostname, message_id=message_id), message_id, groups

    def _message_id(self, fields: list[Field]) -> str:
        given = value_of(fields, "Message-ID")
        if given is not None and not valid_message_id(given):
            raise Refused(f"invalid Message-ID {given[:80]!r}", stage="input")
        if self.offered is not None and given is not None and given != self.offered:
            raise Refused(
                f"the Message-ID header {given} is not the one offered, {self.offered}",
                stage="input",
            )
        return given or self.offered or new_message_id(self.source.settings.hostname)

    # -- events and storing ----------------------------------------------------------------

    async def _fire(
        self,
        name: str,
        fields: list[Field],
        body: bytes,
        message_id: str,
        groups: list[str],
    ) -> list[str]:
        """Fire OnPostEarly or OnPost; return the newsgroups the sinks left."""
        dispatcher = self.source.dispatcher
        if not dispatcher.wants(name):
            return groups
        data = render(fields) + CRLF + body
        event = PostEvent(
            source=self.source.name,
            name=name,
            message=parse_message(data),
            newsgroups=list(groups),
            message_id=message_id,
        )
        await dispatcher.notify(event, EventFacts(newsgroups=tuple(groups)))
        if event.refused is not None:
            raise Refused(event.refused, stage=name)
        return _groups(event.newsgroups)

    async def _store(self, fields: list[Field], message_id: str, groups: list[str]) -> str:
        carried = self.source.carried
        filing = [g for g in groups if g in carried]
        if not filing:
            raise Refused("no such newsgroup", stage="filing")
        store = self.source.store
        hostname = self.source.settings.hostname
        try:
            stored = await store.call(
                store.store, fields, self.block.body, message_id, filing, hostname
            )
        except DuplicateArticle:
            raise Refused(f"duplicate article {message_id}", stage="filing") from None
        except (OSError, sqlite3.Error) as exc:
            log.error(
                "nntp_store_failed", source=self.source.name, message_id=message_id, error=str(exc)
            )
            raise Refused(
                "could not store the article; try again later", stage="filing", retry=True
            ) from None
        log.info(
            "nntp_article_stored",
            source=self.source.name,
            session=self.session,
            command=self.replies.command,
            message_id=message_id,
            numbers=stored.numbers,
            size=len(stored.data),
        )
        dispatcher = self.source.dispatcher
        if dispatcher.wants("OnPostFinal"):
            event = PostEvent(
                source=self.source.name,
                name="OnPostFinal",
                message=parse_message(stored.data),
                newsgroups=list(stored.numbers),
                message_id=message_id,
            )
            await dispatcher.notify(event, EventFacts(newsgroups=tuple(stored.numbers)))
        return f"{self.replies.accepted} {message_id}"

    def _refusal(self, refusal: Refused) -> str:
        reason = _one_line(refusal.reason)
        log.info(
            "nntp_article_refused",
            source=self.source.name,
            session=self.session,
            command=self.replies.command,
            stage=refusal.stage,
            reason=reason,
        )
        code = self.replies.retry if refusal.retry else self.replies.refused
        return f"{code} {reason}"


def _groups(value: object) -> list[str]:
    """The newsgroups a sink left: a list (or a comma-separated string), cleaned."""
    if isinstance(value, str):
        return split_newsgroups(value)
    if isinstance(value, list | tuple):
        return split_newsgroups(",".join(str(g) for g in value))
    return []


def _one_line(reason: str) -> str:
    """A reason fit for a reply line: no line breaks, not too long, never empty."""
    text = " ".join(str(reason).split())
    return text[:MAX_REASON] or "posting refused"
