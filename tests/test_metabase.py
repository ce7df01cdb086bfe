"""The metabase file: creation, migrations, transactions and change detection."""

from __future__ import annotations

import re
import sqlite3
import stat
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from seo_core.errors import (
    ConflictError,
    MetabaseError,
    NotFoundError,
    SchemaTooNewError,
    UnmadeMetabaseError,
    ValidationError,
)
from seo_core.metabase import BindingSpec, Metabase
from seo_core.metabase.migrations import MIGRATIONS

EST = timezone(timedelta(hours=-5))
TAG = BindingSpec(source="smtp/1", event="OnArrival", sink_class="headers", display_name="Tag")


class TestOpening:
    def test_new_file_is_owner_only_wal_and_fully_migrated(self, metabase_path: Path) -> None:
        with Metabase.open(metabase_path):
            pass
        assert stat.S_IMODE(metabase_path.stat().st_mode) == 0o600
        db = sqlite3.connect(metabase_path)
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        applied = [row[0] for row in db.execute("SELECT name FROM schema_migrations ORDER BY 1")]
        assert applied == [name for name, _ in MIGRATIONS]

    def test_reopening_applies_nothing_twice(self, metabase_path: Path) -> None:
        with Metabase.open(metabase_path) as first:
            first.add_binding(TAG)
            before = first.dump()
        with Metabase.open(metabase_path) as second:
            assert second.dump() == before

    def test_migrates_a_file_from_the_first_schema(self, metabase_path: Path) -> None:
        db = sqlite3.connect(metabase_path, isolation_level=None)
        db.execute("BEGIN")
        from seo_core.metabase.migrations import apply_migrations

        apply_migrations(db, [MIGRATIONS[0]])
        db.execute("INSERT INTO source VALUES ('smtp/1', 'smtp', 1, '{x}', 'smtpsvc 1')")
        db.execute(
            "INSERT INTO binding (id, source, event, sink_class, created_at, updated_at) VALUES "
            "('{00000000-0000-0000-0000-000000000001}', 'smtp/1', 'OnArrival', 'log', 'now', 'now')"
        )
        db.execute("COMMIT")
        db.close()
        with Metabase.open(metabase_path) as metabase:
            assert [b.sink_class for b in metabase.bindings()] == ["log"]
        assert ("binding_stats",) in table_names(metabase_path)

    def test_refuses_a_metabase_from_a_newer_seo(self, metabase_path: Path) -> None:
        with Metabase.open(metabase_path):
            pass
        db = sqlite3.connect(metabase_path)
        db.execute("INSERT INTO schema_migrations VALUES ('999_from_the_future', 'later')")
        db.commit()
        db.close()
        with pytest.raises(SchemaTooNewError, match="999_from_the_future"):
            Metabase.open(metabase_path)

    def test_refuses_a_file_that_is_not_sqlite(self, tmp_path: Path) -> None:
        path = tmp_path / "notes.txt"
        path.write_text("this is not a database, it is a shopping list\n")
        with pytest.raises(MetabaseError, match="not a SQLite database"):
            Metabase.open(path)
        assert path.read_text().startswith("this is not a database")

    @pytest.mark.parametrize("kind", ["empty", "sqlite-without-tables"])
    def test_opening_to_read_leaves_a_file_that_is_not_a_metabase_yet_as_it_was(
        self, tmp_path: Path, kind: str
    ) -> None:
        path = tmp_path / "x.db"
        if kind == "empty":
            path.touch()
            what = "an empty file"
        else:
            db = sqlite3.connect(path)
            db.execute("PRAGMA user_version = 7")  # writes the header page, and no table
            db.close()
            assert path.stat().st_size > 0
            what = "a SQLite database with no tables"
        before = path.read_bytes()
        expected = re.escape(f"not a seo metabase yet ({what})")
        with pytest.raises(UnmadeMetabaseError, match=expected):
            Metabase.open(path, create=False)
        assert path.read_bytes() == before
        assert sorted(p.name for p in tmp_path.iterdir()) == ["x.db"]
        with Metabase.open(path) as metabase:  # a command that writes makes it one
            assert metabase.bindings() == []

    @pytest.mark.parametrize("create", [True, False], ids=["to-write", "to-read"])
    def test_refuses_a_database_of_another_application_and_leaves_it_as_it_was(
        self, tmp_path: Path, create: bool
    ) -> None:
        path = tmp_path / "other.db"
        db = sqlite3.connect(path)
        db.execute("CREATE TABLE t (x)")
        db.execute("CREATE INDEX t_x ON t (x)")
        db.execute("INSERT INTO t VALUES (1)")
        db.commit()
        db.close()
        before = path.read_bytes()
        with pytest.raises(MetabaseError) as caught:
            Metabase.open(path, create=create)
        assert not isinstance(caught.value, UnmadeMetabaseError)  # a dry run must not plan on
        assert str(caught.value) == (
            f"metabase {path}: is a SQLite database that holds other tables (t) and none "
            "of seo's; seo will not add its tables to another application's database: give "
            "the metabase a file of its own"
        )
        assert path.read_bytes() == before
        assert sorted(p.name for p in tmp_path.iterdir()) == ["other.db"]

    def test_refuses_a_missing_folder(self, tmp_path: Path) -> None:
        with pytest.raises(MetabaseError, match="does not exist"):
            Metabase.open(tmp_path / "nowhere" / "seo-metabase.db")


