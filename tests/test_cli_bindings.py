"""``seo bindings`` and ``seo sources``: every verb through a real metabase file."""

from __future__ import annotations

import json
import os
import shlex
import sqlite3
import stat
import tempfile
from pathlib import Path

import pytest

from seo_core.metabase import BindingRef, Metabase
from tests.conftest import RunSeo, run_process

GUID = "{6f1c2b2e-8f7d-4a53-9d1e-0c6a4b7e2f10}"
OTHER_GUID = "{6f1c2b2e-8f7d-4a53-9d1e-0c6a4b7e2f11}"


def dump(path: Path) -> list[tuple[object, ...]]:
    with Metabase.open(path) as metabase:
        return metabase.dump()


def add_tag(seo: RunSeo, *extra: str) -> dict[str, object]:
    result = seo(
        "bindings",
        "add",
        "smtp/1",
        "OnArrival",
        "Tag mail",
        "example-tagger",
        "--allow-missing",
        *extra,
    )
    assert result.exit_code == 0, result.output
    shown = seo("bindings", "show", "smtp/1", "OnArrival", "Tag mail", "--json")
    assert shown.exit_code == 0, shown.output
    data: dict[str, object] = json.loads(shown.output)
    return data


class TestVerbs:
    def test_add_prints_what_it_added_and_show_returns_every_field(self, seo: RunSeo) -> None:
        result = seo(
            "bindings",
            "add",
            "smtp/1",
            "onarrival",
            "Tag mail",
            "example-tagger",
            "--allow-missing",
            "--rule",
            "mail from=*@example.com",
            "--priority",
            "PRIO_HIGH",
            "--id",
            GUID.upper(),
            "--max-firings",
            "3",
            "--expires",
            "2030-01-01T00:00:00+00:00",
            "--sink-prop",
            "tag=yes",
            "--sink-prop",
            "count=2",
            "--binding-prop",
            "Timeout=10",
            "--binding-prop",
            "Extra=[1, 2]",
        )
        assert result.exit_code == 0, result.output
        assert result.output.startswith(
            f"added {GUID} smtp/1 OnArrival 'Tag mail' -> example-tagger"
        )
        shown = json.loads(seo("bindings", "show", GUID, "--json").output)
        assert shown == {
            "id": GUID,
            "source": "smtp/1",
            "event": "OnArrival",
            "display_name": "Tag mail",
            "sink_class": "example-tagger",
            "enabled": True,
            "priority": 8191,
            "rule": "mail from=*@example.com",
            "max_firings": 3,
            "fire_count": 0,
            "expiration": "2030-01-01T00:00:00+00:00",
            "binding_properties": {"Timeout": 10, "Extra": [1, 2]},
            "sink_properties": {"tag": "yes", "count": 2},
            "source_properties": {
                "Rule": "mail from=*@example.com",
                "Priority": 8191,
            },
            "origin": None,
            "stats": {
                "notifications": 0,
                "failures": 0,
                "timeouts": 0,
                "last_error": None,
                "last_fired": None,
            },
        }

    def test_show_as_text_lists_the_bags(self, seo: RunSeo) -> None:
        add_tag(seo, "--sink-prop", "tag=yes")
        result = seo("bindings", "show", "smtp/1", "OnArrival", "Tag mail")
        assert result.exit_code == 0
        assert "SinkProperties:\n  tag = yes\n" in result.output
        assert "Rule           (none: every event)" in result.output

    def test_list_in_firing_order_as_table_and_json(self, seo: RunSeo) -> None:
        add_tag(seo, "--priority", "20")
        assert (
            seo(
                "bindings", "add", "smtp/1", "OnArrival", "First", "log", "--priority", "10"
            ).exit_code
            == 0
        )
        assert seo("bindings", "add", "smtp/2", "OnArrival", "Other", "log").exit_code == 0
        table = seo("bindings", "list", "smtp/1").output.splitlines()
        assert table[0].split() == [
            "ID",
            "SOURCE",
            "EVENT",
            "PRIO",
            "ENABLED",
            "NAME",
            "SINK",
            "RULE",
        ]
        assert [line.split()[1:4] for line in table[1:]] == [
            ["smtp/1", "OnArrival", "10"],
            ["smtp/1", "OnArrival", "20"],
        ]
        listed = json.loads(seo("bindings", "list", "--json").output)
        assert [b["display_name"] for b in listed] == ["First", "Tag mail", "Other"]
        only = json.loads(
            seo("bindings", "list", "smtp/1", "OnTransportSubmission", "--json").output
        )
        assert [b["display_name"] for b in only] == ["First", "Tag mail"]

    def test_enable_disable_keep_the_rest(self, seo: RunSeo) -> None:
        before = add_tag(seo)
        result = seo("bindings", "disable", "smtp/1", "OnArrival", "Tag mail")
        assert result.output.startswith("disabled ")
        assert json.loads(seo("bindings", "show", str(before["id"]), "--json").output) == {
            **before,
            "enabled": False,
        }
        assert seo("bindings", "enable", str(before["id"])).exit_code == 0
        assert json.loads(seo("bindings", "show", str(before["id"]), "--json").output) == before

    def test_set_prop_and_del_prop_in_each_bag(self, seo: RunSeo) -> None:
        binding = add_tag(seo)
        ref = str(binding["id"])
        assert (
            seo("bindings", "set-prop", ref, "sink", "ArchiveLocation", "/srv/archive").exit_code
            == 0
        )
        assert seo("bindings", "set-prop", ref, "SOURCE", "priority", "PRIO_LOWEST").exit_code == 0
        assert (
            seo(
                "bindings",
                "set-prop",
                "smtp/1",
                "OnArrival",
                "Tag mail",
                "binding",
                "Timeout",
                "2.5",
            ).exit_code
            == 0
        )
        shown = json.loads(seo("bindings", "show", ref, "--json").output)
        assert shown["sink_properties"] == {"ArchiveLocation": "/srv/archive"}
        assert shown["priority"] == 32767
        assert shown["binding_properties"] == {"Timeout": 2.5}
        result = seo("bindings", "del-prop", ref, "sink", "archivelocation")
        assert result.exit_code == 0, result.output
        assert json.loads(seo("bindings", "show", ref, "--json").output)["sink_properties"] == {}

    @pytest.mark.parametrize(
        ("bag", "key", "typed", "shown"),
        [
            ("source", "Rule", "mail from=*@example.org", 'Rule = "mail from=*@example.org"'),
            ("source", "Priority", "100", "Priority = 100"),
            ("source", "priority", "PRIO_HIGH", "priority = 8191"),
            ("sink", "Words", '["a", "b"]', 'Words = ["a", "b"]'),
            ("sink", "On", "true", "On = true"),
            ("sink", "My Tag", '{ add = "it\'s" }', '"My Tag" = { add = "it\'s" }'),
            ("binding", "Timeout", "2.5", "Timeout = 2.5"),
        ],
        ids=["rule", "priority", "priority-name", "list", "boolean", "table", "float"],
    )
    def test_set_prop_prints_the_stored_value_as_a_toml_literal(
        self, seo: RunSeo, bag: str, key: str, typed: str, shown: str
    ) -> None:
        binding = add_tag(seo)
        result = seo("bindings", "set-prop", "smtp/1", "OnArrival", "Tag mail", bag, key, typed)
        assert result.exit_code == 0, result.output
        assert result.stdout == (
            f"set {bag} property {shown} on {binding['id']} smtp/1 OnArrival 'Tag mail' "
            "-> example-tagger\n"
        )

    def test_remove(self, seo: RunSeo) -> None:
        binding = add_tag(seo)
        result = seo("bindings", "remove", "smtp/1", "OnArrival", "Tag mail")
        assert result.output.startswith(f"removed {binding['id']}")
        assert json.loads(seo("bindings", "list", "--json").output) == []

    def test_sources_list(self, seo: RunSeo) -> None:
        add_tag(seo)
        seo("bindings", "add", "nntp/3", "OnPost", "Moderate", "log")
        listed = json.loads(seo("sources", "list", "--json").output)
        assert [(s["name"], s["display_name"], s["bindings"]) for s in listed] == [
            ("nntp/3", "nntpsvc 3", 1),
            ("smtp/1", "smtpsvc 1", 1),
        ]
        assert "smtp/1" in seo("sources", "list").output

    def test_suffix_rule_is_accepted_with_a_warning(self, seo: RunSeo) -> None:
        result = seo(
            "bindings",
            "add",
            "smtp/1",
            "OnArrival",
            "Suffix",
            "log",
            "--rule",
            "rcpt to=*@*example.com",
        )
        assert result.exit_code == 0
        assert "seo: warning:" in result.stderr
        assert "notexample.com" in result.stderr


