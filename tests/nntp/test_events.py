"""OnPostEarly, OnPost and OnPostFinal, fired by a real server at real sinks."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from structlog.testing import capture_logs

from seo_core.metabase import Metabase
from tests.nntp.conftest import (
    SEEN,
    Bind,
    Dialogue,
    Serve,
    article,
    connect,
    nntplib,
    post,
)

EVENTS = ("OnPostEarly", "OnPost", "OnPostFinal")


def listgroup(port: int, group: str) -> list[bytes]:
    with Dialogue(port) as talk:
        assert talk.command(b"LISTGROUP " + group.encode()).startswith(b"211 ")
        return talk.block()


def xref(port: int, message_id: str) -> bytes:
    with connect(port) as client:
        _, info = client.head(message_id)
    (line,) = [line for line in info.lines if line.startswith(b"Xref: ")]
    return line


def until(probe: Callable[[], bool], timeout: float = 10.0) -> None:
    """Ask ``probe`` until it says yes (it asks the server, which answers at its own pace)."""
    deadline = time.monotonic() + timeout
    while not probe():
        assert time.monotonic() < deadline, "timed out"


def test_each_event_fires_once_in_order_and_rules_filter_by_newsgroup(
    bind: Bind, serve: Serve
) -> None:
    for event in EVENTS:
        bind(event, "trail", name=f"test {event}", rule="newsgroups=local.test")
    bind("OnPost", "trail", name="announce", rule="newsgroups=*.announce", priority=0)
    with serve() as news:
        reply = post(news.port, article(groups="local.test"))
        message_id = reply.split()[-1]
        assert [(s.event, s.binding, s.newsgroups, s.message_id) for s in SEEN] == [
            ("OnPostEarly", "test OnPostEarly", ("local.test",), message_id),
            ("OnPost", "test OnPost", ("local.test",), message_id),
            ("OnPostFinal", "test OnPostFinal", ("local.test",), message_id),
        ]
        assert [s.has_body for s in SEEN] == [False, True, True]  # OnPostEarly: headers only
        assert {(s.source, s.subject) for s in SEEN} == {("nntp/1", "hello")}
        SEEN.clear()

        post(news.port, article(groups="local.announce"))
        assert [s.binding for s in SEEN] == ["announce"]
        SEEN.clear()

        post(news.port, article(groups="local.announce,local.test"))  # any group matches
        assert [s.binding for s in SEEN] == [
            "test OnPostEarly",
            "announce",
            "test OnPost",
            "test OnPostFinal",
        ]


def test_a_refusal_in_on_post_early_reaches_the_client_and_stops_the_post(
    bind: Bind, serve: Serve
) -> None:
    bind(
        "OnPostEarly",
        "moderate",
        sink_properties={"group": "local.announce", "reason": "local.announce is moderated"},
    )
    for event in ("OnPost", "OnPostFinal"):
        bind(event, "trail")
    with serve() as news:
        with pytest.raises(nntplib.NNTPTemporaryError) as refused:
            post(news.port, article(groups="local.announce"))
        assert str(refused.value) == "441 local.announce is moderated"
        assert SEEN == []
        assert listgroup(news.port, "local.announce") == []
        post(news.port, article(groups="local.test"))
        assert [s.event for s in SEEN] == ["OnPost", "OnPostFinal"]


def test_an_early_refusal_is_sent_after_the_whole_article_so_the_session_stays_in_step(
    bind: Bind, serve: Serve
) -> None:
    bind("OnPostEarly", "moderate", sink_properties={"group": "local.test", "reason": "no"})
    with serve() as news, Dialogue(news.port) as talk:
        assert talk.command(b"POST").startswith(b"340 ")
        talk.send(article(body=b"QUIT\r\nDATE\r\n..\r\n") + b".\r\n")  # a stuffed dot line
        assert talk.line() == b"441 no"
        assert talk.command(b"MODE READER").startswith(b"200 ")


def test_ihave_fires_the_same_events_and_refuses_with_437(bind: Bind, serve: Serve) -> None:
    for event in EVENTS:
        bind(event, "trail")
    bind("OnPost", "moderate", sink_properties={"group": "local.announce", "reason": "not here"})
    with serve() as news, Dialogue(news.port) as talk:
        assert talk.command(b"IHAVE <a@peer.example>").startswith(b"335 ")
        talk.send(article() + b".\r\n")
        assert talk.line() == b"235 article transferred <a@peer.example>"
        assert talk.command(b"IHAVE <b@peer.example>").startswith(b"335 ")
        talk.send(article(groups="local.announce") + b".\r\n")
        assert talk.line() == b"437 not here"
    assert [(s.event, s.message_id) for s in SEEN] == [
        ("OnPostEarly", "<a@peer.example>"),
        ("OnPost", "<a@peer.example>"),
        ("OnPostFinal", "<a@peer.example>"),
        ("OnPostEarly", "<b@peer.example>"),
        ("OnPost", "<b@peer.example>"),
    ]


def test_a_refusal_in_on_post_reaches_the_client(bind: Bind, serve: Serve) -> None:
    bind("OnPostEarly", "trail")
    bind(
        "OnPost",
        "moderate",
        sink_properties={"group": "local.test", "reason": "posts to local.test\r\nare closed"},
    )
    bind("OnPostFinal", "trail")
    with serve() as news:
        with pytest.raises(nntplib.NNTPTemporaryError) as refused:
            post(news.port, article())
        assert str(refused.value) == "441 posts to local.test are closed"
        assert [s.event for s in SEEN] == ["OnPostEarly"]
        assert listgroup(news.port, "local.test") == []


def test_on_post_final_only_observes(bind: Bind, serve: Serve) -> None:
    bind("OnPostFinal", "moderate", sink_properties={"group": "local.test"})
    with serve() as news:
        assert post(news.port, article()).startswith("240 ")
        assert listgroup(news.port, "local.test") == [b"1"]


def test_a_newsgroup_change_in_on_post_shows_in_xref_and_listgroup(
    bind: Bind, serve: Serve
) -> None:
    bind("OnPost", "refile", sink_properties={"to": ["local.announce"]})
    bind("OnPostFinal", "trail")
    with serve() as news:
        post(news.port, article(groups="local.announce"))
        message_id = post(news.port, article(groups="local.test")).split()[-1]
        assert xref(news.port, message_id) == b"Xref: news.test local.announce:2"
        assert listgroup(news.port, "local.announce") == [b"1", b"2"]
        assert listgroup(news.port, "local.test") == []
        assert SEEN[-1].newsgroups == ("local.announce",)


def test_a_newsgroup_change_in_on_post_early_is_what_on_post_sees(bind: Bind, serve: Serve) -> None:
    bind("OnPostEarly", "refile", sink_properties={"to": ["local.test", "local.announce"]})
    bind("OnPost", "trail", rule="newsgroups=local.announce")
    with serve() as news:
        message_id = post(news.port, article(groups="local.test")).split()[-1]
        assert [s.newsgroups for s in SEEN] == [("local.test", "local.announce")]
        assert xref(news.port, message_id) == b"Xref: news.test local.test:1 local.announce:1"


def test_a_change_to_unknown_groups_only_is_refused(bind: Bind, serve: Serve) -> None:
    bind("OnPost", "refile", sink_properties={"to": ["no.such.group"]})
    with serve() as news, pytest.raises(nntplib.NNTPTemporaryError, match=r"^441 no such news"):
        post(news.port, article())


def test_unknown_groups_reach_the_events_but_not_the_filing(bind: Bind, serve: Serve) -> None:
    for event in EVENTS:
        bind(event, "trail")
    with serve() as news:
        with pytest.raises(nntplib.NNTPTemporaryError, match=r"^441 no such newsgroup$"):
            post(news.port, article(groups="no.such.group"))
        assert SEEN == []
        post(news.port, article(groups="no.such.group,local.test"))
    assert [(s.event, s.newsgroups) for s in SEEN] == [
        ("OnPostEarly", ("no.such.group", "local.test")),
        ("OnPost", ("no.such.group", "local.test")),
        ("OnPostFinal", ("local.test",)),
    ]


def test_priority_orders_the_sinks(bind: Bind, serve: Serve) -> None:
    bind("OnPost", "trail", name="last", priority=30000)
    bind("OnPost", "trail", name="first", priority=0)
    bind("OnPost", "trail", name="middle")
    with serve() as news:
        post(news.port, article())
    assert [s.binding for s in SEEN] == ["first", "middle", "last"]


def test_max_firings(bind: Bind, serve: Serve, metabase: Metabase) -> None:
    once = bind("OnPost", "trail", max_firings=1)
    with serve() as news:
        post(news.port, article())
        post(news.port, article())
    assert len(SEEN) == 1
    assert (metabase.binding(once).fire_count, metabase.binding(once).enabled) == (1, False)


def test_a_failing_sink_affects_only_itself(bind: Bind, serve: Serve) -> None:
    broken = bind("OnPost", "broken", priority=0)
    bind("OnPost", "trail")
    with serve() as news, capture_logs() as logs:
        assert post(news.port, article()).startswith("240 ")
    assert [s.event for s in SEEN] == ["OnPost"]
    (failure,) = [e for e in logs if e["event"] == "sink_failed"]
    assert failure["binding_id"] == broken
    assert "sink bug" in failure["error"]


def test_bindings_changed_while_serving_take_effect(
    bind: Bind, serve: Serve, metabase: Metabase
) -> None:
    with serve() as news:
        post(news.port, article())
        assert SEEN == []
        added = bind("OnPost", "trail")
        dispatcher = news.source.dispatcher

        async def wants() -> bool:
            return dispatcher.wants("OnPost")

        until(lambda: news.server.call(wants()))
        post(news.port, article())
        assert [s.event for s in SEEN] == ["OnPost"]

        metabase.set_enabled(added, False)
        until(lambda: not news.server.call(wants()))
        post(news.port, article())
        assert len(SEEN) == 1
