"""A config file with any error changes nothing, exits 1 and names file, line, binding and key.

Each case is a real file; the line a message must name is the line holding the case's marker.
Every case also runs through the CLI against a metabase that already holds bindings, which must
stay byte-identical.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from seo_core.cli import cli
from seo_core.config import apply_config, export_config, load_config
from seo_core.errors import ConfigError, ConfigFileError
from seo_core.metabase import BindingSpec, Metabase
from seo_core.registry import SinkRegistry
from seo_core.sdk import hookimpl

GUID = "{00000000-0000-4000-8000-0000000000aa}"


def binding(*lines: str, name: str = "Tag mail") -> str:
    """A valid ``[[bindings]]`` table with ``lines`` added (later keys may not repeat one)."""
    keys = {line.split("=")[0].strip() for line in lines if "=" in line}
    base = {
        "source": '"smtp/1"',
        "event": '"OnArrival"',
        "name": f'"{name}"',
        "sink": '"log"',
    }
    body = [f"{key} = {value}" for key, value in base.items() if key not in keys]
    return "\n".join(["", "[[bindings]]", *body, *lines, ""])


# (id, file text, marker: the line the message must name, words the message must hold)
CASES: list[tuple[str, str, str, list[str]]] = [
    (
        "toml-syntax",
        'metabase = "x.db"\n[[bindings]]\nsource = "smtp/1\nevent = "OnArrival"\n',
        'source = "smtp/1',
        ["invalid TOML", "column"],
    ),
    (
        "unknown-top-key",
        'metabse = "x.db"\n',
        "metabse",
        ["metabse: unknown key (did you mean 'metabase'?)"],
    ),
    (
        "unknown-binding-key",
        binding('sink_propertes = { File = "x" }'),
        "sink_propertes",
        [
            'binding "Tag mail"',
            "sink_propertes: unknown key (did you mean 'sink_properties'?)",
        ],
    ),
    (
        "unknown-source-key",
        '[sources."smtp/1"]\nlisten = "127.0.0.1:2525"\nspol = "var/spool"\n',
        "spol",
        ['sources."smtp/1"', "spol: unknown key (did you mean 'spool'?)"],
    ),
    (
        "unknown-source-type",
        '[sources."smpt/1"]\nlisten = "127.0.0.1:2525"\n',
        "smpt",
        ['sources."smpt/1"', "unknown; known: nntp, smtp"],
    ),
    (
        "bad-listen",
        '[sources."nntp/1"]\nlisten = "127.0.0.1:0"\n',
        "listen",
        ['sources."nntp/1"', "listen: port '0' is not a number from 1 to 65535"],
    ),
    (
        "bad-setting-type",
        '[sources."smtp/1"]\nlisten = "127.0.0.1:25"\nmax_recipients = 0\n',
        "max_recipients",
        ["max_recipients: must be a whole number > 0"],
    ),
    (
        "missing-sink",
        '\n[[bindings]]\nsource = "smtp/1"\nevent = "OnArrival"\nname = "No sink"\n',
        "[[bindings]]",
        ['binding "No sink"', "sink: required key is missing"],
    ),
    (
        "missing-name",
        '\n[[bindings]]\nsource = "smtp/1"\nevent = "OnArrival"\nsink = "log"\n',
        "[[bindings]]",
        ["binding #1", "name: required key is missing"],
    ),
    (
        "wrong-type",
        binding("priority = true"),
        "priority",
        ['binding "Tag mail"', "priority: must be an integer or a PRIO_* name, not true"],
    ),
    (
        "priority-float",
        binding("priority = 1.5"),
        "priority",
        ['binding "Tag mail"', "priority: must be an integer or a PRIO_* name, not 1.5"],
    ),
    (
        "enabled-a-string",
        binding('enabled = "yes"'),
        "enabled",
        ["enabled: must be true or false, not 'yes'"],
    ),
    (
        "source-property-typo",
        binding("", "[bindings.source_properties]", "Priorty = 5"),
        "Priorty",
        [
            "source_properties: SourceProperties.Priorty 5: unknown property "
            "(did you mean 'Priority'?); sources read only: Rule, Priority"
        ],
    ),
    (
        "binding-property-typo",
        binding("binding_properties = { Owner = 'ops', Timeot = 5 }"),
        "Timeot",
        [
            "binding_properties: EventBindingProperties.Timeot 5: unknown property "
            "(did you mean 'Timeout'?)"
        ],
    ),
    (
        "priority-range",
        binding("priority = 40000"),
        "priority",
        ["priority: Priority 40000: out of range 0..32767"],
    ),
    (
        "priority-name",
        binding('priority = "PRIO_HIHG"'),
        "priority",
        ["priority: Priority 'PRIO_HIHG': not a number 0..32767 nor one of"],
    ),
    (
        "rule",
        binding('rule = "mail frm=*"'),
        "rule",
        ["rule: Rule 'mail frm=*'", "unknown keyword 'mail frm'"],
    ),
    (
        "rule-in-source-properties",
        binding('source_properties = { Rule = "mail frm=*" }'),
        "source_properties",
        ["source_properties: Rule 'mail frm=*'"],
    ),
    (
        "rule-twice",
        binding('rule = "mail from=*"', 'source_properties = { Rule = "rcpt to=*" }'),
        "rule =",
        ["rule: given twice, also as source_properties.Rule"],
    ),
    (
        "unknown-event",
        binding('event = "OnArival"'),
        "event",
        ["event: event 'OnArival': not an event of smtp sources", "(did you mean 'OnArrival'?)"],
    ),
    (
        "bad-id",
        binding('id = "not-a-guid"'),
        "id =",
        ["id: ID 'not-a-guid': not a GUID"],
    ),
    (
        "expires-without-zone",
        binding("expires = 2030-01-01T00:00:00"),
        "expires",
        ["expires: 2030-01-01T00:00:00 has no time zone"],
    ),
    (
        "expires-a-date",
        binding("expires = 2030-01-01"),
        "expires",
        ["expires: 2030-01-01 is not an instant"],
    ),
    (
        "max-firings",
        binding("max_firings = -1"),
        "max_firings",
        ["max_firings: MaxFirings -1: must be a whole number >= 0"],
    ),
    (
        "expires-past-year-9999-in-utc",
        binding("expires = 9999-12-31T23:59:59-05:00"),
        "expires",
        [
            'binding "Tag mail"',
            "expires: Expiration 9999-12-31T23:59:59-05:00: out of range "
            "0001-01-01T00:00:00Z..9999-12-31T23:59:59Z (in UTC, as it is stored)",
        ],
    ),
    (
        "expires-before-year-1-in-utc",
        binding('expires = "0001-01-01T00:00:00+05:00"'),
        "expires",
        ["expires: Expiration 0001-01-01T00:00:00+05:00: out of range"],
    ),
    (
        "max-firings-past-sqlite",
        binding("max_firings = 99999999999999999999999"),
        "max_firings",
        [
            "max_firings: MaxFirings 99999999999999999999999: out of range "
            "0..9223372036854775807 (0 = unlimited)"
        ],
    ),
    (
        "name-with-a-newline",
        binding(name="Multi\\nline"),
        "name =",
        [
            'binding "Multi\\nline": name: DisplayName: "Multi\\nline" holds a control '
            "character, \\n (U+000A), at character 6"
        ],
    ),
    (
        "name-with-c1",
        binding(name="Next\\u0085line"),
        "name =",
        ['binding "Next\\u0085line": name: DisplayName: "Next\\u0085line" holds a control'],
    ),
    (
        "empty-name",
        binding(name=""),
        'name = ""',
        ["binding #1", "name: DisplayName '': must not be empty"],
    ),
    (
        "bag-not-a-table",
        binding('sink_properties = "File=x"'),
        "sink_properties",
        ["sink_properties: must be a table, not 'File=x'"],
    ),
    (
        "bad-env-reference",
        binding('sink_properties = { File = { env = "1X" } }'),
        "sink_properties",
        [
            "sink_properties: SinkProperties.File",
            'an environment reference is { env = "NAME" }, NAME made of letters, digits and _, '
            "not starting with a digit",
        ],
    ),
    (
        "duplicate-binding",
        binding() + binding('name = "Tag mail"  # again'),
        "# again",
        [
            'binding "Tag mail"',
            'name: smtp/1 OnArrival "Tag mail" is declared twice (first as binding #1, line 2)',
        ],
    ),
    (
        "duplicate-id",
        binding(f'id = "{GUID}"') + binding(f'id = "{GUID.upper()}"', name="Other"),
        f'id = "{GUID.upper()}"',
        ['binding "Other"', f"id: {GUID} is also the id of binding #1"],
    ),
    (
        "inline-bindings-array",
        'bindings = [\n  { source = "smtp/1", event = "OnArrival", name = "X", sink = 1 },\n]\n',
        "bindings =",
        ['binding "X"', "sink: must be a string, not 1"],
    ),
    (
        "inline-source-table",
        '[sources]\n"smtp/1" = { listen = "2525" }\n',
        '"smtp/1" =',
        ['sources."smtp/1"', "listen: expected HOST:PORT"],
    ),
    (
        "dotted-source-key",
        '[sources."smtp/1"]\nlisten = "127.0.0.1:25"\nspool.path = "x"\n',
        "spool.path",
        ["spool: must be a non-empty string"],
    ),
    (
        "delivery-mode-unknown",
        '[sources."smtp/1"]\nlisten = "127.0.0.1:25"\ndelivery = "thread"\n',
        'delivery = "thread"',
        ['sources."smtp/1"', "delivery: must be one of 'process', 'inline'"],
    ),
    (
        "sink-not-installed",
        binding('sink = "not-installed"'),
        'sink = "not-installed"',
        ["sink: SinkClass 'not-installed': no installed sink has this name or CLSID"],
    ),
    (
        "sink-property-unknown",
        binding('sink_properties = { Fiels = ["time"] }'),
        "Fiels",
        ["sink_properties: SinkProperties.Fiels", "unknown property (did you mean 'Fields'?)"],
    ),
    (
        "sink-property-refused",
        binding("", "[bindings.sink_properties]", 'File = "x"', 'Fields = ["bogus"]'),
        "[bindings.sink_properties]",
        ["sink_properties:", "unknown field bogus"],
    ),
    (
        "sink-property-type",
        binding('sink_properties = { Fields = { env = "FIELDS" } }'),
        "sink_properties",
        ["sink_properties: SinkProperties.Fields", "must be a list"],
    ),
]


def line_of(text: str, marker: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if marker in line)


@pytest.fixture(scope="module")
def registry() -> SinkRegistry:
    return SinkRegistry.discover()


@pytest.fixture
def populated(metabase_path: Path, tmp_path: Path) -> Path:
    """A metabase holding a hand-made binding and one from another file, then closed."""
    with Metabase.open(metabase_path) as metabase:
        metabase.add_binding(BindingSpec("smtp/1", "OnArrival", "log", display_name="Hand"))
        metabase.add_binding(
            BindingSpec(
                "smtp/1",
                "StoreDriver",
                "log",
                display_name="Other file",
                origin=f"config:{tmp_path / 'other.toml'}",
            )
        )
    return metabase_path


@pytest.mark.parametrize(
    ("text", "marker", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_each_error_names_file_line_binding_and_key(
    tmp_path: Path,
    registry: SinkRegistry,
    populated: Path,
    text: str,
    marker: str,
    words: list[str],
) -> None:
    config_file = tmp_path / "seo.toml"
    config_file.write_text(text, encoding="utf-8")
    before = populated.read_bytes()
    result = CliRunner().invoke(
        cli, ["--metabase", str(populated), "config", "apply", str(config_file)], prog_name="seo"
    )
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"seo: error: {config_file}:{line_of(text, marker)}: "), line
    for word in words:
        assert word in line
    assert populated.read_bytes() == before


@pytest.mark.parametrize("dry_run", [True, False], ids=["dry-run", "apply"])
def test_a_refused_file_creates_neither_its_metabase_nor_its_folder(
    tmp_path: Path, dry_run: bool
) -> None:
    text = 'metabase = "deep/er/mb.db"\n' + binding("expires = 9999-12-31T23:59:59-05:00")
    config_file = tmp_path / "c1.toml"
    config_file.write_text(text, encoding="utf-8")
    args = ["config", "apply", *(["--dry-run"] if dry_run else []), str(config_file)]
    result = CliRunner().invoke(cli, args, prog_name="seo", env={"SEO_METABASE": ""})
    assert result.exit_code == 1, result.output
    assert result.stderr == (
        f'seo: error: {config_file}:{line_of(text, "expires")}: binding "Tag mail": expires: '
        "Expiration 9999-12-31T23:59:59-05:00: out of range "
        "0001-01-01T00:00:00Z..9999-12-31T23:59:59Z (in UTC, as it is stored)\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c1.toml"]


def test_every_problem_is_reported_in_file_order(tmp_path: Path, populated: Path) -> None:
    text = (
        'metabse = "x"\n'
        + binding("priority = true", name="First")
        + binding('event = "Nope"', name="Second")
        + '\n[sources."smtp/1"]\nlisten = "nowhere"\n'
    )
    config_file = tmp_path / "seo.toml"
    config_file.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigFileError) as caught:
        load_config(config_file)
    problems = caught.value.problems
    assert [p.location for p in problems] == [
        f"{config_file}:{line_of(text, marker)}"
        for marker in ("metabse", "priority = true", '"Nope"', "nowhere")
    ]
    assert all(isinstance(p, ConfigError) for p in problems)
    result = CliRunner().invoke(
        cli, ["--metabase", str(populated), "config", "apply", str(config_file)], prog_name="seo"
    )
    assert result.exit_code == 1
    assert [line.split(": ")[2] for line in result.stderr.splitlines()] == [
        p.location for p in problems
    ]


def test_the_did_you_mean_hint_of_an_event_is_given_once(tmp_path: Path, populated: Path) -> None:
    config_file = tmp_path / "seo.toml"
    config_file.write_text(binding('event = "OnArival"'), encoding="utf-8")
    result = CliRunner().invoke(
        cli, ["--metabase", str(populated), "config", "apply", str(config_file)], prog_name="seo"
    )
    assert result.exit_code == 1
    assert result.stderr.count("did you mean") == 1, result.stderr
    assert "not an event of smtp sources (did you mean 'OnArrival'?); known: " in result.stderr


@pytest.mark.parametrize(
    "fault",
    ["expires = 2030-01-01", "priority = true", "max_firings = -1"],
    ids=["toml-date", "priority", "max-firings"],
)
def test_a_duplicate_name_or_id_is_reported_beside_another_fault_of_the_first(
    tmp_path: Path, populated: Path, fault: str
) -> None:
    text = (
        binding(fault, f'id = "{GUID}"', name="A")
        + binding('id = "dup"', name="B").replace('id = "dup"', f'id = "{GUID.upper()}"')
        + binding('name = "A"  # again')
    )
    config_file = tmp_path / "seo.toml"
    config_file.write_text(text, encoding="utf-8")
    before = populated.read_bytes()
    result = CliRunner().invoke(
        cli, ["--metabase", str(populated), "config", "apply", str(config_file)], prog_name="seo"
    )
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 3, lines
    assert lines[0].startswith(f'seo: error: {config_file}:{line_of(text, fault)}: binding "A"')
    assert lines[1] == (
        f'seo: error: {config_file}:{line_of(text, GUID.upper())}: binding "B": '
        f"id: {GUID} is also the id of binding #1"
    )
    assert lines[2] == (
        f'seo: error: {config_file}:{line_of(text, "# again")}: binding "A": '
        'name: smtp/1 OnArrival "A" is declared twice (first as binding #1, line 2)'
    )
    assert populated.read_bytes() == before


def test_an_unreadable_file(tmp_path: Path, populated: Path) -> None:
    missing = tmp_path / "missing.toml"
    result = CliRunner().invoke(
        cli, ["--metabase", str(populated), "config", "apply", str(missing)], prog_name="seo"
    )
    assert result.exit_code == 1
    assert result.stderr.startswith(f"seo: error: {missing}: cannot read the config file: ")


def test_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    config_file = tmp_path / "seo.toml"
    config_file.write_bytes(b'metabase = "\xff"\n')
    with pytest.raises(ConfigFileError, match="not UTF-8"):
        load_config(config_file)


class TestCollisions:
    def test_a_file_binding_may_not_take_a_hand_made_bindings_name(
        self, tmp_path: Path, registry: SinkRegistry, populated: Path
    ) -> None:
        config_file = tmp_path / "seo.toml"
        text = binding(name="Hand")
        config_file.write_text(text, encoding="utf-8")
        with Metabase.open(populated) as metabase:
            hand = metabase.binding(("smtp/1", "OnArrival", "Hand"))
            dumped = metabase.dump()
            with pytest.raises(ConfigFileError) as caught:
                apply_config(load_config(config_file), metabase, registry)
            assert metabase.dump() == dumped
        message = str(caught.value)
        assert message.startswith(f'{config_file}:{line_of(text, "name =")}: binding "Hand": ')
        assert f"name: has the same source, event and name as binding {hand.id}" in message
        assert "made by hand with `seo bindings`; remove or rename one of them" in message

    def test_nor_its_id(self, tmp_path: Path, registry: SinkRegistry, populated: Path) -> None:
        with Metabase.open(populated) as metabase:
            hand = metabase.binding(("smtp/1", "OnArrival", "Hand"))
        config_file = tmp_path / "seo.toml"
        config_file.write_text(binding(f'id = "{hand.id}"', name="Mine"), encoding="utf-8")
        result = CliRunner().invoke(
            cli, ["--metabase", str(populated), "config", "apply", str(config_file)]
        )
        assert result.exit_code == 1
        assert f"id: has the same id as binding {hand.id}" in result.stderr

    def test_nor_one_of_another_config_file(
        self, tmp_path: Path, registry: SinkRegistry, populated: Path
    ) -> None:
        config_file = tmp_path / "seo.toml"
        config_file.write_text(
            binding('event = "StoreDriver"', name="Other file"), encoding="utf-8"
        )
        result = CliRunner().invoke(
            cli, ["--metabase", str(populated), "config", "apply", str(config_file)]
        )
        assert result.exit_code == 1
        assert f"managed by the config file {tmp_path / 'other.toml'}" in result.stderr

    def test_an_export_applied_to_its_own_metabase_collides_with_every_binding_there(
        self, tmp_path: Path, registry: SinkRegistry, populated: Path
    ) -> None:
        """Hand-made bindings and another file's alike: a binding has one owner. The export is
        for another metabase, or for after removing the hand-made bindings; the comment above
        each binding names the owner its collision names."""
        exported = tmp_path / "exported.toml"
        with Metabase.open(populated) as metabase:
            text = export_config(metabase)
            exported.write_text(text, encoding="utf-8")
            with pytest.raises(ConfigFileError) as caught:
                apply_config(load_config(exported, require_listen=False), metabase, registry)
        other = tmp_path / "other.toml"
        owners = [
            problem.reason.rpartition("does not manage: ")[2] for problem in caught.value.problems
        ]
        assert owners == [
            "it was made by hand with `seo bindings`; remove or rename one of them",
            f"it is managed by the config file {other}; remove or rename one of them",
        ]
        assert "\n# made by hand with `seo bindings`\n[[bindings]]\n" in text
        assert f'\n# managed by the config file "{other}"\n[[bindings]]\n' in text
        assert "made by hand or managed by another config" in text.replace("\n# ", " ")


class Arrival:
    @hookimpl
    def smtp_on_arrival(self, event: Any) -> None: ...


class TestSinks:
    def test_an_ambiguous_sink_name_is_refused_naming_the_distributions(
        self, tmp_path: Path, metabase: Metabase
    ) -> None:
        registry = SinkRegistry(
            [
                *SinkRegistry.from_objects({"tagger": Arrival}, distribution="seo-sink-a").sinks,
                *SinkRegistry.from_objects({"tagger": Arrival}, distribution="seo-sink-b").sinks,
            ]
        )
        config_file = tmp_path / "seo.toml"
        text = binding('sink = "tagger"')
        config_file.write_text(text, encoding="utf-8")
        with pytest.raises(ConfigFileError) as caught:
            apply_config(load_config(config_file), metabase, registry)
        message = str(caught.value)
        assert message.startswith(f'{config_file}:{line_of(text, "sink =")}: binding "Tag mail": ')
        assert "sink: SinkClass 'tagger' is advertised by 2 distributions" in message
        assert "seo-sink-a:tagger, seo-sink-b:tagger" in message
        assert metabase.bindings() == []
        config_file.write_text(binding('sink = "seo-sink-b:tagger"'), encoding="utf-8")
        (_, created) = apply_config(load_config(config_file), metabase, registry)
        assert (created.action, created.sink) == ("create", "seo-sink-b:tagger")

    def test_a_sink_that_does_not_handle_the_event_is_refused(
        self, tmp_path: Path, metabase: Metabase
    ) -> None:
        registry = SinkRegistry.from_objects({"arrival": Arrival})
        config_file = tmp_path / "seo.toml"
        config_file.write_text(
            binding('sink = "arrival"', 'event = "StoreDriver"'), encoding="utf-8"
        )
        with pytest.raises(ConfigFileError, match="does not handle StoreDriver of smtp sources"):
            apply_config(load_config(config_file), metabase, registry)
        assert metabase.bindings() == []


SHARED = """
[sources."smtp/1"]
listen = "127.0.0.1:2525"
spool = "var/spool"

