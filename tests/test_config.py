"""The config file: loading, planning and applying each kind of change, export, secrets, paths.

Real TOML files and real metabase files under ``tmp_path``; the installed ``log`` sink through a
real registry scan, and small ready-made sinks (``SinkRegistry.from_objects``) where a test needs
a sink with other properties. Errors have their own module, ``test_config_errors.py``.
"""

from __future__ import annotations

import json
import os
import tomllib
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from seo_core.cli import cli
from seo_core.cli.output import binding_json
from seo_core.config import (
    Change,
    Config,
    apply_config,
    export_config,
    load_config,
    parse_listen,
    plan_config,
    resolve_env,
)
from seo_core.config import toml as toml_writer
from seo_core.config.settings import SettingError, default_hostname
from seo_core.errors import ConfigFileError, EnvReferenceError
from seo_core.metabase import BindingSpec, Metabase
from seo_core.properties import PropertyBag, PropertyValue
from seo_core.registry import SinkRegistry
from seo_core.sdk import Prop, Schema, hookimpl
from tests.conftest import run_process

GUID_A = "{00000000-0000-4000-8000-00000000000a}"
GUID_B = "{00000000-0000-4000-8000-00000000000b}"

TAG = """
[[bindings]]
source = "smtp/1"
event = "OnArrival"
name = "Tag mail"
sink = "log"
rule = "mail from=*"
priority = "PRIO_HIGH"
sink_properties = { Fields = ["time", "event"] }
"""

STORE = """
[[bindings]]
source = "smtp/1"
event = "StoreDriver"
name = "Local mailboxes"
sink = "log"
"""

SOURCES = """
[sources."smtp/1"]
listen = "127.0.0.1:2525"
"""


class Probe:
    """A sink that takes any property; ``File`` is a path and ``Password`` a string."""

    properties_schema = Schema(
        {"File": Prop(str, path=True), "Password": Prop(str)}, allow_unknown=True
    )

    @hookimpl
    def smtp_on_arrival(self, event: Any) -> None: ...

    @hookimpl
    def smtp_store_driver(self, event: Any) -> None: ...

    @hookimpl
    def nntp_on_post(self, event: Any) -> None: ...


@pytest.fixture(scope="module")
def registry() -> SinkRegistry:
    """The installed sinks (the ``log`` sink among them), scanned once for this module."""
    found = SinkRegistry.discover()
    assert any(s.name == "log" for s in found.sinks), "the log sink must be installed"
    return found


@pytest.fixture
def probe_registry() -> SinkRegistry:
    return SinkRegistry.from_objects({"probe": Probe})


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    return tmp_path / "seo.toml"


def write(path: Path, *parts: str) -> Path:
    path.write_text("".join(parts), encoding="utf-8")
    return path


def apply(path: Path, metabase: Metabase, registry: SinkRegistry, **kw: Any) -> list[Change]:
    return apply_config(load_config(path, require_listen=False), metabase, registry, **kw)


def actions(changes: list[Change]) -> list[tuple[str, str | None, str | None]]:
    return [(c.action, c.event, c.binding_name or c.source) for c in changes]


def listing(metabase: Metabase) -> list[dict[str, Any]]:
    return [binding_json(b) for b in metabase.bindings()]


def file_bytes(path: Path) -> bytes:
    return path.read_bytes()


