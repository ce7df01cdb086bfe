"""The dispatcher: order, properties, verdicts, rules, budgets, isolation and hot reload."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from seo_core.dispatcher import Dispatcher
from seo_core.dispatcher.fastpath import FastRun
from seo_core.metabase import BindingSpec, Metabase
from seo_core.registry import SinkRegistry
from seo_core.rules import EventFacts
from seo_core.sdk import MessageEvent, Prop, PropertyBag, Schema, Verdict, hookimpl
from tests.conftest import run_process

CALLS: list[tuple[str, Any]] = []


def arrival(source: str = "smtp/1") -> MessageEvent:
    return MessageEvent(
        source=source,
        name="OnArrival",
        message_id="m1",
        message=EmailMessage(),
        mail_from="a@example.com",
        recipients=["b@example.com"],
    )


class Recorder:
    """Records which binding it was called for, with the properties it received."""

    @hookimpl
    def smtp_on_arrival(self, event: MessageEvent, sink_properties: Any, binding: Any) -> None:
        CALLS.append((binding.display_name, dict(sink_properties)))


class Stopper:
    @hookimpl
    def smtp_on_arrival(self, binding: Any) -> Verdict:
        CALLS.append((binding.display_name, "stop"))
        return Verdict.SKIP_REMAINING


class Raiser:
    @hookimpl
    def smtp_on_arrival(self, binding: Any) -> None:
        CALLS.append((binding.display_name, "raise"))
        raise RuntimeError("sink bug")


class Sleeper:
    @hookimpl
    def smtp_on_arrival(self, binding: Any) -> None:
        CALLS.append((binding.display_name, "sleep"))
        time.sleep(5)


class AsyncRaiser:
    @hookimpl
    async def smtp_on_arrival(self, binding: Any) -> None:
        await asyncio.sleep(0)
        CALLS.append((binding.display_name, "async-raise"))
        raise ValueError("async sink bug")


class AsyncSleeper:
    @hookimpl
    async def smtp_on_arrival(self, binding: Any) -> None:
        CALLS.append((binding.display_name, "async-sleep"))
        await asyncio.sleep(5)


class AsyncTagger:
    @hookimpl
    async def smtp_on_arrival(self, event: MessageEvent, sink_properties: Any) -> None:
        await asyncio.sleep(0)
        event.message["X-Tag"] = str(sink_properties.get("tag", "yes"))
        CALLS.append(("async-tagger", event.message["X-Tag"]))


class AsyncNapper:
    seconds = 0.05

    @hookimpl
    async def smtp_on_arrival(self) -> None:
        await asyncio.sleep(self.seconds)


class Counted:
    instances = 0

    def __init__(self) -> None:
        Counted.instances += 1

    @hookimpl
    def smtp_on_arrival(self, binding: Any) -> None:
        CALLS.append((binding.display_name, id(self)))


class Uncached(Counted):
    cacheable = False


SINKS: dict[str, object] = {
    "recorder": Recorder,
    "stopper": Stopper,
    "raiser": Raiser,
    "sleeper": Sleeper,
    "async-raiser": AsyncRaiser,
    "async-sleeper": AsyncSleeper,
    "async-tagger": AsyncTagger,
    "async-napper": AsyncNapper,
    "counted": Counted,
    "uncached": Uncached,
}


@pytest.fixture(autouse=True)
def _clear_calls() -> None:
    CALLS.clear()
    Counted.instances = 0


@pytest.fixture
def registry() -> SinkRegistry:
    return SinkRegistry.from_objects(SINKS)


@pytest.fixture
def dispatcher(metabase: Metabase, registry: SinkRegistry) -> Iterator[Dispatcher]:
    made = Dispatcher("smtp/1", metabase, registry)
    yield made
    made.close()


def bind(metabase: Metabase, name: str, sink: str = "recorder", **fields: Any) -> str:
    spec = BindingSpec(source="smtp/1", event="OnArrival", sink_class=sink, display_name=name)
    return metabase.add_binding(replace(spec, **fields)).id


def names() -> list[str]:
    return [name for name, _ in CALLS]


class TestOrder:
    GUIDS = (
        "{00000000-0000-0000-0000-0000000000c1}",
        "{00000000-0000-0000-0000-0000000000a1}",
        "{00000000-0000-0000-0000-0000000000b1}",
        "{00000000-0000-0000-0000-0000000000d1}",
    )

    def _bind_four(self, metabase: Metabase, reverse: bool) -> None:
        rows = [
            (self.GUIDS[0], "c", "recorder", 100),
            (self.GUIDS[1], "a", "counted", 100),
            (self.GUIDS[2], "b", "recorder", 5),
            (self.GUIDS[3], "d", "counted", "PRIO_LOWEST"),
        ]
        for guid, name, sink, priority in reversed(rows) if reverse else rows:
            bind(metabase, name, sink, id=guid, source_properties={"Priority": priority})

    @pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reversed"])
    def test_priority_then_binding_id(
        self, metabase: Metabase, registry: SinkRegistry, reverse: bool
    ) -> None:
        self._bind_four(metabase, reverse)
        dispatcher = Dispatcher("smtp/1", metabase, registry)
        dispatcher.notify_sync(arrival())
        dispatcher.close()
        assert names() == ["b", "a", "c", "d"]

    def test_order_does_not_depend_on_registration_order(self, metabase: Metabase) -> None:
        self._bind_four(metabase, reverse=False)
        backwards = SinkRegistry.from_objects(dict(reversed(list(SINKS.items()))))
        dispatcher = Dispatcher("smtp/1", metabase, backwards)
        dispatcher.notify_sync(arrival())
        dispatcher.close()
        assert names() == ["b", "a", "c", "d"]


class TestNotification:
    def test_each_binding_gets_its_own_properties(
        self, metabase: Metabase, dispatcher: Dispatcher
    ) -> None:
        bind(metabase, "one", sink_properties={"Tag": "first"})
        bind(metabase, "two", sink_properties={"tag": "second", "extra": [1]})
        dispatcher.reload()
        result = dispatcher.notify_sync(arrival())
        assert result.notified == 2
        assert sorted(CALLS) == [
            ("one", {"Tag": "first"}),
            ("two", {"tag": "second", "extra": [1]}),
        ]

    def test_skip_remaining_stops_lower_priorities(
        self, metabase: Metabase, dispatcher: Dispatcher
    ) -> None:
        bind(metabase, "first", source_properties={"Priority": 1})
        stop = bind(metabase, "stop", "stopper", source_properties={"Priority": 2})
        bind(metabase, "never", source_properties={"Priority": 3})
        dispatcher.reload()
        result = dispatcher.notify_sync(arrival())
        assert names() == ["first", "stop"]
        assert result.stopped_by == stop

    def test_other_events_and_sources_are_not_notified(
        self, metabase: Metabase, dispatcher: Dispatcher
    ) -> None:
        bind(metabase, "here")
        bind(metabase, "other source", source="smtp/2")
        bind(metabase, "other event", event="OnPreCategorize")
        dispatcher.reload()
        dispatcher.notify_sync(arrival())
        assert names() == ["here"]

    def test_rules_filter_with_the_event_facts(
        self, metabase: Metabase, dispatcher: Dispatcher
    ) -> None:
        bind(metabase, "example only", source_properties={"Rule": "mail from=*@example.com"})
        bind(metabase, "everyone")
        dispatcher.reload()
        dispatcher.notify_sync(arrival(), EventFacts(mail_from="x@other.example"))
        assert names() == ["everyone"]
        CALLS.clear()
        dispatcher.notify_sync(arrival(), EventFacts(mail_from="x@EXAMPLE.com"))
        assert sorted(names()) == ["everyone", "example only"]

    def test_disabled_and_expired_bindings_are_not_notified(
        self, metabase: Metabase, dispatcher: Dispatcher
    ) -> None:
        bind(metabase, "off", enabled=False)
        bind(metabase, "past", expiration=datetime.now(UTC) - timedelta(seconds=1))
        bind(metabase, "future", expiration=datetime.now(UTC) + timedelta(days=1))
        dispatcher.reload()
        dispatcher.notify_sync(arrival())
        assert names() == ["future"]

    async def test_async_sinks_are_awaited_before_the_next(
        self, metabase: Metabase, dispatcher: Dispatcher
    ) -> None:
        bind(
            metabase,
            "tag",
            "async-tagger",
            sink_properties={"tag": "t1"},
            source_properties={"Priority": 1},
        )
        bind(metabase, "after", source_properties={"Priority": 2})
        dispatcher.reload()
        event = arrival()
        result = await dispatcher.notify(event)
        assert result.notified == 2
        assert CALLS == [("async-tagger", "t1"), ("after", {})]
        assert event.message["X-Tag"] == "t1"

    def test_a_missing_sink_is_unavailable_and_the_rest_run(
        self, metabase: Metabase, dispatcher: Dispatcher
    ) -> None:
        bind(metabase, "ghost", "not-installed")
        bind(metabase, "real")
        with capture_logs() as logs:
            dispatcher.reload()
            dispatcher.notify_sync(arrival())
            dispatcher.notify_sync(arrival())
        assert names() == ["real", "real"]
        unavailable = [e for e in logs if e["event"] == "binding_unavailable"]
        assert len(unavailable) == 1
        assert unavailable[0]["sink"] == "not-installed"


WORDS = ["spam"]
DEFAULTS = Schema(
    {
        "Tag": Prop(str, default="hello"),
        "Words": Prop(list, default=WORDS),
        "Note": Prop(str),
    }
)


class Defaulted:
    """Declares defaults; keeps the SinkProperties it receives, as received."""

    properties_schema = DEFAULTS

    @hookimpl
    def smtp_on_arrival(self, sink_properties: PropertyBag, binding: Any) -> None:
        CALLS.append((binding.display_name, sink_properties))


class UncachedDefaulted(Defaulted):
    cacheable = False


class AsyncDefaulted:
    properties_schema = DEFAULTS

    @hookimpl
    async def smtp_on_arrival(self, sink_properties: PropertyBag, binding: Any) -> None:
        CALLS.append((binding.display_name, sink_properties))


class Careless:
    """Reads a property no binding set and no schema declares."""

    @hookimpl
    def smtp_on_arrival(self, sink_properties: PropertyBag) -> None:
        sink_properties["Tag"]


class TestSchemaDefaults:
    @pytest.fixture(params=["general-loop", "fast-path"])
    def mode(self, request: pytest.FixtureRequest) -> str:
        if request.param == "fast-path":
            structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))
        return str(request.param)

    @pytest.fixture
    def defaults_dispatcher(self, metabase: Metabase, mode: str) -> Iterator[Dispatcher]:
        sinks = {
            "defaulted": Defaulted,
            "uncached": UncachedDefaulted,
            "async": AsyncDefaulted,
            "careless": Careless,
        }
        made = Dispatcher("smtp/1", metabase, SinkRegistry.from_objects(sinks))
        yield made
        made.close()

    @pytest.mark.parametrize("sink", ["defaulted", "uncached", "async"])
    def test_the_hook_gets_the_defaults_of_what_the_binding_leaves_out(
        self, metabase: Metabase, defaults_dispatcher: Dispatcher, mode: str, sink: str
    ) -> None:
        given = bind(
            metabase,
            "given",
            sink,
            sink_properties={"tag": "mine"},
            source_properties={"Priority": 1},
        )
        unset = bind(metabase, "unset", sink, source_properties={"Priority": 2})
        defaults_dispatcher.reload()
        assert ("OnArrival" in defaults_dispatcher.plan.fast) is (sink != "async")
        defaults_dispatcher.notify_sync(arrival())
        defaults_dispatcher.notify_sync(arrival())
        assert [(name, props.to_dict()) for name, props in CALLS[:2]] == [
            ("given", {"tag": "mine", "Words": ["spam"]}),
            ("unset", {"Tag": "hello", "Words": ["spam"]}),
        ]
        first, second = CALLS[1][1], CALLS[3][1]
        assert first["TAG"] == "hello"
        assert first is second  # worked out when the plan was built, not per event
        assert first["Words"] is not WORDS  # a sink changing it cannot change the schema
        assert metabase.binding(given).sink_properties == PropertyBag({"tag": "mine"})
        assert metabase.binding(unset).sink_properties == PropertyBag()

    def test_a_missing_property_is_named_as_the_sink_spelt_it(
        self, metabase: Metabase, defaults_dispatcher: Dispatcher, mode: str
    ) -> None:
        careless = bind(metabase, "careless", "careless")
        defaults_dispatcher.reload()
        with capture_logs() as logs:
            result = defaults_dispatcher.notify_sync(arrival())
        assert result.failed == 1
        (failure,) = [e for e in logs if e["event"] == "sink_failed"]
        assert (failure["binding_id"], failure["error"]) == (careless, "KeyError: 'Tag'")


class TestInstances:
    def test_a_class_sink_is_instantiated_once_per_binding(
        self, metabase: Metabase, dispatcher: Dispatcher
    ) -> None:
        bind(metabase, "one", "counted")
        bind(metabase, "two", "counted")
        dispatcher.reload()
        for _ in range(3):
            dispatcher.notify_sync(arrival())
        assert Counted.instances == 2
        assert len({instance for _, instance in CALLS}) == 2

    def test_an_uncacheable_sink_gets_a_new_instance_each_time(
        self, metabase: Metabase, dispatcher: Dispatcher
    ) -> None:
        bind(metabase, "fresh", "uncached")
        dispatcher.reload()
        for _ in range(3):
            dispatcher.notify_sync(arrival())
        assert Counted.instances == 3

    def test_a_changed_binding_gets_a_new_instance(
        self, metabase: Metabase, dispatcher: Dispatcher
    ) -> None:
        binding = bind(metabase, "one", "counted")
        dispatcher.reload()
        dispatcher.notify_sync(arrival())
        dispatcher.reload()
        dispatcher.notify_sync(arrival())
        assert Counted.instances == 1
        metabase.set_property(binding, "sink", "x", 1)
        dispatcher.reload()
        dispatcher.notify_sync(arrival())
        assert Counted.instances == 2


class TestIsolation:
    @pytest.mark.parametrize(
        ("sink", "log_event", "error"),
        [
            ("raiser", "sink_failed", "RuntimeError: sink bug"),
            ("sleeper", "sink_timed_out", "timed out after 0.3s"),
            ("async-raiser", "sink_failed", "ValueError: async sink bug"),
            ("async-sleeper", "sink_timed_out", "timed out after 0.3s"),
        ],
        ids=["raises", "sleeps-past-timeout", "async-raises", "async-sleeps-past-timeout"],
    )
    async def test_a_failing_sink_affects_only_its_own_notification(
        self, metabase: Metabase, dispatcher: Dispatcher, sink: str, log_event: str, error: str
    ) -> None:
        bind(metabase, "before", source_properties={"Priority": 1})
        bad = bind(
            metabase,
            "bad",
            sink,
            source_properties={"Priority": 2},
            binding_properties={"Timeout": 0.3},
        )
        bind(metabase, "tagger", "async-tagger", source_properties={"Priority": 3})
        bind(metabase, "after", source_properties={"Priority": 4})
        dispatcher.reload()
        event = arrival()
        started = time.monotonic()
        with capture_logs() as logs:
            result = await dispatcher.notify(event)
        assert time.monotonic() - started < 2.0
        assert names()[0] == "before"
        assert names()[-2:] == ["async-tagger", "after"]
        assert event.message["X-Tag"] == "yes"
        assert result.notified == 3
        failures = [e for e in logs if e["log_level"] == "error"]
        assert [
            (e["event"], e["source"], e["binding_id"], e["sink"], e["error"]) for e in failures
        ] == [(log_event, "smtp/1", bad, sink, error)]
        dispatcher.flush_stats()
        stats = metabase.stats(bad)
        assert (stats.failures + stats.timeouts, stats.last_error) == (1, error)

    def test_every_notification_is_logged_with_verdict_and_duration(
        self, metabase: Metabase, dispatcher: Dispatcher
    ) -> None:
        one = bind(metabase, "one", source_properties={"Priority": 1})
        two = bind(metabase, "two", "stopper", source_properties={"Priority": 2})
        dispatcher.reload()
        with capture_logs() as logs:
            dispatcher.notify_sync(arrival())
        lines = [e for e in logs if e["event"] == "sink_notified"]
        assert [(e["binding_id"], e["verdict"]) for e in lines] == [
            (one, "continue"),
            (two, "skip_remaining"),
        ]
        assert all(e["duration_ms"] >= 0 and e["source"] == "smtp/1" for e in lines)

    def test_an_async_sink_is_logged_with_the_time_it_took(
        self, metabase: Metabase, dispatcher: Dispatcher
    ) -> None:
        nap = bind(metabase, "nap", "async-napper")
        dispatcher.reload()
        with capture_logs() as logs:
            dispatcher.notify_sync(arrival())
        (line,) = [e for e in logs if e["event"] == "sink_notified"]
        assert line["binding_id"] == nap
        assert line["duration_ms"] >= AsyncNapper.seconds * 1000 * 0.9


class TestStatistics:
    def test_counts_are_batched_into_the_metabase(
        self, metabase: Metabase, dispatcher: Dispatcher
    ) -> None:
        binding = bind(metabase, "counted")
        dispatcher.reload()
        for _ in range(5):
            dispatcher.notify_sync(arrival())
        dispatcher.flush_stats()
        stats = metabase.stats(binding)
        assert stats.notifications == 5
        assert stats.last_fired is not None
        assert metabase.binding(binding).fire_count == 5

    def test_max_firings_disables_the_binding(
        self, metabase: Metabase, dispatcher: Dispatcher
    ) -> None:
        binding = bind(metabase, "three times", max_firings=3)
        dispatcher.reload()
        for _ in range(5):
            dispatcher.notify_sync(arrival())
        assert names() == ["three times"] * 3
        stored = metabase.binding(binding)
        assert (stored.fire_count, stored.enabled) == (3, False)
        metabase.set_enabled(binding, True)
        dispatcher.reload()
        dispatcher.notify_sync(arrival())
        assert len(CALLS) == 3


FIRE_MANY = """
import sys
from email.message import EmailMessage
from seo_core.dispatcher import Dispatcher
from seo_core.metabase import Metabase
from seo_core.registry import SinkRegistry
from seo_core.sdk import MessageEvent, hookimpl