def table_names(path: Path) -> list[tuple[str]]:
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    finally:
        db.close()


class TestBindings:
    def test_add_fills_defaults_and_reads_back(self, metabase: Metabase) -> None:
        added = metabase.add_binding(TAG)
        assert added.id.startswith("{")
        assert added.id.endswith("}")
        assert added.id == added.id.lower()
        assert added.enabled
        assert added.max_firings == 0
        assert added.fire_count == 0
        assert added.priority == 24575
        assert added.rule == ""
        assert metabase.binding(added.id) == added
        assert metabase.binding(("smtp/1", "onarrival", "Tag")) == added

    def test_source_comes_into_being_when_first_named(self, metabase: Metabase) -> None:
        metabase.add_binding(BindingSpec(source="smtp/2", event="OnArrival", sink_class="log"))
        (source,) = metabase.sources()
        assert (source.name, source.display_name) == ("smtp/2", "smtpsvc 2")
        assert source.id == metabase.ensure_source("smtp/2").id

    def test_given_id_is_accepted_without_braces_in_any_case(self, metabase: Metabase) -> None:
        spec = BindingSpec(
            source="smtp/1",
            event="OnArrival",
            sink_class="log",
            id="6F1C2B2E-8F7D-4A53-9D1E-0C6A4B7E2F10",
        )
        added = metabase.add_binding(spec)
        assert added.id == "{6f1c2b2e-8f7d-4a53-9d1e-0c6a4b7e2f10}"
        assert metabase.binding("{6F1C2B2E-8F7D-4A53-9D1E-0C6A4B7E2F10}").id == added.id

    def test_transport_submission_is_stored_as_on_arrival(self, metabase: Metabase) -> None:
        added = metabase.add_binding(
            BindingSpec(source="smtp/1", event="ontransportsubmission", sink_class="log")
        )
        assert added.event == "OnArrival"

    def test_duplicate_display_name_is_refused_and_nothing_written(
        self, metabase: Metabase
    ) -> None:
        metabase.add_binding(TAG)
        before = metabase.dump()
        with pytest.raises(ConflictError, match="'Tag' is already used"):
            metabase.add_binding(TAG)
        assert metabase.dump() == before

    def test_display_names_are_case_sensitive_and_per_event(self, metabase: Metabase) -> None:
        metabase.add_binding(TAG)
        metabase.add_binding(replace(TAG, display_name="tag"))
        metabase.add_binding(replace(TAG, event="OnPreCategorize"))
        assert len(metabase.bindings()) == 3

    def test_properties_match_case_insensitively_and_keep_their_case(
        self, metabase: Metabase
    ) -> None:
        added = metabase.add_binding(replace(TAG, sink_properties={"ArchiveLocation": "/var/a"}))
        assert added.sink_properties["archivelocation"] == "/var/a"
        changed = metabase.set_property(added.id, "sink", "ARCHIVELOCATION", "/var/b")
        assert changed.sink_properties.to_dict() == {"ARCHIVELOCATION": "/var/b"}
        changed = metabase.delete_property(added.id, "sink", "archiveLocation")
        assert changed.sink_properties.to_dict() == {}

    def test_priority_names_are_stored_as_numbers(self, metabase: Metabase) -> None:
        added = metabase.add_binding(replace(TAG, source_properties={"priority": "prio_high"}))
        assert added.priority == 8191
        assert added.source_properties.to_dict() == {"priority": 8191}

    @pytest.mark.parametrize(
        ("change", "field"),
        [
            ({"id": "{not-a-guid}"}, "ID"),
            ({"display_name": "{starts with a brace"}, "DisplayName"),
            ({"event": "OnLunch"}, "event"),
            ({"source": "smtp/0"}, "source"),
            ({"source": "ftp/1"}, "source type"),
            ({"source_properties": {"Priority": 40000}}, "Priority"),
            ({"source_properties": {"Priority": "PRIO_BOGUS"}}, "Priority"),
            ({"source_properties": {"Rule": "mail from"}}, "Rule"),
            ({"binding_properties": {"Timeout": -1}}, "Timeout"),
            ({"max_firings": -2}, "MaxFirings"),
            ({"sink_properties": {"a": 1, "A": 2}}, "SinkProperties.A"),
            ({"max_firings": 2**63}, "MaxFirings"),
            ({"max_firings": 10**23}, "MaxFirings"),
            ({"expiration": datetime(9999, 12, 31, 23, 59, 59, tzinfo=EST)}, "Expiration"),
            ({"expiration": datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5)))}, "Expiration"),
            ({"display_name": "Multi\nline"}, "DisplayName"),
            ({"display_name": "A\x01ctl"}, "DisplayName"),
            ({"display_name": "Del\x7f"}, "DisplayName"),
            ({"display_name": "Next\x85line"}, "DisplayName"),
            ({"display_name": "Line\u2028separator"}, "DisplayName"),
        ],
        ids=[
            "guid",
            "brace-name",
            "event",
            "instance-0",
            "source-type",
            "priority-range",
            "priority-name",
            "rule",
            "timeout",
            "max-firings",
            "duplicate-prop",
            "max-firings-past-sqlite",
            "max-firings-huge",
            "expiration-past-year-9999-in-utc",
            "expiration-before-year-1-in-utc",
            "name-with-newline",
            "name-with-c0",
            "name-with-del",
            "name-with-c1",
            "name-with-line-separator",
        ],
    )
    def test_invalid_specs_name_the_field_and_write_nothing(
        self, metabase: Metabase, change: dict[str, object], field: str
    ) -> None:
        before = metabase.dump()
        with pytest.raises(ValidationError) as caught:
            metabase.add_binding(replace(TAG, **change))  # type: ignore[arg-type]
        assert caught.value.field.endswith(field)
        assert metabase.dump() == before

    @pytest.mark.parametrize(
        ("change", "message"),
        [
            (
                {"max_firings": 2**63},
                "MaxFirings 9223372036854775808: out of range "
                "0..9223372036854775807 (0 = unlimited)",
            ),
            (
                {"expiration": datetime(9999, 12, 31, 23, 59, 59, tzinfo=EST)},
                "Expiration 9999-12-31T23:59:59-05:00: out of range "
                "0001-01-01T00:00:00Z..9999-12-31T23:59:59Z (in UTC, as it is stored)",
            ),
            (
                {"display_name": "Multi\nline"},
                'DisplayName: "Multi\\nline" holds a control character, \\n (U+000A), at '
                "character 6; a DisplayName must print on one line",
            ),
            (
                {"display_name": "Next\x85line"},
                'DisplayName: "Next\\u0085line" holds a control character, \\u0085 (U+0085), '
                "at character 5; a DisplayName must print on one line",
            ),
        ],
        ids=["max-firings", "expiration", "name-newline", "name-c1"],
    )
    def test_out_of_range_values_say_the_range_on_one_line(
        self, metabase: Metabase, change: dict[str, object], message: str
    ) -> None:
        with pytest.raises(ValidationError) as caught:
            metabase.add_binding(replace(TAG, **change))  # type: ignore[arg-type]
        assert str(caught.value) == message
        assert caught.value.value == next(iter(change.values()))

    @pytest.mark.parametrize(
        "change",
        [
            {"max_firings": 2**63 - 1},
            {"expiration": datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)},
            {"expiration": datetime(9999, 12, 31, 18, 59, 59, tzinfo=EST)},
            {"expiration": datetime(1, 1, 1, tzinfo=UTC)},
            {"display_name": "Ünïcode ok\u00a0too"},
        ],
        ids=["max-firings", "latest-utc", "latest-est", "earliest", "printable-name"],
    )
    def test_the_ends_of_the_ranges_are_stored_and_read_back(
        self, metabase: Metabase, change: dict[str, object]
    ) -> None:
        added = metabase.add_binding(replace(TAG, **change))  # type: ignore[arg-type]
        assert metabase.binding(added.id) == added
        ((field, value),) = change.items()
        assert getattr(added, "expiration" if field == "expiration" else field) == value

    def test_remove_deletes_properties_too(self, metabase: Metabase) -> None:
        added = metabase.add_binding(replace(TAG, sink_properties={"tag": "yes"}))
        metabase.remove_binding(added.id)
        assert metabase.bindings() == []
        assert not [row for row in metabase.dump() if row[0] == "binding_property"]
        with pytest.raises(NotFoundError):
            metabase.binding(added.id)

    def test_replace_keeps_fire_count_unless_max_firings_changes(
        self, metabase: Metabase, metabase_path: Path
    ) -> None:
        added = metabase.add_binding(replace(TAG, max_firings=5))
        db = sqlite3.connect(metabase_path)
        db.execute("UPDATE binding SET fire_count = 2")
        db.commit()
        db.close()
        same = metabase.replace_binding(added.id, replace(TAG, max_firings=5))
        assert same.fire_count == 2
        reset = metabase.replace_binding(added.id, replace(TAG, max_firings=9))
        assert reset.fire_count == 0

    def test_expiration_needs_a_zone_and_round_trips(self, metabase: Metabase) -> None:
        when = datetime(2027, 1, 31, 18, 0, tzinfo=UTC)
        added = metabase.add_binding(replace(TAG, expiration=when))
        assert metabase.binding(added.id).expiration == when
        assert added.is_expired(when + timedelta(seconds=1))
        with pytest.raises(ValidationError, match="time zone"):
            metabase.add_binding(replace(TAG, display_name="x", expiration=datetime(2027, 1, 1)))

    def test_listing_is_in_priority_then_id_order(self, metabase: Metabase) -> None:
        for guid, priority in [
            ("{00000000-0000-0000-0000-00000000000b}", 10),
            ("{00000000-0000-0000-0000-00000000000a}", 10),
            ("{00000000-0000-0000-0000-000000000001}", 20),
            ("{00000000-0000-0000-0000-000000000002}", 0),
        ]:
            metabase.add_binding(
                BindingSpec(
                    source="smtp/1",
                    event="OnArrival",
                    sink_class="log",
                    id=guid,
                    source_properties={"Priority": priority},
                )
            )
        assert [b.id[-3:-1] for b in metabase.bindings("smtp/1", "OnArrival")] == [
            "02",
            "0a",
            "0b",
            "01",
        ]


