"""The SQLite metabase: where sources and bindings are kept.

Several processes may share one metabase (an administrator's ``seo`` command beside running
servers), so every change is one transaction that takes the write lock up front
(``BEGIN IMMEDIATE``) and waits for a busy lock instead of failing, and the file is in WAL mode so
readers never block writers. A generation counter, bumped by every change to bindings, lets a
running dispatcher notice a change for the price of one small query; each bump also writes a
fresh random stamp beside it, because a restored backup puts the counter back, and the next
change would then bring it to a number a dispatcher has already seen.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from seo_core.catalog import SourceName, parse_source
from seo_core.errors import (
    ConflictError,
    MetabaseError,
    NotFoundError,
    SchemaTooNewError,
    UnmadeMetabaseError,
    ValidationError,
)
from seo_core.guids import new_guid, parse_guid
from seo_core.metabase import migrations
from seo_core.metabase.records import (
    Binding,
    BindingRef,
    BindingSpec,
    BindingStats,
    Source,
    StatsDelta,
)
from seo_core.metabase.validation import (
    check_bag,
    check_display_name,
    check_expiration,
    check_max_firings,
    check_sink_class,
    resolve_event,
)
from seo_core.properties import BAGS, PropertyBag, PropertyValue

SQLITE_HEADER = b"SQLite format 3\x00"
DEFAULT_BUSY_TIMEOUT = 30.0

BindingCheck = Callable[[Binding], None]
"""Called with a binding as it is about to be written; raising refuses the change."""

_BINDING_COLUMNS = (
    "id, source, event, display_name, sink_class, enabled, max_firings, fire_count, "
    "expiration, origin"
)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Metabase:
    """A connection to one metabase file.

    Open it with :meth:`open`; it is a context manager that closes the connection. Reads return
    frozen records; each method that changes something runs in its own transaction unless it is
    called inside :meth:`transaction`, which groups several changes into one.
    """

    def __init__(self, path: Path, connection: sqlite3.Connection) -> None:
        self.path = path
        self._db = connection
        self._lock = threading.RLock()
        self._depth = 0
        self._bump = False

    # -- opening ---------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        create: bool = True,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
    ) -> Metabase:
        """Open (and if needed create and migrate) the metabase at ``path``.

        A new file is created readable and writable by its owner only: bindings name the code
        that runs inside the mail server. With ``create=False`` (the commands that only read)
        nothing is made: a missing file, an empty one or a SQLite database with no tables is an
        :class:`UnmadeMetabaseError`, and the file is left exactly as it was. A SQLite database
        that holds another application's tables, and none of seo's, is a :class:`MetabaseError`
        either way: seo's tables do not go beside them.
        """
        target = Path(path)
        _prepare_file(target, create=create)
        try:
            db = sqlite3.connect(
                target, timeout=busy_timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise MetabaseError(target, f"cannot open: {exc}") from exc
        metabase = cls(target, db)
        try:
            metabase._refuse_unmade(create=create)
            metabase._configure(busy_timeout)
            metabase._migrate()
        except BaseException:
            db.close()
            raise
        return metabase

    def _refuse_unmade(self, *, create: bool) -> None:
        """Refuse a file that is not a metabase yet, before anything is written to it (even
        switching to WAL mode writes): a listing must not turn an empty file into a metabase,
        and no command may add seo's tables beside another application's."""
        try:
            applied = migrations.applied_migrations(self._db)
            others = [] if applied else migrations.other_tables(self._db)
        except sqlite3.DatabaseError as exc:
            raise _translate(self.path, exc) from exc
        if applied:
            return
        if others:
            shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if others[5:] else "")
            raise MetabaseError(
                self.path,
                f"is a SQLite database that holds other tables ({shown}) and none of seo's; "
                "seo will not add its tables to another application's database: give the "
                "metabase a file of its own",
            )
        if create:
            return
        what = (
            "an empty file" if self.path.stat().st_size == 0 else "a SQLite database with no tables"
        )
        raise UnmadeMetabaseError(
            self.path,
            f"not a seo metabase yet ({what}); a command that changes bindings "
            "(`seo bindings add`, `seo config apply`) makes it one",
        )

    def _configure(self, busy_timeout: float) -> None:
        try:
            self._db.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            mode = self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            self._db.execute("PRAGMA synchronous = FULL")
            self._db.execute("PRAGMA foreign_keys = ON")
        except sqlite3.DatabaseError as exc:
            raise _translate(self.path, exc) from exc
        if mode != "wal":
            raise MetabaseError(self.path, f"cannot switch to WAL mode (journal mode {mode!r})")

    def _migrate(self) -> None:
        try:
            applied = migrations.applied_migrations(self._db)
            self._refuse_newer(applied)
            if not migrations.pending_migrations(applied):
                return
            with self._write(bump=False) as db:
                applied = migrations.applied_migrations(db)
                self._refuse_newer(applied)
                migrations.apply_migrations(db, migrations.pending_migrations(applied))
        except sqlite3.DatabaseError as exc:
            raise _translate(self.path, exc) from exc

    def _refuse_newer(self, applied: list[str]) -> None:
        unknown = migrations.unknown_migrations(applied)
        if unknown:
            raise SchemaTooNewError(
                self.path,
                f"written by a newer seo (unknown schema migrations: {', '.join(unknown)}); "
                "upgrade seo-core to use it",
            )

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Metabase:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- transactions ----------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[Metabase]:
        """Group several changes into one transaction: all of them happen, or none."""
        with self._write(bump=False):
            yield self

    @contextmanager
    def _write(self, *, bump: bool = True) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._depth:
                self._depth += 1
                self._bump = self._bump or bump
                try:
                    yield self._db
                finally:
                    self._depth -= 1
                return
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.DatabaseError as exc:
                raise _translate(self.path, exc) from exc
            self._depth, self._bump = 1, bump
            try:
                yield self._db
                if self._bump:
                    self._db.execute("UPDATE meta SET value = value + 1 WHERE key = 'generation'")
                    # No migration adds the row: the first change does, so a file stays usable
                    # by a seo that does not know the stamp (it moves only the counter).
                    self._db.execute(
                        "INSERT OR REPLACE INTO meta (key, value) VALUES ('stamp', random())"
                    )
                self._db.execute("COMMIT")
            except BaseException as exc:
                self._db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.DatabaseError):
                    raise _translate(self.path, exc) from exc
                raise
            finally:
                self._depth, self._bump = 0, False

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction, so that several queries see one snapshot."""
        with self._lock:
            if self._depth:
                yield self._db
                return
            try:
                self._db.execute("BEGIN")
                try:
                    yield self._db
                finally:
                    self._db.execute("COMMIT")
            except sqlite3.DatabaseError as exc:
                raise _translate(self.path, exc) from exc

    # -- change detection ------------------------------------------------------------------

    def generation(self) -> int:
        """A number that goes up by one with every change to bindings or sources."""
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        return int(row[0])

    def change_mark(self) -> tuple[int, int | None]:
        """The generation and the random stamp its last bump wrote (``None`` before the first
        change), read in one query: what a watcher compares to notice a change.

        The generation alone repeats after a backup is restored (back to 16, then a change
        makes it 17 a second time); the stamp of that change is new, so the pair never repeats.
        """
        with self._lock:
            row = self._db.execute(
                "SELECT (SELECT value FROM meta WHERE key = 'generation'), "
                "(SELECT value FROM meta WHERE key = 'stamp')"
            ).fetchone()
        return int(row[0]), None if row[1] is None else int(row[1])

    def data_version(self) -> int:
        """SQLite's per-connection change counter: moves when another connection commits.

        Cheaper than :meth:`generation`; a watcher reads it first and reads the generation only
        when it moved.
        """
        with self._lock:
            return int(self._db.execute("PRAGMA data_version").fetchone()[0])

    # -- sources ---------------------------------------------------------------------------

    def sources(self) -> list[Source]:
        """Every source, ordered by type and instance."""
        with self._read() as db:
            rows = db.execute(
                "SELECT name, type, instance, id, display_name FROM source ORDER BY type, instance"
            ).fetchall()
        return [Source(*row) for row in rows]

    def ensure_source(self, name: str | SourceName) -> Source:
        """Return the source ``name``, creating it if its type is known."""
        parsed = name if isinstance(name, SourceName) else parse_source(name)
        with self._write() as db:
            return self._ensure_source(db, parsed)

    def _ensure_source(self, db: sqlite3.Connection, name: SourceName) -> Source:
        row = db.execute(
            "SELECT name, type, instance, id, display_name FROM source WHERE name = ?",
            (str(name),),
        ).fetchone()
        if row is not None:
            return Source(*row)
        kind = name.source_type
        source = Source(
            name=str(name),
            type=kind.name,
            instance=name.instance,
            id=kind.source_guid(name.instance),
            display_name=kind.display_name(name.instance),
        )
        db.execute(
            "INSERT INTO source (name, type, instance, id, display_name) VALUES (?, ?, ?, ?, ?)",
            (source.name, source.type, source.instance, source.id, source.display_name),
        )
        return source

    # -- reading bindings ------------------------------------------------------------------

    def bindings(self, source: str | None = None, event: str | None = None) -> list[Binding]:
        """Bindings, optionally of one source and event, in firing order within each event."""
        where = ""
        params: tuple[str, ...] = ()
        if source is not None:
            parsed = parse_source(source)
            where, params = " WHERE source = ?", (str(parsed),)
            if event is not None:
                canonical = parsed.source_type.event(event).name
                where, params = " WHERE source = ? AND event = ?", (str(parsed), canonical)
        with self._read() as db:
            rows = db.execute(f"SELECT {_BINDING_COLUMNS} FROM binding{where}", params).fetchall()
            props = self._properties(db, [row[0] for row in rows] if where else None)
        found = [_binding_from_row(row, props.get(row[0], {})) for row in rows]
        found.sort(key=lambda b: (_source_order(b.source), b.event, b.priority, b.id))
        return found

    def binding(self, ref: BindingRef) -> Binding:
        """One binding by GUID or by ``(source, event, display name)``."""
        with self._read() as db:
            return self._load(db, self._find_id(db, ref))

    def _find_id(self, db: sqlite3.Connection, ref: BindingRef) -> str:
        if isinstance(ref, str):
            binding_id = parse_guid(ref, field="binding ID")
            row = db.execute("SELECT id FROM binding WHERE id = ?", (binding_id,)).fetchone()
            if row is None:
                raise NotFoundError("binding", binding_id)
            return str(row[0])
        source, event, name = ref
        parsed, event_type = resolve_event(source, event)
        row = db.execute(
            "SELECT id FROM binding WHERE source = ? AND event = ? AND display_name = ?",
            (str(parsed), event_type.name, name),
        ).fetchone()
        if row is None:
            raise NotFoundError("binding", f"{parsed} {event_type.name} {name!r}")
        return str(row[0])

    def _load(self, db: sqlite3.Connection, binding_id: str) -> Binding:
        row = db.execute(
            f"SELECT {_BINDING_COLUMNS} FROM binding WHERE id = ?", (binding_id,)
        ).fetchone()
        if row is None:
            raise NotFoundError("binding", binding_id)
        return _binding_from_row(row, self._properties(db, [binding_id]).get(binding_id, {}))

    def _properties(
        self, db: sqlite3.Connection, ids: list[str] | None
    ) -> dict[str, dict[str, dict[str, PropertyValue]]]:
        query = "SELECT binding_id, bag, name, value FROM binding_property"
        if ids is None:
            rows = db.execute(query).fetchall()
        else:
            rows = []
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows += db.execute(f"{query} WHERE binding_id IN ({marks})", chunk).fetchall()
        result: dict[str, dict[str, dict[str, PropertyValue]]] = {}
        for binding_id, bag, name, value in rows:
            result.setdefault(binding_id, {}).setdefault(bag, {})[name] = json.loads(value)
        return result

    # -- changing bindings -----------------------------------------------------------------

    def add_binding(self, spec: BindingSpec, *, check: BindingCheck | None = None) -> Binding:
        """Validate ``spec`` and store it as a new binding; its source comes into being if new."""
        binding = validate_spec(spec)
        with self._write() as db:
            self._ensure_source(db, parse_source(binding.source))
            if db.execute("SELECT 1 FROM binding WHERE id = ?", (binding.id,)).fetchone():
                raise ConflictError(f"binding ID {binding.id} already exists")
            self._refuse_duplicate_name(db, binding)
            if check is not None:
                check(binding)
            now = _now()
            db.execute(
                f"INSERT INTO binding ({_BINDING_COLUMNS}, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*_binding_row(binding), now, now),
            )
            self._write_properties(db, binding)
            return self._load(db, binding.id)

    def replace_binding(
        self, binding_id: str, spec: BindingSpec, *, check: BindingCheck | None = None
    ) -> Binding:
        """Overwrite every field of an existing binding with ``spec``, keeping its ID.

        The fire count is kept unless MaxFirings changes: setting a budget again starts it over.
        """
        with self._write() as db:
            old = self._load(db, self._find_id(db, binding_id))
            new = validate_spec(replace(spec, id=old.id))
            if new.max_firings == old.max_firings:
                new = replace(new, fire_count=old.fire_count)
            self._ensure_source(db, parse_source(new.source))
            self._refuse_duplicate_name(db, new)
            if check is not None:
                check(new)
            self._update_row(db, new)
            db.execute("DELETE FROM binding_property WHERE binding_id = ?", (old.id,))
            self._write_properties(db, new)
            return self._load(db, old.id)

    def remove_binding(self, ref: BindingRef) -> Binding:
        """Delete a binding and its properties; returns what was removed."""
        with self._write() as db:
            binding = self._load(db, self._find_id(db, ref))
            db.execute("DELETE FROM binding WHERE id = ?", (binding.id,))
            return binding

    def set_enabled(self, ref: BindingRef, enabled: bool) -> Binding:
        """Enable or disable a binding. Re-enabling keeps the fire count."""
        with self._write() as db:
            binding = self._load(db, self._find_id(db, ref))
            if binding.enabled == enabled:
                self._bump = False  # nothing changes: running dispatchers need not reload
                return binding
            self._update_row(db, replace(binding, enabled=enabled))
            return self._load(db, binding.id)

    def set_property(
        self,
        ref: BindingRef,
        bag: str,
        name: str,
        value: PropertyValue,
        *,
        check: BindingCheck | None = None,
    ) -> Binding:
        """Add or overwrite one property (case-insensitive name; the new spelling is kept)."""
        return self._change_bag(ref, bag, lambda items: items.with_value(name, value), check)

    def delete_property(
        self, ref: BindingRef, bag: str, name: str, *, check: BindingCheck | None = None
    ) -> Binding:
        """Remove one property; removing one that is not there is an error."""

        def without(items: PropertyBag) -> PropertyBag:
            if name not in items:
                raise NotFoundError(f"{bag} property", repr(name))
            return items.without(name)

        return self._change_bag(ref, bag, without, check)

    def _change_bag(
        self,
        ref: BindingRef,
        bag: str,
        change: Callable[[PropertyBag], PropertyBag],
        check: BindingCheck | None,
    ) -> Binding:
        if bag not in BAGS:
            raise ValidationError("bag", bag, f"must be one of {', '.join(BAGS)}")
        with self._write() as db:
            binding = self._load(db, self._find_id(db, ref))
            _, event = resolve_event(binding.source, binding.event)
            items = check_bag(bag, change(binding.bag(bag)), event)
            new = _with_bag(binding, bag, items)
            if check is not None:
                check(new)
            db.execute(
                "DELETE FROM binding_property WHERE binding_id = ? AND bag = ?", (binding.id, bag)
            )
            self._insert_bag(db, binding.id, bag, items)
            db.execute("UPDATE binding SET updated_at = ? WHERE id = ?", (_now(), binding.id))
            return self._load(db, binding.id)

    def _refuse_duplicate_name(self, db: sqlite3.Connection, binding: Binding) -> None:
        if binding.display_name is None:
            return
        row = db.execute(
            "SELECT id FROM binding WHERE source = ? AND event = ? AND display_name = ? "
            "AND id != ?",
            (binding.source, binding.event, binding.display_name, binding.id),
        ).fetchone()
        if row is not None:
            raise ConflictError(
                f"DisplayName {binding.display_name!r} is already used by binding {row[0]} "
                f"of {binding.source} {binding.event}"
            )

    def _update_row(self, db: sqlite3.Connection, binding: Binding) -> None:
        row = _binding_row(binding)
        db.execute(
            "UPDATE binding SET source = ?, event = ?, display_name = ?, sink_class = ?, "
            "enabled = ?, max_firings = ?, fire_count = ?, expiration = ?, origin = ?, "
            "updated_at = ? WHERE id = ?",
            (*row[1:], _now(), binding.id),
        )

    def _write_properties(self, db: sqlite3.Connection, binding: Binding) -> None:
        for bag in BAGS:
            self._insert_bag(db, binding.id, bag, binding.bag(bag))

    @staticmethod
    def _insert_bag(db: sqlite3.Connection, binding_id: str, bag: str, items: PropertyBag) -> None:
        db.executemany(
            "INSERT INTO binding_property (binding_id, bag, folded_name, name, value) "
            "VALUES (?, ?, ?, ?, ?)",
            [
                (binding_id, bag, name.casefold(), name, json.dumps(value, sort_keys=True))
                for name, value in items.items()
            ],
        )

    # -- firing ----------------------------------------------------------------------------

    def claim_firing(self, binding_id: str) -> bool:
        """Take one firing of a binding with a MaxFirings budget, before its sink is called.

        The conditional update succeeds only while the budget lasts, so servers sharing this
        metabase never over-fire. The firing that uses up the budget also disables the binding,
        in the same transaction (and that is a change other dispatchers must see).
        """
        with self._write(bump=False) as db:
            claimed = db.execute(
                "UPDATE binding SET fire_count = fire_count + 1 WHERE id = ? AND enabled = 1 "
                "AND (max_firings = 0 OR fire_count < max_firings)",
                (binding_id,),
            ).rowcount
            if (
                claimed
                and db.execute(
                    "UPDATE binding SET enabled = 0, updated_at = ? WHERE id = ? "
                    "AND max_firings > 0 AND fire_count >= max_firings",
                    (_now(), binding_id),
                ).rowcount
            ):
                self._bump = True
            return bool(claimed)

    def record_stats(self, deltas: Mapping[str, StatsDelta]) -> None:
        """Add batched per-binding statistics; unlimited bindings' fire counts ride along.

        Bindings removed meanwhile are skipped. This never moves the generation: statistics are
        not a change to what is bound.
        """
        if not deltas:
            return
        with self._write(bump=False) as db:
            for binding_id, delta in deltas.items():
                if (
                    db.execute("SELECT 1 FROM binding WHERE id = ?", (binding_id,)).fetchone()
                    is None
                ):
                    continue
                db.execute(
                    "INSERT INTO binding_stats (binding_id, notifications, failures, timeouts, "
                    "last_error, last_fired) VALUES (?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (binding_id) DO UPDATE SET "
                    "notifications = notifications + excluded.notifications, "
                    "failures = failures + excluded.failures, "
                    "timeouts = timeouts + excluded.timeouts, "
                    "last_error = coalesce(excluded.last_error, last_error), "
                    "last_fired = coalesce(excluded.last_fired, last_fired)",
                    (
                        binding_id,
                        delta.notifications,
                        delta.failures,
                        delta.timeouts,
                        delta.last_error,
                        delta.last_fired,
                    ),
                )
                if delta.unclaimed_firings:
                    db.execute(
                        "UPDATE binding SET fire_count = fire_count + ? WHERE id = ?",
                        (delta.unclaimed_firings, binding_id),
                    )

    def stats(self, ref: BindingRef) -> BindingStats:
        """The statistics of one binding (zeros if it never fired)."""
        with self._read() as db:
            binding_id = self._find_id(db, ref)
            row = db.execute(
                "SELECT notifications, failures, timeouts, last_error, last_fired "
                "FROM binding_stats WHERE binding_id = ?",
                (binding_id,),
            ).fetchone()
        return BindingStats(*row) if row else BindingStats()

    # -- maintenance -----------------------------------------------------------------------

    def dump(self) -> list[tuple[Any, ...]]:
        """Every row of every table, for comparing a metabase before and after a change."""
        with self._read() as db:
            tables = [
                row[0]
                for row in db.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
                )
            ]
            rows: list[tuple[Any, ...]] = []
            for table in tables:
                rows += [
                    (table, *row) for row in db.execute(f"SELECT * FROM {table} ORDER BY 1, 2")
                ]
        return rows


