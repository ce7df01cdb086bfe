"""Strict input, each case with the exact bytes a client sends."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator

import pytest
from structlog.testing import capture_logs

from seo_core.testing import RunningNntp
from tests.nntp.conftest import SEEN, Bind, Dialogue, Serve, article, connect, post

HEADERS = b"From: a@example.com\r\nNewsgroups: local.test\r\nSubject: strict\r\n"
EVENTS = ("OnPostEarly", "OnPost", "OnPostFinal")
BARE = b"441 bare LF or CR in the article; lines end with CRLF (RFC 3977, 3.1.1)"


@pytest.fixture
def news(bind: Bind, serve: Serve) -> Iterator[RunningNntp]:
    """A server with every post event bound to the trail sink, and a 10 kB article limit."""
    for event in EVENTS:
        bind(event, "trail")
    with serve(max_article_size=10_000) as running:
        yield running


def posting(port: int) -> Dialogue:
    talk = Dialogue(port)
    assert talk.command(b"POST").startswith(b"340 ")
    return talk


def stored(port: int, group: str = "local.test") -> list[bytes]:
    with Dialogue(port) as talk:
        assert talk.command(b"LISTGROUP " + group.encode()).startswith(b"211 ")
        return talk.block()


def events() -> list[str]:
    return [seen.event for seen in SEEN]


class TestLineEndings:
    @pytest.mark.parametrize(
        "data",
        [
            HEADERS.replace(b"strict\r\n", b"strict\n") + b"\r\nbody\r\n.\r\n",
            HEADERS.replace(b"strict\r\n", b"st\rrict\r\n") + b"\r\nbody\r\n.\r\n",
            HEADERS + b"\n" + b"body\r\n.\r\n",
        ],
        ids=["bare-lf-in-headers", "bare-cr-in-headers", "bare-lf-blank-line"],
    )
    def test_in_the_headers_refused_with_no_event(self, news: RunningNntp, data: bytes) -> None:
        with posting(news.port) as talk:
            talk.send(data)
            assert talk.line() == BARE
            assert talk.command(b"DATE").startswith(b"111 ")
        assert events() == []
        assert stored(news.port) == []

    @pytest.mark.parametrize(
        "body",
        [b"line one\nline two\r\n", b"line one\rline two\r\n", b"ends with a bare CR\r\r\n"],
        ids=["bare-lf", "bare-cr", "cr-cr-lf"],
    )
    def test_in_the_body_refused_with_no_on_post(self, news: RunningNntp, body: bytes) -> None:
        with posting(news.port) as talk:
            talk.send(HEADERS + b"\r\n" + body + b".\r\n")
            assert talk.line() == BARE
        assert "OnPost" not in events()
        assert "OnPostFinal" not in events()
        assert stored(news.port) == []

    def test_lf_dot_crlf_neither_ends_an_article_nor_hides_a_second_one(
        self, news: RunningNntp
    ) -> None:
        with posting(news.port) as talk:
            talk.send(
                HEADERS + b"\r\nfirst\n.\r\n"
                b"POST\r\n" + HEADERS.replace(b"strict", b"smuggled") + b"\r\nsmuggled\r\n.\r\n"
            )
            assert talk.line() == BARE
            assert talk.command(b"DATE").startswith(b"111 ")
        assert "OnPost" not in events()
        assert stored(news.port) == []

    def test_crlf_dot_lf_does_not_end_an_article(self, news: RunningNntp) -> None:
        with posting(news.port) as talk:
            talk.send(HEADERS + b"\r\nfirst\r\n.\nDATE\r\n.\r\n")
            assert talk.line() == BARE
            assert talk.command(b"MODE READER").startswith(b"200 ")
        assert stored(news.port) == []

    def test_a_command_line_must_end_with_crlf(self, news: RunningNntp) -> None:
        with Dialogue(news.port) as talk:
            talk.send(b"DATE\n")
            assert talk.line() == b"501 a command line ends with CRLF"
            talk.send(b"DA\rTE\r\n")
            assert talk.line() == b"501 a command line ends with CRLF"
            assert talk.command(b"GROUP local.\xff").startswith(b"501 ")
            assert talk.command(b"DATE").startswith(b"111 ")


class TestDotStuffing:
    def test_undone_exactly_once_header_names_included(self, news: RunningNntp) -> None:
        with posting(news.port) as talk:
            talk.send(
                HEADERS + b"..X-Dotted: yes\r\n\r\n..\r\n...three\r\n.single\r\nno dot\r\n.\r\n"
            )
            assert talk.line().startswith(b"240 ")
        message = next(s for s in SEEN if s.event == "OnPost")
        assert message.has_body
        with connect(news.port) as client:
            client.group("local.test")
            _, info = client.article(1)  # nntplib undoes the server's stuffing once
        head, body = b"\r\n".join(info.lines).split(b"\r\n\r\n")
        assert b".X-Dotted: yes" in head.split(b"\r\n")
        assert body.split(b"\r\n") == [b".", b"..three", b"single", b"no dot"]
        with Dialogue(news.port) as talk:
            talk.command(b"GROUP local.test")
            assert talk.command(b"BODY 1").startswith(b"222 ")
            assert talk.block() == [b"..", b"...three", b"single", b"no dot"]

    def test_a_dot_line_right_after_post_is_an_empty_article(self, news: RunningNntp) -> None:
        with posting(news.port) as talk:
            talk.send(b".\r\n")
            assert talk.line() == b"441 the article has no Newsgroups header"
        assert events() == []


class TestSize:
    def test_an_article_of_the_limit_is_taken_one_byte_more_is_not(self, news: RunningNntp) -> None:
        def sized(total: int) -> bytes:
            head = HEADERS + b"\r\n"
            return head + b"x" * (total - len(head) - 2) + b"\r\n"

        with posting(news.port) as talk:
            talk.send(sized(10_000) + b".\r\n")
            assert talk.line().startswith(b"240 ")
        with posting(news.port) as talk:
            talk.send(b"." + sized(10_001) + b".\r\n")  # a stuffed dot does not count
            assert talk.line() == b"441 article too big: the limit is 10000 bytes"
        assert stored(news.port) == [b"1"]

    def test_a_huge_article_is_refused_without_being_buffered(self, news: RunningNntp) -> None:
        with posting(news.port) as talk:
            tracemalloc.start()
            try:
                talk.send(HEADERS + b"\r\n")
                line = b"y" * 998 + b"\r\n"
                for _ in range(20):  # 20 MB against a 10 kB limit
                    talk.send(line * 1000)
                talk.send(b".\r\n")
                assert talk.line() == b"441 article too big: the limit is 10000 bytes"
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            assert peak < 5_000_000
            assert talk.command(b"POST").startswith(b"340 ")
            talk.send(article(subject="small") + b".\r\n")
            assert talk.line().startswith(b"240 ")
        assert [(s.event, s.subject) for s in SEEN if s.event != "OnPostEarly"] == [
            ("OnPost", "small"),
            ("OnPostFinal", "small"),
        ]

    def test_headers_over_the_limit_fire_no_event(self, news: RunningNntp) -> None:
        with posting(news.port) as talk:
            talk.send(HEADERS + b"X-Long: " + b"z" * 20_000 + b"\r\n\r\nbody\r\n.\r\n")
            assert talk.line().startswith(b"441 article too big")
        assert events() == []

    def test_a_header_line_over_998_octets_is_refused_and_one_of_998_taken(
        self, news: RunningNntp
    ) -> None:
        """RFC 5322, 2.1.1; readers' clients refuse longer lines in HEAD and OVER (nntplib)."""
        with posting(news.port) as talk:
            talk.send(HEADERS + b"X-Long: " + b"z" * 991 + b"\r\n\r\nbody\r\n.\r\n")
            assert talk.line() == (
                b"441 a header line is longer than 998 octets; fold it (RFC 5322, 2.1.1)"
            )
            assert talk.command(b"DATE").startswith(b"111 ")
        with posting(news.port) as talk:
            talk.send(HEADERS + b"X-Long: " + b"z" * 990 + b"\r\n\r\nbody\r\n.\r\n")
            assert talk.line().startswith(b"240 ")
        assert stored(news.port) == [b"1"]

    @pytest.mark.parametrize("name", [b"Newsgroups", b"Subject", b"Message-ID"])
    def test_a_header_given_twice_that_may_be_given_once_is_refused(
        self, news: RunningNntp, name: bytes
    ) -> None:
        """Two Newsgroups: would be filed by one and read by another elsewhere."""
        value = {b"Newsgroups": b"local.test", b"Subject": b"again", b"Message-ID": b"<a@b>"}
        with posting(news.port) as talk:
            twice = name + b": " + value[name] + b"\r\n" + name + b": " + value[name] + b"\r\n"
            talk.send(HEADERS + twice + b"\r\nbody\r\n.\r\n")
            assert talk.line() == b"441 the article has more than one " + name + b" header"
        assert events() == []

    def test_a_line_longer_than_the_stream_buffer(self, news: RunningNntp) -> None:
        with posting(news.port) as talk:
            talk.send(HEADERS + b"\r\n" + b"w" * 200_000 + b"\r\n.\r\n")
            assert talk.line().startswith(b"441 article too big")
            assert talk.command(b"DATE").startswith(b"111 ")
        with Dialogue(news.port) as talk:
            talk.send(b"X" * 100_000 + b"\r\n")
            assert talk.line() == b"501 command line too long (over 512 octets)"
            assert talk.command(b"LIST " + b"a" * 600).startswith(b"501 command line too long")
            assert talk.command(b"DATE").startswith(b"111 ")