class TestChangeDetection:
    def test_every_change_moves_the_generation(self, metabase: Metabase) -> None:
        seen = [metabase.generation()]
        added = metabase.add_binding(TAG)
        seen.append(metabase.generation())
        metabase.set_enabled(added.id, False)
        seen.append(metabase.generation())
        metabase.set_property(added.id, "source", "Priority", 1)
        seen.append(metabase.generation())
        metabase.remove_binding(added.id)
        seen.append(metabase.generation())
        assert seen == sorted(set(seen))

    def test_a_refused_change_does_not_move_it(self, metabase: Metabase) -> None:
        metabase.add_binding(TAG)
        before = metabase.generation()
        with pytest.raises(ConflictError):
            metabase.add_binding(TAG)
        assert metabase.generation() == before

    def test_data_version_moves_when_another_connection_commits(
        self, metabase: Metabase, metabase_path: Path
    ) -> None:
        before = metabase.data_version()
        assert metabase.data_version() == before
        with Metabase.open(metabase_path) as other:
            other.add_binding(TAG)
        assert metabase.data_version() != before

    def test_every_change_writes_a_new_stamp_and_a_change_of_nothing_none(
        self, metabase: Metabase
    ) -> None:
        assert metabase.change_mark() == (0, None)
        added = metabase.add_binding(TAG)
        marks = [metabase.change_mark()]
        metabase.set_enabled(added.id, False)
        marks.append(metabase.change_mark())
        metabase.set_enabled(added.id, False)  # already disabled: nothing changes
        assert metabase.change_mark() == marks[-1]
        metabase.set_enabled(added.id, True)
        marks.append(metabase.change_mark())
        assert [generation for generation, _ in marks] == [1, 2, 3]
        assert len({stamp for _, stamp in marks}) == 3
        assert all(stamp is not None for _, stamp in marks)
        assert metabase.generation() == 3

    def test_a_transaction_groups_changes(self, metabase: Metabase) -> None:
        def add_twice() -> None:
            with metabase.transaction():
                metabase.add_binding(TAG)
                metabase.add_binding(TAG)

        with pytest.raises(ConflictError):
            add_twice()
        assert metabase.bindings() == []