class TestSinkChecks:
    def test_a_sink_that_is_not_installed_is_refused(
        self, seo: RunSeo, metabase_path: Path
    ) -> None:
        result = seo("bindings", "add", "smtp/1", "OnArrival", "Ghost", "no-such-sink")
        assert result.exit_code == 1
        assert "SinkClass 'no-such-sink': no installed sink" in result.stderr
        assert json.loads(seo("bindings", "list", "--json").output) == []

    def test_reading_a_metabase_that_does_not_exist_is_an_error(
        self, seo: RunSeo, metabase_path: Path
    ) -> None:
        result = seo("bindings", "list")
        assert result.exit_code == 1
        assert result.stderr == f"seo: error: metabase {metabase_path}: does not exist\n"
        assert not metabase_path.exists()

    @pytest.mark.parametrize(
        "command",
        [
            ["bindings", "list"],
            ["bindings", "show", GUID],
            ["explain", "smtp/1", "OnArrival"],
            ["sources", "list"],
            ["config", "export"],
        ],
        ids=["list", "show", "explain", "sources-list", "config-export"],
    )
    def test_reading_an_empty_file_leaves_it_empty(
        self, tmp_path: Path, seo_exe: str, command: list[str]
    ) -> None:
        empty = tmp_path / "empty.db"
        empty.touch()
        result = run_process(seo_exe, "--metabase", str(empty), *command)
        assert result.returncode == 1
        assert result.stderr == (
            f"seo: error: metabase {empty}: not a seo metabase yet (an empty file); a command "
            "that changes bindings (`seo bindings add`, `seo config apply`) makes it one\n"
        )
        assert empty.stat().st_size == 0
        assert [p.name for p in tmp_path.iterdir()] == ["empty.db"]

    def test_allow_missing_stores_it_and_explain_shows_it_unavailable(self, seo: RunSeo) -> None:
        result = seo(
            "bindings", "add", "smtp/1", "OnArrival", "Ghost", "no-such-sink", "--allow-missing"
        )
        assert result.exit_code == 0, result.output
        explained = json.loads(seo("explain", "smtp/1", "OnArrival", "--json").output)
        assert [(e["display_name"], e["fires"]) for e in explained] == [("Ghost", False)]
        assert explained[0]["reason"].startswith("sink unavailable: SinkClass 'no-such-sink'")

    def test_a_mistyped_required_property_is_named_as_the_typo(self, seo: RunSeo) -> None:
        args = ("bindings", "add", "smtp/1", "StoreDriver", "Mail", "maildir")
        typo = seo(*args, "--sink-prop", "rot=var/mail")
        assert typo.exit_code == 1
        assert "SinkProperties.rot 'var/mail': unknown property (did you mean 'root'?)" in (
            typo.stderr
        )
        missing = seo(*args)
        assert missing.exit_code == 1
        assert "seo: error: SinkProperties.root: is required (folder holding" in missing.stderr

    def test_the_sink_validates_its_properties(self, seo: RunSeo) -> None:
        result = seo(
            "bindings",
            "add",
            "smtp/1",
            "OnArrival",
            "Audit",
            "log",
            "--sink-prop",
            "Flie=audit.jsonl",
        )
        assert result.exit_code == 1
        assert "SinkProperties.Flie" in result.stderr
        assert "did you mean 'File'" in result.stderr
        assert (
            seo(
                "bindings",
                "add",
                "smtp/1",
                "OnArrival",
                "Audit",
                "log",
                "--sink-prop",
                "File=audit.jsonl",
            ).exit_code
            == 0
        )
        refused = seo(
            "bindings",
            "set-prop",
            "smtp/1",
            "OnArrival",
            "Audit",
            "sink",
            "Fields",
            '["time", "bogus"]',
        )
        assert refused.exit_code == 1
        assert "unknown field bogus" in refused.stderr

    def test_explain_gives_order_and_reasons(self, seo: RunSeo) -> None:
        for args in (
            ("First", "--priority", "1", "--rule", "mail from=*@example.com"),
            ("Second", "--priority", "2"),
            ("Off", "--disabled"),
            ("Other sender", "--rule", "mail from=*@other.example"),
        ):
            assert (
                seo("bindings", "add", "smtp/1", "OnArrival", args[0], "log", *args[1:]).exit_code
                == 0
            )
        result = seo("explain", "smtp/1", "OnTransportSubmission", "--mail-from", "a@example.com")
        rows = [line.split()[:2] for line in result.output.splitlines()[1:]]
        assert rows == [["1", "yes"], ["2", "yes"], ["-", "no"], ["-", "no"]]
        assert "disabled" in result.output
        assert "rule does not match: mail from=*@other.example" in result.output


