"""The sink registry with ready-made sinks: validation, conflicts, resolving and binding checks.

These use :meth:`SinkRegistry.from_objects` (no package scan) plus a few hand-written metadata
folders for the path rules; ``test_discovery.py`` does the same against really installed packages.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from seo_core.catalog import hook_names
from seo_core.cli.sinks import events_text, status_text
from seo_core.errors import (
    AmbiguousSinkError,
    SinkError,
    SinkLoadError,
    SinkNotFoundError,
    SinkPropertyError,
)
from seo_core.metabase import Binding
from seo_core.properties import PropertyBag, PropertyValue
from seo_core.registry import SinkInfo, SinkRegistry, SinkStatus, make_plugin_manager
from seo_core.sdk import Prop, Schema, hookimpl

CLSID = "{6F1C2B2E-8F7D-4A53-9D1E-0C6A4B7E2F10}"
BINDING_ID = "{00000000-0000-0000-0000-000000000001}"


def module(name: str, *functions: Callable[..., Any], **attributes: object) -> types.ModuleType:
    """A module object holding ``functions`` under their own names, like a sink module."""
    made = types.ModuleType(name)
    for function in functions:
        setattr(made, function.__name__, function)
    for key, value in attributes.items():
        setattr(made, key, value)
    return made


@hookimpl
def smtp_on_arrival(event: Any, sink_properties: Any) -> None:
    """A module-level hook, as a sink module would define it."""


@hookimpl
def nntp_on_post(event: Any) -> None:
    """A second event for the same module sink."""


class Tagger:
    """A class sink that wants a fresh instance per call and can be bound by CLSID."""

    cacheable = False
    clsid = CLSID
    properties_schema = Schema({"tag": Prop(str, required=True), "count": Prop(int)})

    @hookimpl
    def smtp_on_arrival(self, event: Any, sink_properties: Any, binding: Any) -> None:
        event.message["X-Tag"] = sink_properties["tag"]


class AliasSink:
    @hookimpl
    def smtp_on_transport_submission(self, event: Any) -> None:
        """The old name of OnArrival."""


class AsyncSink:
    @hookimpl
    async def smtp_store_driver(self, event: Any) -> None:
        """Awaited by the dispatcher."""


class Misspelt:
    @hookimpl
    def smtp_on_arival(self, event: Any) -> None:
        """One r short: pluggy's check_pending catches it."""


class UnknownArgument:
    @hookimpl
    def smtp_on_arrival(self, evnt: Any) -> None:
        """No hookspec passes ``evnt``."""


class Wrapper:
    @hookimpl(wrapper=True)
    def smtp_on_arrival(self, event: Any) -> Any:
        return (yield)


class OldStyleWrapper:
    @hookimpl(hookwrapper=True)
    def smtp_on_arrival(self, event: Any) -> Any:
        yield


class NoHooks:
    def smtp_on_arrival(self, event: Any) -> None:
        """Not marked with hookimpl, so it is not a hook."""


class BadClsid:
    clsid = "not-a-guid"

    @hookimpl
    def smtp_on_arrival(self, event: Any) -> None: ...


class BadCacheable:
    cacheable = "no"

    @hookimpl
    def smtp_on_arrival(self, event: Any) -> None: ...


class InstanceValidator:
    @hookimpl
    def smtp_on_arrival(self, event: Any) -> None: ...

    def validate_properties(self, properties: Mapping[str, PropertyValue]) -> None:
        """Needs an instance, which seo does not have when a binding is written."""


class Validated:
    @hookimpl
    def smtp_on_arrival(self, event: Any) -> None: ...

    @staticmethod
    def validate_properties(properties: Mapping[str, PropertyValue]) -> None:
        if "mode" in properties and properties["mode"] not in ("fast", "safe"):
            raise ValueError("mode must be fast or safe")
        if "crash" in properties:
            raise RuntimeError("validator bug")


def registry(**sinks: object) -> SinkRegistry:
    return SinkRegistry.from_objects(sinks)


def binding(
    sink_class: str, event: str = "OnArrival", source: str = "smtp/1", **props: PropertyValue
) -> Binding:
    return Binding(
        id=BINDING_ID,
        source=source,
        event=event,
        sink_class=sink_class,
        sink_properties=PropertyBag(props),
    )