count = 0
class Counter:
    @hookimpl
    def smtp_on_arrival(self):
        global count
        count += 1

path, events = sys.argv[1], int(sys.argv[2])
metabase = Metabase.open(path)
dispatcher = Dispatcher("smtp/1", metabase, SinkRegistry.from_objects({"counter": Counter}))
for _ in range(events):
    dispatcher.notify_sync(MessageEvent(
        source="smtp/1", name="OnArrival", message_id="m", message=EmailMessage(),
        mail_from="", recipients=[]))
dispatcher.close()
print(count)
"""


def test_max_firings_holds_across_processes(metabase: Metabase, metabase_path: Path) -> None:
    limited = bind(metabase, "limited", "counter", max_firings=3)
    unlimited = bind(metabase, "unlimited", "counter")
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        results = list(
            pool.map(
                lambda _: run_process(sys.executable, "-c", FIRE_MANY, str(metabase_path), "50"),
                range(4),
            )
        )
    for result in results:
        assert result.returncode == 0, result.stderr
    total = sum(int(r.stdout.strip().splitlines()[-1]) for r in results)
    assert total == 3 + 200
    limited_now = metabase.binding(limited)
    assert (limited_now.fire_count, limited_now.enabled) == (3, False)
    assert metabase.binding(unlimited).fire_count == 200
    assert metabase.stats(unlimited).notifications == 200
    assert metabase.stats(limited).notifications == 3


class TestHotReload:
    def _seen_within_a_second(self, dispatcher: Dispatcher, expected: list[str]) -> bool:
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            CALLS.clear()
            dispatcher.notify_sync(arrival())
            if sorted(names()) == expected:
                return True
            time.sleep(0.02)
        return False

    def test_changes_from_another_process_are_seen_within_a_second(
        self, metabase_path: Path, registry: SinkRegistry, seo_exe: str
    ) -> None:
        with Metabase.open(metabase_path) as own:
            dispatcher = Dispatcher("smtp/1", own, registry)
            try:
                base = ["--metabase", str(metabase_path), "bindings"]

                def seo(*args: str) -> None:
                    done = run_process(seo_exe, *base, *args)
                    assert done.returncode == 0, done.stderr

                seo("add", "smtp/1", "OnArrival", "a", "recorder", "--allow-missing")
                assert self._seen_within_a_second(dispatcher, ["a"])
                seo("add", "smtp/1", "OnArrival", "b", "recorder", "--allow-missing")
                assert self._seen_within_a_second(dispatcher, ["a", "b"])
                seo("disable", "smtp/1", "OnArrival", "a")
                assert self._seen_within_a_second(dispatcher, ["b"])
                seo("enable", "smtp/1", "OnArrival", "a")
                assert self._seen_within_a_second(dispatcher, ["a", "b"])
                seo("set-prop", "smtp/1", "OnArrival", "b", "source", "Priority", "0")
                deadline = time.monotonic() + 1.0
                while names() != ["b", "a"] and time.monotonic() < deadline:
                    CALLS.clear()
                    dispatcher.notify_sync(arrival())
                assert names() == ["b", "a"]
                seo("set-prop", "smtp/1", "OnArrival", "a", "sink", "k", "v")
                deadline = time.monotonic() + 1.0
                while ("a", {"k": "v"}) not in CALLS and time.monotonic() < deadline:
                    CALLS.clear()
                    dispatcher.notify_sync(arrival())
                assert ("a", {"k": "v"}) in CALLS
                seo("remove", "smtp/1", "OnArrival", "a")
                assert self._seen_within_a_second(dispatcher, ["b"])
            finally:
                dispatcher.close()

    async def test_an_event_in_flight_finishes_with_the_bindings_it_started_with(
        self, metabase: Metabase, metabase_path: Path, registry: SinkRegistry
    ) -> None:
        later = bind(metabase, "later", source_properties={"Priority": 10})

        class RemovesLater:
            removed = False

            @hookimpl
            async def smtp_on_arrival(self) -> None:
                if not RemovesLater.removed:
                    with Metabase.open(metabase_path) as other:
                        other.remove_binding(later)
                    RemovesLater.removed = True
                    assert dispatcher.check_for_changes()
                CALLS.append(("remover", None))

        registry = SinkRegistry.from_objects({**SINKS, "remover": RemovesLater})
        bind(metabase, "remover", "remover", source_properties={"Priority": 1})
        dispatcher = Dispatcher("smtp/1", metabase, registry)
        try:
            await dispatcher.notify(arrival())
            assert names() == ["remover", "later"]
            CALLS.clear()
            await dispatcher.notify(arrival())
            assert names() == ["remover"]
        finally:
            dispatcher.close()

    def test_a_change_right_after_a_restore_is_seen_though_the_generation_repeats(
        self, metabase: Metabase, metabase_path: Path, registry: SinkRegistry, tmp_path: Path
    ) -> None:
        """Backup at generation N; a change makes N+1 and is loaded; the backup is restored
        (N again) and a change, before the dispatcher looks, makes N+1 again."""
        bind(metabase, "a")
        backup = tmp_path / "backup.db"
        _copy_database(metabase_path, backup)
        dispatcher = Dispatcher("smtp/1", metabase, registry)
        try:
            with Metabase.open(metabase_path) as admin:
                admin.add_binding(BindingSpec("smtp/1", "OnArrival", "recorder", display_name="b"))
                assert dispatcher.check_for_changes()
                assert _planned(dispatcher) == ["a", "b"]
                seen = metabase.generation()
                _copy_database(backup, metabase_path)
                assert admin.bindings()[0].display_name == "a"
                admin.add_binding(BindingSpec("smtp/1", "OnArrival", "recorder", display_name="c"))
                assert metabase.generation() == seen
            assert dispatcher.check_for_changes()
            assert _planned(dispatcher) == ["a", "c"]
            dispatcher.notify_sync(arrival())
            assert sorted(names()) == ["a", "c"]
        finally:
            dispatcher.close()


def _copy_database(source: Path, target: Path) -> None:
    """Copy a database the way docs/metabase.md says to back up and restore: SQLite's backup."""
    with (
        closing(sqlite3.connect(source, timeout=30)) as src,
        closing(sqlite3.connect(target, timeout=30)) as dst,
    ):
        src.backup(dst)