class TestHints:
    def test_a_misspelt_event_gets_a_suggestion(self, seo: RunSeo) -> None:
        result = seo("bindings", "add", "smtp/1", "OnArival", "X", "log")
        assert result.exit_code == 1
        assert "event 'OnArival': not an event of smtp sources (did you mean 'OnArrival'?)" in (
            result.stderr
        )

    def test_a_negative_value_reaches_the_range_check(self, seo: RunSeo) -> None:
        add_tag(seo)
        result = seo(
            "bindings", "set-prop", "smtp/1", "OnArrival", "Tag mail", "source", "Priority", "-5"
        )
        assert result.exit_code == 1
        assert "Priority -5: out of range 0..32767" in result.stderr


class TestBadInput:
    """Each refusal names what is wrong, exits 1 (usage: 2) and leaves the file as it was."""

    @pytest.mark.parametrize(
        ("args", "code", "message"),
        [
            (
                ["bindings", "add", "smtp/1", "OnArrival", "X", "log", "--id", "{1234}"],
                1,
                "ID '{1234}': not a GUID",
            ),
            (
                ["bindings", "add", "smtp/1", "OnArrival", "Tag mail", "log"],
                1,
                "DisplayName 'Tag mail' is already used",
            ),
            (
                ["bindings", "add", "smtp/1", "OnLunch", "X", "log"],
                1,
                "event 'OnLunch': not an event of smtp sources",
            ),
            (
                ["bindings", "add", "smtp/1", "OnArrival", "X", "log", "--priority", "40000"],
                1,
                "Priority 40000: out of range 0..32767",
            ),
            (
                ["bindings", "add", "smtp/1", "OnArrival", "X", "log", "--priority", "PRIO_BOGUS"],
                1,
                "Priority 'PRIO_BOGUS'",
            ),
            (
                ["bindings", "add", "smtp/1", "OnArrival", "X", "log", "--rule", "mail from"],
                1,
                "Rule 'mail from'",
            ),
            (
                ["bindings", "add", "smtp/1", "OnArrival", "X", "log", "--sink-prop", "novalue"],
                1,
                "--sink-prop 'novalue': expected KEY=VALUE",
            ),
            (
                ["bindings", "add", "smtp/1", "OnArrival", "X", "log", "--expires", "soon"],
                1,
                "--expires 'soon'",
            ),
            (["bindings", "add", "smtp/1", "OnArrival", "{X", "log"], 1, "DisplayName '{X'"),
            (
                ["bindings", "show", "{6f1c2b2e-8f7d-4a53-9d1e-0c6a4b7e2f11}"],
                1,
                "no binding {6f1c2b2e-8f7d-4a53-9d1e-0c6a4b7e2f11}",
            ),
            (["bindings", "show", "smtp/1", "OnArrival"], 2, "expected a binding GUID"),
            (
                ["bindings", "set-prop", "smtp/1", "OnArrival", "Tag mail", "bogus", "k", "v"],
                2,
                "bag must be one of",
            ),
            (
                ["bindings", "del-prop", "smtp/1", "OnArrival", "Tag mail", "sink", "missing"],
                1,
                "no sink property 'missing'",
            ),
            (
                ["bindings", "add", "smtp/1", "OnArrival", "X", "log", "--max-firings", "-1"],
                2,
                "--max-firings",
            ),
            (
                ["bindings", "add", "smtp/1", "OnArrival", "X", "log", "--priority", "true"],
                1,
                "Priority true: must be an integer",
            ),
            (
                shlex.split("bindings add smtp/1 OnArrival X log --binding-prop Timeout=true"),
                1,
                "EventBindingProperties.Timeout true: must be a number of seconds",
            ),
            (
                shlex.split(
                    "bindings set-prop smtp/1 OnArrival 'Tag mail' binding Timeout '[1.5]'"
                ),
                1,
                "EventBindingProperties.Timeout [1.5]: must be",
            ),
            (
                shlex.split("bindings add smtp/1 OnArrival X log --source-prop Priorty=5"),
                1,
                "SourceProperties.Priorty 5: unknown property (did you mean 'Priority'?); "
                "sources read only: Rule, Priority",
            ),
            (
                shlex.split("bindings add smtp/1 OnArrival X log --source-prop Color=red"),
                1,
                "SourceProperties.Color 'red': unknown property; sources read only: Rule, Priority",
            ),
            (
                shlex.split("bindings add smtp/1 OnArrival X log --binding-prop Timeot=5"),
                1,
                "EventBindingProperties.Timeot 5: unknown property (did you mean 'Timeout'?)",
            ),
            (
                shlex.split(
                    "bindings set-prop smtp/1 OnArrival 'Tag mail' source Rulle 'mail from=*'"
                ),
                1,
                "SourceProperties.Rulle 'mail from=*': unknown property (did you mean 'Rule'?)",
            ),
            (
                shlex.split("bindings set-prop smtp/1 OnArrival 'Tag mail' binding timout 5"),
                1,
                "EventBindingProperties.timout 5: unknown property (did you mean 'Timeout'?)",
            ),
            (
                ["bindings", "add", "smtp/1", "OnArrival", "", "log"],
                1,
                "NAME '': must not be empty; it is the binding's DisplayName",
            ),
            (
                ["bindings", "add", "smtp/1", "OnArrival", "  ", "log"],
                1,
                "NAME '  ': must not be empty",
            ),
            *[
                (
                    ["bindings", "add", "smtp/1", "OnArrival", "X", "log", "--expires", when],
                    1,
                    f"seo: error: --expires '{when}': out of range "
                    "0001-01-01T00:00:00Z..9999-12-31T23:59:59Z (in UTC, as it is stored)\n",
                )
                for when in (
                    "+99999999999d",
                    "+3000000d",
                    "9999-12-31T23:59:59-05:00",
                    "0001-01-01T00:00:00+05:00",
                )
            ],
            (
                shlex.split(
                    "bindings add smtp/1 OnArrival X log --max-firings 99999999999999999999999"
                ),
                2,
                "Error: Invalid value for '--max-firings': 99999999999999999999999 is not in the "
                "range 0<=x<=9223372036854775807.",
            ),
            (
                ["bindings", "add", "smtp/1", "OnArrival", "Multi\nline", "log"],
                1,
                'seo: error: DisplayName: "Multi\\nline" holds a control character, \\n '
                "(U+000A), at character 6; a DisplayName must print on one line\n",
            ),
            (
                ["bindings", "add", "smtp/1", "OnArrival", "A\x01ctl", "log"],
                1,
                'DisplayName: "A\\u0001ctl" holds a control character, \\u0001 (U+0001), at '
                "character 2",
            ),
            (
                ["bindings", "add", "smtp/1", "OnArrival", "C1\x85", "log"],
                1,
                'DisplayName: "C1\\u0085" holds a control character, \\u0085 (U+0085), at '
                "character 3",
            ),
            (
                ["bindings", "remove", GUID, OTHER_GUID],
                2,
                "Error: expected one binding, got 2 GUIDs; give each binding its own command.",
            ),
        ],
        ids=[
            "malformed-guid",
            "duplicate-name",
            "unknown-event",
            "priority-40000",
            "prio-bogus",
            "unparsable-rule",
            "sink-prop-without-equals",
            "bad-expires",
            "name-with-brace",
            "unknown-binding",
            "two-word-ref",
            "unknown-bag",
            "del-missing-prop",
            "negative-max-firings",
            "priority-true",
            "timeout-true",
            "timeout-in-set-prop",
            "source-prop-typo",
            "source-prop-unknown",
            "binding-prop-typo",
            "set-prop-source-typo",
            "set-prop-binding-typo",
            "empty-name",
            "blank-name",
            "expires-days-past-timedelta",
            "expires-days-past-year-9999",
            "expires-past-year-9999-in-utc",
            "expires-before-year-1-in-utc",
            "max-firings-past-sqlite",
            "name-with-newline",
            "name-with-c0",
            "name-with-c1",
            "two-guids",
        ],
    )
    def test_refused(
        self, seo: RunSeo, metabase_path: Path, args: list[str], code: int, message: str
    ) -> None:
        add_tag(seo)
        before = dump(metabase_path)
        result = seo(*args)
        assert result.exit_code == code, result.output
        assert message in result.stderr
        if code == 1:
            assert result.stderr.startswith("seo: error: ")
            assert len(result.stderr.strip().splitlines()) == 1
        assert dump(metabase_path) == before

    @pytest.mark.parametrize(
        "command",
        [["bindings", "add", "smtp/1", "OnArrival", "Audit", "log"], ["bindings", "list"]],
        ids=["add", "list"],
    )
    def test_another_applications_database_is_refused_and_left_byte_identical(
        self, seo: RunSeo, metabase_path: Path, command: list[str]
    ) -> None:
        db = sqlite3.connect(metabase_path)
        db.execute("CREATE TABLE t (x)")
        db.commit()
        db.close()
        before = metabase_path.read_bytes()
        result = seo(*command)
        assert result.exit_code == 1
        assert result.stderr == (
            f"seo: error: metabase {metabase_path}: is a SQLite database that holds other "
            "tables (t) and none of seo's; seo will not add its tables to another "
            "application's database: give the metabase a file of its own\n"
        )
        assert metabase_path.read_bytes() == before
        assert [p.name for p in metabase_path.parent.iterdir()] == [metabase_path.name]

    def test_an_empty_file_is_set_up_by_a_writing_command(
        self, seo: RunSeo, metabase_path: Path
    ) -> None:
        metabase_path.touch()
        result = seo("bindings", "add", "smtp/1", "OnArrival", "Audit", "log")
        assert result.exit_code == 0, result.output
        with Metabase.open(metabase_path, create=False) as metabase:
            assert [b.display_name for b in metabase.bindings()] == ["Audit"]

    def test_a_file_that_is_not_sqlite(self, tmp_path: Path, seo_exe: str) -> None:
        path = tmp_path / "mail.log"
        path.write_bytes(b"Dec  3 10:00:00 mail postfix/smtpd[1]: connect\n" * 3)
        before = path.read_bytes()
        result = run_process(seo_exe, "--metabase", str(path), "bindings", "list")
        assert result.returncode == 1
        assert result.stderr == f"seo: error: metabase {path}: is not a SQLite database\n"
        assert path.read_bytes() == before

    def test_a_folder_that_cannot_be_written(self, tmp_path: Path) -> None:
        """Run as an unprivileged user, since root may write anywhere."""
        outer = Path(tempfile.mkdtemp(prefix="seo-ro-"))
        try:
            outer.chmod(0o755)
            readonly = outer / "readonly"
            readonly.mkdir(mode=0o555)
            readonly.chmod(0o555)
            target = readonly / "seo-metabase.db"
            code, output = _in_child_as_nobody(str(target))
            assert code == 1
            assert f"metabase {target}: cannot create it in {readonly}: Permission denied" in output
            assert list(readonly.iterdir()) == []
        finally:
            (outer / "readonly").chmod(0o755)
            for path in sorted(outer.rglob("*"), reverse=True):
                path.unlink() if path.is_file() else path.rmdir()
            outer.rmdir()