def _with_bag(binding: Binding, bag: str, items: PropertyBag) -> Binding:
    if bag == "binding":
        return replace(binding, binding_properties=items)
    if bag == "sink":
        return replace(binding, sink_properties=items)
    return replace(binding, source_properties=items)


def _source_order(name: str) -> tuple[str, int]:
    """``smtp/2`` before ``smtp/10``: by type, then instance number."""
    kind, _, instance = name.partition("/")
    return kind, int(instance) if instance.isdigit() else 0


def validate_spec(spec: BindingSpec) -> Binding:
    """Check every field of ``spec`` and return the binding it describes (not yet stored)."""
    source, event = resolve_event(spec.source, spec.event)
    return Binding(
        id=parse_guid(spec.id) if spec.id is not None else new_guid(),
        source=str(source),
        event=event.name,
        sink_class=check_sink_class(spec.sink_class),
        display_name=check_display_name(spec.display_name),
        enabled=bool(spec.enabled),
        max_firings=check_max_firings(spec.max_firings),
        fire_count=0,
        expiration=check_expiration(spec.expiration),
        binding_properties=check_bag("binding", spec.binding_properties, event),
        sink_properties=check_bag("sink", spec.sink_properties, event),
        source_properties=check_bag("source", spec.source_properties, event),
        origin=spec.origin,
    )