def _planned(dispatcher: Dispatcher) -> list[str]:
    return sorted(
        call.binding.display_name or "" for call in dispatcher.plan.calls.get("OnArrival", [])
    )


class KeywordOrder:
    """Names ``event`` after another hook argument: called by keyword, not by position."""

    @hookimpl
    def smtp_on_arrival(self, binding: Any, event: MessageEvent) -> None:
        CALLS.append((binding.display_name, event.message_id))


class Chatty:
    """Returns something that is not a verdict: ignored, like ``None``."""

    @hookimpl
    def smtp_on_arrival(self, binding: Any) -> str:
        CALLS.append((binding.display_name, "chatty"))
        return "done"


class Flaky:
    """Fails every other notification."""

    calls = 0

    @hookimpl
    def smtp_on_arrival(self, binding: Any) -> None:
        Flaky.calls += 1
        CALLS.append((binding.display_name, "flaky"))
        if Flaky.calls % 2 == 0:
            raise RuntimeError("every other time")


class Abort(BaseException):
    """Not an ``Exception``: no sink failure, it ends the notification and propagates."""


class Aborter:
    @hookimpl
    def smtp_on_arrival(self, binding: Any) -> None:
        CALLS.append((binding.display_name, "abort"))
        raise Abort


class TestFastPath:
    """Plain synchronous bindings, debug logging off, the heartbeat on: the fast path."""

    @pytest.fixture
    def quiet(self, metabase: Metabase) -> Iterator[Dispatcher]:
        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))
        Flaky.calls = 0
        registry = SinkRegistry.from_objects(
            {
                **SINKS,
                "keyword-order": KeywordOrder,
                "chatty": Chatty,
                "flaky": Flaky,
                "aborter": Aborter,
            }
        )
        made = Dispatcher("smtp/1", metabase, registry)
        yield made
        made.close()

    @staticmethod
    def fast(dispatcher: Dispatcher) -> FastRun:
        return dispatcher.plan.fast["OnArrival"]

    def _bind_around(self, metabase: Metabase, sink: str, **fields: Any) -> str:
        bind(metabase, "before", source_properties={"Priority": 1})
        middle = bind(metabase, "middle", sink, source_properties={"Priority": 2}, **fields)
        bind(metabase, "after", source_properties={"Priority": 3})
        return middle

    def test_each_sink_is_called_in_order_with_its_own_arguments(
        self, metabase: Metabase, quiet: Dispatcher, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("SEO_TEST_SECRET", "s3cret")
        priority = iter(range(1, 10))

        def bind_next(name: str, sink: str, **fields: Any) -> None:
            bind(metabase, name, sink, source_properties={"Priority": next(priority)}, **fields)

        bind_next("positional", "recorder", sink_properties={"tag": "p"})
        bind_next("keyword", "keyword-order")
        bind_next("secret", "recorder", sink_properties={"pw": {"env": "SEO_TEST_SECRET"}})
        bind_next("fresh", "uncached")
        bind_next("no verdict", "chatty")
        bind_next("continue", "counted")
        quiet.reload()
        result = quiet.notify_sync(arrival())
        assert result == (6, 0, 0, None, None)
        assert CALLS[:3] == [
            ("positional", {"tag": "p"}),
            ("keyword", "m1"),
            ("secret", {"pw": "s3cret"}),
        ]
        assert names()[3:] == ["fresh", "no verdict", "continue"]
        assert self.fast(quiet).runs == 1

    def test_an_exception_in_the_middle_is_logged_once_and_the_rest_run(
        self, metabase: Metabase, quiet: Dispatcher
    ) -> None:
        middle = self._bind_around(metabase, "raiser")
        quiet.reload()
        with capture_logs() as logs:
            result = quiet.notify_sync(arrival())
        assert names() == ["before", "middle", "after"]
        assert result == (2, 1, 0, None, "raiser: RuntimeError: sink bug")
        failures = [e for e in logs if e["log_level"] == "error"]
        assert [(e["event"], e["binding_id"], e["error"]) for e in failures] == [
            ("sink_failed", middle, "RuntimeError: sink bug")
        ]
        quiet.flush_stats()
        assert metabase.stats(middle).failures == 1
        assert [metabase.stats(b.id).notifications for b in metabase.bindings("smtp/1")] == [
            1,
            0,
            1,
        ]

    def test_skip_remaining_in_the_middle_stops_the_chain(
        self, metabase: Metabase, quiet: Dispatcher
    ) -> None:
        middle = self._bind_around(metabase, "stopper")
        quiet.reload()
        result = quiet.notify_sync(arrival())
        assert names() == ["before", "middle"]
        assert result == (2, 0, 0, middle, None)
        assert self.fast(quiet).runs == 0
        quiet.flush_stats()
        assert [metabase.stats(b.id).notifications for b in metabase.bindings("smtp/1")] == [
            1,
            1,
            0,
        ]

    def test_statistics_are_exact_after_fast_and_general_runs(
        self, metabase: Metabase, quiet: Dispatcher
    ) -> None:
        middle = self._bind_around(metabase, "flaky")
        quiet.reload()
        for _ in range(5):  # odd calls go through, even ones fail and resume
            quiet.notify_sync(arrival())
        quiet.flush_stats()
        quiet.reload()  # the old plan retires with its runs not yet written
        for _ in range(4):
            quiet.notify_sync(arrival())
        structlog.reset_defaults()  # debug logging on: the general loop from here
        quiet.reload()
        assert quiet.plan.fast["OnArrival"].run.__name__ != "_run"
        for _ in range(3):
            quiet.notify_sync(arrival())
        quiet.flush_stats()
        before, _, after = metabase.bindings("smtp/1")
        for steady in (before, after):
            stats, stored = metabase.stats(steady.id), metabase.binding(steady.id)
            assert (stats.notifications, stats.failures, stored.fire_count) == (12, 0, 12)
        stats, stored = metabase.stats(middle), metabase.binding(middle)
        assert (stats.notifications, stats.failures, stored.fire_count) == (6, 6, 12)

    def test_a_sync_sink_sleeping_past_its_timeout_is_cut_off(
        self, metabase: Metabase, quiet: Dispatcher
    ) -> None:
        middle = self._bind_around(metabase, "sleeper", binding_properties={"Timeout": 0.3})
        quiet.reload()
        started = time.monotonic()
        with capture_logs() as logs:
            result = quiet.notify_sync(arrival())
        assert time.monotonic() - started < 2.0
        assert self.fast(quiet).run.__name__ == "_run"
        assert names() == ["before", "middle", "after"]
        assert result == (2, 0, 1, None, "sleeper: timed out after 0.3s")
        assert [(e["event"], e["binding_id"]) for e in logs if e["log_level"] == "error"] == [
            ("sink_timed_out", middle)
        ]

    def test_a_base_exception_propagates_once_the_calls_before_are_counted(
        self, metabase: Metabase, quiet: Dispatcher
    ) -> None:
        self._bind_around(metabase, "aborter")
        quiet.reload()
        with pytest.raises(Abort):
            quiet.notify_sync(arrival())
        assert names() == ["before", "middle"]
        quiet.flush_stats()
        assert [metabase.stats(b.id).notifications for b in metabase.bindings("smtp/1")] == [
            1,
            0,
            0,
        ]

    async def test_notify_takes_it_too(self, metabase: Metabase, quiet: Dispatcher) -> None:
        self._bind_around(metabase, "recorder")
        quiet.reload()
        assert await quiet.notify(arrival()) == (3, 0, 0, None, None)
        assert self.fast(quiet).runs == 1

    @pytest.mark.parametrize(
        "fields",
        [
            {"sink": "async-tagger"},
            {"source_properties": {"Rule": "mail from=*@example.com"}},
            {"expiration": datetime.now(UTC) + timedelta(days=1)},
            {"max_firings": 5},
        ],
        ids=["async", "rule", "expiration", "max-firings"],
    )
    def test_an_event_with_any_other_binding_has_none(
        self, metabase: Metabase, quiet: Dispatcher, fields: dict[str, Any]
    ) -> None:
        bind(metabase, "plain")
        bind(metabase, "other", **{"sink": "recorder", **fields})
        quiet.reload()
        assert "OnArrival" not in quiet.plan.fast


def test_a_sink_installed_while_running_is_found_with_its_binding(
    metabase: Metabase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pip install a sink, bind it, and the running dispatcher notifies it: no restart."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    dispatcher = Dispatcher("smtp/1", metabase, SinkRegistry.discover(path=[str(site)]))
    try:
        with capture_logs() as logs:
            early = bind(metabase, "late", "late-sink")
            dispatcher.reload()
            assert dispatcher.calls("OnArrival") == []
            (site / "late_sink.py").write_text(
                "from seo_core.sdk import hookimpl\n"
                "CALLS = []\n"
                "@hookimpl\n"
                "def smtp_on_arrival(binding):\n"
                "    CALLS.append(binding.display_name)\n"
            )
            info = site / "late_sink-1.0.dist-info"
            info.mkdir()
            (info / "METADATA").write_text("Metadata-Version: 2.1\nName: late-sink\nVersion: 1.0\n")
            (info / "entry_points.txt").write_text("[seo.sinks]\nlate-sink = late_sink\n")
            bind(metabase, "late too", "late-sink")
            dispatcher.reload()
            dispatcher.notify_sync(arrival())
        import late_sink  # type: ignore[import-not-found]

        assert sorted(late_sink.CALLS) == ["late", "late too"]
        # Only the binding made before the install was ever reported unavailable, once.
        reported = [e["binding_id"] for e in logs if e["event"] == "binding_unavailable"]
        assert reported == [early]
    finally:
        dispatcher.close()


def test_a_broken_sink_is_logged_once_however_often_the_registry_rescans(
    metabase: Metabase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    info = site / "broken_sink-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-sink\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[seo.sinks]\nbroken = no_such_module_here\n")
    monkeypatch.syspath_prepend(str(site))
    with capture_logs() as logs:
        registry = SinkRegistry.discover(path=[str(site)])
        for _ in range(3):
            registry = registry.refresh()
    assert [s.status.value for s in registry.sinks] == ["failed"]
    failures = [e for e in logs if e["event"] == "sink_load_failed"]
    assert [(e["sink"], e["log_level"]) for e in failures] == [("broken", "info")]
