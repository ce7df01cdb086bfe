"""Ordered, named schema migrations, recorded in the database they were applied to.

A migration runs once, inside the transaction that records it. A database that records a
migration this version does not know was written by a newer seo and is refused, rather than
being read with a schema it does not understand.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime

from seo_core.catalog import SOURCE_TYPES

Migration = Callable[[sqlite3.Connection], None]


def _run(db: sqlite3.Connection, script: str) -> None:
    """Run each statement of ``script`` inside the caller's transaction.

    ``executescript`` would commit the open transaction first, so a failing migration would be
    left half-applied; these scripts hold no triggers, so splitting on ``;`` is exact.
    """
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


def _m001_initial(db: sqlite3.Connection) -> None:
    _run(
        db,
        """
        CREATE TABLE meta (
            key TEXT PRIMARY KEY,
            value INTEGER NOT NULL
        );
        INSERT INTO meta (key, value) VALUES ('generation', 0);

        CREATE TABLE source_type (
            name TEXT PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            display_prefix TEXT NOT NULL
        );
        CREATE TABLE event_type (
            source_type TEXT NOT NULL REFERENCES source_type (name),
            name TEXT NOT NULL,
            catid TEXT NOT NULL,
            PRIMARY KEY (source_type, name)
        );
        CREATE TABLE source (
            name TEXT PRIMARY KEY,
            type TEXT NOT NULL REFERENCES source_type (name),
            instance INTEGER NOT NULL CHECK (instance >= 1),
            id TEXT NOT NULL UNIQUE,
            display_name TEXT NOT NULL,
            UNIQUE (type, instance)
        );
        CREATE TABLE binding (
            id TEXT PRIMARY KEY,
            source TEXT NOT NULL REFERENCES source (name),
            event TEXT NOT NULL,
            display_name TEXT,
            sink_class TEXT NOT NULL,
            enabled INTEGER NOT NULL DEFAULT 1,
            max_firings INTEGER NOT NULL DEFAULT 0 CHECK (max_firings >= 0),
            fire_count INTEGER NOT NULL DEFAULT 0,
            expiration TEXT,
            origin TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            UNIQUE (source, event, display_name)
        );
        CREATE INDEX binding_by_event ON binding (source, event);
        CREATE TABLE binding_property (
            binding_id TEXT NOT NULL REFERENCES binding (id) ON DELETE CASCADE,
            bag TEXT NOT NULL CHECK (bag IN ('binding', 'sink', 'source')),
            folded_name TEXT NOT NULL,
            name TEXT NOT NULL,
            value TEXT NOT NULL,
            PRIMARY KEY (binding_id, bag, folded_name)
        );
        """,
    )
    for kind in SOURCE_TYPES.values():
        db.execute(
            "INSERT INTO source_type (name, id, display_prefix) VALUES (?, ?, ?)",
            (kind.name, kind.guid, kind.display_prefix),
        )
        db.executemany(
            "INSERT INTO event_type (source_type, name, catid) VALUES (?, ?, ?)",
            [(kind.name, event.name, event.catid) for event in kind.events],
        )


def _m002_binding_stats(db: sqlite3.Connection) -> None:
    _run(
        db,
        """
        CREATE TABLE binding_stats (
            binding_id TEXT PRIMARY KEY REFERENCES binding (id) ON DELETE CASCADE,
            notifications INTEGER NOT NULL DEFAULT 0,
            failures INTEGER NOT NULL DEFAULT 0,
            timeouts INTEGER NOT NULL DEFAULT 0,
            last_error TEXT,
            last_fired TEXT
        );
        """,
    )


MIGRATIONS: tuple[tuple[str, Migration], ...] = (
    ("001_initial", _m001_initial),
    ("002_binding_stats", _m002_binding_stats),
)


def applied_migrations(db: sqlite3.Connection) -> list[str]:
    """Names of the migrations recorded in ``db`` (empty for a new file)."""
    exists = db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
    ).fetchone()
    if exists is None:
        return []
    return [row[0] for row in db.execute("SELECT name FROM schema_migrations ORDER BY name")]


def other_tables(db: sqlite3.Connection) -> list[str]:
    """The tables and views in ``db`` in name order, SQLite's own ``sqlite_*`` left out: what a
    database that records no migration holds, when it holds anything."""
    return [
        row[0]
        for row in db.execute(
            "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') "
            "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name"
        )
    ]


def unknown_migrations(applied: list[str]) -> list[str]:
    """Applied migrations this version of seo does not know: the file is from a newer seo."""
    known = {name for name, _ in MIGRATIONS}
    return [name for name in applied if name not in known]


def pending_migrations(applied: list[str]) -> list[tuple[str, Migration]]:
    """The migrations still to run, in order."""
    done = set(applied)
    return [(name, step) for name, step in MIGRATIONS if name not in done]


def apply_migrations(db: sqlite3.Connection, steps: list[tuple[str, Migration]]) -> None:
    """Run ``steps`` and record each; the caller holds the write transaction."""
    db.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations "
        "(name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)"
    )
    for name, step in steps:
        step(db)
        db.execute(
            "INSERT INTO schema_migrations (name, applied_at) VALUES (?, ?)",
            (name, datetime.now(UTC).isoformat(timespec="seconds")),
        )