def test_plugin_manager_is_fresh_and_knows_every_hook_of_the_catalogue() -> None:
    first, second = make_plugin_manager(), make_plugin_manager()
    assert first is not second
    assert set(hook_names()) <= set(vars(first.hook))


class TestValidation:
    @pytest.mark.parametrize(
        ("target", "hooks", "events"),
        [
            (
                module("probe_module", smtp_on_arrival, nntp_on_post),
                ("nntp_on_post", "smtp_on_arrival"),
                ("OnArrival", "OnPost"),
            ),
            (Tagger, ("smtp_on_arrival",), ("OnArrival",)),
            (AliasSink, ("smtp_on_transport_submission",), ("OnArrival",)),
            (AsyncSink, ("smtp_store_driver",), ("StoreDriver",)),
        ],
        ids=["module", "class", "alias-hook", "async"],
    )
    def test_a_valid_sink_lists_its_hooks_and_canonical_events(
        self, target: object, hooks: tuple[str, ...], events: tuple[str, ...]
    ) -> None:
        (info,) = registry(probe=target).sinks
        assert info.status is SinkStatus.OK, info.error
        assert (info.hooks, info.events, info.error) == (hooks, events, None)
        assert info.target is target

    def test_a_class_sink_declares_cacheable_and_clsid_in_registry_form(self) -> None:
        (info,) = registry(tagger=Tagger).sinks
        assert info.cacheable is False
        assert info.clsid == CLSID.lower()
        assert info.value == "tests.test_registry:Tagger"
        assert info.location.endswith("test_registry.py")

    def test_defaults_are_cacheable_and_no_clsid(self) -> None:
        (info,) = registry(probe=module("probe_module", smtp_on_arrival)).sinks
        assert (info.cacheable, info.clsid, info.conflicts) == (True, None, ())
        assert info.qualified_name == "test-sinks:probe"

    @pytest.mark.parametrize(
        ("target", "error"),
        [
            (
                Misspelt,
                "PluginValidationError: unknown hook 'smtp_on_arival' "
                "(did you mean 'smtp_on_arrival'?)",
            ),
            (UnknownArgument, "Argument(s) {'evnt'} are declared in the hookimpl"),
            (Wrapper, "smtp_on_arrival: sinks cannot wrap the dispatcher's calls"),
            (OldStyleWrapper, "smtp_on_arrival: sinks cannot wrap the dispatcher's calls"),
            (NoHooks, "PluginValidationError: implements no seo hook"),
            (BadClsid, "ValidationError: clsid 'not-a-guid': not a GUID"),
            (BadCacheable, "TypeError: cacheable must be True or False, not 'no'"),
            (InstanceValidator, "validate_properties of a class sink must be a staticmethod"),
        ],
        ids=[
            "misspelt-hook",
            "unknown-argument",
            "wrapper",
            "hookwrapper",
            "no-hooks",
            "bad-clsid",
            "bad-cacheable",
            "instance-validator",
        ],
    )
    def test_a_broken_sink_is_recorded_failed_and_logged_once(
        self, target: object, error: str
    ) -> None:
        with capture_logs() as logs:
            (info,) = registry(broken=target).sinks
        assert info.status is SinkStatus.FAILED
        assert info.error is not None
        assert error in info.error
        assert "\n" not in info.error
        assert logs == [
            {
                "event": "sink_load_failed",
                "log_level": "info",
                "sink": "broken",
                "distribution": "test-sinks",
                "error": info.error,
            }
        ]

    def test_a_failed_sink_leaves_the_others_usable(self) -> None:
        sinks = registry(broken=Misspelt, tagger=Tagger)
        assert [(s.name, s.status) for s in sinks.sinks] == [
            ("broken", SinkStatus.FAILED),
            ("tagger", SinkStatus.OK),
        ]
        assert sinks.resolve("tagger").target is Tagger

    @pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit], ids=lambda e: e.__name__)
    def test_ctrl_c_and_exit_are_not_recorded_as_failures(
        self, interrupt: type[BaseException]
    ) -> None:
        def getattr_(name: str) -> object:
            raise interrupt

        with pytest.raises(interrupt):
            registry(stuck=module("probe_module", smtp_on_arrival, __getattr__=getattr_))

    def test_order_is_by_name_never_by_registration_order(self) -> None:
        names = ["zeta", "alpha", "mid"]
        forward = SinkRegistry.from_objects(dict.fromkeys(names, Tagger))
        backward = SinkRegistry.from_objects(dict.fromkeys(reversed(names), Tagger))
        assert [s.name for s in forward.sinks] == [s.name for s in backward.sinks] == sorted(names)