def _in_child_as_nobody(metabase: str) -> tuple[int, str]:
    """Run the CLI in a forked child that dropped to an unprivileged user when root."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        os.close(read_end)
        try:
            if os.geteuid() == 0:
                os.setgid(65534)
                os.setuid(65534)
            from click.testing import CliRunner

            from seo_core.cli import cli

            result = CliRunner().invoke(
                cli,
                [
                    "--metabase",
                    metabase,
                    "bindings",
                    "add",
                    "smtp/1",
                    "OnArrival",
                    "X",
                    "x",
                    "--allow-missing",
                ],
            )
            os.write(write_end, f"{result.exit_code}\n{result.stderr}".encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read().decode()
    os.waitpid(pid, 0)
    code, _, output = data.partition("\n")
    return int(code), output


class TestConsoleScript:
    def test_installed_script_round_trip_with_env_metabase(
        self, tmp_path: Path, seo_exe: str
    ) -> None:
        env = {"SEO_METABASE": str(tmp_path / "env.db")}
        added = run_process(
            seo_exe, "bindings", "add", "smtp/1", "OnArrival", "Log", "log", env=env
        )
        assert added.returncode == 0, added.stderr
        listed = run_process(seo_exe, "bindings", "list", "--json", env=env)
        assert [b["display_name"] for b in json.loads(listed.stdout)] == ["Log"]
        assert stat.S_IMODE((tmp_path / "env.db").stat().st_mode) == 0o600

    def test_default_metabase_is_in_the_working_folder(self, tmp_path: Path, seo_exe: str) -> None:
        env = {"SEO_METABASE": ""}
        result = run_process(
            seo_exe, "bindings", "add", "smtp/1", "OnArrival", "Log", "log", env=env, cwd=tmp_path
        )
        assert result.returncode == 0, result.stderr
        assert (tmp_path / "seo-metabase.db").exists()

    def test_usage_error_exits_2(self, seo_exe: str) -> None:
        result = run_process(seo_exe, "bindings", "add", "smtp/1")
        assert result.returncode == 2
        assert "Usage: seo bindings add" in result.stderr


def test_a_relative_path_property_means_the_folder_the_command_ran_in(
    tmp_path: Path, seo_exe: str
) -> None:
    metabase = tmp_path / "seo-metabase.db"
    here = tmp_path / "srv"
    here.mkdir()

    def seo(*args: str) -> str:
        result = run_process(seo_exe, "--metabase", str(metabase), *args, cwd=here)
        assert result.returncode == 0, result.stderr
        return result.stdout

    seo("bindings", "add", "smtp/1", "StoreDriver", "Mail", "maildir", "--sink-prop", "root=mail")
    seo("bindings", "add", "smtp/1", "OnArrival", "Audit", "log", "--sink-prop", "File=a.jsonl")
    seo("bindings", "set-prop", "smtp/1", "OnArrival", "Audit", "sink", "Fields", '["event"]')
    seo("bindings", "set-prop", "smtp/1", "OnArrival", "Audit", "sink", "File", "logs/b.jsonl")
    mail = json.loads(seo("bindings", "show", "smtp/1", "StoreDriver", "Mail", "--json"))
    audit = json.loads(seo("bindings", "show", "smtp/1", "OnArrival", "Audit", "--json"))
    assert mail["sink_properties"] == {"root": str(here / "mail")}
    assert audit["sink_properties"] == {"File": str(here / "logs" / "b.jsonl"), "Fields": ["event"]}


class TestConfigManaged:
    """Changing a binding a config file manages works, with a note that it will not last."""

    @pytest.fixture
    def managed(self, seo: RunSeo, tmp_path: Path) -> Path:
        config = tmp_path / "seo.toml"
        config.write_text(
            '[[bindings]]\nsource = "smtp/1"\nevent = "OnArrival"\nname = "Audit"\nsink = "log"\n',
            encoding="utf-8",
        )
        result = seo("config", "apply", str(config))
        assert result.exit_code == 0, result.output
        return config

    @pytest.mark.parametrize(
        ("args", "done"),
        [
            (["disable"], "disabled"),
            (["enable"], "enabled"),
            (["set-prop", "source", "Priority", "5"], "set source property Priority = 5 on"),
            (["set-prop", "binding", "Owner", "ops"], "set binding property Owner ="),
            (["remove"], "removed"),
        ],
        ids=["disable", "enable", "set-prop", "set-prop-binding", "remove"],
    )
    def test_a_change_is_made_with_a_note_naming_the_file(
        self, seo: RunSeo, managed: Path, args: list[str], done: str
    ) -> None:
        verb, *rest = args
        result = seo("bindings", verb, "smtp/1", "OnArrival", "Audit", *rest)
        assert result.exit_code == 0, result.output
        assert result.stdout.startswith(done)
        assert result.stderr == (
            f"seo: note: this binding comes from the config file {managed}; the next "
            "`seo config apply` or `seo serve --config` of that file puts it back as the file "
            "says\n"
        )
        again = seo("config", "apply", str(managed))
        assert again.exit_code == 0, again.output
        listed = json.loads(seo("bindings", "list", "--json").output)
        assert [(b["display_name"], b["enabled"], b["priority"]) for b in listed] == [
            ("Audit", True, 24575)
        ]

    def test_del_prop_too(self, seo: RunSeo, managed: Path) -> None:
        added = seo("bindings", "set-prop", "smtp/1", "OnArrival", "Audit", "binding", "Owner", "x")
        assert added.exit_code == 0, added.output
        result = seo("bindings", "del-prop", "smtp/1", "OnArrival", "Audit", "binding", "Owner")
        assert result.exit_code == 0, result.output
        assert f"seo: note: this binding comes from the config file {managed};" in result.stderr

    def test_a_hand_made_binding_gets_no_note(self, seo: RunSeo) -> None:
        add_tag(seo)
        result = seo("bindings", "disable", "smtp/1", "OnArrival", "Tag mail")
        assert result.exit_code == 0
        assert result.stderr == ""


class TestFiredOut:
    """Enabling a binding that used up its MaxFirings works, with a note that it stays silent."""

    def _fire_out(self, metabase_path: Path, ref: BindingRef, times: int) -> str:
        with Metabase.open(metabase_path) as metabase:
            binding_id = metabase.binding(ref).id
            for _ in range(times):
                assert metabase.claim_firing(binding_id)
            assert not metabase.binding(binding_id).enabled
        return binding_id

    def test_enabling_says_the_budget_is_used_up_and_how_to_give_a_new_one(
        self, seo: RunSeo, metabase_path: Path
    ) -> None:
        add_tag(seo, "--max-firings", "2")
        binding_id = self._fire_out(metabase_path, ("smtp/1", "OnArrival", "Tag mail"), 2)
        result = seo("bindings", "enable", "smtp/1", "OnArrival", "Tag mail")
        assert result.exit_code == 0, result.output
        assert result.stdout.startswith(f"enabled {binding_id} ")
        assert result.stderr == (
            "seo: note: this binding has used up its MaxFirings budget (2 of 2) and is not "
            "notified until it gets a new one: remove it and add it again with "
            f"`--max-firings N` (and `--id {binding_id}` to keep its GUID); the count starts "
            "over\n"
        )
        explained = json.loads(seo("explain", "smtp/1", "OnArrival", "--json").output)
        assert explained[0]["reason"] == "fired out (2 of MaxFirings 2)"

    def test_a_binding_with_budget_left_gets_no_note(
        self, seo: RunSeo, metabase_path: Path
    ) -> None:
        add_tag(seo, "--max-firings", "2", "--disabled")
        result = seo("bindings", "enable", "smtp/1", "OnArrival", "Tag mail")
        assert result.exit_code == 0, result.output
        assert result.stderr == ""

    def test_a_config_files_binding_is_given_a_new_budget_in_the_file(
        self, seo: RunSeo, metabase_path: Path, tmp_path: Path
    ) -> None:
        config = tmp_path / "seo.toml"
        config.write_text(
            '[[bindings]]\nsource = "smtp/1"\nevent = "OnArrival"\nname = "Audit"\n'
            'sink = "log"\nmax_firings = 1\n',
            encoding="utf-8",
        )
        assert seo("config", "apply", str(config)).exit_code == 0
        self._fire_out(metabase_path, ("smtp/1", "OnArrival", "Audit"), 1)
        result = seo("bindings", "enable", "smtp/1", "OnArrival", "Audit")
        assert result.exit_code == 0, result.output
        fired_out, managed = result.stderr.splitlines()
        assert fired_out == (
            "seo: note: this binding has used up its MaxFirings budget (1 of 1) and is not "
            f"notified until it gets a new one: give it another max_firings in {config} and "
            "apply that file (a changed max_firings starts the count over)"
        )
        assert managed.startswith(f"seo: note: this binding comes from the config file {config}")


class TestBindingUsage:
    @pytest.mark.parametrize("verb", ["show", "enable", "disable", "remove"])
    def test_the_usage_line_names_one_binding(self, seo: RunSeo, verb: str) -> None:
        result = seo("bindings", verb, "--help")
        assert result.exit_code == 0
        assert result.stdout.startswith(f"Usage: seo bindings {verb} [OPTIONS] BINDING\n")
        assert "BINDING..." not in result.stdout
        assert 'BINDING is a binding GUID, or the three words SOURCE EVENT "DisplayName".' in (
            " ".join(result.stdout.split())
        )

    @pytest.mark.parametrize("verb", ["show", "enable", "disable", "remove"])
    def test_two_guids_are_a_usage_error_that_changes_nothing(
        self, seo: RunSeo, metabase_path: Path, verb: str
    ) -> None:
        first = str(add_tag(seo)["id"])
        second = seo("bindings", "add", "smtp/1", "OnArrival", "Other", "log")
        assert second.exit_code == 0, second.output
        other = second.stdout.split()[1]
        before = dump(metabase_path)
        result = seo("bindings", verb, first, other)
        assert result.exit_code == 2
        assert "Error: expected one binding, got 2 GUIDs" in result.stderr
        assert dump(metabase_path) == before


class TestExplainFacts:
    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (
                ["smtp/1", "OnArrival", "--newsgroups", "a.b"],
                "Error: --newsgroups does not apply to smtp OnArrival (its rules read only "
                "--mail-from, --rcpt-to, --ehlo); it applies to nntp OnPostEarly, OnPost, "
                "OnPostFinal",
            ),
            (
                ["smtp/1", "OnInboundCommand", "--mail-from", "a@example.com"],
                "Error: --mail-from does not apply to smtp OnInboundCommand (its rules read "
                "only --command, --argument); it applies to smtp StoreDriver, OnArrival, ",
            ),
            (
                ["nntp/1", "OnPost", "--command", "HELO"],
                "Error: --command does not apply to nntp OnPost (its rules read only "
                "--newsgroups); it applies to smtp OnInboundCommand, OnServerResponse, ",
            ),
            (
                ["smtp/1", "DnsResolver", "--ehlo", "mx.example.com"],
                "Error: --ehlo does not apply to smtp DnsResolver (its bindings take no rule, "
                "so no fact applies); it applies to smtp StoreDriver, ",
            ),
            (
                ["nntp/1", "OnPost", "--rcpt-to", "a@example.com"],
                "Error: --rcpt-to does not apply to nntp OnPost",
            ),
        ],
        ids=["newsgroups-on-smtp", "mail-from-on-protocol", "command-on-nntp", "no-rule", "rcpt"],
    )
    def test_a_fact_the_events_rules_do_not_read_is_a_usage_error(
        self, seo: RunSeo, args: list[str], message: str
    ) -> None:
        add_tag(seo)
        result = seo("explain", *args)
        assert result.exit_code == 2
        assert result.stdout == ""
        assert result.stderr.splitlines()[-1].startswith(message)

    @pytest.mark.parametrize(
        "args",
        [
            ["smtp/1", "OnArrival", "--mail-from", "a@example.com", "--rcpt-to", "b@example.com"],
            ["smtp/1", "OnArrival", "--ehlo", "mx.example.net"],
            ["smtp/1", "OnInboundCommand", "--command", "HELO", "--argument", "client.example"],
            ["nntp/1", "OnPost", "--newsgroups", "comp.lang.python"],
            ["smtp/1", "DnsResolver"],
        ],
        ids=["transport", "ehlo", "protocol", "nntp", "no-facts"],
    )
    def test_the_facts_an_event_reads_are_taken(self, seo: RunSeo, args: list[str]) -> None:
        add_tag(seo)
        result = seo("explain", *args)
        assert result.exit_code == 0, result.output


class TestExplainAddresses:
    @pytest.mark.parametrize(
        ("option", "value", "message"),
        [
            (
                "--mail-from",
                "not an address",
                "Error: Invalid value for '--mail-from': 'not an address' is not an address; "
                "give local@domain, or '' for the null sender <>",
            ),
            ("--mail-from", "alice", "'alice' is not an address"),
            ("--rcpt-to", "b@", "Error: Invalid value for '--rcpt-to': 'b@' is not an address"),
            ("--rcpt-to", "@example.com", "'@example.com' is not an address"),
            ("--rcpt-to", "a@b@", "'a@b@' is not an address"),
            ("--rcpt-to", "@relay.example:", "'@relay.example:' is not an address"),
            ("--rcpt-to", "@relay.example u@x.example", "'@relay.example u@x.example' is not an"),
        ],
        ids=[
            "spaces",
            "no-domain",
            "empty-domain",
            "empty-local",
            "two-ats",
            "route-only",
            "no-colon",
        ],
    )
    def test_a_value_that_is_not_an_address_is_a_usage_error(
        self, seo: RunSeo, option: str, value: str, message: str
    ) -> None:
        add_tag(seo)
        result = seo("explain", "smtp/1", "OnArrival", option, value)
        assert result.exit_code == 2
        assert result.stdout == ""
        assert message in result.stderr.splitlines()[-1]

    @pytest.mark.parametrize(
        "args",
        [
            ["--mail-from", ""],
            ["--mail-from", "<a@example.com>"],
            ["--rcpt-to", "Postmaster"],
            ["--rcpt-to", "x@bücher.example"],
            ["--rcpt-to", '"a b"@example.com'],
        ],
        ids=["null-sender", "angle-brackets", "postmaster", "idn", "quoted-local-part"],
    )
    def test_addresses_are_accepted(self, seo: RunSeo, args: list[str]) -> None:
        add_tag(seo, "--rule", "mail from=*;rcpt to=*")
        result = seo("explain", "smtp/1", "OnArrival", "--json", *args)
        assert result.exit_code == 0, result.output
        assert len(json.loads(result.stdout)) == 1

    @pytest.mark.parametrize(
        ("option", "rule", "value", "fires"),
        [
            ("--rcpt-to", "rcpt to=user@example.com", "@relay.example:user@example.com", True),
            ("--rcpt-to", "rcpt to=*@relay.example", "@relay.example:user@example.com", False),
            ("--rcpt-to", "rcpt to=u@example.com", "<@a.example,@b.example:u@example.com>", True),
            ("--mail-from", "mail from=u@example.com", "@relay.example:u@example.com", True),
        ],
        ids=["rules-page-row", "route-is-not-the-domain", "two-hops", "sender"],
    )
    def test_a_source_route_is_dropped_as_the_smtp_server_drops_it(
        self, seo: RunSeo, option: str, rule: str, value: str, fires: bool
    ) -> None:
        """docs/rules.md's row ``rcpt to=user@example.com`` / ``@relay.example:user@...``."""
        added = seo("bindings", "add", "smtp/1", "OnArrival", "Routed", "log", "--rule", rule)
        assert added.exit_code == 0, added.output
        result = seo("explain", "smtp/1", "OnArrival", "--json", option, value)
        assert result.exit_code == 0, result.output
        (entry,) = json.loads(result.stdout)
        assert entry["fires"] is fires, entry
