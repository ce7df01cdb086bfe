"""The policy sink, installed, fired by the real dispatcher and bound through the real CLI."""

from __future__ import annotations

import email
import email.policy
import re
import shlex
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
import seo_sink_policy
from click.testing import CliRunner
from seo_sink_policy import glob_match

from seo_core.cli import cli
from seo_core.dispatcher import Dispatcher
from seo_core.metabase import BindingSpec, Metabase
from seo_core.registry import SinkRegistry
from seo_core.rules import EventFacts
from seo_core.sdk import (
    CommandEvent,
    EventContext,
    MessageEvent,
    MessageStatus,
    PostEvent,
    PropertyValue,
    SessionInfo,
)

SOURCE_TREE = Path(__file__).resolve().parents[1]

MESSAGE = (
    b"Received: from client.example.org\r\n"
    b"\tby mx.example.com; Tue, 3 Dec 2024 10:00:00 +0000\r\n"
    b"From: sender@example.org\r\n"
    b"Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?= aus\r\n"
    b" M=?UTF-8?Q?=C3=BC?=nchen\r\n"
    b"X-Spam-Flag: NO\r\n"
    b"X-Spam-Flag: YES\r\n"
    b"X-Odd: a?b[c]\r\n"
    b"\r\n"
    b"Body line.\r\n"
)


@pytest.fixture(scope="module")
def registry() -> SinkRegistry:
    return SinkRegistry.discover()


Fire = Callable[..., Dispatcher]


@pytest.fixture
def bind(tmp_path: Path, registry: SinkRegistry) -> Iterator[Fire]:
    """``bind(event, rule=None, **sink_properties)``: a dispatcher with one policy binding."""
    opened: list[tuple[Metabase, Dispatcher]] = []

    def make(
        event: str, rule: str | None = None, source: str = "smtp/1", **props: PropertyValue
    ) -> Dispatcher:
        metabase = Metabase.open(tmp_path / f"m-{len(opened)}.db")
        metabase.add_binding(
            BindingSpec(
                source=source,
                event=event,
                sink_class="policy",
                display_name="Policy",
                sink_properties=props,
                source_properties={} if rule is None else {"Rule": rule},
            )
        )
        dispatcher = Dispatcher(source, metabase, registry)
        opened.append((metabase, dispatcher))
        return dispatcher

    yield make
    for metabase, dispatcher in opened:
        dispatcher.close()
        metabase.close()


def notify(dispatcher: Dispatcher, event: EventContext, facts: EventFacts | None = None) -> None:
    result = dispatcher.notify_sync(event, facts)
    assert (result.failed, result.timed_out) == (0, 0)


def test_is_discovered_from_the_installed_distribution(registry: SinkRegistry) -> None:
    info = registry.resolve("policy")
    assert info.distribution == "seo-sink-policy"
    assert info.events == ("OnArrival", "OnInboundCommand", "OnPost", "OnPostEarly")
    assert info.target is seo_sink_policy.PolicySink
    installed = Path(seo_sink_policy.__file__).resolve()
    assert not installed.is_relative_to(SOURCE_TREE), "testing the source tree, not the install"


# -- OnInboundCommand ---------------------------------------------------------------------


def command(verb: str, argument: str = "", session: SessionInfo | None = None) -> CommandEvent:
    return CommandEvent(
        source="smtp/1",
        name="OnInboundCommand",
        command=verb,
        argument=argument,
        session=session or SessionInfo(id="s-1"),
    )


def test_a_command_gets_the_default_refusal(bind: Fire) -> None:
    event = command("MAIL", "FROM:<x@spam.example>")
    notify(bind("OnInboundCommand"), event)
    assert event.response is not None
    assert (event.response.code, event.response.text) == (550, "5.7.1 Refused by policy")
    assert not event.drop


def test_a_command_gets_the_configured_reply_and_the_session_is_dropped(bind: Fire) -> None:
    event = command("EHLO", "host.bad.example")
    notify(bind("OnInboundCommand", code=421, text="4.7.0 Go away", drop=True), event)
    assert event.response is not None
    assert (event.response.code, event.response.text) == (421, "4.7.0 Go away")
    assert event.drop


def test_the_default_text_follows_a_temporary_code(bind: Fire) -> None:
    event = command("RCPT", "TO:<r@example.com>")
    notify(bind("OnInboundCommand", code=451), event)
    assert event.response is not None
    assert (event.response.code, event.response.text) == (451, "4.7.1 Refused by policy")


