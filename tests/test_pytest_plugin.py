"""The sink author's test kit, used the way a sink author uses it: from a test file run by pytest.

Each test writes a sink author's test module into a pytester folder and runs pytest on it: the
fixtures must come from the ``pytest11`` entry point alone, with no conftest and no ``-p``.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.slow

SINKS = """
import asyncio
from seo_core.sdk import MessageStatus, Prop, Schema, Verdict, hookimpl

class Tagger:
    properties_schema = Schema({"tag": Prop(str, required=True)})

    @hookimpl
    def smtp_on_arrival(self, event, sink_properties):
        event.message["X-Tag"] = sink_properties["tag"]
        event.recipients.append("audit@example.com")

class Stopper:
    @hookimpl
    def smtp_on_arrival(self, event):
        event.badmail("not today")
        return Verdict.SKIP_REMAINING

class Broken:
    @hookimpl
    def smtp_on_arrival(self, event):
        raise ValueError("no such header")

class Slow:
    @hookimpl
    async def smtp_on_arrival(self, event):
        await asyncio.sleep(5)

class Mailbox:
    delivered = []

    @hookimpl
    def smtp_store_driver(self, event):
        Mailbox.delivered.append((event.recipient, event.message["X-Tag"]))
        event.delivered("memory")

class NoPosts:
    @hookimpl
    def nntp_on_post(self, event, sink_properties):
        if "local.announce" in event.newsgroups:
            event.refuse(sink_properties.get("why", "read only"))

class Greeter:
    properties_schema = Schema(
        {"Tag": Prop(str, default="hello"), "TrackFile": Prop(str, path=True)}
    )

    @hookimpl
    def smtp_on_arrival(self, event, sink_properties):
        event.message["X-Tag"] = sink_properties["Tag"]