class TestDisconnects:
    def _wait_for_session_end(self, news: RunningNntp, logs: list[dict[str, object]]) -> None:
        async def ended() -> bool:
            return any(e["event"] == "nntp_session_end" for e in logs)

        while not news.server.call(ended()):
            pass

    @pytest.mark.parametrize(
        ("sent", "expected"),
        [
            (HEADERS[:30], []),
            (HEADERS + b"\r\nhalf of the bo", []),
            (HEADERS + b"\r\nbody\r\n", []),
        ],
        ids=["mid-headers", "mid-body", "before-the-dot"],
    )
    def test_a_client_gone_mid_post_leaves_nothing(
        self, news: RunningNntp, sent: bytes, expected: list[str]
    ) -> None:
        with capture_logs() as logs:
            talk = posting(news.port)
            talk.send(sent)
            talk.drop()
            self._wait_for_session_end(news, logs)
        assert events() == expected
        assert stored(news.port) == []
        assert not any(news.source.store.incoming.iterdir())
        (end,) = [e for e in logs if e["event"] == "nntp_session_end"]
        assert end["reason"] in ("reset", "closed")

    def test_a_silent_client_is_closed_and_its_half_article_dropped(self, serve: Serve) -> None:
        with serve(idle_timeout=0.2) as news:
            with Dialogue(news.port) as talk:
                assert talk.line() == b"400 idle for too long, closing the connection"
            with posting(news.port) as talk:
                talk.send(HEADERS + b"\r\nhalf")
                assert talk.line() == b"400 idle for too long, closing the connection"
            assert stored(news.port) == []

    def test_too_many_unknown_commands_close_the_session(self, news: RunningNntp) -> None:
        with Dialogue(news.port) as talk:
            for _ in range(9):
                assert talk.command(b"XYZZY").startswith(b"500 ")
            assert talk.command(b"XYZZY") == b"400 too many unknown commands, goodbye"
            assert talk.file.readline() == b""


