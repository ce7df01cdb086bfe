"""The alias sink, installed, bound through the real CLI and fired by the real dispatcher."""

from __future__ import annotations

import json
import smtplib
import threading
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import seo_sink_alias
from click.testing import CliRunner
from seo_sink_alias import MAX_DEPTH, AliasError, AliasTable

from seo_core.cli import cli
from seo_core.dispatcher import Dispatcher, DispatchResult
from seo_core.metabase import BindingSpec, Metabase
from seo_core.registry import SinkRegistry
from seo_core.rules import EventFacts
from seo_core.sdk import CategorizeEvent, DeliveryEvent, PropertyValue, hookimpl
from seo_core.testing import running_smtp

SOURCE_TREE = Path(__file__).resolve().parents[1]

TABLE: dict[str, PropertyValue] = {
    "postmaster": ["alice@example.com", "bob@example.com"],
    "Sales@Example.com": "carol@example.com",
    "team@example.com": ["sales@example.com", "dave@example.org"],
    "@catch.example": "inbox@catch.example",
}


def seo(metabase: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--metabase", str(metabase), *args])
    return result.exit_code, result.output + result.stderr


class Categorizer:
    """One metabase with alias bindings, and a way to resolve a recipient through them."""

    def __init__(self, metabase: Metabase, registry: SinkRegistry) -> None:
        self.metabase = metabase
        self.registry = registry
        self.result = DispatchResult()

    def bind(self, *, rule: str | None = None, **sink_properties: PropertyValue) -> None:
        self.metabase.add_binding(
            BindingSpec(
                source="smtp/1",
                event="OnCategorize",
                sink_class="alias",
                display_name=f"Aliases {len(self.metabase.bindings('smtp/1')) + 1}",
                sink_properties=sink_properties,
                source_properties={} if rule is None else {"Rule": rule},
            )
        )

    def resolve(self, recipient: str, *, resolved: list[str] | None = None) -> CategorizeEvent:
        event = CategorizeEvent(
            source="smtp/1",
            name="OnCategorize",
            message_id="m-1",
            message=EmailMessage(),
            mail_from="sender@example.net",
            recipients=[recipient],
            recipient=recipient,
            resolved=resolved,
        )
        dispatcher = Dispatcher("smtp/1", self.metabase, self.registry)
        try:
            self.result = dispatcher.notify_sync(event, EventFacts(rcpt_to=(recipient,)))
        finally:
            dispatcher.close()
        return event


@pytest.fixture(scope="module")
def registry() -> SinkRegistry:
    return SinkRegistry.discover()


@pytest.fixture
def aliases(tmp_path: Path, registry: SinkRegistry) -> Iterator[Categorizer]:
    with Metabase.open(tmp_path / "m.db") as metabase:
        yield Categorizer(metabase, registry)


# -- discovery ------------------------------------------------------------------------------


def test_is_discovered_from_the_installed_distribution(registry: SinkRegistry) -> None:
    info = registry.resolve("alias")
    assert info.distribution == "seo-sink-alias"
    assert info.events == ("OnCategorize",)
    assert info.target is seo_sink_alias.AliasSink
    installed = Path(seo_sink_alias.__file__).resolve()
    assert not installed.is_relative_to(SOURCE_TREE), "testing the source tree, not the install"


# -- resolving through the dispatcher ---------------------------------------------------------


@pytest.mark.parametrize(
    ("recipient", "expected"),
    [
        ("postmaster@example.com", ["alice@example.com", "bob@example.com"]),
        ("POSTMASTER@other.example", ["alice@example.com", "bob@example.com"]),
        ("sales@example.com", ["carol@example.com"]),
        ("SALES@EXAMPLE.COM", ["carol@example.com"]),
        ("team@example.com", ["carol@example.com", "dave@example.org"]),
        ("anyone@catch.example", ["inbox@catch.example"]),
        ("Anyone@CATCH.example.", ["inbox@catch.example"]),
    ],
    ids=[
        "local-part-to-two",
        "local-part-any-domain-any-case",
        "address",
        "address-any-case",
        "recursive",
        "catch-all",
        "catch-all-any-case-trailing-dot",
    ],
)
def test_recipients_are_rewritten_from_the_table(
    aliases: Categorizer, recipient: str, expected: list[str]
) -> None:
    aliases.bind(aliases=TABLE)
    event = aliases.resolve(recipient)
    assert aliases.result.notified == 1
    assert aliases.result.failed == 0
    assert event.resolved == expected
    assert not event.unknown


def test_a_recipient_no_key_matches_is_left_to_the_server(aliases: Categorizer) -> None:
    aliases.bind(aliases=TABLE)
    event = aliases.resolve("erin@example.com")
    assert aliases.result.notified == 1
    assert event.resolved is None
    assert not event.unknown


def test_a_key_wins_over_the_catch_all_of_its_domain(aliases: Categorizer) -> None:
    aliases.bind(
        aliases={
            "@example.com": "catchall@example.com",
            "alice@example.com": "alice@example.com",
            "postmaster": "bob@example.com",
        }
    )
    assert aliases.resolve("alice@example.com").resolved == ["alice@example.com"]
    assert aliases.resolve("postmaster@example.com").resolved == ["bob@example.com"]
    assert aliases.resolve("zed@example.com").resolved == ["catchall@example.com"]


def test_the_catch_all_does_not_swallow_the_addresses_an_alias_names(
    aliases: Categorizer,
) -> None:
    aliases.bind(aliases={"@example.com": "catchall@example.com", "help": "ann@example.com"})
    # ann@example.com is not in the table, but it was written down as a target on purpose.
    assert aliases.resolve("help@example.com").resolved == ["ann@example.com"]


def test_idna_domains_are_one_domain(aliases: Categorizer) -> None:
    aliases.bind(aliases={"@bücher.example": "books@bücher.example"})
    assert aliases.resolve("x@xn--bcher-kva.example").resolved == ["books@bücher.example"]
    assert aliases.resolve("x@BÜCHER.example").resolved == ["books@bücher.example"]


def test_self_references_and_loops_end(aliases: Categorizer) -> None:
    aliases.bind(
        aliases={
            "alice@example.com": ["alice@example.com", "archive@example.com"],
            "ann@example.com": ["ann@example.com", "bob@example.com"],
            "bob@example.com": ["bob@example.com", "ann@example.com"],
            "ping@example.com": "pong@example.com",
            "pong@example.com": "ping@example.com",
        }
    )
    assert aliases.resolve("alice@example.com").resolved == [
        "alice@example.com",
        "archive@example.com",
    ]
    assert aliases.resolve("ann@example.com").resolved == ["ann@example.com", "bob@example.com"]
    assert aliases.resolve("ping@example.com").resolved == ["ping@example.com"]
    assert aliases.result.failed == 0


def test_duplicates_are_delivered_once(aliases: Categorizer) -> None:
    aliases.bind(
        aliases={
            "all": ["admins@example.com", "alice@example.com", "ALICE@example.com"],
            "admins": ["alice@example.com", "bob@example.com"],
        }
    )
    assert aliases.resolve("all@example.com").resolved == ["alice@example.com", "bob@example.com"]


def chain(length: int) -> dict[str, PropertyValue]:
    """``a0 -> a1 -> ... -> a<length>``: ``length`` keys, so as many lookups for ``a0``."""
    return {f"a{i}@example.com": f"a{i + 1}@example.com" for i in range(length)}


def test_expansion_goes_eight_levels_deep(aliases: Categorizer) -> None:
    aliases.bind(aliases=chain(MAX_DEPTH))
    assert aliases.resolve("a0@example.com").resolved == [f"a{MAX_DEPTH}@example.com"]


def test_a_deeper_expansion_fails_the_notification_and_leaves_the_recipient(
    aliases: Categorizer,
) -> None:
    # Written without the sink's check, as only a metabase edited by hand could be.
    aliases.bind(aliases=chain(MAX_DEPTH + 1))
    event = aliases.resolve("a0@example.com")
    assert aliases.result.failed == 1
    assert event.resolved is None


def test_unknown_marks_unlisted_recipients_of_the_tables_domains(aliases: Categorizer) -> None:
    aliases.bind(
        unknown=True,
        aliases={
            "alice@example.com": "alice@example.com",
            "postmaster": "alice@example.com",
            "@catch.example": "inbox@catch.example",
        },
    )
    assert aliases.resolve("mallory@example.com").unknown
    assert aliases.resolve("Alice@example.com").resolved == ["alice@example.com"]
    assert aliases.resolve("postmaster@example.com").resolved == ["alice@example.com"]
    caught = aliases.resolve("mallory@catch.example")
    assert (caught.unknown, caught.resolved) == (False, ["inbox@catch.example"])
    elsewhere = aliases.resolve("mallory@example.org")
    assert (elsewhere.unknown, elsewhere.resolved) == (False, None)


def test_without_unknown_unlisted_recipients_are_kept(aliases: Categorizer) -> None:
    aliases.bind(aliases={"alice@example.com": "alice@example.com"})
    event = aliases.resolve("mallory@example.com")
    assert (event.unknown, event.resolved) == (False, None)


def test_a_recipient_an_earlier_sink_resolved_is_left_alone(aliases: Categorizer) -> None:
    aliases.bind(aliases=TABLE, unknown=True)
    event = aliases.resolve("postmaster@example.com", resolved=["root@example.com"])
    assert event.resolved == ["root@example.com"]


def test_a_rule_limits_the_table_to_some_domains(aliases: Categorizer) -> None:
    aliases.bind(aliases=TABLE, rule="rcpt to=*@example.com")
    assert aliases.resolve("postmaster@example.com").resolved is not None
    assert aliases.resolve("postmaster@example.org").resolved is None


# -- the table on its own -------------------------------------------------------------------


def test_the_parsed_table_says_what_it_covers() -> None:
    table = AliasTable.parse(TABLE)
    assert table.domains == {"example.com", "catch.example"}
    assert table.lookup("Postmaster@x.example", catch_all=False) == (
        "alice@example.com",
        "bob@example.com",
    )
    assert table.lookup("a@catch.example", catch_all=False) is None
    assert table.lookup("a@catch.example", catch_all=True) == ("inbox@catch.example",)


def test_a_chain_too_deep_is_refused_when_parsed() -> None:
    with pytest.raises(AliasError, match=r"aliases\.a0@example\.com: a0@example\.com -> "):
        AliasTable.parse(chain(MAX_DEPTH + 1))


# -- sink properties through the CLI --------------------------------------------------------

ADD = ("bindings", "add", "smtp/1", "OnCategorize", "Aliases", "alias")


@pytest.mark.parametrize(
    ("props", "complaint"),
    [
        pytest.param([], "SinkProperties.aliases", id="aliases-missing"),
        pytest.param(["aliases=yes"], "SinkProperties.aliases", id="aliases-not-a-table"),
        pytest.param(
            ["aliases={postmaster = 'a@example.com'}", "unknwon=true"],
            "did you mean 'unknown'",
            id="typo",
        ),
        pytest.param(
            ["aliases={postmaster = 'a@example.com'}", "unknown=1"],
            "SinkProperties.unknown",
            id="unknown-not-boolean",
        ),
        pytest.param(
            ["aliases={postmaster = 'alice'}"],
            "aliases.postmaster: 'alice' is not an address like local@domain",
            id="target-without-domain",
        ),
        pytest.param(
            ["aliases={postmaster = []}"], "aliases.postmaster: the list", id="empty-list"
        ),
        pytest.param(
            ["aliases={postmaster = 7}"], "aliases.postmaster: must be an address", id="number"
        ),
        pytest.param(
            ["aliases={'post master' = 'a@example.com'}"],
            "aliases.post master: a key is",
            id="key-with-space",
        ),
        pytest.param(
            ["aliases={'alice@' = 'a@example.com'}"], "aliases.alice@: a key is", id="key-no-domain"
        ),
        pytest.param(
            ["aliases={Postmaster = 'a@example.com', postmaster = 'b@example.com'}"],
            "the same key as 'Postmaster'",
            id="keys-differing-in-case",
        ),
        pytest.param(
            ["aliases={'@Example.com' = 'a@example.com', '@example.com.' = 'b@example.com'}"],
            "the same key as '@Example.com'",
            id="catch-alls-of-one-domain",
        ),
        pytest.param(
            ["aliases=" + json.dumps(chain(MAX_DEPTH + 1)).replace(":", "=")],
            f"more than {MAX_DEPTH} levels",
            id="too-deep",
        ),
    ],
)
def test_bad_sink_properties_are_refused_when_the_binding_is_written(
    props: list[str], complaint: str, tmp_path: Path
) -> None:
    arguments = [arg for prop in props for arg in ("--sink-prop", prop)]
    code, output = seo(tmp_path / "m.db", *ADD, *arguments)
    assert code == 1, output
    assert complaint in output
    code, output = seo(tmp_path / "m.db", "bindings", "list", "--json")
    assert json.loads(output) == []


def test_good_sink_properties_are_accepted(tmp_path: Path) -> None:
    code, output = seo(
        tmp_path / "m.db",
        *ADD,
        "--sink-prop",
        "aliases={postmaster = ['alice@example.com', 'bob@example.com'], "
        "'@example.com' = 'catchall@example.com'}",
        "--sink-prop",
        "unknown=true",
    )
    assert code == 0, output


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


Deliveries = Callable[[], dict[str, list[bytes]]]


def test_mail_to_postmaster_reaches_both_people(tmp_path: Path) -> None:
    metabase_path, mail = tmp_path / "m.db", tmp_path / "mail"
    code, output = seo(
        metabase_path,
        *ADD,
        "--sink-prop",
        "aliases={postmaster = ['alice@example.com', 'bob@example.com']}",
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
    body = b"From: sender@example.net\r\nSubject: hi\r\n\r\nhello postmaster\r\n"
    with running_smtp(metabase_path, registry, spool=tmp_path / "spool") as smtp:
        with smtplib.SMTP("127.0.0.1", smtp.port) as client:
            refused = client.sendmail("sender@example.net", ["Postmaster@example.com"], body)
        assert refused == {}
        smtp.wait_idle()
    delivered = {p.parent.name: p.read_bytes() for p in sorted(mail.glob("*/*.eml"))}
    assert sorted(delivered) == ["alice@example.com", "bob@example.com"]
    assert all(b"hello postmaster" in data for data in delivered.values())