class TestLoad:
    def test_sources_get_their_defaults_and_paths_relative_to_the_file(
        self, config_file: Path
    ) -> None:
        write(config_file, SOURCES, '[sources."nntp/2"]\nlisten = "[::1]:1119"\n')
        config = load_config(config_file)
        smtp, nntp = config.sources["smtp/1"], config.sources["nntp/2"]
        folder = config_file.parent
        assert (smtp.type, nntp.type) == ("smtp", "nntp")
        assert dict(smtp.settings) == {
            "listen": "127.0.0.1:2525",
            "hostname": default_hostname(),
            "local_domains": (default_hostname(),),
            "spool": folder / "var/spool/smtp-1",
            "max_message_size": 10_485_760,
            "max_recipients": 100,
            "max_connections": 100,
            "retry_schedule": (1.0, 5.0, 30.0, 120.0, 600.0),
            "shutdown_timeout": 30.0,
            "delivery": "process",
            "delivery_priority": "idle",
        }
        assert dict(nntp.settings) == {
            "listen": "[::1]:1119",
            "hostname": default_hostname(),
            "store": folder / "var/news/nntp-2",
            "groups": (),
            "moderated": (),
            "max_article_size": 1_048_576,
        }

    def test_given_settings_are_typed_and_paths_made_absolute(self, config_file: Path) -> None:
        write(
            config_file,
            """
            [sources."SMTP/1"]
            listen = "mail.example.com:25"
            hostname = "mx.example.com"
            spool = "../spool"
            retry_schedule = [2, 0.5]
            shutdown_timeout = 5
            [sources."nntp/1"]
            listen = "127.0.0.1:1119"
            store = "/srv/news"
            groups = ["local.test"]
            """,
        )
        config = load_config(config_file)
        smtp = config.sources["smtp/1"].settings
        assert smtp["local_domains"] == ("mx.example.com",)
        assert smtp["spool"] == config_file.parent.parent / "spool"
        assert smtp["retry_schedule"] == (2.0, 0.5)
        assert smtp["shutdown_timeout"] == 5.0
        assert config.sources["nntp/1"].settings["store"] == Path("/srv/news")
        assert config.sources["nntp/1"].settings["groups"] == ("local.test",)

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("127.0.0.1:2525", ("127.0.0.1", 2525)),
            ("[::1]:2525", ("::1", 2525)),
            ("mail.example.com:1", ("mail.example.com", 1)),
            ("0.0.0.0:65535", ("0.0.0.0", 65535)),
        ],
        ids=["ipv4", "ipv6", "name", "top-port"],
    )
    def test_listen_addresses(self, text: str, expected: tuple[str, int]) -> None:
        assert parse_listen(text) == expected

    @pytest.mark.parametrize(
        "text",
        ["2525", ":25", "::1:25", "host:0", "host:65536", "[::1]:x", "[::1:25", "host:"],
        ids=[
            "no-host",
            "empty-host",
            "bare-ipv6",
            "port-0",
            "port-big",
            "port-text",
            "open",
            "no-port",
        ],
    )
    def test_bad_listen_addresses(self, text: str) -> None:
        with pytest.raises(SettingError):
            parse_listen(text)

    def test_bindings_are_normalized_and_marked_with_the_file(self, config_file: Path) -> None:
        write(
            config_file,
            TAG.replace('event = "OnArrival"', 'event = "ontransportsubmission"'),
            STORE.replace('"smtp/1"', '"SMTP/01"'),
        )
        config = load_config(config_file)
        tag, store = config.bindings
        assert config.path == config_file
        assert tag == BindingSpec(
            source="smtp/1",
            event="OnArrival",
            sink_class="log",
            display_name="Tag mail",
            source_properties={"Rule": "mail from=*", "Priority": 8191},
            sink_properties={"Fields": ["time", "event"]},
            origin=f"config:{config_file}",
        )
        assert (store.source, store.id) == ("smtp/1", None)

    def test_expires_takes_a_toml_date_time_or_an_iso_string(self, config_file: Path) -> None:
        write(
            config_file,
            STORE,
            "expires = 2030-01-01T02:00:00+02:00\n",
            TAG,
            'expires = "2030-01-01T00:00:00Z"\n',
        )
        first, second = load_config(config_file).bindings
        assert first.expiration == second.expiration == datetime(2030, 1, 1, tzinfo=UTC)

    def test_relative_path_of_the_file_itself_is_made_absolute(
        self, config_file: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        write(config_file, 'metabase = "var/seo.db"\n')
        monkeypatch.chdir(config_file.parent)
        config = load_config("seo.toml")
        assert config.path == config_file
        assert config.metabase == config_file.parent / "var/seo.db"

    def test_listen_may_be_left_out_for_apply_but_not_to_serve(self, config_file: Path) -> None:
        write(config_file, '[sources."smtp/1"]\n')
        assert load_config(config_file, require_listen=False).sources["smtp/1"].settings
        with pytest.raises(ConfigFileError, match="listen: required key is missing"):
            load_config(config_file)


class TestPlanAndApply:
    def test_create(self, config_file: Path, metabase: Metabase, registry: SinkRegistry) -> None:
        write(config_file, SOURCES, TAG, STORE, '[sources."nntp/1"]\nlisten = "127.0.0.1:1119"\n')
        planned = plan_config(load_config(config_file), metabase)
        assert actions(planned) == [
            ("create", None, "nntp/1"),
            ("create", None, "smtp/1"),
            ("create", "OnArrival", "Tag mail"),
            ("create", "StoreDriver", "Local mailboxes"),
        ]
        assert str(planned[2]) == 'create     smtp/1 OnArrival "Tag mail" -> log'
        assert metabase.bindings() == []
        applied = apply(config_file, metabase, registry)
        assert actions(applied) == actions(planned)
        tag, store = metabase.bindings()
        assert (tag.display_name, tag.priority, tag.rule, tag.origin) == (
            "Tag mail",
            8191,
            "mail from=*",
            f"config:{config_file}",
        )
        assert store.display_name == "Local mailboxes"
        assert [s.name for s in metabase.sources()] == ["nntp/1", "smtp/1"]

    def test_update_names_the_changed_keys_and_keeps_guid_and_fire_count(
        self, config_file: Path, metabase: Metabase, registry: SinkRegistry
    ) -> None:
        write(config_file, TAG, STORE)
        apply(config_file, metabase, registry)
        before = metabase.binding(("smtp/1", "OnArrival", "Tag mail"))
        assert metabase.claim_firing(before.id)
        write(
            config_file,
            TAG.replace("PRIO_HIGH", "10").replace('"event"]', '"source"]'),
            STORE,
        )
        changes = apply(config_file, metabase, registry)
        assert actions(changes) == [
            ("update", "OnArrival", "Tag mail"),
            ("unchanged", "StoreDriver", "Local mailboxes"),
        ]
        assert changes[0].details == ("priority", "sink_properties")
        assert str(changes[0]).endswith("-> log (priority, sink_properties)")
        after = metabase.binding(before.id)
        assert (after.priority, after.fire_count) == (10, 1)
        assert after.sink_properties == PropertyBag({"Fields": ["time", "source"]})

    def test_setting_max_firings_starts_the_count_over(
        self, config_file: Path, metabase: Metabase, registry: SinkRegistry
    ) -> None:
        write(config_file, TAG)
        apply(config_file, metabase, registry)
        (tag,) = metabase.bindings()
        metabase.claim_firing(tag.id)
        write(config_file, TAG, "max_firings = 5\nenabled = false\n")
        (change,) = apply(config_file, metabase, registry)
        assert change.details == ("enabled", "max_firings")
        assert metabase.binding(tag.id).fire_count == 0

    @pytest.mark.parametrize(
        ("edit", "details"),
        [
            (("PRIO_HIGH", "PRIO_LOW"), ("priority",)),
            (('rule = "mail from=*"', 'rule = "rcpt to=*"'), ("rule",)),
            (('sink = "log"', 'sink = "seo-sink-log:log"'), ("sink",)),
            (('"Tag mail"', '"Tagged"'), ("name",)),
            (("OnArrival", "OnPreCategorize"), ("event",)),
            (('["time", "event"]', '["time", "event"], File = "x"'), ("sink_properties",)),
            (
                ("priority =", "binding_properties = { Timeout = 5 }\npriority ="),
                ("binding_properties",),
            ),
            (("priority =", "expires = 2031-01-01T00:00:00Z\npriority ="), ("expires",)),
        ],
        ids=[
            "priority",
            "rule",
            "sink",
            "name",
            "event",
            "sink-prop",
            "binding-prop",
            "expires",
        ],
    )
    def test_each_key_is_compared(
        self,
        config_file: Path,
        metabase: Metabase,
        registry: SinkRegistry,
        edit: tuple[str, str],
        details: tuple[str, ...],
    ) -> None:
        write(config_file, TAG, f'id = "{GUID_A}"\n')
        apply(config_file, metabase, registry)
        write(config_file, TAG.replace(*edit), f'id = "{GUID_A}"\n')
        (change,) = apply(config_file, metabase, registry)
        assert (change.action, change.details, change.id) == ("update", details, GUID_A)

    def test_values_are_compared_exactly(
        self, config_file: Path, metabase: Metabase, probe_registry: SinkRegistry
    ) -> None:
        """``1``, ``1.0`` and ``true`` compare equal in Python, but are three values."""
        base = STORE.replace('"log"', '"probe"')
        write(config_file, base, "sink_properties = { n = 1 }\n")
        apply(config_file, metabase, probe_registry)
        for value in ("1.0", "true", "1", '"1"'):
            write(config_file, base, f"sink_properties = {{ n = {value} }}\n")
            (change,) = apply(config_file, metabase, probe_registry)
            assert change.action == "update", value
        write(config_file, base, "sink_properties = { N = '1' }\n")
        (change,) = apply(config_file, metabase, probe_registry)
        assert change.details == ("sink_properties",), "a new spelling of the name is a change"

    def test_remove(self, config_file: Path, metabase: Metabase, registry: SinkRegistry) -> None:
        write(config_file, TAG, STORE)
        apply(config_file, metabase, registry)
        write(config_file, STORE)
        changes = apply(config_file, metabase, registry)
        assert actions(changes) == [
            ("unchanged", "StoreDriver", "Local mailboxes"),
            ("remove", "OnArrival", "Tag mail"),
        ]
        assert [b.display_name for b in metabase.bindings()] == ["Local mailboxes"]
        write(config_file, "")
        assert actions(apply(config_file, metabase, registry)) == [
            ("remove", "StoreDriver", "Local mailboxes")
        ]
        assert metabase.bindings() == []

    def test_the_same_file_twice_changes_nothing_the_second_time(
        self, config_file: Path, metabase_path: Path, registry: SinkRegistry
    ) -> None:
        write(config_file, SOURCES, TAG, STORE)
        with Metabase.open(metabase_path) as metabase:
            apply(config_file, metabase, registry)
            generation = metabase.generation()
            dumped = metabase.dump()
        before = file_bytes(metabase_path)
        with Metabase.open(metabase_path) as metabase:
            changes = apply(config_file, metabase, registry)
            assert {c.action for c in changes} == {"unchanged"}
            assert (metabase.generation(), metabase.dump()) == (generation, dumped)
        assert file_bytes(metabase_path) == before

    def test_a_changing_apply_moves_the_generation_once(
        self, config_file: Path, metabase: Metabase, registry: SinkRegistry
    ) -> None:
        generation = metabase.generation()
        write(config_file, SOURCES, TAG, STORE)
        apply(config_file, metabase, registry)
        assert metabase.generation() == generation + 1

    def test_dry_run_prints_the_plan_and_leaves_the_file_byte_identical(
        self, config_file: Path, metabase_path: Path, registry: SinkRegistry
    ) -> None:
        write(config_file, TAG)
        with Metabase.open(metabase_path) as metabase:
            apply(config_file, metabase, registry)
        write(config_file, TAG.replace("PRIO_HIGH", "1"), STORE)
        before = file_bytes(metabase_path)
        with Metabase.open(metabase_path) as metabase:
            changes = apply(config_file, metabase, registry, dry_run=True)
            real = plan_config(load_config(config_file), metabase)
        assert actions(changes) == [
            ("update", "OnArrival", "Tag mail"),
            ("create", "StoreDriver", "Local mailboxes"),
        ]
        assert [(c.action, c.details) for c in changes] == [(c.action, c.details) for c in real]
        assert file_bytes(metabase_path) == before

    def test_an_apply_is_one_transaction(
        self,
        config_file: Path,
        metabase: Metabase,
        registry: SinkRegistry,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        write(config_file, TAG)
        apply(config_file, metabase, registry)
        dumped = metabase.dump()
        write(config_file, STORE, TAG.replace("Tag mail", "Other"))
        real_add = Metabase.add_binding
        calls = []

        def failing_add(self: Metabase, spec: BindingSpec, **kw: Any) -> Any:
            calls.append(spec.display_name)
            if len(calls) == 2:
                raise OSError("disk full")
            return real_add(self, spec, **kw)

        monkeypatch.setattr(Metabase, "add_binding", failing_add)
        with pytest.raises(OSError, match="disk full"):
            apply(config_file, metabase, registry)
        assert calls == ["Local mailboxes", "Other"]
        assert metabase.dump() == dumped

    def test_hand_made_bindings_survive(
        self, config_file: Path, metabase: Metabase, registry: SinkRegistry
    ) -> None:
        hand = metabase.add_binding(
            BindingSpec(
                "smtp/1", "OnArrival", "log", display_name="By hand", sink_properties={"File": "x"}
            )
        )
        write(config_file, TAG, STORE)
        apply(config_file, metabase, registry)
        write(config_file, "")
        apply(config_file, metabase, registry)
        assert metabase.bindings() == [hand]

    def test_bindings_of_another_file_are_not_touched(
        self, tmp_path: Path, metabase: Metabase, registry: SinkRegistry
    ) -> None:
        one = write(tmp_path / "one.toml", TAG)
        two = write(tmp_path / "two.toml", STORE)
        apply(one, metabase, registry)
        apply(two, metabase, registry)
        write(one, "")
        apply(one, metabase, registry)
        (left,) = metabase.bindings()
        assert (left.display_name, left.origin) == ("Local mailboxes", f"config:{two}")

    def test_guids_are_stable_across_applies(
        self, config_file: Path, metabase: Metabase, registry: SinkRegistry
    ) -> None:
        write(config_file, TAG, STORE)
        apply(config_file, metabase, registry)
        ids = {b.display_name: b.id for b in metabase.bindings()}
        write(config_file, STORE, TAG.replace("PRIO_HIGH", "PRIO_LOW"), "enabled = false\n")
        apply(config_file, metabase, registry)
        write(config_file, STORE, TAG)
        apply(config_file, metabase, registry)
        assert {b.display_name: b.id for b in metabase.bindings()} == ids

    def test_an_explicit_id_is_used_and_may_rename_its_binding(
        self, config_file: Path, metabase: Metabase, registry: SinkRegistry
    ) -> None:
        metabase.ensure_source("smtp/1")
        write(config_file, TAG, f'id = "{GUID_A.upper()}"\n')
        (change,) = apply(config_file, metabase, registry)
        assert change.id == GUID_A
        write(config_file, TAG.replace("Tag mail", "Renamed"), f'id = "{GUID_A}"\n')
        (change,) = apply(config_file, metabase, registry)
        assert (change.action, change.details, change.id) == ("update", ("name",), GUID_A)

    def test_two_bindings_may_swap_names(
        self, config_file: Path, metabase: Metabase, registry: SinkRegistry
    ) -> None:
        one = TAG.replace("Tag mail", "One") + f'id = "{GUID_A}"\n'
        two = TAG.replace("Tag mail", "Two") + f'id = "{GUID_B}"\n'
        write(config_file, one, two)
        apply(config_file, metabase, registry)
        write(
            config_file,
            one.replace('"One"', '"Two"'),
            two.replace('"Two"', '"One"'),
        )
        changes = apply(config_file, metabase, registry)
        assert [(c.action, c.details) for c in changes] == [("update", ("name",))] * 2
        assert metabase.binding(GUID_A).display_name == "Two"
        assert metabase.binding(GUID_B).display_name == "One"

    def test_adding_an_id_to_a_binding_recreates_it_under_that_id(
        self, config_file: Path, metabase: Metabase, registry: SinkRegistry
    ) -> None:
        write(config_file, TAG)
        apply(config_file, metabase, registry)
        write(config_file, TAG, f'id = "{GUID_A}"\n')
        changes = apply(config_file, metabase, registry)
        assert [c.action for c in changes] == ["create", "remove"]
        assert [b.id for b in metabase.bindings()] == [GUID_A]

    def test_plan_against_no_metabase_creates_everything(self, config_file: Path) -> None:
        write(config_file, SOURCES, TAG)
        changes = plan_config(load_config(config_file), None)
        assert [c.action for c in changes] == ["create", "create"]


class TestPathsOfSinks:
    def test_a_declared_path_property_is_made_absolute_against_the_file(
        self, tmp_path: Path, metabase: Metabase, probe_registry: SinkRegistry
    ) -> None:
        (tmp_path / "etc").mkdir()
        config_file = write(
            tmp_path / "etc" / "seo.toml",
            STORE.replace('"log"', '"probe"'),
            'sink_properties = { File = "../log/audit.jsonl", Other = "rel/x" }\n',
        )
        apply(config_file, metabase, probe_registry)
        (binding,) = metabase.bindings()
        assert binding.sink_properties["File"] == str(tmp_path / "log" / "audit.jsonl")
        assert binding.sink_properties["Other"] == "rel/x", "undeclared properties are opaque"
        (change,) = apply(config_file, metabase, probe_registry)
        assert change.action == "unchanged"


class TestSecrets:
    def test_an_env_reference_is_stored_listed_and_exported_as_the_reference(
        self, config_file: Path, metabase: Metabase, probe_registry: SinkRegistry
    ) -> None:
        write(
            config_file,
            STORE.replace('"log"', '"probe"'),
            'sink_properties = { Password = { env = "SEO_TEST_SECRET" } }\n',
        )
        apply(config_file, metabase, probe_registry)
        (binding,) = metabase.bindings()
        assert binding.sink_properties["Password"] == {"env": "SEO_TEST_SECRET"}
        assert binding_json(binding)["sink_properties"] == {"Password": {"env": "SEO_TEST_SECRET"}}
        assert 'sink_properties = { Password = { env = "SEO_TEST_SECRET" } }' in export_config(
            metabase
        )

    def test_resolve_env_replaces_references_at_call_time(self) -> None:
        deep: dict[str, PropertyValue] = {"inner": {"env": "SEO_PW"}}
        bag = PropertyBag({"Password": {"env": "SEO_PW"}, "User": "bob", "Deep": deep})
        assert resolve_env(bag, {"SEO_PW": "s3cret"}) == PropertyBag(
            {"Password": "s3cret", "User": "bob", "Deep": deep}
        )

    def test_resolve_env_reads_os_environ(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("SEO_PW", "from-env")
        assert resolve_env(PropertyBag({"pw": {"env": "SEO_PW"}}))["pw"] == "from-env"

    def test_a_bag_without_references_is_returned_as_is(self) -> None:
        bag = PropertyBag({"User": "bob", "Nested": {"env": "X", "other": 1}})
        assert resolve_env(bag, {}) is bag

    def test_a_missing_variable_is_named(self) -> None:
        with pytest.raises(EnvReferenceError, match="SEO_NOT_SET") as caught:
            resolve_env(PropertyBag({"Password": {"env": "SEO_NOT_SET"}}), {})
        assert (caught.value.variable, caught.value.property_name) == ("SEO_NOT_SET", "Password")

    def test_the_log_sink_accepts_a_reference_where_it_takes_a_string(
        self, config_file: Path, metabase: Metabase, registry: SinkRegistry
    ) -> None:
        write(config_file, STORE, 'sink_properties = { File = { env = "SEO_LOG_FILE" } }\n')
        apply(config_file, metabase, registry)
        assert metabase.bindings()[0].sink_properties["File"] == {"env": "SEO_LOG_FILE"}


ROUND_TRIP = [
    BindingSpec(
        source="smtp/1",
        event="OnArrival",
        sink_class="probe",
        # No tab: a DisplayName holds no control character (property values may, see Control).
        display_name='Every "field" — set \\ too',
        id=GUID_A,
        enabled=False,
        max_firings=3,
        expiration=datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=timezone(timedelta(hours=2))),
        binding_properties={"Timeout": 2.5, "Owner": "ops"},
        sink_properties={
            "File": "/var/log/seo.jsonl",
            "Password": {"env": "SEO_PASSWORD"},
            "X-Header": {"add": {"X-Seo": "yes", "weird key": ["a", 1, 1.5, True]}},
            "Empty": [],
            "EmptyTable": {},
            "Big": 10**15,
            "Small": 1e-7,
            "Control": "line\nbreak \x01 \x7f \\ end",
            "Long": "x" * 120,
        },
        source_properties={"Rule": "mail from=*@example.com", "Priority": 123},
    ),
    BindingSpec(
        source="smtp/2",
        event="StoreDriver",
        sink_class="test-sinks:probe",
        display_name="lower-case rule spelling",
        source_properties={"rule": "rcpt to=*", "priority": "PRIO_LOW"},
    ),
    BindingSpec(source="nntp/1", event="OnPost", sink_class="probe", display_name=None),
    BindingSpec(
        source="smtp/1",
        event="OnArrival",
        sink_class="probe",
        display_name="Hand-made twin",
        origin="config:/elsewhere/seo.toml",
    ),
]


class TestExport:
    def test_round_trip_with_every_field_set(
        self, tmp_path: Path, probe_registry: SinkRegistry
    ) -> None:
        with Metabase.open(tmp_path / "old.db") as old:
            for spec in ROUND_TRIP:
                old.add_binding(spec)
            old.ensure_source("nntp/7")
            text = export_config(old)
            expected, sources = listing(old), old.sources()
        tomllib.loads(text)
        exported = write(tmp_path / "exported.toml", text)
        with Metabase.open(tmp_path / "new.db") as new:
            changes = apply(exported, new, probe_registry)
            assert {c.action for c in changes} == {"create"}
            got = listing(new)
            assert new.sources() == sources
            again = apply(exported, new, probe_registry)
            assert {c.action for c in again} == {"unchanged"}
        for binding in expected + got:
            binding.pop("origin")
        assert got == expected
        assert [b.origin for b in Metabase.open(tmp_path / "new.db").bindings()] == [
            f"config:{exported}"
        ] * len(ROUND_TRIP)

    def test_the_export_writes_ids_and_only_what_is_not_default(self, metabase: Metabase) -> None:
        metabase.add_binding(
            BindingSpec("smtp/1", "OnArrival", "log", display_name="Plain", id=GUID_A)
        )
        text = export_config(metabase, metabase_path="var/seo.db")
        assert 'metabase = "var/seo.db"' in text
        assert '[sources."smtp/1"]' in text
        assert "not stored in the metabase" in text
        block = text[text.index("[[bindings]]") :]
        assert block == (
            "[[bindings]]\n"
            'source = "smtp/1"\n'
            'event = "OnArrival"\n'
            'name = "Plain"\n'
            f'id = "{GUID_A}"\n'
            'sink = "log"\n'
        )

    def test_each_binding_is_headed_by_a_comment_naming_its_owner(
        self, tmp_path: Path, metabase: Metabase
    ) -> None:
        """Applied back to its metabase, the file collides with each binding it does not own;
        the comments say whose each is (a path with a newline cannot end its comment)."""
        odd = "/etc/seo/odd\nname.toml"
        # The IDs fix the order: bindings of one priority are listed by ID.
        metabase.add_binding(
            BindingSpec("smtp/1", "OnArrival", "log", display_name="Hand", id=GUID_B)
        )
        metabase.add_binding(
            BindingSpec(
                "smtp/1",
                "OnArrival",
                "log",
                display_name="Filed",
                id=GUID_A,
                origin=f"config:{odd}",
            )
        )
        text = export_config(metabase)
        assert "made by hand or managed by another config" in text.replace("\n# ", " ")
        headed = [text.split("\n[[bindings]]\n")[i].rsplit("\n", 1)[-1] for i in (0, 1)]
        assert headed == [
            '# managed by the config file "/etc/seo/odd\\nname.toml"',
            "# made by hand with `seo bindings`",
        ]
        exported = write(tmp_path / "exported.toml", text)
        assert [b["name"] for b in tomllib.loads(text)["bindings"]] == ["Filed", "Hand"]
        assert len(load_config(exported, require_listen=False).bindings) == 2

    def test_the_fire_count_is_not_exported(
        self, tmp_path: Path, probe_registry: SinkRegistry
    ) -> None:
        """A fired-out binding comes back disabled (its last firing disabled it) with a count
        of 0: enabled again, it has a whole new budget. docs/config.md says so."""
        with Metabase.open(tmp_path / "old.db") as old:
            spent = old.add_binding(
                BindingSpec("smtp/1", "OnArrival", "probe", display_name="Once", max_firings=1)
            )
            assert old.claim_firing(spent.id)
            text = export_config(old)
        exported = write(tmp_path / "exported.toml", text)
        with Metabase.open(tmp_path / "new.db") as new:
            apply(exported, new, probe_registry)
            (copy,) = new.bindings()
        assert (copy.enabled, copy.max_firings, copy.fire_count) == (False, 1, 0)

    def test_a_long_bag_is_written_as_a_sub_table(self, metabase: Metabase) -> None:
        metabase.add_binding(
            BindingSpec(
                "smtp/1",
                "OnArrival",
                "log",
                display_name="Long",
                sink_properties={"File": "/" + "x" * 100},
            )
        )
        text = export_config(metabase)
        assert "\n\n[bindings.sink_properties]\nFile = " in text
        (binding,) = tomllib.loads(text)["bindings"]
        assert binding["sink_properties"] == {"File": "/" + "x" * 100}

    @pytest.mark.parametrize(
        "value",
        [
            "plain",
            'quote " and \\ backslash',
            "control \x00\x08\t\n\x0c\r\x1f\x7f",
            "unicode bücher ✓ 🙂",
            0,
            -(2**63),
            2**63 - 1,
            0.1,
            -0.0,
            1e300,
            5e-324,
            True,
            False,
            [],
            [1, "a", [2.5, False], {"k": "v"}],
            {},
            {"bare_key-1": 1, "needs quotes": 2, "": 3, "ü": {"nested": []}},
        ],
        ids=lambda v: repr(v)[:20],
    )
    def test_every_value_the_writer_writes_reads_back_the_same(self, value: Any) -> None:
        parsed = tomllib.loads(f"v = {toml_writer.value(value)}")["v"]
        assert json.dumps(parsed) == json.dumps(value)


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), prog_name="seo", env=env)