class TestResolve:
    @pytest.mark.parametrize(
        "sink_class",
        [
            "tagger",
            "test-sinks:tagger",
            "Test_Sinks:tagger",
            "test.sinks:tagger",
            CLSID,
            CLSID.lower(),
            f"  {CLSID}  ",
            f"test-sinks:{CLSID}",
        ],
        ids=[
            "name",
            "qualified",
            "qualified-other-case-and-underscore",
            "qualified-dot",
            "clsid-upper",
            "clsid-lower",
            "clsid-padded",
            "qualified-clsid",
        ],
    )
    def test_a_sink_is_found_by_name_qualified_name_or_clsid(self, sink_class: str) -> None:
        assert registry(tagger=Tagger, other=AliasSink).resolve(sink_class).target is Tagger

    @pytest.mark.parametrize(
        "sink_class",
        ["nothing", "other-dist:tagger", "{11111111-2222-3333-4444-555555555555}", "Tagger"],
        ids=["unknown-name", "wrong-distribution", "unknown-clsid", "name-is-case-sensitive"],
    )
    def test_an_unknown_sink_class_is_not_found(self, sink_class: str) -> None:
        with pytest.raises(SinkNotFoundError, match="no installed sink"):
            registry(tagger=Tagger).resolve(sink_class)

    def test_a_failed_sink_resolves_to_its_recorded_error(self) -> None:
        sinks = registry(broken=UnknownArgument)
        with pytest.raises(SinkLoadError, match="'evnt'") as caught:
            sinks.resolve("broken")
        assert caught.value.reason == sinks.sinks[0].error

    def test_a_failed_sink_still_answers_to_its_clsid(self) -> None:
        class BrokenWithClsid(UnknownArgument):
            clsid = CLSID

        with pytest.raises(SinkLoadError, match="'evnt'"):
            registry(broken=BrokenWithClsid).resolve(CLSID)

    def test_one_clsid_on_two_names_of_the_same_class_is_not_ambiguous(self) -> None:
        assert registry(tagger=Tagger, Tagger=Tagger).resolve(CLSID).name == "Tagger"

    def test_one_clsid_on_two_different_sinks_must_be_bound_by_name(self) -> None:
        class Copy(Tagger):
            pass

        with pytest.raises(SinkError, match=r"several sinks of test-sinks \(copy, tagger\)"):
            registry(tagger=Tagger, copy=Copy).resolve(CLSID)

    def test_a_name_two_distributions_advertise_must_be_qualified(self) -> None:
        first = SinkRegistry.from_objects({"tagger": Tagger}, distribution="seo-sink-a")
        second = SinkRegistry.from_objects({"tagger": AliasSink}, distribution="seo-sink-b")
        both = SinkRegistry([*second.sinks, *first.sinks])

        with pytest.raises(AmbiguousSinkError) as caught:
            both.resolve("tagger")
        message = str(caught.value)
        for expected in ("seo-sink-a", "seo-sink-b", "seo-sink-a:tagger", "seo-sink-b:tagger"):
            assert expected in message
        assert both.resolve("seo-sink-b:tagger").target is AliasSink
        assert [(s.distribution, s.conflicts) for s in both.sinks] == [
            ("seo-sink-a", ("seo-sink-b",)),
            ("seo-sink-b", ("seo-sink-a",)),
        ]

    def test_a_shadowed_copy_is_never_returned(self) -> None:
        (used,) = registry(tagger=Tagger).sinks
        stale = SinkInfo(
            name="tagger",
            distribution="test-sinks",
            version="0.9",
            location="/old/site-packages/test_sinks-0.9.dist-info",
            value="old:Tagger",
            status=SinkStatus.SHADOWED,
        )
        assert SinkRegistry([stale, used]).resolve("tagger") == used
        assert SinkRegistry([stale, used]).sinks[0].conflicts == ()
        with pytest.raises(SinkNotFoundError):
            SinkRegistry([stale]).resolve("test-sinks:tagger")