def test_the_rule_chooses_the_commands(bind: Fire) -> None:
    dispatcher = bind("OnInboundCommand", rule="mail from=*@spam.example")
    refused = command("MAIL", "FROM:<x@spam.example>")
    notify(dispatcher, refused, EventFacts(command="MAIL", argument=refused.argument))
    allowed = command("MAIL", "FROM:<x@example.org>")
    notify(dispatcher, allowed, EventFacts(command="MAIL", argument=allowed.argument))
    assert refused.response is not None
    assert allowed.response is None


def test_only_rcpt_commands_past_max_recipients_are_refused(bind: Fire) -> None:
    dispatcher = bind("OnInboundCommand", max_recipients=2, code=452, text="4.5.3 Too many")
    session = SessionInfo(id="s-1")
    events = [
        command("MAIL", "FROM:<a@example.org>", session),
        *(command("RCPT", f"TO:<r{n}@example.com>", session) for n in range(4)),
        command("DATA", "", session),
    ]
    for event in events:
        notify(dispatcher, event)
    replies = [None if e.response is None else e.response.code for e in events]
    assert replies == [None, None, None, 452, 452, None]
    assert not any(e.drop for e in events)


def test_recipients_are_counted_per_session_and_per_binding(bind: Fire) -> None:
    first = bind("OnInboundCommand", max_recipients=1)
    second = bind("OnInboundCommand", max_recipients=2)
    session, other = SessionInfo(id="s-1"), SessionInfo(id="s-2")

    def rcpt(dispatcher: Dispatcher, session: SessionInfo) -> int | None:
        event = command("RCPT", "TO:<r@example.com>", session)
        notify(dispatcher, event)
        return None if event.response is None else event.response.code

    assert [rcpt(first, session), rcpt(first, session)] == [None, 550]
    assert [rcpt(second, session), rcpt(second, session), rcpt(second, session)] == [
        None,
        None,
        550,
    ]
    assert rcpt(first, other) is None


# -- OnArrival ----------------------------------------------------------------------------


def arrival(data: bytes = MESSAGE, *, parsed: bool = False) -> MessageEvent:
    """An OnArrival event as the SMTP source makes it: the bytes, or the message if parsed."""
    if not parsed:
        return MessageEvent(
            source="smtp/1",
            name="OnArrival",
            message_id="m-1",
            mail_from="sender@example.org",
            recipients=["alice@example.com"],
            raw=data,
        )
    message = email.message_from_bytes(data, policy=email.policy.SMTP)
    assert isinstance(message, EmailMessage)
    return MessageEvent(
        source="smtp/1",
        name="OnArrival",
        message_id="m-1",
        mail_from="sender@example.org",
        recipients=["alice@example.com"],
        message=message,
    )


def test_every_message_notified_goes_to_badmail_by_default(bind: Fire) -> None:
    event = arrival()
    notify(bind("OnArrival"), event)
    assert event.status is MessageStatus.BADMAIL
    assert event.status_reason == "refused by policy Policy: selected by the binding's rule"


def test_status_and_reason_are_configurable(bind: Fire) -> None:
    event = arrival()
    notify(bind("OnArrival", status="abort", reason="not wanted here"), event)
    assert event.status is MessageStatus.ABORT
    assert event.status_reason == "not wanted here"


@pytest.mark.parametrize("parsed", [False, True], ids=["bytes", "parsed"])
@pytest.mark.parametrize(
    ("max_size", "selected"),
    [
        pytest.param(len(MESSAGE) - 1, True, id="one-byte-over"),
        pytest.param(len(MESSAGE), False, id="exactly-the-limit"),
        pytest.param(0, True, id="zero"),
    ],
)
def test_max_size_selects_bigger_messages(
    max_size: int, selected: bool, parsed: bool, bind: Fire
) -> None:
    event = arrival(parsed=parsed)
    notify(bind("OnArrival", max_size=max_size), event)
    if selected:
        assert event.status is MessageStatus.BADMAIL
        assert event.status_reason == (
            f"refused by policy Policy: {len(MESSAGE)} bytes is over max_size {max_size}"
        )
    else:
        assert event.status is MessageStatus.DELIVER
        assert event.status_reason is None