def _binding_row(binding: Binding) -> tuple[Any, ...]:
    return (
        binding.id,
        binding.source,
        binding.event,
        binding.display_name,
        binding.sink_class,
        int(binding.enabled),
        binding.max_firings,
        binding.fire_count,
        binding.expiration.astimezone(UTC).isoformat() if binding.expiration else None,
        binding.origin,
    )


def _binding_from_row(row: tuple[Any, ...], props: dict[str, dict[str, PropertyValue]]) -> Binding:
    (
        binding_id,
        source,
        event,
        display_name,
        sink_class,
        enabled,
        max_firings,
        fire_count,
        expiration,
        origin,
    ) = row
    return Binding(
        id=binding_id,
        source=source,
        event=event,
        display_name=display_name,
        sink_class=sink_class,
        enabled=bool(enabled),
        max_firings=max_firings,
        fire_count=fire_count,
        expiration=datetime.fromisoformat(expiration) if expiration else None,
        binding_properties=PropertyBag(props.get("binding")),
        sink_properties=PropertyBag(props.get("sink")),
        source_properties=PropertyBag(props.get("source")),
        origin=origin,
    )


def _prepare_file(path: Path, *, create: bool) -> None:
    """Refuse what is not a metabase before SQLite sees it, and create new files owner-only."""
    if path.is_dir():
        raise MetabaseError(path, "is a folder, not a metabase file")
    if path.exists():
        try:
            with path.open("rb") as handle:
                header = handle.read(len(SQLITE_HEADER))
        except OSError as exc:
            raise MetabaseError(path, f"cannot read: {exc.strerror}") from exc
        if (header and header != SQLITE_HEADER[: len(header)]) or 0 < len(header) < 16:
            raise MetabaseError(path, "is not a SQLite database")
        return
    if not create:
        raise UnmadeMetabaseError(path, "does not exist")
    parent = path.parent
    if not parent.is_dir():
        raise MetabaseError(path, f"folder {parent} does not exist")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    except OSError as exc:
        raise MetabaseError(path, f"cannot create it in {parent}: {exc.strerror}") from exc
    os.close(fd)


def _translate(path: Path, exc: sqlite3.DatabaseError) -> MetabaseError:
    """Turn SQLite's errors into a message that says what to do about them."""
    text = str(exc)
    if "not a database" in text or "malformed" in text:
        return MetabaseError(path, f"is not a usable SQLite database ({text})")
    if "readonly" in text or "unable to open" in text:
        return MetabaseError(path, f"cannot be written ({text}); check the folder's permissions")
    if "locked" in text or "busy" in text:
        return MetabaseError(path, f"stayed locked by another process ({text})")
    return MetabaseError(path, text)