class TestCheckBinding:
    def test_a_binding_the_sink_can_serve_returns_the_sink(self) -> None:
        info = registry(tagger=Tagger).check_binding(binding("tagger", tag="yes", count=2))
        assert info.target is Tagger

    @pytest.mark.parametrize(
        ("sink", "event"),
        [("tagger", "OnTransportSubmission"), ("alias", "OnArrival"), ("alias", "onarrival")],
        ids=["event-alias", "alias-hook", "event-any-case"],
    )
    def test_aliases_of_an_event_are_the_same_event(self, sink: str, event: str) -> None:
        sinks = registry(tagger=Tagger, alias=AliasSink)
        sinks.check_binding(binding(sink, event, tag="yes"))

    def test_an_event_the_sink_does_not_handle_is_refused_with_what_it_handles(self) -> None:
        sinks = registry(probe=module("probe_module", smtp_on_arrival, nntp_on_post))
        with pytest.raises(SinkError) as caught:
            sinks.check_binding(binding("probe", "StoreDriver"))
        # The sink is installed and loads: this is not the "unavailable" SinkLoadError.
        assert not isinstance(caught.value, SinkLoadError)
        message = str(caught.value)
        for expected in ("probe", "StoreDriver", "smtp_store_driver", "OnArrival, OnPost"):
            assert expected in message

    def test_a_broken_sink_is_refused_with_its_error(self) -> None:
        with pytest.raises(SinkLoadError, match="unknown hook"):
            registry(broken=Misspelt).check_binding(binding("broken"))

    @pytest.mark.parametrize(
        ("props", "field", "reason"),
        [
            ({}, "SinkProperties.tag", "is required"),
            ({"tag": 3}, "SinkProperties.tag", "must be a string"),
            ({"tag": "x", "count": "2"}, "SinkProperties.count", "must be an integer"),
            ({"tag": "x", "cuont": 2}, "SinkProperties.cuont", "did you mean 'count'?"),
        ],
        ids=["missing", "wrong-type", "wrong-type-second", "unknown-name"],
    )
    def test_properties_are_checked_against_the_schema(
        self, props: dict[str, PropertyValue], field: str, reason: str
    ) -> None:
        with pytest.raises(SinkPropertyError, match=reason) as caught:
            registry(tagger=Tagger).check_binding(binding("tagger", **props))
        assert caught.value.field == field

    def test_property_names_match_the_schema_case_insensitively(self) -> None:
        registry(tagger=Tagger).check_binding(binding("tagger", TAG="yes"))

    def test_a_value_error_from_the_validator_refuses_the_properties(self) -> None:
        with pytest.raises(SinkPropertyError, match="mode must be fast or safe") as caught:
            registry(v=Validated).check_binding(binding("v", mode="slow"))
        assert caught.value.field == "SinkProperties"
        registry(v=Validated).check_binding(binding("v", mode="fast"))

    def test_a_module_validator_is_called_too(self) -> None:
        def validate_properties(properties: Mapping[str, PropertyValue]) -> None:
            if not properties:
                raise TypeError("give me something")

        sinks = registry(m=module("probe_module", smtp_on_arrival, validate_properties))
        with pytest.raises(SinkPropertyError, match="give me something"):
            sinks.check_binding(binding("m"))

    def test_a_crashing_validator_is_the_sinks_failure(self) -> None:
        with pytest.raises(SinkLoadError, match="RuntimeError: validator bug"):
            registry(v=Validated).check_binding(binding("v", crash=True))


