"""The script sink, installed, bound through the real CLI and fired by the real dispatcher."""

from __future__ import annotations

import email
import email.policy
import json
import os
import smtplib
import textwrap
import threading
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import seo_sink_script
from click.testing import CliRunner
from structlog.testing import capture_logs

from seo_core.catalog import hook_names
from seo_core.cli import cli
from seo_core.dispatcher import Dispatcher, DispatchResult
from seo_core.metabase import Binding, BindingSpec, Metabase
from seo_core.registry import SinkRegistry
from seo_core.sdk import (
    CommandEvent,
    DeliveryEvent,
    EventContext,
    MessageEvent,
    PostEvent,
    PropertyValue,
    SessionInfo,
    hookimpl,
)
from seo_core.testing import running_smtp

SOURCE_TREE = Path(__file__).resolve().parents[1]


def seo(metabase: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--metabase", str(metabase), *args])
    return result.exit_code, result.output + result.stderr


def write(path: Path, text: str) -> Path:
    """Write a script by replacing the file, as editors do, so a change is always seen."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(path.name + ".tmp")
    scratch.write_text(textwrap.dedent(text))
    os.replace(scratch, path)
    return path


def arrival(subject: str = "hello") -> MessageEvent:
    message = EmailMessage()
    message["Subject"] = subject
    message.set_content("body\n")
    return MessageEvent(
        source="smtp/1",
        name="OnArrival",
        message_id="m-1",
        message=message,
        mail_from="a@example.net",
        recipients=["b@example.com"],
    )


class Host:
    """A metabase with script bindings, and a way to fire events through the dispatcher."""

    def __init__(self, metabase: Metabase, registry: SinkRegistry, scripts: Path) -> None:
        self.metabase = metabase
        self.registry = registry
        self.scripts = scripts
        self.result = DispatchResult()
        self._dispatchers: dict[str, Dispatcher] = {}

    def bind(
        self,
        script: Path,
        event: str = "OnArrival",
        *,
        source: str = "smtp/1",
        priority: int = 24575,
        **extra: PropertyValue,
    ) -> Binding:
        return self.metabase.add_binding(
            BindingSpec(
                source=source,
                event=event,
                sink_class="script",
                display_name=f"{script.name} {priority}",
                sink_properties={
                    "ScriptName": str(script),
                    "AllowedDir": str(self.scripts),
                    **extra,
                },
                source_properties={"Priority": priority},
            )
        )

    def fire(self, event: EventContext) -> DispatchResult:
        dispatcher = self._dispatchers.get(event.source)
        if dispatcher is None:
            dispatcher = Dispatcher(event.source, self.metabase, self.registry)
            self._dispatchers[event.source] = dispatcher
        dispatcher.check_for_changes()
        self.result = dispatcher.notify_sync(event)
        return self.result

    def close(self) -> None:
        for dispatcher in self._dispatchers.values():
            dispatcher.close()


@pytest.fixture(scope="module")
def registry() -> SinkRegistry:
    return SinkRegistry.discover()


@pytest.fixture
def scripts(tmp_path: Path) -> Path:
    folder = tmp_path / "scripts"
    folder.mkdir()
    return folder


@pytest.fixture
def host(tmp_path: Path, registry: SinkRegistry, scripts: Path) -> Iterator[Host]:
    with Metabase.open(tmp_path / "m.db") as metabase:
        opened = Host(metabase, registry, scripts)
        yield opened
        opened.close()


# -- discovery ------------------------------------------------------------------------------


def test_is_discovered_and_implements_every_hook(registry: SinkRegistry) -> None:
    info = registry.resolve("script")
    assert info.distribution == "seo-sink-script"
    assert info.target is seo_sink_script.ScriptSink
    assert set(info.hooks) == set(hook_names())
    installed = Path(seo_sink_script.__file__).resolve()
    assert not installed.is_relative_to(SOURCE_TREE), "testing the source tree, not the install"


def test_every_hook_has_a_script_function_of_its_name() -> None:
    expected = {hook.split("_", 1)[1] for hook in hook_names()}
    assert set(seo_sink_script.FUNCTIONS) == expected


# -- calling the script ---------------------------------------------------------------------


def test_on_arrival_edits_the_message_with_the_bindings_properties(
    host: Host, scripts: Path
) -> None:
    script = write(
        scripts / "tag.py",
        """
        def on_arrival(event, sink_properties):
            event.message["X-Tag"] = sink_properties["tag"]
        """,
    )
    host.bind(script, tag="checked")
    event = arrival()
    assert host.fire(event) == DispatchResult(notified=1)
    assert event.message["X-Tag"] == "checked"


def test_a_function_takes_any_subset_of_the_arguments(host: Host, scripts: Path) -> None:
    script = write(
        scripts / "subset.py",
        """
        SEEN = []

        def on_arrival(binding, source_properties, event):
            event.message["X-Binding"] = binding.display_name
            event.message["X-Priority"] = str(source_properties["Priority"])
            event.message["X-Calls"] = str(len(SEEN) + 1)
            SEEN.append(event.message_id)

        def on_pre_categorize():
            SEEN.append("no arguments at all")

        def on_post_categorize(event, unused=None, **rest):
            event.message["X-Rest"] = ",".join(sorted(rest))
        """,
    )
    host.bind(script, priority=7)
    host.bind(script, "OnPreCategorize", priority=8)
    host.bind(script, "OnPostCategorize", priority=9)
    first, second = arrival(), arrival()
    host.fire(first)
    host.fire(second)
    assert first.message["X-Binding"] == "subset.py 7"
    assert first.message["X-Priority"] == "7"
    assert (first.message["X-Calls"], second.message["X-Calls"]) == ("1", "2")
    later = arrival()
    later.name = "OnPreCategorize"
    assert host.fire(later) == DispatchResult(notified=1)
    later.name = "OnPostCategorize"
    host.fire(later)
    assert later.message["X-Rest"] == "binding,sink_properties,source_properties"


def test_the_functions_verdict_is_the_sinks(host: Host, scripts: Path) -> None:
    stop = write(
        scripts / "stop.py",
        """
        from seo_core.sdk import Verdict

        def on_arrival(event):
            event.message["X-First"] = "yes"
            return Verdict.SKIP_REMAINING
        """,
    )
    never = write(
        scripts / "never.py",
        """
        def on_arrival(event):
            event.message["X-Second"] = "yes"
        """,
    )
    first = host.bind(stop, priority=1)
    host.bind(never, priority=2)
    event = arrival()
    assert host.fire(event) == DispatchResult(notified=1, stopped_by=first.id)
    assert event.message["X-Second"] is None


def test_a_protocol_event_can_be_refused(host: Host, scripts: Path) -> None:
    script = write(
        scripts / "vrfy.py",
        """
        def on_inbound_command(event):
            if event.command.upper() == "VRFY":
                event.reply(502, "5.5.1 VRFY is disabled here")
        """,
    )
    host.bind(script, "OnInboundCommand")
    event = CommandEvent(
        source="smtp/1",
        name="OnInboundCommand",
        command="VRFY",
        argument="alice",
        session=SessionInfo(id="s-1"),
    )
    host.fire(event)
    assert event.response is not None
    assert (event.response.code, event.response.text) == (502, "5.5.1 VRFY is disabled here")


def test_an_nntp_post_can_be_refused(host: Host, scripts: Path) -> None:
    script = write(
        scripts / "news.py",
        """
        def on_post(event, sink_properties):
            if sink_properties["closed"] in event.newsgroups:
                event.refuse("that group is closed")
        """,
    )
    host.bind(script, "OnPost", source="nntp/1", closed="local.closed")
    message = EmailMessage()
    message["Newsgroups"] = "local.closed"
    event = PostEvent(source="nntp/1", name="OnPost", message=message, newsgroups=["local.closed"])
    assert host.fire(event) == DispatchResult(notified=1)
    assert event.refused == "that group is closed"


def test_on_transport_submission_is_the_same_event_as_on_arrival(host: Host, scripts: Path) -> None:
    script = write(
        scripts / "old-name.py",
        """
        def on_transport_submission(event):
            event.message["X-Old-Name"] = "yes"
        """,
    )
    host.bind(script, "OnTransportSubmission")
    event = arrival()
    host.fire(event)
    assert event.message["X-Old-Name"] == "yes"


def test_an_event_the_script_does_not_handle_does_nothing(host: Host, scripts: Path) -> None:
    script = write(scripts / "empty.py", "def on_post(event):\n    raise AssertionError\n")
    host.bind(script)
    event = arrival()
    assert host.fire(event) == DispatchResult(notified=1)


def test_the_script_is_loaded_again_when_it_changes(host: Host, scripts: Path) -> None:
    script = write(
        scripts / "versioned.py",
        """
        def on_arrival(event):
            event.message["X-Version"] = "1"
        """,
    )
    host.bind(script)
    first = arrival()
    host.fire(first)
    write(
        script,
        """
        def on_arrival(event):
            event.message["X-Version"] = "2"
        """,
    )
    second = arrival()
    host.fire(second)
    assert (first.message["X-Version"], second.message["X-Version"]) == ("1", "2")


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        pytest.param("def on_arrival(event:\n", "SyntaxError", id="syntax-error"),
        pytest.param("raise RuntimeError('no config')\n", "RuntimeError: no config", id="raises"),
        pytest.param(
            "async def on_arrival(event):\n    pass\n", "is async def", id="async-function"
        ),
        pytest.param(
            "def on_arrival(evt):\n    pass\n", "unknown argument 'evt'", id="unknown-argument"
        ),
        pytest.param("on_arrival = 3\n", "on_arrival is not a function", id="not-a-function"),
    ],
)
def test_a_script_that_cannot_be_loaded_fails_the_notification_until_it_is_fixed(
    host: Host, scripts: Path, text: str, complaint: str
) -> None:
    script = write(scripts / "broken.py", text)
    binding = host.bind(script)
    with capture_logs() as logs:
        for _ in range(2):
            result = host.fire(arrival())
            assert result._replace(error=None) == DispatchResult(failed=1)
            assert result.error is not None
            assert result.error.startswith("script: ScriptError: ")
            assert complaint in result.error
    failures = [log for log in logs if log["event"] == "sink_failed"]
    assert len(failures) == 2
    assert failures[0]["binding_id"] == binding.id
    assert "ScriptError" in failures[0]["error"]
    assert complaint in failures[0]["error"]
    write(script, "def on_arrival(event):\n    event.message['X-Fixed'] = 'yes'\n")
    event = arrival()
    assert host.fire(event) == DispatchResult(notified=1)
    assert event.message["X-Fixed"] == "yes"


def test_a_missing_script_fails_the_notification(host: Host, scripts: Path) -> None:
    host.bind(scripts / "absent.py")
    with capture_logs() as logs:
        assert host.fire(arrival())._replace(error=None) == DispatchResult(failed=1)
    (failure,) = [log for log in logs if log["event"] == "sink_failed"]
    assert "cannot read it" in failure["error"]


def test_a_failing_function_affects_only_its_own_notification(host: Host, scripts: Path) -> None:
    failing = write(scripts / "failing.py", "def on_arrival(event):\n    1 / 0\n")
    tagging = write(
        scripts / "tagging.py", "def on_arrival(event):\n    event.message['X-T'] = '1'\n"
    )
    host.bind(failing, priority=1)
    host.bind(tagging, priority=2)
    event = arrival()
    with capture_logs() as logs:
        assert host.fire(event)._replace(error=None) == DispatchResult(notified=1, failed=1)
    assert event.message["X-T"] == "1"
    (failure,) = [log for log in logs if log["event"] == "sink_failed"]
    assert "ZeroDivisionError" in failure["error"]


def test_a_misspelt_function_is_reported_in_the_log(host: Host, scripts: Path) -> None:
    script = write(scripts / "typo.py", "def on_arival(event):\n    pass\n")
    host.bind(script)
    with capture_logs() as logs:
        host.fire(arrival())
    (warning,) = [log for log in logs if log["event"] == "script_function_unknown"]
    assert (warning["function"], warning["did_you_mean"]) == ("on_arival", "on_arrival")


def test_allowed_dir_is_checked_again_when_the_script_is_loaded(
    host: Host, scripts: Path, tmp_path: Path
) -> None:
    inside = write(scripts / "real.py", "def on_arrival(event):\n    event.message['X-In'] = '1'\n")
    outside = write(tmp_path / "elsewhere" / "evil.py", "def on_arrival(event):\n    pass\n")
    link = scripts / "current.py"
    link.symlink_to(inside)
    host.bind(link)
    event = arrival()
    assert host.fire(event) == DispatchResult(notified=1)
    assert event.message["X-In"] == "1"
    link.unlink()
    link.symlink_to(outside)
    with capture_logs() as logs:
        assert host.fire(arrival())._replace(error=None) == DispatchResult(failed=1)
    (failure,) = [log for log in logs if log["event"] == "sink_failed"]
    assert f"lies outside AllowedDir {scripts.resolve()}" in failure["error"]


# -- sink properties through the CLI --------------------------------------------------------

ADD = ("bindings", "add", "smtp/1", "OnArrival", "By script", "script")


def props(*items: str) -> list[str]:
    return [arg for item in items for arg in ("--sink-prop", item)]


def test_a_script_inside_allowed_dir_is_accepted_with_its_own_properties(
    tmp_path: Path, scripts: Path
) -> None:
    script = write(scripts / "ok.py", "")
    code, output = seo(
        tmp_path / "m.db", *ADD, *props(f"ScriptName={script}", f"AllowedDir={scripts}", "tag=x")
    )
    assert code == 0, output


@pytest.mark.parametrize(
    ("name", "complaint"),
    [
        pytest.param("{outside}", "lies outside AllowedDir", id="absolute-outside"),
        pytest.param("{scripts}/../outside.py", "lies outside AllowedDir", id="dot-dot"),
        pytest.param("{scripts}/link.py", "(symbolic links resolved) lies outside", id="symlink"),
        pytest.param("{scripts}", "lies outside AllowedDir", id="the-folder-itself"),
    ],
)
def test_a_script_outside_allowed_dir_is_refused_when_written(
    tmp_path: Path, scripts: Path, name: str, complaint: str
) -> None:
    outside = write(tmp_path / "outside.py", "")
    (scripts / "link.py").symlink_to(outside)
    script_name = name.format(outside=outside, scripts=scripts)
    code, output = seo(
        tmp_path / "m.db", *ADD, *props(f"ScriptName={script_name}", f"AllowedDir={scripts}")
    )
    assert code == 1, output
    assert "ScriptName: " in output
    assert complaint in output


def test_a_symlinked_allowed_dir_is_resolved_too(tmp_path: Path, scripts: Path) -> None:
    script = write(scripts / "ok.py", "")
    alias = tmp_path / "alias-of-scripts"
    alias.symlink_to(scripts)
    code, output = seo(
        tmp_path / "m.db", *ADD, *props(f"ScriptName={script}", f"AllowedDir={alias}")
    )
    assert code == 0, output


def test_without_allowed_dir_the_script_must_lie_in_the_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "work"
    write(work / "hooks" / "tag.py", "")
    outside = write(tmp_path / "outside.py", "")
    monkeypatch.chdir(work)
    metabase = tmp_path / "m.db"
    code, output = seo(metabase, *ADD, *props("ScriptName=hooks/tag.py"))
    assert code == 0, output
    code, output = seo(metabase, *ADD[:4], "Absolute", "script", *props(f"ScriptName={work}/x.py"))
    assert code == 0, output
    for refused in (str(outside), "../outside.py"):
        code, output = seo(metabase, *ADD[:4], "Refused", "script", *props(f"ScriptName={refused}"))
        assert code == 1, output
        assert f"lies outside the current working folder {work.resolve()}" in output


@pytest.mark.parametrize(
    ("items", "complaint"),
    [
        pytest.param([], "SinkProperties.ScriptName", id="script-missing"),
        pytest.param(["ScriptName="], "ScriptName: must name a file", id="script-empty"),
        pytest.param(["ScriptName=3"], "SinkProperties.ScriptName", id="script-not-text"),
        pytest.param(
            ["ScriptName={scripts}/ok.py", "AllowedDir=true"],
            "SinkProperties.AllowedDir",
            id="allowed-not-text",
        ),
        pytest.param(
            ['ScriptName={{env = "SCRIPT"}}'],
            "ScriptName: must be a path written out",
            id="script-from-env",
        ),
        pytest.param(
            ["ScriptName={scripts}/ok.py", "AllowDir={scripts}"],
            "AllowDir: unknown property (did you mean 'AllowedDir'?)",
            id="typo",
        ),
    ],
)
def test_bad_sink_properties_are_refused_when_written(
    tmp_path: Path, scripts: Path, items: list[str], complaint: str
) -> None:
    write(scripts / "ok.py", "")
    filled = [item.format(scripts=scripts) for item in items]
    code, output = seo(tmp_path / "m.db", *ADD, *props(*filled))
    assert code == 1, output
    assert complaint in output


def test_a_config_file_makes_both_paths_absolute_against_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    deployment = tmp_path / "etc"
    write(deployment / "scripts" / "tag.py", "")
    config = deployment / "seo.toml"
    config.write_text(
        textwrap.dedent(
            """
            [[bindings]]
            source = "smtp/1"
            event = "OnArrival"
            name = "By script"
            sink = "script"
            sink_properties = { ScriptName = "scripts/tag.py", AllowedDir = "scripts" }
            """
        )
    )
    monkeypatch.chdir(tmp_path)  # not the config file's folder
    metabase = tmp_path / "m.db"
    code, output = seo(metabase, "config", "apply", str(config))
    assert code == 0, output
    code, output = seo(metabase, "bindings", "list", "--json")
    (binding,) = json.loads(output)
    properties = binding["sink_properties"]
    assert properties["ScriptName"] == str(deployment / "scripts" / "tag.py")
    assert properties["AllowedDir"] == str(deployment / "scripts")


# -- end to end: a real SMTP source -----------------------------------------------------------


class Store:
    """A StoreDriver sink that keeps each delivery as a file under ``root/<recipient>/``."""

    lock = threading.Lock()

    @hookimpl
    def smtp_store_driver(self, event: DeliveryEvent, sink_properties: Any) -> None:
        folder = Path(str(sink_properties["root"])) / event.recipient
        with Store.lock:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{len(list(folder.iterdir())) + 1}.eml"
            path.write_bytes(event.raw if event.raw is not None else event.message.as_bytes())
        event.delivered(str(path))


def test_a_script_adds_a_header_seen_in_the_delivered_message(
    tmp_path: Path, scripts: Path
) -> None:
    metabase_path, mail = tmp_path / "m.db", tmp_path / "mail"
    script = write(
        scripts / "stamp.py",
        """
        def on_arrival(event, sink_properties, binding):
            event.message["X-Scripted"] = f"{sink_properties['tag']} by {binding.display_name}"
        """,
    )
    code, output = seo(
        metabase_path,
        *ADD,
        *props(f"ScriptName={script}", f"AllowedDir={scripts}", "tag=stamped"),
    )
    assert code == 0, output
    with Metabase.open(metabase_path) as metabase:
        metabase.add_binding(
            BindingSpec(
                source="smtp/1",
                event="StoreDriver",
                sink_class="test-store",
                display_name="Store",
                sink_properties={"root": str(mail)},
            )
        )
    installed = SinkRegistry.discover()
    registry = SinkRegistry(
        [*installed.sinks, *SinkRegistry.from_objects({"test-store": Store}).sinks]
    )
    body = b"From: a@example.net\r\nSubject: scripted\r\n\r\nhello\r\n"
    with running_smtp(metabase_path, registry, spool=tmp_path / "spool") as smtp:
        with smtplib.SMTP("127.0.0.1", smtp.port) as client:
            assert client.sendmail("a@example.net", ["alice@example.com"], body) == {}
        smtp.wait_idle()
    (stored,) = (mail / "alice@example.com").iterdir()
    delivered = email.message_from_bytes(stored.read_bytes(), policy=email.policy.default)
    assert delivered["X-Scripted"] == "stamped by By script"
    assert delivered["Subject"] == "scripted"
    assert delivered.get_content().splitlines() == ["hello"]
