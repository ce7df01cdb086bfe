"""Fixtures for the SMTP source: real server on 127.0.0.1, real metabase, small real sinks."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from seo_core.metabase import BindingSpec, Metabase
from seo_core.registry import SinkRegistry
from seo_core.sdk import DeliveryEvent, hookimpl
from seo_core.testing import RunningSmtp, running_smtp


class Store:
    """A StoreDriver sink that keeps each delivery as a file named after the recipient."""

    lock = threading.Lock()

    @hookimpl
    def smtp_store_driver(self, event: DeliveryEvent, sink_properties: Any) -> None:
        folder = Path(str(sink_properties["root"])) / event.recipient
        folder.mkdir(parents=True, exist_ok=True)
        with Store.lock:
            path = folder / f"{len(list(folder.iterdir())) + 1}.eml"
            path.write_bytes(event.raw if event.raw is not None else event.message.as_bytes())
        event.delivered(str(path))


TEST_SINKS: dict[str, object] = {"test-store": Store}


def registry_with(**extra: object) -> SinkRegistry:
    """The installed sinks plus the tests' own, as one registry."""
    installed = SinkRegistry.discover()
    own = SinkRegistry.from_objects({**TEST_SINKS, **extra})
    return SinkRegistry([*installed.sinks, *own.sinks])


@pytest.fixture
def mailboxes(tmp_path: Path) -> Path:
    return tmp_path / "mail"


@pytest.fixture
def bound_store(metabase: Metabase, mailboxes: Path) -> str:
    return metabase.add_binding(
        BindingSpec(
            source="smtp/1",
            event="StoreDriver",
            sink_class="test-store",
            display_name="Store",
            sink_properties={"root": str(mailboxes)},
        )
    ).id


@pytest.fixture
def smtp(
    metabase_path: Path, metabase: Metabase, bound_store: str, tmp_path: Path
) -> Iterator[RunningSmtp]:
    with running_smtp(metabase_path, registry_with(), spool=tmp_path / "spool") as running:
        yield running


def delivered(mailboxes: Path, recipient: str) -> list[bytes]:
    folder = mailboxes / recipient
    if not folder.exists():
        return []
    return [p.read_bytes() for p in sorted(folder.iterdir(), key=lambda p: int(p.stem))]