class TestPathRules:
    """Metadata written by hand, so the sys.path rules are checked without installing."""

    @staticmethod
    def install(site: Path, version: str, module_name: str = "probe_meta") -> Path:
        info = site / f"probe_meta-{version}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: Probe_Meta\nVersion: {version}\n", encoding="utf-8"
        )
        (info / "entry_points.txt").write_text(
            f"[seo.sinks]\nprobe-meta = {module_name}:Sink\n", encoding="utf-8"
        )
        return info

    @pytest.fixture
    def sink_module(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
        code = tmp_path / "code"
        code.mkdir()
        (code / "probe_meta.py").write_text(
            "from seo_core.sdk import hookimpl\n"
            "class Sink:\n"
            "    @hookimpl\n"
            "    def smtp_on_arrival(self, event): ...\n",
            encoding="utf-8",
        )
        monkeypatch.syspath_prepend(str(code))
        yield code
        for name in [m for m in sys.modules if m.startswith("probe_meta")]:
            del sys.modules[name]

    def test_the_first_copy_on_the_path_is_used_and_later_ones_are_shadowed(
        self, tmp_path: Path, sink_module: Path
    ) -> None:
        self.install(tmp_path / "first", "2.0")
        stale = self.install(tmp_path / "second", "1.0")
        with capture_logs() as logs:
            found = SinkRegistry.discover(path=[str(tmp_path / "first"), str(tmp_path / "second")])
        assert [(s.version, s.status) for s in found.sinks] == [
            ("2.0", SinkStatus.OK),
            ("1.0", SinkStatus.SHADOWED),
        ]
        assert found.resolve("probe-meta").version == "2.0"
        (warning,) = found.warnings
        assert str(stale) in warning
        assert [entry["event"] for entry in logs] == ["sink_shadowed"]

    def test_a_folder_listed_twice_is_one_copy(self, tmp_path: Path, sink_module: Path) -> None:
        self.install(tmp_path / "site", "1.0")
        site = str(tmp_path / "site")
        found = SinkRegistry.discover(path=[site, site + "/", site])
        assert [s.status for s in found.sinks] == [SinkStatus.OK]
        assert found.warnings == []

    def test_a_missing_module_fails_that_sink_only(self, tmp_path: Path) -> None:
        self.install(tmp_path / "site", "1.0", module_name="probe_meta_missing")
        with capture_logs() as logs:
            found = SinkRegistry.discover(path=[str(tmp_path / "site")])
        (info,) = found.sinks
        assert info.error == "ModuleNotFoundError: No module named 'probe_meta_missing'"
        assert info.value == "probe_meta_missing:Sink"
        assert len(logs) == 1

    def test_an_interrupt_during_import_is_not_swallowed(
        self, tmp_path: Path, sink_module: Path
    ) -> None:
        (sink_module / "probe_meta_interrupt.py").write_text(
            "raise KeyboardInterrupt\n", encoding="utf-8"
        )
        self.install(tmp_path / "site", "1.0", module_name="probe_meta_interrupt")
        with pytest.raises(KeyboardInterrupt):
            SinkRegistry.discover(path=[str(tmp_path / "site")])

    def test_another_group_is_not_read(self, tmp_path: Path, sink_module: Path) -> None:
        self.install(tmp_path / "site", "1.0")
        assert SinkRegistry.discover("other.group", path=[str(tmp_path / "site")]).sinks == []


class TestListingText:
    """How ``seo sinks list`` words a sink's status and events (the command runs in
    ``test_discovery.py`` against installed packages)."""

    def test_status_says_ok_failed_or_how_to_bind_around_a_conflict(self) -> None:
        first = SinkRegistry.from_objects({"tagger": Tagger}, distribution="seo-sink-a")
        second = SinkRegistry.from_objects({"tagger": Misspelt}, distribution="seo-sink-b")
        ok, failed = SinkRegistry([*first.sinks, *second.sinks]).sinks
        assert status_text(ok) == ("ok (conflict: also in seo-sink-b; bind as seo-sink-a:tagger)")
        assert status_text(failed).startswith(
            "failed: PluginValidationError: unknown hook 'smtp_on_arival'"
        )
        assert status_text(failed).endswith(
            "(conflict: also in seo-sink-a; bind as seo-sink-b:tagger)"
        )

    @pytest.mark.parametrize(
        ("events", "text"),
        [
            ((), "-"),
            (("OnArrival", "OnPost"), "OnArrival, OnPost"),
            (("A", "B", "C", "D", "E", "F"), "A, B, C, +3 more"),
        ],
        ids=["none", "few", "catch-all"],
    )
    def test_events_of_a_catch_all_sink_are_shortened(
        self, events: tuple[str, ...], text: str
    ) -> None:
        assert events_text(events) == text
