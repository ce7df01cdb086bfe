"""The webhook sink, installed, fired by the real dispatcher at a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import smtplib
import threading
import time
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import seo_sink_webhook
from click.testing import CliRunner
from structlog.testing import capture_logs

from seo_core.cli import cli
from seo_core.dispatcher import Dispatcher, DispatchResult
from seo_core.metabase import Binding, BindingSpec, Metabase
from seo_core.registry import SinkRegistry
from seo_core.sdk import (
    DeliveryEvent,
    EventContext,
    MessageEvent,
    PostEvent,
    PropertyValue,
    TrackEvent,
    hookimpl,
)
from seo_core.testing import running_smtp

SOURCE_TREE = Path(__file__).resolve().parents[1]
WAIT = 10.0
"""Seconds a test waits for something that should happen at once, before failing."""


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Hook:
    """A real HTTP server on a free loopback port that records the requests it receives.

    ``replies`` are the status codes to answer with, in order (then 200). While ``hold`` is
    set, each request waits for ``release`` before it is answered.
    """

    url: str = ""
    requests: list[Request] = field(default_factory=list)
    replies: list[int] = field(default_factory=list)
    hold: bool = False
    release: threading.Event = field(default_factory=threading.Event)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def record(self, request: Request) -> int:
        with self.changed:
            self.requests.append(request)
            self.changed.notify_all()
            return self.replies.pop(0) if self.replies else 200

    def wait_for(self, count: int) -> list[Request]:
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.requests) >= count, WAIT), (
                f"{len(self.requests)} requests arrived, expected {count}"
            )
            return list(self.requests)


def _handler(hook: Hook) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            status = hook.record(Request(self.path, dict(self.headers.items()), body))
            if hook.hold:
                hook.release.wait(WAIT)
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def hook() -> Iterator[Hook]:
    recorder = Hook()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(recorder))
    recorder.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/seo?key=secret-in-query"
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield recorder
    recorder.release.set()
    server.shutdown()
    server.server_close()
    thread.join(WAIT)


@pytest.fixture(scope="module")
def registry() -> SinkRegistry:
    return SinkRegistry.discover()


class Notifier:
    """A metabase with webhook bindings and one dispatcher per source to fire them."""

    def __init__(self, metabase: Metabase, registry: SinkRegistry) -> None:
        self.metabase = metabase
        self.registry = registry
        self._dispatchers: dict[str, Dispatcher] = {}

    def bind(
        self, event: str = "OnArrival", *, source: str = "smtp/1", **properties: PropertyValue
    ) -> Binding:
        return self.metabase.add_binding(
            BindingSpec(
                source=source,
                event=event,
                sink_class="webhook",
                display_name=f"Hook {event}",
                sink_properties=properties,
            )
        )

    def dispatcher(self, source: str) -> Dispatcher:
        found = self._dispatchers.get(source)
        if found is None:
            found = self._dispatchers[source] = Dispatcher(source, self.metabase, self.registry)
        found.check_for_changes()
        return found

    def fire(self, event: EventContext) -> DispatchResult:
        return self.dispatcher(event.source).notify_sync(event)

    def close(self) -> None:
        for dispatcher in self._dispatchers.values():
            dispatcher.close()


@pytest.fixture
def notifier(tmp_path: Path, registry: SinkRegistry) -> Iterator[Notifier]:
    with Metabase.open(tmp_path / "m.db") as metabase:
        opened = Notifier(metabase, registry)
        yield opened
        opened.close()


def message(body: str = "the secret body text\n") -> EmailMessage:
    built = EmailMessage()
    built["From"] = "a@example.net"
    built["To"] = "b@example.com"
    built["Subject"] = "hello"
    built.set_content(body)
    return built


def arrival(body: str = "the secret body text\n") -> MessageEvent:
    return MessageEvent(
        source="smtp/1",
        name="OnArrival",
        message_id="m-1",
        message=message(body),
        mail_from="a@example.net",
        recipients=["b@example.com", "c@example.com"],
    )


def seo(metabase: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--metabase", str(metabase), *args])
    return result.exit_code, result.output + result.stderr


# -- discovery ------------------------------------------------------------------------------


def test_is_discovered_from_the_installed_distribution(registry: SinkRegistry) -> None:
    info = registry.resolve("webhook")
    assert info.distribution == "seo-sink-webhook"
    assert info.events == ("MsgTrackLog", "OnArrival", "OnPost", "OnPostFinal")
    assert info.target is seo_sink_webhook.WebhookSink
    installed = Path(seo_sink_webhook.__file__).resolve()
    assert not installed.is_relative_to(SOURCE_TREE), "testing the source tree, not the install"


# -- what is sent ---------------------------------------------------------------------------


def test_an_arrival_is_posted_as_json_with_the_bearer_token_from_the_environment(
    notifier: Notifier, hook: Hook, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEO_TEST_HOOK_TOKEN", "t0ken-from-env")
    binding = notifier.bind(
        url=hook.url, token_env="SEO_TEST_HOOK_TOKEN", headers={"X-Seo-Server": "mx1"}
    )
    assert notifier.fire(arrival()) == DispatchResult(notified=1)
    (request,) = hook.wait_for(1)
    assert request.path == "/hooks/seo?key=secret-in-query"
    assert request.headers["Authorization"] == "Bearer t0ken-from-env"
    assert request.headers["Content-Type"] == "application/json; charset=utf-8"
    assert request.headers["X-Seo-Server"] == "mx1"
    assert request.headers["User-Agent"].startswith("seo-sink-webhook/")
    document = request.json
    assert document.pop("time")
    assert document == {
        "source": "smtp/1",
        "event": "OnArrival",
        "binding": {"id": binding.id, "name": "Hook OnArrival"},
        "message_id": "m-1",
        "mail_from": "a@example.net",
        "recipients": ["b@example.com", "c@example.com"],
        "status": "deliver",
        "headers": {"Subject": "hello", "From": "a@example.net", "To": "b@example.com"},
    }
    assert b"secret body" not in request.body
    assert "t0ken" not in json.dumps(notifier.metabase.bindings()[0].sink_properties.to_dict())


def test_without_token_env_no_authorization_is_sent(notifier: Notifier, hook: Hook) -> None:
    notifier.bind(url=hook.url)
    notifier.fire(arrival())
    (request,) = hook.wait_for(1)
    assert "Authorization" not in request.headers


def test_the_body_is_sent_only_when_asked(notifier: Notifier, hook: Hook) -> None:
    notifier.bind(url=hook.url, include_body=True)
    notifier.fire(arrival("Grüße, the body\n"))
    (request,) = hook.wait_for(1)
    text = request.json["message"]
    assert "Subject: hello" in text
    assert "Grüße, the body" in text
    assert "message_base64" not in request.json
    assert text == message("Grüße, the body\n").as_bytes().decode()


def test_a_body_that_is_not_utf8_is_sent_in_base64(notifier: Notifier, hook: Hook) -> None:
    notifier.bind(url=hook.url, include_body=True)
    event = arrival()
    event.raw = b"Subject: x\r\n\r\n\xff\xfe latin\r\n"
    notifier.fire(event)
    (request,) = hook.wait_for(1)
    assert "message" not in request.json
    assert request.json["message_base64"] == "U3ViamVjdDogeA0KDQr//iBsYXRpbg0K"


def test_track_log_steps_and_news_posts_are_posted(notifier: Notifier, hook: Hook) -> None:
    notifier.bind("MsgTrackLog", url=hook.url)
    notifier.bind("OnPost", source="nntp/1", url=hook.url)
    notifier.bind("OnPostFinal", source="nntp/1", url=hook.url)
    track = TrackEvent(
        source="smtp/1",
        name="MsgTrackLog",
        message_id="m-2",
        message=message(),
        mail_from="a@example.net",
        recipients=["b@example.com"],
        step="delivered",
        recipient="b@example.com",
        detail="/var/mail/b",
    )
    article = EmailMessage()
    article["Subject"] = "news"
    article["Newsgroups"] = "local.test"
    notifier.fire(track)
    for name in ("OnPost", "OnPostFinal"):
        notifier.fire(
            PostEvent(
                source="nntp/1",
                name=name,
                message=article,
                newsgroups=["local.test"],
                message_id="<a@news>",
            )
        )
    first, second, third = (r.json for r in hook.wait_for(3))
    assert {k: first[k] for k in ("event", "step", "recipient", "detail", "message_id")} == {
        "event": "MsgTrackLog",
        "step": "delivered",
        "recipient": "b@example.com",
        "detail": "/var/mail/b",
        "message_id": "m-2",
    }
    assert (second["source"], second["event"], second["newsgroups"]) == (
        "nntp/1",
        "OnPost",
        ["local.test"],
    )
    assert third["event"] == "OnPostFinal"
    assert third["headers"] == {"Subject": "news"}


def test_the_url_may_come_from_the_environment(
    notifier: Notifier, hook: Hook, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEO_TEST_HOOK_URL", hook.url)
    notifier.bind(url={"env": "SEO_TEST_HOOK_URL"})
    assert notifier.fire(arrival()) == DispatchResult(notified=1)
    assert hook.wait_for(1)[0].json["event"] == "OnArrival"


# -- failures, retries and time -------------------------------------------------------------


def failures(logs: list[MutableMapping[str, Any]]) -> list[str]:
    return [log["error"] for log in logs if log["event"] == "sink_failed"]


def test_a_5xx_is_retried_until_it_succeeds(notifier: Notifier, hook: Hook) -> None:
    hook.replies = [500, 503]
    notifier.bind(url=hook.url, retries=2, retry_delay=0)
    assert notifier.fire(arrival()) == DispatchResult(notified=1)
    requests = hook.wait_for(3)
    assert len(requests) == 3
    assert len({r.body for r in requests}) == 1


def test_retries_are_bounded_and_the_failure_is_logged(notifier: Notifier, hook: Hook) -> None:
    hook.replies = [500, 500, 500, 500]
    binding = notifier.bind(url=hook.url, retries=2, retry_delay=0.01)
    with capture_logs() as logs:
        assert notifier.fire(arrival())._replace(error=None) == DispatchResult(failed=1)
    assert len(hook.wait_for(3)) == 3
    (error,) = failures(logs)
    assert error.startswith("WebhookError: POST http://127.0.0.1:")
    assert "/… failed after 3 attempts: HTTP 500" in error
    assert "secret-in-query" not in error
    assert [log["binding_id"] for log in logs if log["event"] == "sink_failed"] == [binding.id]


def test_a_4xx_is_not_retried(notifier: Notifier, hook: Hook) -> None:
    hook.replies = [404]
    notifier.bind(url=hook.url, retries=2, retry_delay=0)
    with capture_logs() as logs:
        assert notifier.fire(arrival())._replace(error=None) == DispatchResult(failed=1)
    assert len(hook.wait_for(1)) == 1
    (error,) = failures(logs)
    assert "refused: HTTP 404" in error


def test_each_attempt_is_bounded_by_the_timeout(notifier: Notifier, hook: Hook) -> None:
    hook.hold = True  # the server takes the request and never answers in time
    notifier.bind(url=hook.url, timeout=0.3, retries=1, retry_delay=0)
    started = time.monotonic()
    with capture_logs() as logs:
        assert notifier.fire(arrival())._replace(error=None) == DispatchResult(failed=1)
    elapsed = time.monotonic() - started
    assert len(hook.wait_for(2)) == 2
    assert elapsed < 3.0  # two attempts of 0.3s, and their threads' socket timeouts
    (error,) = failures(logs)
    assert "failed after 2 attempts: no answer within 0.3s" in error


def test_a_connection_refused_is_retried_then_fails(notifier: Notifier) -> None:
    with ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler) as closed:
        port = closed.server_address[1]
    notifier.bind(url=f"http://127.0.0.1:{port}/", retries=1, retry_delay=0)
    with capture_logs() as logs:
        assert notifier.fire(arrival())._replace(error=None) == DispatchResult(failed=1)
    (error,) = failures(logs)
    assert "failed after 2 attempts: ConnectionRefusedError" in error


def test_a_missing_token_variable_fails_the_notification_without_a_request(
    notifier: Notifier, hook: Hook, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SEO_TEST_ABSENT_TOKEN", raising=False)
    notifier.bind(url=hook.url, token_env="SEO_TEST_ABSENT_TOKEN")
    with capture_logs() as logs:
        assert notifier.fire(arrival())._replace(error=None) == DispatchResult(failed=1)
    (error,) = failures(logs)
    assert "token_env: environment variable SEO_TEST_ABSENT_TOKEN is not set" in error
    assert hook.requests == []


def test_redirects_are_not_followed(notifier: Notifier, hook: Hook) -> None:
    hook.replies = [307]
    notifier.bind(url=hook.url, retries=2)
    with capture_logs() as logs:
        assert notifier.fire(arrival())._replace(error=None) == DispatchResult(failed=1)
    assert len(hook.wait_for(1)) == 1
    assert "refused: HTTP 307" in failures(logs)[0]


@pytest.mark.asyncio
async def test_the_event_loop_keeps_serving_while_the_request_waits(
    notifier: Notifier, hook: Hook
) -> None:
    hook.hold = True
    notifier.bind(url=hook.url, timeout=WAIT, retries=0)
    dispatcher = notifier.dispatcher("smtp/1")
    sending = asyncio.create_task(dispatcher.notify(arrival()))
    # This coroutine runs again while the POST is in flight only if the sink yields the loop.
    await asyncio.to_thread(hook.wait_for, 1)
    assert not sending.done()
    hook.release.set()
    assert await sending == DispatchResult(notified=1)


# -- sink properties through the CLI --------------------------------------------------------

ADD = ("bindings", "add", "smtp/1", "OnArrival", "Tell the hook", "webhook")
URL = "url=https://hooks.example.com/seo"


@pytest.mark.parametrize(
    ("props", "complaint"),
    [
        pytest.param([], "SinkProperties.url", id="url-missing"),
        pytest.param(
            ["url=ftp://example.com/x"], "url: ftp://example.com/… must start with http", id="ftp"
        ),
        pytest.param(["url=https://"], "url: https:// names no host", id="no-host"),
        pytest.param(["url=hooks.example.com"], "must start with http", id="no-scheme"),
        pytest.param(
            ["url=https://u:p@hooks.example.com/"], "url: must not hold a user", id="credentials"
        ),
        pytest.param([URL, "timeout=0"], "timeout: 0 is not a number", id="timeout-zero"),
        pytest.param([URL, "timeout=soon"], "SinkProperties.timeout", id="timeout-text"),
        pytest.param([URL, "retries=-1"], "retries: -1 is not between 0 and 10", id="retries"),
        pytest.param([URL, "retries=1.5"], "SinkProperties.retries", id="retries-float"),
        pytest.param([URL, "include_body=yes"], "SinkProperties.include_body", id="body-text"),
        pytest.param(
            [URL, "token_env=1TOKEN"], "token_env: '1TOKEN' is not an environment", id="env-digit"
        ),
        pytest.param([URL, "token_env=MY-TOKEN"], "token_env: 'MY-TOKEN' is not an", id="env-dash"),
        pytest.param(
            [URL, 'token_env={env = "X"}'], "token_env: is the name of the variable", id="env-ref"
        ),
        pytest.param(
            [URL, "headers={'Bad Name' = 'x'}"], "headers: 'Bad Name' is not a header", id="hname"
        ),
        pytest.param(
            [URL, 'headers={X-A = "a\\r\\nX-Injected: 1"}'],
            "headers.X-A: must not hold line breaks",
            id="header-injection",
        ),
        pytest.param(
            [URL, "token_env=T", "headers={Authorization = 'Basic x'}"],
            "headers.Authorization: token_env already sets Authorization",
            id="two-authorizations",
        ),
        pytest.param(
            [URL, "headers={Host = 'x'}"], "headers.Host: is set by the HTTP client", id="host"
        ),
        pytest.param([URL, "includebody=true"], "did you mean 'include_body'", id="typo"),
    ],
)
def test_bad_sink_properties_are_refused_when_the_binding_is_written(
    props: list[str], complaint: str, tmp_path: Path
) -> None:
    arguments = [arg for prop in props for arg in ("--sink-prop", prop)]
    code, output = seo(tmp_path / "m.db", *ADD, *arguments)
    assert code == 1, output
    assert complaint in output


def test_good_sink_properties_are_accepted(tmp_path: Path) -> None:
    props = [
        'url={env = "SEO_HOOK_URL"}',
        "timeout=2.5",
        "retries=0",
        "include_body=true",
        "token_env=SEO_HOOK_TOKEN",
        "headers={X-Seo-Server = 'mx1'}",
    ]
    arguments = [arg for prop in props for arg in ("--sink-prop", prop)]
    code, output = seo(tmp_path / "m.db", *ADD, *arguments)
    assert code == 0, output


def test_a_binding_to_an_event_it_does_not_handle_is_refused(tmp_path: Path) -> None:
    code, output = seo(
        tmp_path / "m.db",
        "bindings",
        "add",
        "smtp/1",
        "StoreDriver",
        "x",
        "webhook",
        "--sink-prop",
        URL,
    )
    assert code == 1, output
    assert "does not handle StoreDriver" in output


# -- end to end: a real SMTP source -----------------------------------------------------------


class Store:
    """A StoreDriver sink that accepts every delivery, so the pipeline completes cleanly."""

    @hookimpl
    def smtp_store_driver(self, event: DeliveryEvent) -> None:
        event.delivered("nowhere")


def test_mail_received_by_a_real_server_reaches_the_hook(
    tmp_path: Path, hook: Hook, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEO_TEST_HOOK_TOKEN", "e2e-token")
    metabase_path = tmp_path / "m.db"
    code, output = seo(
        metabase_path,
        *ADD,
        "--sink-prop",
        f"url={hook.url}",
        "--sink-prop",
        "token_env=SEO_TEST_HOOK_TOKEN",
    )
    assert code == 0, output
    with Metabase.open(metabase_path) as metabase:
        metabase.add_binding(
            BindingSpec(
                source="smtp/1", event="StoreDriver", sink_class="test-store", display_name="Store"
            )
        )
    installed = SinkRegistry.discover()
    registry = SinkRegistry(
        [*installed.sinks, *SinkRegistry.from_objects({"test-store": Store}).sinks]
    )
    body = b"From: a@example.net\r\nSubject: over smtp\r\n\r\nnot for the hook\r\n"
    with running_smtp(metabase_path, registry, spool=tmp_path / "spool") as smtp:
        with smtplib.SMTP("127.0.0.1", smtp.port) as client:
            assert client.sendmail("a@example.net", ["alice@example.com"], body) == {}
        (request,) = hook.wait_for(1)
        smtp.wait_idle()
    document = request.json
    assert request.headers["Authorization"] == "Bearer e2e-token"
    assert (document["source"], document["event"]) == ("smtp/1", "OnArrival")
    assert (document["mail_from"], document["recipients"]) == (
        "a@example.net",
        ["alice@example.com"],
    )
    assert document["headers"]["Subject"] == "over smtp"
    assert b"not for the hook" not in request.body