class TestEightBitHeaders:
    def test_a_header_that_is_not_utf8_is_stored_as_sent(self, news: RunningNntp) -> None:
        article = (
            HEADERS.replace(b"Subject: strict", b"Subject: caf\xe9 \xff\xfe") + b"\r\nbody\r\n"
        )
        with posting(news.port) as talk:
            talk.send(article + b".\r\n")
            assert talk.line().startswith(b"240 ")
        (number,) = stored(news.port)
        with Dialogue(news.port) as talk:
            assert talk.command(b"GROUP local.test").startswith(b"211 ")
            assert talk.command(b"ARTICLE " + number).startswith(b"220 ")
            assert b"Subject: caf\xe9 \xff\xfe\r\n" in b"\r\n".join(talk.block())
            assert talk.command(b"OVER " + number).startswith(b"224 ")
            (overview,) = talk.block()
            assert overview.split(b"\t")[1] == "caf\ufffd \ufffd\ufffd".encode()
        assert events() == list(EVENTS)


HUGE = b"99999999999999999999999"
"""Far beyond SQLite's INTEGER: looking it up used to end the session with no reply."""
PAST_MAX = str(2**63).encode()
"""One more than the highest number an article can have."""


class TestArticleNumbers:
    """Numbers of any size get the RFC's reply; a sign or a non-ASCII digit gets 501."""

    @pytest.fixture
    def two(self, news: RunningNntp) -> Iterator[Dialogue]:
        """A dialogue in local.test, which holds articles 1 and 2, with article 1 current."""
        for _ in range(2):
            post(news.port, article())
        with Dialogue(news.port) as talk:
            assert talk.command(b"GROUP local.test") == b"211 2 1 2 local.test"
            yield talk

    @staticmethod
    def still_answering(talk: Dialogue) -> None:
        assert talk.command(b"DATE").startswith(b"111 ")
        assert talk.command(b"STAT").startswith(b"223 1 <")

    @pytest.mark.parametrize("verb", [b"ARTICLE", b"HEAD", b"BODY", b"STAT"])
    @pytest.mark.parametrize(
        "number",
        [HUGE, PAST_MAX, str(2**63 - 1).encode(), str(2**31).encode(), b"3", b"0", b"00"],
        ids=["huge", "2**63", "2**63-1", "2**31", "past-high", "zero", "zeros"],
    )
    def test_a_number_no_article_has_gets_423(
        self, two: Dialogue, verb: bytes, number: bytes
    ) -> None:
        assert two.command(verb + b" " + number) == b"423 no article with that number"
        self.still_answering(two)

    @pytest.mark.parametrize("verb", [b"ARTICLE", b"HEAD", b"BODY", b"STAT"])
    @pytest.mark.parametrize(
        "number",
        [b"-1", b"+5", b"-0", b"1-2", b"1.0", b"0x1", b"\xc2\xb2", b"\xd9\xa3", b"\xef\xbc\x91"],
        ids=["minus", "plus", "minus0", "range", "point", "hex", "sup2", "arabic3", "wide1"],
    )
    def test_a_number_that_is_not_one_gets_501(
        self, two: Dialogue, verb: bytes, number: bytes
    ) -> None:
        assert two.command(verb + b" " + number) == (
            b"501 expected a message-id or an article number"
        )
        self.still_answering(two)

    def test_leading_zeros_name_the_same_article(self, two: Dialogue) -> None:
        assert two.command(b"STAT 0002").startswith(b"223 2 <")

    @pytest.mark.parametrize("verb", [b"OVER", b"XOVER"])
    @pytest.mark.parametrize(
        ("spec", "numbers"),
        [
            (b"1-" + HUGE, [b"1", b"2"]),
            (b"2-" + PAST_MAX, [b"2"]),
            (HUGE + b"-", []),
            (HUGE, []),
            (PAST_MAX + b"-" + HUGE, []),
            (b"3-" + HUGE, []),
            (HUGE + b"-1", []),
        ],
        ids=["to-huge", "to-2**63", "from-huge", "huge", "2**63-huge", "past-high", "backwards"],
    )
    def test_over_a_range_beyond_the_high_water_mark(
        self, two: Dialogue, verb: bytes, spec: bytes, numbers: list[bytes]
    ) -> None:
        reply = two.command(verb + b" " + spec)
        if numbers:
            assert reply == b"224 overview information follows"
            assert [line.split(b"\t")[0] for line in two.block()] == numbers
        else:
            assert reply == b"423 no articles in that range"
        self.still_answering(two)

    @pytest.mark.parametrize(
        ("verb", "reply"),
        [
            (b"OVER", b"501 syntax error in range"),
            (b"XOVER", b"501 syntax error in range"),
            (b"LISTGROUP local.test", b"501 syntax: LISTGROUP [newsgroup [range]]"),
        ],
        ids=["OVER", "XOVER", "LISTGROUP"],
    )
    @pytest.mark.parametrize(
        "spec",
        [b"-1", b"+1", b"-", b"1-+2", b"1--2", b"1-2-3", b"\xc2\xb2-", b"1-\xd9\xa3"],
        ids=["minus", "plus", "dash", "plus-end", "minus-end", "two-dashes", "sup2", "arabic3"],
    )
    def test_a_range_that_is_not_one_gets_501(
        self, two: Dialogue, verb: bytes, reply: bytes, spec: bytes
    ) -> None:
        assert two.command(verb + b" " + spec) == reply
        self.still_answering(two)

    @pytest.mark.parametrize(
        ("spec", "numbers"),
        [
            (b"99999999999999999999-", []),
            (HUGE, []),
            (b"1-" + HUGE, [b"1", b"2"]),
            (b"2-" + PAST_MAX, [b"2"]),
            (PAST_MAX + b"-", []),
        ],
        ids=["from-huge", "huge", "to-huge", "to-2**63", "from-2**63"],
    )
    def test_listgroup_a_range_beyond_the_high_water_mark(
        self, two: Dialogue, spec: bytes, numbers: list[bytes]
    ) -> None:
        assert two.command(b"LISTGROUP local.test " + spec) == (
            b"211 2 1 2 local.test list follows"
        )
        assert two.block() == numbers
        assert two.command(b"DATE").startswith(b"111 ")
        assert two.command(b"GROUP local.test") == b"211 2 1 2 local.test"