"""


# An author's project that also uses pytest-asyncio (for its async tests) configures it.
INI = """
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
"""


def run_inline(pytester: pytest.Pytester, tests: str, *args: str) -> pytest.RunResult:
    pytester.makeini(INI)
    pytester.makepyfile(sinks=SINKS, test_author=textwrap.dedent(tests))
    return pytester.runpytest("-p", "no:cacheprovider", *args)


def test_the_fixtures_come_from_the_entry_point_alone(pytester: pytest.Pytester) -> None:
    (point,) = importlib.metadata.entry_points(group="pytest11", name="seo")
    assert point.value == "seo_core.pytest_plugin"
    pytester.makepyfile(
        test_author="""
        def test_uses_every_fixture(
            seo_event, seo_run_sink, seo_smtp_server, seo_nntp_server, seo_logs
        ):
            assert seo_event("OnArrival").name == "OnArrival"
        """
    )
    # A subprocess: nothing of this process (its plugins, its imports) can help it along.
    pytester.makeini(INI)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_loading_the_plugin_imports_no_server_and_no_cli() -> None:
    """pytest loads the plugin in every project where seo-core is installed: it must be light."""
    code = (
        "import sys, seo_core.pytest_plugin\n"
        "heavy = ('aiosmtpd', 'click', 'seo_core.sources', 'seo_core.cli', "
        "'seo_core.dispatcher', 'seo_core.registry', 'seo_core.config', 'structlog')\n"
        "print(sorted(m for m in sys.modules if m.startswith(heavy)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]"


def test_seo_event_builds_each_kind_of_context(pytester: pytest.Pytester) -> None:
    result = run_inline(
        pytester,
        """
        import pytest
        from email.message import EmailMessage
        from seo_core.sdk import CommandEvent, DeliveryEvent, MessageEvent, PostEvent, Reply

        def test_message_events_carry_an_envelope_and_a_lazily_parsed_message(seo_event):
            data = b"Subject: hi\\r\\n\\r\\nyo\\r\\n"
            event = seo_event("ontransportsubmission", mail_from="a@example.net",
                              recipients=["b@example.com"], message=data)
            assert type(event) is MessageEvent
            assert (event.source, event.name) == ("smtp/1", "OnArrival")
            assert event.raw == data and not event.message_used
            assert event.message["Subject"] == "hi"

        def test_an_email_message_is_used_as_it_is(seo_event):
            message = EmailMessage()
            message["Subject"] = "built"
            assert seo_event("smtp_on_arrival", message=message).message is message

        def test_delivery_names_the_first_recipient_unless_told(seo_event):
            event = seo_event("StoreDriver", recipients=["x@example.com", "y@example.com"])
            assert type(event) is DeliveryEvent and event.recipient == "x@example.com"

        def test_protocol_events_get_a_session(seo_event):
            event = seo_event("OnInboundCommand", command="MAIL", argument="FROM:<a@b.example>")
            assert type(event) is CommandEvent and event.session.peer is not None
            assert seo_event("OnServerResponse", response=(550, "no")).response == Reply(550, "no")

        def test_news_events_come_from_nntp_1(seo_event):
            event = seo_event("OnPost", newsgroups=["local.announce"], source="nntp/2")
            assert type(event) is PostEvent and event.source == "nntp/2"
            assert event.message["Newsgroups"] == "local.announce"
            assert seo_event("OnPostEarly").message.get_payload() == ""

        def test_mistakes_are_named(seo_event):
            with pytest.raises(ValueError, match="OnArival.*known: OnInboundCommand"):
                seo_event("OnArival")
            with pytest.raises(ValueError, match="did you mean 'OnArrival'"):
                seo_event("OnArival")
            with pytest.raises(ValueError, match="did you mean 'OnPostFinal'"):
                seo_event("OnPostFinale")
            with pytest.raises(TypeError, match="no field subject; they have: .*mail_from"):
                seo_event("OnArrival", subject="hi")
        """,
    )
    result.assert_outcomes(passed=6)


def test_seo_run_sink_reports_what_the_sink_did(pytester: pytest.Pytester) -> None:
    result = run_inline(
        pytester,
        """
        import pytest
        from seo_core.errors import SinkError, SinkPropertyError
        from seo_core.sdk import MessageStatus, Verdict
        from sinks import Broken, NoPosts, Slow, Stopper, Tagger

        def test_changes_and_verdict(seo_event, seo_run_sink):
            run = seo_run_sink(Tagger, seo_event("OnArrival"), sink_properties={"tag": "t1"})
            assert run.notified and not run.failed and run.error is None
            assert run.verdict is Verdict.CONTINUE
            assert run.event.message["X-Tag"] == "t1"
            assert run.event.recipients == ["rcpt@example.com", "audit@example.com"]
            assert run.binding.fire_count == 1 and run.binding.display_name == "test binding"

        def test_skip_remaining_and_status(seo_event, seo_run_sink):
            run = seo_run_sink(Stopper, seo_event("OnArrival"))
            assert run.verdict is Verdict.SKIP_REMAINING
            assert run.event.status is MessageStatus.BADMAIL
            assert run.event.status_reason == "not today"

        def test_a_failure_is_isolated_and_reported(seo_event, seo_run_sink):
            run = seo_run_sink(Broken, seo_event("OnArrival"))
            assert run.failed and not run.timed_out
            assert run.error == "ValueError: no such header"
            assert run.verdict is Verdict.CONTINUE

        def test_the_binding_timeout_bounds_an_async_sink(seo_event, seo_run_sink):
            run = seo_run_sink(Slow, seo_event("OnArrival"), binding_properties={"Timeout": 0.05})
            assert run.failed and run.timed_out and run.error == "timed out after 0.05s"

        @pytest.mark.parametrize(("rule", "notified"), [
            ("mail from=*@example.org", True),
            ("mail from=*@example.net", False),
            ("rcpt to=rcpt@*;ehlo=*", False),
        ], ids=["matches", "other-sender", "no-ehlo"])
        def test_rules_decide_whether_the_sink_is_called(seo_event, seo_run_sink, rule, notified):
            run = seo_run_sink(Tagger, seo_event("OnArrival"), rule=rule,
                               sink_properties={"tag": "x"})
            assert run.notified is notified
            assert (run.event.message.get("X-Tag") == "x") is notified

        def test_properties_are_checked_like_the_cli_checks_them(seo_event, seo_run_sink):
            with pytest.raises(SinkPropertyError, match="SinkProperties.tag"):
                seo_run_sink(Tagger, seo_event("OnArrival"))
            with pytest.raises(SinkError, match="does not handle OnPreCategorize"):
                seo_run_sink(Tagger, seo_event("OnPreCategorize"), sink_properties={"tag": "x"})

        def test_news_sinks_too(seo_event, seo_run_sink):
            run = seo_run_sink(NoPosts, seo_event("OnPost", newsgroups=["local.announce"]),
                               sink_properties={"why": "moderated"}, rule="newsgroups=local.*")
            assert run.event.refused == "moderated"

        def test_an_installed_sink_by_its_entry_point_name(seo_event, seo_run_sink, tmp_path):
            audit = tmp_path / "audit.jsonl"
            run = seo_run_sink("log", seo_event("OnArrival"),
                               sink_properties={"File": str(audit), "Fields": ["event"]})
            assert not run.failed and audit.read_text() == '{"event": "OnArrival"}\\n'

        async def test_from_an_async_test(seo_event, seo_run_sink):
            run = seo_run_sink(Tagger, seo_event("OnArrival"), sink_properties={"tag": "a"})
            assert run.event.message["X-Tag"] == "a"
        """,
    )
    result.assert_outcomes(passed=11)


def test_seo_run_sink_stores_and_passes_properties_as_a_server_does(
    pytester: pytest.Pytester,
) -> None:
    result = run_inline(
        pytester,
        """
        import os
        from click.testing import CliRunner
        from seo_core.cli import cli
        from seo_core.metabase import Metabase
        from sinks import Greeter

        def test_the_hook_gets_the_schema_defaults_and_the_binding_keeps_what_was_set(
            seo_event, seo_run_sink
        ):
            run = seo_run_sink(Greeter, seo_event("OnArrival"))
            assert not run.failed, run.error
            assert run.event.message["X-Tag"] == "hello"
            assert run.binding.sink_properties.to_dict() == {}

        def test_a_relative_path_is_stored_absolute(seo_event, seo_run_sink):
            run = seo_run_sink(Greeter, seo_event("OnArrival"),
                               sink_properties={"TrackFile": "rel/track.jsonl"})
            expected = os.path.join(os.getcwd(), "rel", "track.jsonl")
            assert run.binding.sink_properties.to_dict() == {"TrackFile": expected}

        def test_a_path_is_stored_as_seo_bindings_add_stores_it(seo_event, seo_run_sink, tmp_path):
            metabase = tmp_path / "cli.db"
            added = CliRunner().invoke(cli, [
                "--metabase", str(metabase), "bindings", "add", "smtp/1", "OnArrival", "Audit",
                "log", "--sink-prop", "File=rel/audit.jsonl"])
            assert added.exit_code == 0, added.output
            (by_cli,) = Metabase.open(metabase).bindings()
            run = seo_run_sink("log", seo_event("OnArrival"),
                               sink_properties={"File": "rel/audit.jsonl"})
            assert run.binding.sink_properties == by_cli.sink_properties

        def test_a_test_server_stores_paths_the_same_way(seo_smtp_server):
            server = seo_smtp_server([{"event": "OnArrival", "sink": "greeter",
                                       "sink_properties": {"TrackFile": "rel/t.jsonl"}}],
                                     sinks={"greeter": Greeter})
            (binding,) = server.bindings
            expected = os.path.join(os.getcwd(), "rel", "t.jsonl")
            assert binding.sink_properties.to_dict() == {"TrackFile": expected}
        """,
    )
    result.assert_outcomes(passed=4)


def test_seo_smtp_server_serves_the_given_bindings(pytester: pytest.Pytester) -> None:
    result = run_inline(
        pytester,
        """
        import smtplib
        import socket
        import pytest
        from sinks import Mailbox, Stopper, Tagger

        SINKS = {"tagger": Tagger, "mailbox": Mailbox, "stopper": Stopper}
        BINDINGS = [
            {"event": "OnArrival", "name": "Tag", "sink": "tagger",
             "sink_properties": {"tag": "over smtp"}, "rule": "rcpt to=*@example.com"},
            {"event": "StoreDriver", "name": "Keep", "sink": "mailbox"},
        ]

        def test_a_message_goes_through_the_bindings(seo_smtp_server):
            server = seo_smtp_server(BINDINGS, sinks=SINKS)
            assert [(b.display_name, b.fire_count) for b in server.bindings] == [
                ("Tag", 0), ("Keep", 0)]
            refused = server.send(recipients=["bob@example.com"])
            assert refused == {}
            assert Mailbox.delivered == [("bob@example.com", "over smtp"),
                                         ("audit@example.com", "over smtp")]
            # Read live: the counts so far, not those at start-up.
            assert [(b.display_name, b.fire_count) for b in server.bindings] == [
                ("Tag", 1), ("Keep", 2)]

        def test_plain_smtplib_and_wait_idle(seo_smtp_server):
            server = seo_smtp_server([{"event": "OnArrival", "sink": "stopper"}], sinks=SINKS)
            with smtplib.SMTP(server.host, server.port) as client:
                client.sendmail("a@example.org", ["c@example.com"], b"Subject: x\\r\\n\\r\\n")
            server.wait_idle()
            assert len(list((server.spool / "badmail").iterdir())) >= 1

        def test_it_stops_at_the_end_of_a_with_block(seo_smtp_server):
            with seo_smtp_server() as server:
                port = server.port
            with pytest.raises(ConnectionRefusedError), socket.socket() as sock:
                sock.connect((server.host, port))

        def test_bindings_are_checked_like_the_cli_checks_them(seo_smtp_server):
            with pytest.raises(Exception, match="SinkProperties.tag"):
                seo_smtp_server([{"event": "OnArrival", "sink": "tagger"}], sinks=SINKS)
            with pytest.raises(TypeError, match="unknown binding key sinks"):
                seo_smtp_server([{"event": "OnArrival", "sinks": "tagger"}])
        """,
    )
    result.assert_outcomes(passed=4)


def test_seo_nntp_server_serves_the_given_bindings(pytester: pytest.Pytester) -> None:
    result = run_inline(
        pytester,
        """
        from sinks import NoPosts

        def test_a_sink_refuses_a_post(seo_nntp_server):
            server = seo_nntp_server([{"event": "OnPost", "sink": "no-posts",
                                       "sink_properties": {"why": "moderated"}}],
                                     sinks={"no-posts": NoPosts})
            assert server.post().startswith("240 ")
            article = (b"From: a@example.org\\r\\nNewsgroups: local.announce\\r\\n"
                       b"Subject: hi\\r\\n\\r\\n.dotted line\\r\\n")
            assert server.post(article) == "441 moderated"
        """,
    )
    result.assert_outcomes(passed=1)


def test_seo_logs_captures_the_dispatchers_events(pytester: pytest.Pytester) -> None:
    result = run_inline(
        pytester,
        """
        from sinks import Broken

        def test_a_failed_sink_is_logged_once_with_its_binding(seo_event, seo_run_sink, seo_logs):
            run = seo_run_sink(Broken, seo_event("OnArrival"))
            failures = [e for e in seo_logs if e["event"] == "sink_failed"]
            assert failures == [{
                "event": "sink_failed", "log_level": "error", "source": "smtp/1",
                "event_type": "OnArrival", "binding_id": run.binding.id,
                "sink": "sink-under-test", "error": "ValueError: no such header",
            }]
        """,
    )
    result.assert_outcomes(passed=1)


def test_a_failing_author_test_fails(pytester: pytest.Pytester) -> None:
    """The kit reports a sink that misbehaves; it never turns the author's test green."""
    result = run_inline(
        pytester,
        """
        from sinks import Broken

        def test_expects_a_header(seo_event, seo_run_sink):
            run = seo_run_sink(Broken, seo_event("OnArrival"))
            assert not run.failed, run.error
        """,
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*AssertionError: ValueError: no such header*"])