@pytest.mark.parametrize(
    ("patterns", "selected"),
    [
        pytest.param({"Subject": "Grüße aus München"}, True, id="encoded-words-decoded"),
        pytest.param({"subject": "grüsse*"}, True, id="any-case-casefolded"),
        pytest.param({"Subject": "*aus*"}, True, id="folded-value-unfolded"),
        pytest.param({"Subject": "aus*"}, False, id="matches-the-whole-value"),
        pytest.param({"Received": "*by mx.example.com;*"}, True, id="folded-received"),
        pytest.param({"X-Spam-Flag": "yes"}, True, id="any-occurrence"),
        pytest.param({"X-Spam-Flag": "maybe"}, False, id="no-occurrence"),
        pytest.param({"X-Absent": "*"}, False, id="absent-header-matches-nothing"),
        pytest.param({"X-Odd": "a?b[c]"}, True, id="question-mark-and-brackets-are-plain"),
        pytest.param({"X-Odd": "a?b[c]*x"}, False, id="plain-characters-still-count"),
        pytest.param({"X-Odd": "abb[c]"}, False, id="question-mark-is-not-a-wildcard"),
        pytest.param({"X-Spam-Flag": "yes", "From": "*@example.org"}, True, id="all-match"),
        pytest.param({"X-Spam-Flag": "yes", "From": "*@example.net"}, False, id="one-fails"),
    ],
)
def test_header_pattern_selects_messages(
    patterns: dict[str, PropertyValue], selected: bool, bind: Fire
) -> None:
    event = arrival()
    notify(bind("OnArrival", header_pattern=patterns), event)
    assert event.status is (MessageStatus.BADMAIL if selected else MessageStatus.DELIVER)


def test_matching_headers_does_not_make_the_source_rewrite_the_message(bind: Fire) -> None:
    event = arrival()
    notify(bind("OnArrival", header_pattern={"X-Spam-Flag": "yes"}), event)
    assert event.status is MessageStatus.BADMAIL
    assert event.status_reason == "refused by policy Policy: X-Spam-Flag matches 'yes'"
    assert not event.message_used
    assert event.raw == MESSAGE


def test_the_size_is_that_of_the_message_as_an_earlier_sink_left_it(bind: Fire) -> None:
    event = arrival()
    event.message["X-Added"] = "x" * 100  # what an earlier OnArrival sink may do
    notify(bind("OnArrival", max_size=len(MESSAGE) + 50), event)
    assert event.status is MessageStatus.BADMAIL


def test_size_and_headers_must_both_select(bind: Fire) -> None:
    small, big = arrival(), arrival(MESSAGE + b"x" * 100)
    dispatcher = bind("OnArrival", max_size=len(MESSAGE), header_pattern={"X-Spam-Flag": "yes"})
    notify(dispatcher, small)
    notify(dispatcher, big)
    assert small.status is MessageStatus.DELIVER
    assert big.status is MessageStatus.BADMAIL
    assert big.status_reason == (
        f"refused by policy Policy: {len(MESSAGE) + 100} bytes is over max_size "
        f"{len(MESSAGE)}; X-Spam-Flag matches 'yes'"
    )


@pytest.mark.parametrize(
    ("pattern", "value", "matches"),
    [
        ("*", "", True),
        ("", "", True),
        ("", "x", False),
        ("a*c", "abbbc", True),
        ("a*c", "abbbcd", False),
        ("*.*", "a.b", True),
        ("*.*", "ab", False),
        ("(x)+", "(X)+", True),
        ("a**b", "ab", True),
        ("*\n*", "a\nb", True),
    ],
)
def test_glob_match(pattern: str, value: str, matches: bool) -> None:
    assert glob_match(pattern, value) is matches


# -- NNTP ---------------------------------------------------------------------------------


def post(event: str, *groups: str) -> PostEvent:
    message = EmailMessage()
    message["Newsgroups"] = ",".join(groups)
    message["Subject"] = "hello"
    return PostEvent(source="nntp/1", name=event, message=message, newsgroups=list(groups))


@pytest.mark.parametrize("event_name", ["OnPostEarly", "OnPost"])
def test_posts_to_a_moderated_group_are_refused(event_name: str, bind: Fire) -> None:
    dispatcher = bind(
        event_name, rule="newsgroups=local.moderated", source="nntp/1", text="moderated group"
    )
    moderated = post(event_name, "local.test", "local.moderated")
    notify(dispatcher, moderated, EventFacts(newsgroups=tuple(moderated.newsgroups)))
    free = post(event_name, "local.test")
    notify(dispatcher, free, EventFacts(newsgroups=tuple(free.newsgroups)))
    assert moderated.refused == "moderated group"
    assert free.refused is None