[sources."smtp/2"]
listen = "127.0.0.2:2525"
spool = "var/spool/"  # smtp/2

[sources."smtp/3"]
listen = "[::1]:2526"

[sources."nntp/1"]
listen = "[::]:2526"  # nntp/1

[sources."nntp/2"]
listen = "localhost:2527"

[sources."nntp/3"]
listen = "LOCALHOST.:2527"  # nntp/3
"""


def test_sources_may_not_share_a_spool_or_an_address(tmp_path: Path, populated: Path) -> None:
    """Each clash is named once, at the later source, naming the earlier one and its line; two
    addresses on one port are fine. Nothing is written."""
    config_file = tmp_path / "seo.toml"
    config_file.write_text(SHARED, encoding="utf-8")
    before = populated.read_bytes()
    result = CliRunner().invoke(
        cli, ["--metabase", str(populated), "config", "apply", str(config_file)], prog_name="seo"
    )
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)
    assert result.stderr.splitlines() == [
        f'seo: error: {config_file}:{line_of(SHARED, "# smtp/2")}: sources."smtp/2": spool: '
        f'{tmp_path}/var/spool is also the spool of sources."smtp/1" (line 4); '
        "each source needs a folder of its own",
        f'seo: error: {config_file}:{line_of(SHARED, "# nntp/1")}: sources."nntp/1": listen: '
        '[::]:2526 clashes with sources."smtp/3", which listens on [::1]:2526 (line 11); '
        "each source needs an address of its own",
        f'seo: error: {config_file}:{line_of(SHARED, "# nntp/3")}: sources."nntp/3": listen: '
        'LOCALHOST.:2527 clashes with sources."nntp/2", which listens on localhost:2527 '
        "(line 17); each source needs an address of its own",
    ]
    assert populated.read_bytes() == before


def test_moderated_groups_must_be_groups_the_source_carries(
    tmp_path: Path, populated: Path
) -> None:
    text = (
        '[sources."nntp/1"]\nlisten = "127.0.0.1:1119"\ngroups = ["local.test", "local.announce"]\n'
        'moderated = ["local.anounce", "local.test"]\n'
    )
    config_file = tmp_path / "seo.toml"
    config_file.write_text(text, encoding="utf-8")
    result = CliRunner().invoke(
        cli, ["--metabase", str(populated), "config", "apply", str(config_file)], prog_name="seo"
    )
    assert result.exit_code == 1
    assert result.stderr == (
        f'seo: error: {config_file}:4: sources."nntp/1": moderated: '
        "'local.anounce' is not in groups\n"
    )
    config_file.write_text(text.replace("moderated = [", "moderated = 1 # ["), encoding="utf-8")
    with pytest.raises(ConfigFileError, match="moderated: must be a list of strings"):
        load_config(config_file)
