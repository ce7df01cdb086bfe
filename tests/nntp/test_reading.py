"""Posting and reading back through Python's own NNTP client, and the reader commands' replies."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime, timedelta

import pytest

from seo_core.testing import RunningNntp
from tests.nntp.conftest import Dialogue, Serve, article, connect, nntplib, post


def _message_id(reply: str) -> str:
    found = re.search(r"<[^>]+>", reply)
    assert found, reply
    return found.group(0)


def test_a_posted_article_reads_back_with_the_server_headers(news: RunningNntp) -> None:
    reply = post(news.port, article(body=b"first line\r\n.leading dot\r\n"))
    assert reply.startswith("240 ")
    message_id = _message_id(reply)
    assert message_id.endswith("@news.test>")
    with connect(news.port) as client:
        _, count, first, last, name = client.group("local.test")
        assert (count, first, last, name) == (1, 1, 1, "local.test")
        _, info = client.article()
        assert (info.number, info.message_id) == (1, message_id)
        head, _, body = b"\r\n".join(info.lines).partition(b"\r\n\r\n")
        fields = dict(line.split(b": ", 1) for line in head.split(b"\r\n"))
        assert fields[b"Path"] == b"news.test!not-for-mail"
        assert fields[b"Message-ID"] == message_id.encode()
        assert fields[b"Xref"] == b"news.test local.test:1"
        assert fields[b"Subject"] == b"hello"
        posted = datetime.strptime(fields[b"Date"].decode(), "%a, %d %b %Y %H:%M:%S GMT")
        assert abs(posted.replace(tzinfo=UTC) - datetime.now(UTC)) < timedelta(minutes=5)
        assert body == b"first line\r\n.leading dot"

        _, by_id = client.article(message_id)
        assert by_id.number == 0  # RFC 3977: found by message-id, no number is implied
        assert by_id.lines == info.lines
        assert client.head(1)[1].lines == head.split(b"\r\n")
        assert client.body(message_id)[1].lines == [b"first line", b".leading dot"]
        assert client.stat()[1:] == (1, message_id)


def test_a_client_message_id_and_path_are_kept(news: RunningNntp) -> None:
    extra = b"Message-ID: <own.1@client.example>\r\nPath: upstream!user\r\nXref: forged x:9\r\n"
    assert post(news.port, article(extra=extra)) == "240 article received <own.1@client.example>"
    with connect(news.port) as client:
        _, info = client.head("<own.1@client.example>")
    assert b"Path: news.test!upstream!user" in info.lines
    assert b"Xref: news.test local.test:1" in info.lines
    assert b"Xref: forged x:9" not in info.lines


def test_a_cross_post_is_numbered_in_each_group_and_unknown_groups_are_dropped(
    news: RunningNntp,
) -> None:
    post(news.port, article(groups="local.announce"))
    reply = post(news.port, article(groups="local.test, no.such.group,local.announce"))
    with connect(news.port) as client:
        _, info = client.head(_message_id(reply))
        assert b"Xref: news.test local.test:1 local.announce:2" in info.lines
        assert b"Newsgroups: local.test, no.such.group,local.announce" in info.lines
        _, groups = client.list()
        assert sorted(groups) == [
            ("local.announce", "2", "1", "y"),
            ("local.test", "1", "1", "y"),
        ]


def test_a_post_to_unknown_groups_only_is_refused(news: RunningNntp) -> None:
    with pytest.raises(nntplib.NNTPTemporaryError, match=r"^441 no such newsgroup$"):
        post(news.port, article(groups="no.such.group, other.unknown"))
    with connect(news.port) as client:
        assert client.group("local.test")[1] == 0


def test_navigation_and_overview(news: RunningNntp) -> None:
    ids = [
        _message_id(post(news.port, article(subject=f"number {n}", extra=extra)))
        for n, extra in enumerate([b"", b"References: <a@b.example>\r\n", b""], 1)
    ]
    with connect(news.port) as client:
        client.group("local.test")
        assert client.stat()[1:] == (1, ids[0])
        assert client.next()[1:] == (2, ids[1])
        assert client.next()[1:] == (3, ids[2])
        with pytest.raises(nntplib.NNTPTemporaryError, match=r"^421 "):
            client.next()
        assert client.last()[1:] == (2, ids[1])
        assert client.stat(1)[1:] == (1, ids[0])
        with pytest.raises(nntplib.NNTPTemporaryError, match=r"^422 "):
            client.last()

        _, overview = client.over((2, None))
        assert [n for n, _ in overview] == [2, 3]
        _, fields = overview[0]
        assert fields["subject"] == "number 2"
        assert fields["from"] == "Alice <alice@example.com>"
        assert fields["message-id"] == ids[1]
        assert fields["references"] == "<a@b.example>"
        assert int(fields[":lines"]) == 2
        _, stored = client.article(2)
        assert int(fields[":bytes"]) == sum(len(line) + 2 for line in stored.lines)
        assert client.over(ids[2])[1][0][0] == 0
        assert [n for n, _ in client.over((1, 2))[1]] == [1, 2]
        assert [n for n, _ in client.over(None)[1]] == [2]  # ARTICLE 2 made it current


@pytest.mark.parametrize(
    ("command", "reply"),
    [
        (b"ARTICLE", b"412 "),
        (b"NEXT", b"412 "),
        (b"OVER", b"412 "),
        (b"LISTGROUP", b"412 "),
        (b"ARTICLE <nope@nowhere.example>", b"430 "),
        (b"OVER <nope@nowhere.example>", b"430 "),
        (b"GROUP no.such.group", b"411 "),
        (b"ARTICLE abc", b"501 "),
        (b"GROUP", b"501 "),
        (b"LIST FOO", b"501 "),
        (b"LIST OVERVIEW.FMT *", b"501 "),
        (b"MODE STREAM", b"501 "),
        (b"IHAVE not-a-message-id", b"501 "),
        (b"POST now", b"501 "),
        (b"XYZZY", b"500 "),
        (b"MODE READER", b"200 "),
        (b"mode reader", b"200 "),
        (b"DATE", b"111 "),
    ],
    ids=lambda value: value.decode() if isinstance(value, bytes) else value,
)
def test_replies_without_a_selection(news: RunningNntp, command: bytes, reply: bytes) -> None:
    with Dialogue(news.port) as talk:
        assert talk.command(command).startswith(reply)


def test_replies_within_an_empty_group(news: RunningNntp) -> None:
    with Dialogue(news.port) as talk:
        assert talk.command(b"GROUP local.test") == b"211 0 1 0 local.test"
        assert talk.command(b"ARTICLE").startswith(b"420 ")
        assert talk.command(b"NEXT").startswith(b"420 ")
        assert talk.command(b"ARTICLE 1").startswith(b"423 ")
        assert talk.command(b"OVER 1-5").startswith(b"423 ")
        assert talk.command(b"LISTGROUP") == b"211 0 1 0 local.test list follows"
        assert talk.block() == []


def test_session_commands(news: RunningNntp) -> None:
    with connect(news.port) as client:
        assert client.getwelcome().startswith("200 news.test ")
        caps = client.getcapabilities()
        assert caps["VERSION"] == ["2"]
        assert caps["IMPLEMENTATION"] == ["seo"]
        assert {"READER", "POST", "IHAVE", "OVER"} <= set(caps)
        assert caps["LIST"] == ["ACTIVE", "NEWSGROUPS", "OVERVIEW.FMT"]
        _, when = client.date()
        assert abs(when - datetime.now(UTC).replace(tzinfo=None)) < timedelta(minutes=5)
        _, lines = client.help()
        assert any(line.startswith("LISTGROUP") for line in lines)
        _, descriptions = client.descriptions("local.*")
        assert sorted(descriptions) == ["local.announce", "local.test"]
        _, active = client.list("*.announce")
        assert [g.group for g in active] == ["local.announce"]
        _, active = client.list("local.*,!*.test")
        assert [g.group for g in active] == ["local.announce"]
        assert client.quit().startswith("205")


def test_overview_format_is_the_rfc_default(news: RunningNntp) -> None:
    with Dialogue(news.port) as talk:
        assert talk.command(b"LIST OVERVIEW.FMT").startswith(b"215 ")
        assert talk.block() == [
            b"Subject:",
            b"From:",
            b"Date:",
            b"Message-ID:",
            b"References:",
            b":bytes",
            b":lines",
        ]


def test_listgroup_selects_the_group_and_takes_a_range(news: RunningNntp) -> None:
    for _ in range(3):
        post(news.port, article())
    with Dialogue(news.port) as talk:
        assert talk.command(b"LISTGROUP local.test") == b"211 3 1 3 local.test list follows"
        assert talk.block() == [b"1", b"2", b"3"]
        assert talk.command(b"STAT").startswith(b"223 1 ")
        assert talk.command(b"LISTGROUP local.test 2-")
        assert talk.block() == [b"2", b"3"]
        assert talk.command(b"LISTGROUP local.test 3-2")
        assert talk.block() == []
        assert talk.command(b"LISTGROUP local.announce x-2").startswith(b"501 ")
        assert talk.command(b"STAT").startswith(b"223 1 ")  # still in local.test


def test_output_is_dot_stuffed(news: RunningNntp) -> None:
    post(news.port, article(body=b".\r\n..two\r\nplain\r\n"))
    with Dialogue(news.port) as talk:
        talk.command(b"GROUP local.test")
        assert talk.command(b"BODY 1").startswith(b"222 1 <")
        assert talk.block() == [b"..", b"...two", b"plain"]


class TestDuplicates:
    def test_post_with_a_stored_message_id_gets_441(self, news: RunningNntp) -> None:
        data = article(extra=b"Message-ID: <dup@client.example>\r\n")
        post(news.port, data)
        with pytest.raises(nntplib.NNTPTemporaryError, match=r"^441 duplicate article"):
            post(news.port, data)

    def test_ihave_of_a_stored_message_id_gets_435(self, news: RunningNntp) -> None:
        post(news.port, article(extra=b"Message-ID: <dup@client.example>\r\n"))
        with Dialogue(news.port) as talk:
            assert talk.command(b"IHAVE <dup@client.example>").startswith(b"435 ")

    def test_ihave_transfers_an_article(self, news: RunningNntp) -> None:
        with connect(news.port) as client:
            reply = client.ihave(
                "<feed.1@peer.example>",
                io.BytesIO(article(extra=b"Path: peer.example!poster\r\n")),
            )
            assert reply == "235 article transferred <feed.1@peer.example>"
            _, info = client.head("<feed.1@peer.example>")
        assert b"Path: news.test!peer.example!poster" in info.lines
        assert b"Message-ID: <feed.1@peer.example>" in info.lines

    def test_ihave_of_an_article_naming_a_stored_message_id_gets_437(
        self, news: RunningNntp
    ) -> None:
        post(news.port, article(extra=b"Message-ID: <dup@client.example>\r\n"))
        with Dialogue(news.port) as talk:
            assert talk.command(b"IHAVE <other@peer.example>").startswith(b"335 ")
            talk.send(article(extra=b"Message-ID: <dup@client.example>\r\n") + b".\r\n")
            assert talk.line().startswith(b"437 ")
            assert talk.command(b"IHAVE <other@peer.example>").startswith(b"335 ")
            talk.send(article() + b".\r\n")
            assert talk.line() == b"235 article transferred <other@peer.example>"


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        (b"Newsgroups: local.test\r\nSubject: x\r\n", b"441 the article has no From header"),
        (b"From: a@example.com\r\nSubject: x\r\n", b"441 the article has no Newsgroups header"),
        (b"From: a@example.com\r\nNewsgroups: local.test\r\n", b"441 the article has no Subject"),
        (b"From: a@example.com\r\nNewsgroups: , \r\nSubject: x\r\n", b"441 the Newsgroups header"),
        (b" folded: first\r\n", b"441 malformed header"),
        (b"From a@example.com\r\n", b"441 malformed header line"),
        (
            b"From: a@example.com\r\nNewsgroups: local.test\r\nSubject: x\r\nMessage-ID: nope\r\n",
            b"441 invalid Message-ID",
        ),
    ],
    ids=["no-from", "no-newsgroups", "no-subject", "empty-newsgroups", "folded-first", "no-colon",
         "bad-message-id"],
)  # fmt: skip
def test_malformed_posts_are_refused(news: RunningNntp, headers: bytes, reason: bytes) -> None:
    with Dialogue(news.port) as talk:
        assert talk.command(b"POST").startswith(b"340 ")
        talk.send(headers + b"\r\nbody\r\n.\r\n")
        assert talk.line().startswith(reason)
        assert talk.command(b"DATE").startswith(b"111 ")


def test_list_active_shows_the_moderated_groups_as_m(serve: Serve) -> None:
    """RFC 3977, 7.6.3: ``y`` posting allowed, ``m`` moderated (the ``moderated`` setting)."""
    with serve(moderated=["local.announce"]) as news, Dialogue(news.port) as talk:
        assert talk.command(b"LIST ACTIVE") == b"215 list of newsgroups follows"
        assert talk.block() == [b"local.test 0 1 y", b"local.announce 0 1 m"]
        assert talk.command(b"LIST") == b"215 list of newsgroups follows"
        assert talk.block() == [b"local.test 0 1 y", b"local.announce 0 1 m"]
        assert talk.command(b"LIST ACTIVE *.announce") == b"215 list of newsgroups follows"
        assert talk.block() == [b"local.announce 0 1 m"]