def test_news_gets_a_refusal_without_smtp_status_codes_by_default(bind: Fire) -> None:
    event = post("OnPost", "local.test")
    notify(bind("OnPost", source="nntp/1"), event)
    assert event.refused == "Refused by policy"


# -- sink properties, through the real command line ---------------------------------------


def seo(metabase: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--metabase", str(metabase), *args])
    return result.exit_code, result.output + result.stderr


@pytest.mark.parametrize(
    ("event", "props", "complaint"),
    [
        pytest.param("OnInboundCommand", ["code=250"], "SinkProperties.code 250", id="code-2xx"),
        pytest.param("OnInboundCommand", ["code=600"], "SinkProperties.code 600", id="code-600"),
        pytest.param("OnInboundCommand", ["code=five"], "SinkProperties.code", id="code-text"),
        pytest.param("OnInboundCommand", ["text="], "SinkProperties.text", id="text-empty"),
        pytest.param(
            "OnInboundCommand",
            ['text="a\\r\\n250 ok"'],
            'SinkProperties.text "a\\r\\n250 ok": must be one line',
            id="text-two-lines",
        ),
        pytest.param("OnInboundCommand", ["drop=yes"], "SinkProperties.drop", id="drop-text"),
        pytest.param(
            "OnInboundCommand",
            ["max_recipients=-1"],
            "SinkProperties.max_recipients -1: must be 0 or more",
            id="max-recipients-negative",
        ),
        pytest.param(
            "OnInboundCommand",
            ["max_recipient=5"],
            "did you mean 'max_recipients'",
            id="typo",
        ),
        pytest.param("OnArrival", ["max_size=big"], "SinkProperties.max_size", id="size-text"),
        pytest.param(
            "OnArrival", ["max_size=-5"], "SinkProperties.max_size -5", id="size-negative"
        ),
        pytest.param("OnArrival", ["status=bounce"], "SinkProperties.status", id="status"),
        pytest.param("OnArrival", ["status=BADMAIL"], "SinkProperties.status", id="status-case"),
        pytest.param(
            "OnArrival",
            ["header_pattern=Subject"],
            "SinkProperties.header_pattern",
            id="patterns-not-a-table",
        ),
        pytest.param(
            "OnArrival",
            ['header_pattern={ "Bad Name" = "*" }'],
            "SinkProperties.header_pattern 'Bad Name': is not a header name",
            id="pattern-bad-name",
        ),
        pytest.param(
            "OnArrival",
            ["header_pattern={ Subject = 1 }"],
            "SinkProperties.header_pattern.Subject 1",
            id="pattern-not-a-string",
        ),
        pytest.param(
            "OnArrival",
            ['reason="a\\nb"'],
            "SinkProperties.reason",
            id="reason-two-lines",
        ),
    ],
)
def test_bad_sink_properties_are_refused_when_the_binding_is_written(
    event: str, props: list[str], complaint: str, tmp_path: Path
) -> None:
    arguments = [arg for prop in props for arg in ("--sink-prop", prop)]
    code, output = seo(
        tmp_path / "m.db", "bindings", "add", "smtp/1", event, "P", "policy", *arguments
    )
    assert code == 1, output
    assert complaint in output


def test_good_sink_properties_are_accepted(tmp_path: Path) -> None:
    code, output = seo(
        tmp_path / "m.db",
        "bindings",
        "add",
        "smtp/1",
        "OnArrival",
        "Big or flagged",
        "policy",
        "--sink-prop",
        "max_size=1048576",
        "--sink-prop",
        'header_pattern={ "X-Spam-Flag" = "yes*", Subject = "*[SPAM]*" }',
        "--sink-prop",
        "status=abort",
        "--sink-prop",
        "reason=too big and flagged",
    )
    assert code == 0, output


# -- the README's examples ----------------------------------------------------------------

README = (SOURCE_TREE / "README.md").read_text()


def test_the_readme_command_line_adds_a_binding(tmp_path: Path) -> None:
    (line,) = re.findall(r"^seo bindings add .*$", README, flags=re.MULTILINE)
    code, output = seo(tmp_path / "m.db", *shlex.split(line)[1:])
    assert code == 0, output


def test_the_readme_config_snippet_applies(tmp_path: Path) -> None:
    (snippet,) = re.findall(r"```toml\n(.*?)```", README, flags=re.DOTALL)
    config = tmp_path / "seo.toml"
    config.write_text(snippet)
    code, output = seo(tmp_path / "m.db", "config", "apply", str(config))
    assert code == 0, output
    assert output.count("-> policy") == 3