class TestCli:
    def test_apply_prints_the_plan_and_a_summary(
        self, config_file: Path, metabase_path: Path
    ) -> None:
        write(config_file, SOURCES, TAG)
        result = invoke("--metabase", str(metabase_path), "config", "apply", str(config_file))
        assert result.exit_code == 0, result.output
        lines = result.stdout.splitlines()
        assert lines[0].startswith("create     source smtp/1 {")
        assert lines[1:] == [
            'create     smtp/1 OnArrival "Tag mail" -> log',
            f"applied {config_file} to {metabase_path}: 2 created, 0 updated, 0 removed, "
            "0 unchanged",
        ]
        again = invoke("--metabase", str(metabase_path), "config", "apply", str(config_file))
        assert again.stdout.splitlines()[0] == 'unchanged  smtp/1 OnArrival "Tag mail" -> log'

    def test_dry_run_does_not_create_the_metabase(
        self, config_file: Path, metabase_path: Path
    ) -> None:
        write(config_file, TAG)
        result = invoke(
            "--metabase", str(metabase_path), "config", "apply", "--dry-run", str(config_file)
        )
        assert result.exit_code == 0, result.output
        source, *rest = result.stdout.splitlines()
        assert source.startswith("create     source smtp/1 {")
        assert rest == [
            'create     smtp/1 OnArrival "Tag mail" -> log',
            f"dry run of {config_file} on {metabase_path}: 2 to create, 0 to update, "
            "0 to remove, 0 unchanged; nothing was changed",
        ]
        assert not metabase_path.exists()

    def test_dry_run_on_an_empty_file_plans_from_nothing_and_leaves_it_empty(
        self, config_file: Path, metabase_path: Path
    ) -> None:
        write(config_file, TAG)
        metabase_path.touch()
        result = invoke(
            "--metabase", str(metabase_path), "config", "apply", "--dry-run", str(config_file)
        )
        assert result.exit_code == 0, result.output
        assert result.stdout.splitlines()[1:] == [
            'create     smtp/1 OnArrival "Tag mail" -> log',
            f"dry run of {config_file} on {metabase_path}: 2 to create, 0 to update, "
            "0 to remove, 0 unchanged; nothing was changed",
        ]
        assert metabase_path.stat().st_size == 0
        assert sorted(p.name for p in metabase_path.parent.iterdir()) == sorted(
            [metabase_path.name, config_file.name]
        )

    def test_dry_run_on_an_existing_metabase_changes_no_byte(
        self, config_file: Path, metabase_path: Path
    ) -> None:
        write(config_file, TAG)
        invoke("--metabase", str(metabase_path), "config", "apply", str(config_file))
        write(config_file, STORE)
        before = file_bytes(metabase_path)
        result = invoke(
            "--metabase", str(metabase_path), "config", "apply", "--dry-run", str(config_file)
        )
        assert result.exit_code == 0, result.output
        assert result.stdout.splitlines()[:2] == [
            'create     smtp/1 StoreDriver "Local mailboxes" -> log',
            'remove     smtp/1 OnArrival "Tag mail" -> log',
        ]
        assert file_bytes(metabase_path) == before

    def test_export_to_stdout_and_to_a_file(self, tmp_path: Path, metabase_path: Path) -> None:
        added = invoke(
            "--metabase",
            str(metabase_path),
            "bindings",
            "add",
            "smtp/1",
            "OnArrival",
            "Audit",
            "log",
            "--priority",
            "PRIO_HIGH",
        )
        assert added.exit_code == 0, added.output
        shown = invoke("--metabase", str(metabase_path), "config", "export")
        assert shown.exit_code == 0, shown.output
        assert "priority = 8191" in shown.stdout
        out = tmp_path / "out.toml"
        written = invoke("--metabase", str(metabase_path), "config", "export", "-o", str(out))
        assert written.exit_code == 0, written.output
        assert out.read_text(encoding="utf-8") == shown.stdout

    def test_an_export_applies_back_to_the_metabase_it_came_from(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The file names its metabase by its absolute path, so applying it from anywhere,
        without --metabase, reads that metabase (and makes no ./seo-metabase.db)."""
        work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
        (work / "var").mkdir(parents=True)
        elsewhere.mkdir()
        monkeypatch.delenv("SEO_METABASE", raising=False)
        monkeypatch.chdir(work)
        relative = ["--metabase", "var/seo-metabase.db"]
        added = invoke(*relative, "bindings", "add", "smtp/1", "OnArrival", "Hand", "log")
        assert added.exit_code == 0, added.output
        exported = invoke(*relative, "config", "export", "--output", "exported.toml")
        assert exported.exit_code == 0, exported.output
        metabase = work / "var" / "seo-metabase.db"
        text = (work / "exported.toml").read_text(encoding="utf-8")
        assert tomllib.loads(text)["metabase"] == str(metabase)
        monkeypatch.chdir(elsewhere)
        collides = invoke("config", "apply", str(work / "exported.toml"))
        assert collides.exit_code == 1
        assert "it was made by hand with `seo bindings`" in collides.stderr
        assert list(elsewhere.iterdir()) == []
        # The documented way to put hand-made bindings under the file: remove, then apply.
        removed = invoke(
            "--metabase", str(metabase), "bindings", "remove", "smtp/1", "OnArrival", "Hand"
        )
        assert removed.exit_code == 0, removed.output
        applied = invoke("config", "apply", str(work / "exported.toml"))
        assert applied.exit_code == 0, applied.output
        assert applied.stdout.splitlines()[-1] == (
            f"applied {work / 'exported.toml'} to {metabase}: "
            "1 created, 0 updated, 0 removed, 0 unchanged"
        )
        assert list(elsewhere.iterdir()) == []
        with Metabase.open(metabase) as opened:
            (binding,) = opened.bindings()
        assert binding.id == tomllib.loads(text)["bindings"][0]["id"]

    def test_export_refuses_to_overwrite_a_file_without_force(
        self, tmp_path: Path, metabase_path: Path
    ) -> None:
        Metabase.open(metabase_path).close()
        hand_written = write(tmp_path / "seo.toml", '# mine\n[sources."smtp/1"]\nlisten = ":25"\n')
        args = ["--metabase", str(metabase_path), "config", "export", "--output", str(hand_written)]
        refused = invoke(*args)
        assert refused.exit_code == 1
        assert refused.stderr == (
            f"seo: error: {hand_written}: already exists; give --force to overwrite it\n"
        )
        assert hand_written.read_text(encoding="utf-8").startswith("# mine\n")
        forced = invoke(*args, "--force")
        assert forced.exit_code == 0, forced.output
        assert "written by `seo config export`" in hand_written.read_text(encoding="utf-8")

    def test_export_of_a_missing_metabase_fails_without_creating_it(self, tmp_path: Path) -> None:
        missing = tmp_path / "missing.db"
        result = invoke("--metabase", str(missing), "config", "export")
        assert result.exit_code == 1
        assert result.stderr == f"seo: error: metabase {missing}: does not exist\n"
        assert not missing.exists()

    @pytest.mark.parametrize(
        ("option", "environment", "expected"),
        [
            (None, None, "from-file.db"),
            (None, "from-env.db", "from-env.db"),
            ("from-option.db", "from-env.db", "from-option.db"),
        ],
        ids=["file", "env-beats-file", "option-beats-env"],
    )
    def test_where_the_metabase_is(
        self,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        option: str | None,
        environment: str | None,
        expected: str,
    ) -> None:
        (tmp_path / "etc").mkdir()
        config_file = write(tmp_path / "etc" / "seo.toml", 'metabase = "from-file.db"\n', TAG)
        monkeypatch.chdir(tmp_path)
        monkeypatch.delenv("SEO_METABASE", raising=False)
        if environment:
            monkeypatch.setenv("SEO_METABASE", environment)
        args = ["--metabase", option] if option else []
        result = invoke(*args, "config", "apply", str(config_file))
        assert result.exit_code == 0, result.output
        folder = tmp_path / "etc" if expected == "from-file.db" else tmp_path
        assert (folder / expected).exists()
        assert sorted(p.name for p in tmp_path.rglob("*.db")) == [expected]

    def test_the_installed_script_applies_and_exports(self, tmp_path: Path, seo_exe: str) -> None:
        config_file = write(tmp_path / "seo.toml", 'metabase = "seo.db"\n', SOURCES, TAG, STORE)
        env = {k: v for k, v in os.environ.items() if k != "SEO_METABASE"}
        applied = run_process(seo_exe, "config", "apply", str(config_file), env=env)
        assert applied.returncode == 0, applied.stderr
        assert applied.stdout.splitlines()[-1].endswith(
            "3 created, 0 updated, 0 removed, 0 unchanged"
        )
        exported = run_process(
            seo_exe, "--metabase", str(tmp_path / "seo.db"), "config", "export", env=env
        )
        assert exported.returncode == 0, exported.stderr
        assert [b["name"] for b in tomllib.loads(exported.stdout)["bindings"]] == [
            "Tag mail",
            "Local mailboxes",
        ]


def test_config_records_keep_the_file_and_origin(config_file: Path) -> None:
    write(config_file, TAG)
    config = load_config(config_file)
    assert isinstance(config, Config)
    assert config.origin == f"config:{config_file}"


def test_the_example_config_marks_local_announce_moderated() -> None:
    """examples/seo.toml moderates local.announce with a binding, and says so in LIST ACTIVE."""
    from seo_core.sources.nntp.settings import NntpSettings

    config = load_config(Path(__file__).parent.parent / "examples" / "seo.toml")
    news = NntpSettings.from_mapping("nntp/1", config.sources["nntp/1"].settings)
    assert news.moderated == {"local.announce"}
    assert news.groups == ("local.test", "local.announce")
    (moderation,) = [b for b in config.bindings if b.display_name == "Moderate local.announce"]
    assert moderation.source_properties["Rule"] == "newsgroups=local.announce"
