"""Stores saved on disk: one SQLite file per data directory, the only module that touches the disk.

Layout (``<data_dir>/mpstore.sqlite3``, WAL mode, held with an exclusive lock while open)::

    meta(key, value)                  'format' -> FORMAT
    stores(id, name, snapshot, snapshot_seq)
                                      one merged Yjs v1 update covering seq 1..snapshot_seq
    updates(store, seq, data)         every update applied since, local or remote, in order
    clients(store, client)            every Yjs client id this file's documents ever wrote under

A store's document is the snapshot, then the rows in ``seq`` order. Applying a Yjs update twice
changes nothing, so whatever a crash interrupts, replay is exact: a row is either committed or
not, and compaction (write the document's full state as the new snapshot, delete the rows it
covers) is one transaction.

Threads: a :class:`Database` belongs to the core thread, like the documents it logs.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from ._errors import ConfigurationError, CorruptUpdate, InvalidArgument, PersistError, StoreLocked
from ._lib0 import Reader
from .engines.base import EngineDoc

__all__ = [
    "DB_FILE",
    "FLUSH_DELAY",
    "FORMAT",
    "Database",
    "LoggedDoc",
    "Persistence",
    "StoreInfo",
    "inspect",
]

log = logging.getLogger("mpstore.persist")

#: The on-disk format this version writes and reads; a newer one is refused.
FORMAT: Final = 1
DB_FILE: Final = "mpstore.sqlite3"
#: Updates are committed at most this many seconds after they were applied (default durability).
FLUSH_DELAY: Final = 0.05
#: ... or at once when this many updates, or this many bytes, wait.
FLUSH_ROWS: Final = 1000
FLUSH_BYTES: Final = 1 << 20
#: Compaction: when replaying the log would cost more than loading the snapshot. Replaying one
#: row costs about what loading ROW_COST bytes of snapshot costs (measured on a store of 100
#: keys after 100,000 writes: a 975 kB snapshot loads in 1.0 s on pycrdt, 1.3 s on the pure engine,
#: about 1 us per byte; 990 small rows replay in 0.094 s and 0.037 s, 40-95 us per row), so a store
#: compacts when ``log bytes + ROW_COST * rows >= snapshot bytes``, never for fewer than
#: COMPACT_MIN_ROWS. Hence the file holds at most about twice the snapshot, opening costs at most
#: about twice the snapshot's load, and the snapshot is rewritten only after at least its own
#: weight of new log (each byte of update is rewritten a bounded number of times, amortised).
ROW_COST: Final = 64
COMPACT_MIN_ROWS: Final = 64
#: After a failed commit, retry no sooner than this (doubling up to RETRY_MAX).
RETRY_MIN: Final = 0.5
RETRY_MAX: Final = 30.0

_SCHEMA: Final = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS stores (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,"
    " snapshot BLOB, snapshot_seq INTEGER NOT NULL DEFAULT 0)",
    "CREATE TABLE IF NOT EXISTS updates (store INTEGER NOT NULL, seq INTEGER NOT NULL,"
    " data BLOB NOT NULL, PRIMARY KEY (store, seq)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS clients (store INTEGER NOT NULL, client INTEGER NOT NULL,"
    " PRIMARY KEY (store, client)) WITHOUT ROWID",
)

# Data directories held by this process (resolved path -> owner), for a clear in-process error.
_HELD: dict[str, object] = {}
_HELD_LOCK = threading.Lock()

Schedule = Callable[[float, Callable[[], None]], None]


def _describe(exc: BaseException) -> str:
    text = str(exc)
    low = text.lower()
    if "full" in low or (isinstance(exc, OSError) and exc.errno == 28):
        return f"{text} (the disk is full)"
    if "readonly" in low or "read-only" in low or isinstance(exc, PermissionError):
        return f"{text} (the folder or file is read-only)"
    return text


def _state_vector_clients(sv: bytes) -> set[int]:
    """The client ids in an encoded Yjs state vector."""
    reader = Reader(sv)
    out = set()
    for _ in range(reader.read_count(2)):
        out.add(reader.read_var_uint())
        reader.read_var_uint()
    return out


class Database:
    """One data directory: its SQLite file, held by this process alone while open."""

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        durable: bool = False,
        schedule: Schedule | None = None,
        create: bool = True,
    ) -> None:
        self.data_dir = os.path.abspath(os.fspath(data_dir))
        self.path = os.path.join(self.data_dir, DB_FILE)
        self.durable = durable
        self._schedule = schedule
        self._conn: sqlite3.Connection | None = None
        self._logs: dict[str, StoreLog] = {}
        self._pending: list[tuple[StoreLog, int, bytes]] = []
        self._pending_bytes = 0
        self._timer = False
        self._retry = 0.0
        self.failure: PersistError | None = None
        key = os.path.realpath(self.data_dir)
        with _HELD_LOCK:
            if key in _HELD:
                raise StoreLocked(
                    f"data_dir {self.data_dir!r} is already open in this process "
                    "(another MultipeerConnectivity uses it; end_all() that one first)"
                )
            _HELD[key] = self
        self._key = key
        try:
            self._open(create)
        except BaseException:
            self._release()
            raise

    # -- opening ---------------------------------------------------------------------------------

    def _open(self, create: bool) -> None:
        if create:
            try:
                os.makedirs(self.data_dir, exist_ok=True)
            except OSError as exc:
                raise PersistError(f"cannot create data_dir {self.data_dir!r}: {_describe(exc)}") from None
        elif not os.path.exists(self.path):
            raise PersistError(f"no saved stores in {self.data_dir!r} (no {DB_FILE})")
        try:
            conn = sqlite3.connect(self.path, timeout=0, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise PersistError(f"cannot open {self.path!r}: {_describe(exc)}") from None
        self._conn = conn
        try:
            conn.execute("PRAGMA locking_mode=EXCLUSIVE")
            # The lock is taken here and kept until close(): a second process gets SQLITE_BUSY.
            conn.execute("BEGIN IMMEDIATE")
            fresh = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0
            if not fresh:
                self._check_format(conn)
            for stmt in _SCHEMA:
                conn.execute(stmt)
            if fresh:
                conn.execute("INSERT INTO meta VALUES ('format', ?)", (FORMAT,))
            conn.execute("COMMIT")
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                log.warning("%s: WAL mode refused (journal_mode=%s); carrying on", self.path, mode)
            conn.execute(f"PRAGMA synchronous={'FULL' if self.durable else 'NORMAL'}")
        except sqlite3.OperationalError as exc:
            self._close_conn()
            if "locked" in str(exc) or "busy" in str(exc):
                raise StoreLocked(
                    f"data_dir {self.data_dir!r} is in use by another process "
                    "(one process at a time may open a data directory)"
                ) from None
            raise PersistError(f"cannot open {self.path!r}: {_describe(exc)}") from None
        except sqlite3.DatabaseError as exc:
            self._close_conn()
            raise PersistError(f"{self.path!r} is not an mpstore database: {exc}") from None
        except BaseException:
            self._close_conn()
            raise

    def _check_format(self, conn: sqlite3.Connection) -> None:
        try:
            row = conn.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
        except sqlite3.OperationalError:
            row = None
        if row is None or not isinstance(row[0], int):
            raise PersistError(f"{self.path!r} is not an mpstore database (no format record)")
        if row[0] > FORMAT:
            raise PersistError(
                f"{self.path!r} was written by a newer mpstore (format {row[0]}); this version "
                f"reads format {FORMAT}: upgrade mpstore to open it (the file was not changed)"
            )

    def _close_conn(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except sqlite3.Error:
                pass
            self._conn = None

    def _release(self) -> None:
        with _HELD_LOCK:
            if _HELD.get(self._key) is self:
                del _HELD[self._key]

    @property
    def conn(self) -> sqlite3.Connection:
        """The open connection (PersistError once closed)."""
        if self._conn is None:
            raise PersistError(f"{self.path!r} is closed")
        return self._conn

    # -- stores ------------------------------------------------------------------------------------

    def names(self) -> list[str]:
        """The names of the stores saved here."""
        return [r[0] for r in self.conn.execute("SELECT name FROM stores ORDER BY name")]

    def log(self, name: str) -> StoreLog:
        """The saved history of store ``name``, created (empty) if new."""
        found = self._logs.get(name)
        if found is not None:
            return found
        conn = self.conn
        row = conn.execute(
            "SELECT id, length(snapshot), snapshot_seq FROM stores WHERE name = ?", (name,)
        ).fetchone()
        try:
            if row is None:
                conn.execute("BEGIN IMMEDIATE")
                cur = conn.execute("INSERT INTO stores (name) VALUES (?)", (name,))
                conn.execute("COMMIT")
                assert cur.lastrowid is not None
                row = (cur.lastrowid, None, 0)
            rows, size, last = conn.execute(
                "SELECT count(*), coalesce(sum(length(data)), 0), coalesce(max(seq), 0)"
                " FROM updates WHERE store = ?",
                (row[0],),
            ).fetchone()
        except sqlite3.Error as exc:
            self._rollback()
            raise PersistError(f"{self.path!r}: cannot open store {name!r}: {_describe(exc)}") from None
        found = StoreLog(
            self,
            name,
            int(row[0]),
            snapshot_bytes=int(row[1] or 0),
            log_rows=int(rows),
            log_bytes=int(size),
            next_seq=max(int(last), int(row[2])) + 1,
        )
        self._logs[name] = found
        return found

    def _rollback(self) -> None:
        if self._conn is not None and self._conn.in_transaction:
            try:
                self._conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass

    # -- writing -------------------------------------------------------------------------------------

    def _append(self, store: StoreLog, seq: int, update: bytes) -> None:
        self._pending.append((store, seq, update))
        self._pending_bytes += len(update)
        if len(self._pending) >= FLUSH_ROWS or self._pending_bytes >= FLUSH_BYTES:
            self._flush_quietly()
        else:
            self._arm(FLUSH_DELAY)

    def _arm(self, delay: float) -> None:
        if self._timer or self._schedule is None or self._conn is None:
            return
        self._timer = True
        self._schedule(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = False
        if self._conn is not None:
            self._flush_quietly()

    def _flush_quietly(self) -> None:
        try:
            self.flush()
        except PersistError as exc:
            log.error("%s", exc)

    def dirty(self) -> bool:
        """True while something applied is not committed yet."""
        return bool(self._pending) or any(s.needs_snapshot for s in self._logs.values())

    def flush(self, sync: bool = False) -> None:
        """Commit everything applied so far (``sync``: and fsync it); PersistError on failure.

        On failure nothing is lost from memory: the documents hold every update, and each store
        whose rows could not be written is saved whole (a snapshot) by the next flush that works.
        """
        conn = self.conn
        waiting: dict[StoreLog, list[int]] = {}
        for s, _, data in self._pending:
            counts = waiting.setdefault(s, [0, 0])
            counts[0] += 1
            counts[1] += len(data)
        due = [
            s
            for s in self._logs.values()
            if s.doc is not None and (s.needs_snapshot or s.compaction_due(*waiting.get(s, (0, 0))))
        ]
        if not self._pending and not due:
            if sync and not self.durable:
                self._checkpoint()
            return
        pending, self._pending, self._pending_bytes = self._pending, [], 0
        full = sync and not self.durable
        try:
            if full:
                conn.execute("PRAGMA synchronous=FULL")
            # First the appends, in a transaction of their own: they are the durability point,
            # and must not wait for a compaction's encoding (seconds for a large document).
            if pending or any(s._claims for s in self._logs.values()):
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(
                    "INSERT OR REPLACE INTO updates (store, seq, data) VALUES (?, ?, ?)",
                    [(s.store_id, seq, data) for s, seq, data in pending],
                )
                claims = [(s.store_id, c) for s in self._logs.values() for c in s.take_claims()]
                if claims:
                    conn.executemany("INSERT OR IGNORE INTO clients VALUES (?, ?)", claims)
                conn.execute("COMMIT")
                for s in self._logs.values():
                    s._claimed = []
                for s, _, data in pending:
                    s.log_rows += 1
                    s.log_bytes += len(data)
                pending = []
            # Then each compaction: the new snapshot and the deletion of the rows it covers
            # in one transaction.
            for s in due:
                data, upto = s.snapshot_now()
                conn.execute("BEGIN IMMEDIATE")
                conn.execute(
                    "UPDATE stores SET snapshot = ?, snapshot_seq = ? WHERE id = ?", (data, upto, s.store_id)
                )
                conn.execute("DELETE FROM updates WHERE store = ? AND seq <= ?", (s.store_id, upto))
                conn.execute("COMMIT")
                s.compacted(len(data), upto)
        except Exception as exc:  # sqlite3.Error, OSError, or anything else: nothing half-done
            self._rollback()
            for s in {s for s, _, _ in pending}:  # rows not written: saved whole next time
                s.needs_snapshot = True
            for s in self._logs.values():
                s.unclaim()
            self._retry = min(RETRY_MAX, max(RETRY_MIN, self._retry * 2))
            self._arm(self._retry)
            self.failure = PersistError(
                f"saving to {self.path!r} failed: {_describe(exc)}; the stores keep working in "
                "memory and are saved whole by the next flush that succeeds"
            )
            raise self.failure from None
        finally:
            if full:
                try:
                    conn.execute("PRAGMA synchronous=NORMAL")
                except sqlite3.Error:
                    pass
        self._retry = 0.0
        self.failure = None

    def _checkpoint(self) -> None:
        try:
            self.conn.execute("PRAGMA wal_checkpoint(FULL)")
        except sqlite3.Error as exc:
            raise PersistError(f"saving to {self.path!r} failed: {_describe(exc)}") from None

    def close(self) -> None:
        """Flush, then release the file and its lock; raises PersistError if the flush failed."""
        if self._conn is None:
            return
        try:
            self.flush(sync=True)
        finally:
            self._close_conn()
            self._release()


class StoreLog:
    """The saved history of one store in a :class:`Database` (core thread)."""

    def __init__(
        self,
        db: Database,
        name: str,
        store_id: int,
        *,
        snapshot_bytes: int,
        log_rows: int,
        log_bytes: int,
        next_seq: int,
    ) -> None:
        self.db = db
        self.name = name
        self.store_id = store_id
        self.snapshot_bytes = snapshot_bytes
        self.log_rows = log_rows
        self.log_bytes = log_bytes
        self.next_seq = next_seq
        self.needs_snapshot = False
        self.doc: EngineDoc | None = None
        self._claims: list[int] = []
        self._claimed: list[int] = []

    def saved(self) -> Iterator[bytes]:
        """The saved updates in order: the snapshot, then the rows after it (skipping non-bytes)."""
        conn = self.db.conn
        row = conn.execute(
            "SELECT snapshot, snapshot_seq FROM stores WHERE id = ?", (self.store_id,)
        ).fetchone()
        upto = 0
        if row is not None:
            upto = row[1] if isinstance(row[1], int) else 0
            if row[0] is not None:
                yield from self._blob(row[0], "snapshot")
        cur = conn.execute(
            "SELECT seq, data FROM updates WHERE store = ? AND seq > ? ORDER BY seq", (self.store_id, upto)
        )
        for seq, data in cur:
            yield from self._blob(data, f"update {seq}")

    def _blob(self, data: object, what: str) -> Iterator[bytes]:
        if isinstance(data, bytes):
            yield data
        else:
            log.warning("store %r in %s: %s is not a byte string: skipped", self.name, self.db.path, what)

    def used_clients(self) -> set[int]:
        """Every client id this store's saved documents were opened with."""
        cur = self.db.conn.execute("SELECT client FROM clients WHERE store = ?", (self.store_id,))
        return {c for (c,) in cur if isinstance(c, int)}

    def claim(self, client: int) -> None:
        """Record ``client`` as used, committed now (before any update under it can exist)."""
        conn = self.db.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT OR IGNORE INTO clients VALUES (?, ?)", (self.store_id, client))
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self.db._rollback()
            raise PersistError(f"{self.db.path!r}: cannot record a client id: {_describe(exc)}") from None

    def claim_later(self, client: int) -> None:
        """Record ``client`` with the next commit (it changed while the store was open)."""
        self._claims.append(client)

    def take_claims(self) -> list[int]:
        """Claims for the commit in progress."""
        self._claimed, self._claims = self._claims, []
        return self._claimed

    def unclaim(self) -> None:
        """The commit failed: keep its claims for the next one."""
        self._claims[:0] = self._claimed
        self._claimed = []

    def append(self, update: bytes) -> None:
        """Queue one applied update; committed within FLUSH_DELAY (never raises)."""
        if self.needs_snapshot:
            self.db._arm(FLUSH_DELAY)
            return  # the next snapshot covers it
        seq = self.next_seq
        self.next_seq += 1
        self.db._append(self, seq, update)

    def compaction_due(self, more_rows: int = 0, more_bytes: int = 0) -> bool:
        """True when the log, with what is about to be written, outweighs the snapshot."""
        rows, size = self.log_rows + more_rows, self.log_bytes + more_bytes
        return rows >= COMPACT_MIN_ROWS and size + ROW_COST * rows >= self.snapshot_bytes

    def snapshot_now(self) -> tuple[bytes, int]:
        """The document's whole state and the last sequence number it covers."""
        if self.doc is None:
            raise PersistError(f"store {self.name!r}: no document to save")
        return self.doc.encode_diff(b"\x00"), self.next_seq - 1

    def compacted(self, size: int, upto: int) -> None:
        """A snapshot covering 1..upto was committed."""
        self.snapshot_bytes = size
        self.log_rows = 0
        self.log_bytes = 0
        self.needs_snapshot = False
        for s, seq, data in self.db._pending:
            if s is self and seq > upto:
                self.log_rows += 1
                self.log_bytes += len(data)


class LoggedDoc(EngineDoc):
    """An engine document whose every applied update, local or remote, goes to its StoreLog."""

    def __init__(self, doc: EngineDoc, store: StoreLog) -> None:
        self.inner = doc
        self.store = store
        self._client = doc.client_id
        store.doc = doc

    @property
    def client_id(self) -> int:
        """The inner document's client id."""
        return self.inner.client_id

    def get(self, key: str) -> str | None:
        """The value of ``key``."""
        return self.inner.get(key)

    def items(self) -> list[tuple[str, str]]:
        """All entries."""
        return self.inner.items()

    def transact(self, sets: Mapping[str, str], deletes: Iterable[str]) -> bytes:
        """Apply a local transaction and log its update."""
        update = self.inner.transact(sets, deletes)
        if update:
            self._check_client()
            self.store.append(update)
        return update

    def apply_update(self, update: bytes) -> dict[str, str | None]:
        """Apply a remote update and log it (a rejected one raises and is not logged)."""
        changes = self.inner.apply_update(update)
        if update != b"\x00\x00":
            self._check_client()
            self.store.append(update)
        return changes

    def _check_client(self) -> None:
        # The pure engine picks a new client id when a remote update uses its own: record it.
        client = self.inner.client_id
        if client != self._client:
            self._client = client
            self.store.claim_later(client)

    def state_vector(self) -> bytes:
        """The state vector."""
        return self.inner.state_vector()

    def encode_diff(self, state_vector: bytes) -> bytes:
        """What ``state_vector`` lacks."""
        return self.inner.encode_diff(state_vector)

    # EngineDoc's defaults would answer here without asking the engine: delegate each one.
    def encode_diff_parts(self, state_vector: bytes, max_bytes: int) -> Iterator[bytes]:
        """What ``state_vector`` lacks, in parts, as the engine cuts it."""
        return self.inner.encode_diff_parts(state_vector, max_bytes)

    def waiting(self) -> bool:
        """True while the engine holds updates it cannot integrate yet."""
        return self.inner.waiting()

    def deleted_last(self) -> bool:
        """The engine's answer for the last remote update."""
        return self.inner.deleted_last()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def load_doc(store: StoreLog, new_doc: Callable[[], EngineDoc]) -> EngineDoc:
    """A document holding the store's saved state, under a client id never used for it before.

    Yjs forbids two documents writing under one client id; a reopened store could collide with
    its earlier self only by picking a recorded id, which is excluded here (and recorded before
    any write), or one in the loaded state vector, which is excluded too.
    """
    used = store.used_clients()
    for _ in range(16):
        doc = new_doc()
        if doc.client_id in used:
            continue
        skipped = 0
        for data in store.saved():
            try:
                doc.apply_update(data)
            except CorruptUpdate as exc:
                skipped += 1
                log.warning(
                    "store %r in %s: a saved update does not decode, skipped: %s",
                    store.name,
                    store.db.path,
                    exc,
                )
        if skipped:
            log.warning("store %r: %d saved update(s) skipped; the rest is loaded", store.name, skipped)
            store.needs_snapshot = True
        if doc.client_id in used or doc.client_id in _state_vector_clients(doc.state_vector()):
            used.add(doc.client_id)
            continue
        store.claim(doc.client_id)
        return doc
    raise PersistError(f"store {store.name!r}: could not find a fresh client id")


@dataclass(frozen=True)
class StoreInfo:
    """What ``mpstore store PATH`` shows of one saved store."""

    name: str
    keys: list[str]
    snapshot_bytes: int
    log_rows: int
    log_bytes: int
    history: int
    clients: int
    values: dict[str, str] | None = None


def inspect(
    data_dir: str | os.PathLike[str], new_doc: Callable[[], EngineDoc], *, values: bool = False
) -> tuple[str, int, list[StoreInfo]]:
    """The database path, its size in bytes and what each saved store holds (opens it exclusively)."""
    path = os.fspath(data_dir)
    if os.path.basename(path) == DB_FILE and os.path.isfile(path):
        path = os.path.dirname(path) or "."
    db = Database(path, create=False)
    try:
        out = []
        for name in db.names():
            s = db.log(name)
            doc = new_doc()
            for data in s.saved():
                try:
                    doc.apply_update(data)
                except CorruptUpdate as exc:
                    log.warning("store %r: a saved update does not decode, skipped: %s", name, exc)
            entries = dict(doc.items())
            out.append(
                StoreInfo(
                    name,
                    sorted(entries),
                    s.snapshot_bytes,
                    s.log_rows,
                    s.log_bytes,
                    s.next_seq - 1,
                    len(s.used_clients()),
                    entries if values else None,
                )
            )
        size = sum(os.path.getsize(p) for p in (db.path, db.path + "-wal") if os.path.exists(p))
        return db.path, size, out
    finally:
        db._close_conn()
        db._release()


class Persistence:
    """The store manager's side of persistence: which stores persist where, and their logs.

    The manager calls :meth:`new_doc` whenever a store's document is created (opened locally or
    first heard of from a peer), :meth:`after_write` after each local transaction of a store,
    :meth:`flush` for ``SharedDict.flush()``, and :meth:`close` at ``end_all()``.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None,
        *,
        durable: bool = False,
        schedule: Schedule | None = None,
    ) -> None:
        self._schedule = schedule
        self._durable = durable
        self._default: Database | None = None
        self._dbs: dict[str, Database] = {}
        # name -> the database its document logs to (absent: in memory only)
        self._where: dict[str, Database] = {}
        self._choice: dict[str, Database | None] = {}
        self._durable_stores: set[str] = set()
        if data_dir is not None:
            self._default = self._db(data_dir)

    def _db(self, data_dir: str | os.PathLike[str]) -> Database:
        key = os.path.realpath(os.path.abspath(os.fspath(data_dir)))
        db = self._dbs.get(key)
        if db is None:
            db = Database(data_dir, durable=self._durable, schedule=self._schedule)
            self._dbs[key] = db
        return db

    @property
    def data_dir(self) -> str | None:
        """The object's data directory, or None."""
        return None if self._default is None else self._default.data_dir

    def choose(
        self,
        name: str,
        persist: bool | str | os.PathLike[str] | None,
        durable: bool | None,
        held: EngineDoc | None,
    ) -> EngineDoc | None:
        """Apply ``shared_dict(name, persist=..., durable=...)``; ``held``: the store's document
        if it exists already (a peer sent the store, or it was opened before).

        Returns the document that replaces ``held`` when its saving changes: a held in-memory
        store starts being saved (its whole state first), or a saved one stops being logged (what
        is on disk stays). Raises ConfigurationError when that cannot be done without losing or
        mixing data: the target directory already has saved data for a store held in memory, or
        the store is saved in another directory.
        """
        if persist is None:
            target: Database | None = self._choice.get(name, self._default)
        elif persist is False:
            target = None
        elif persist is True:
            if self._default is None:
                raise ConfigurationError("persist=True needs MultipeerConnectivity(data_dir=...) or a path")
            target = self._default
        elif isinstance(persist, (str, os.PathLike)):
            target = self._db(persist)
        else:
            raise InvalidArgument(f"persist must be None, a bool or a path, not {type(persist).__name__}")
        replacement: EngineDoc | None = None
        current = self._where.get(name)
        if held is not None and persist is not None and current is not target:
            if target is None:
                assert isinstance(held, LoggedDoc) and current is not None
                del self._where[name]
                current._logs.pop(name, None)  # rows already queued are still committed
                replacement = held.inner
            elif current is not None:
                raise ConfigurationError(
                    f"store {name!r} is already saved in {current.data_dir!r}; it cannot move to "
                    f"{target.data_dir!r} while open"
                )
            else:
                replacement = self._adopt(name, held, target)
        self._choice[name] = target
        if durable:
            self._durable_stores.add(name)
        elif durable is False:
            self._durable_stores.discard(name)
        return replacement

    def _adopt(self, name: str, doc: EngineDoc, db: Database) -> EngineDoc:
        """Start saving a store held in memory: its whole state is the first thing written."""
        store = db.log(name)
        if store.snapshot_bytes or store.log_rows or store.next_seq > 1:
            raise ConfigurationError(
                f"store {name!r} is held in memory (a peer sent it before it was opened here) and "
                f"{db.data_dir!r} already has saved data for it: open it with persist= before "
                "peers connect, or give the object a data_dir"
            )
        if doc.client_id in store.used_clients():
            raise ConfigurationError(f"store {name!r}: its client id was used before in {db.data_dir!r}")
        store.claim(doc.client_id)
        wrapped = LoggedDoc(doc, store)
        store.needs_snapshot = True
        db._arm(FLUSH_DELAY)
        self._where[name] = db
        return wrapped

    def new_doc(self, name: str, make: Callable[[], EngineDoc]) -> EngineDoc:
        """The document for store ``name``: loaded from disk when it persists, else empty."""
        db = self._choice.get(name, self._default)
        if db is None:
            return make()
        store = db.log(name)
        doc = LoggedDoc(load_doc(store, make), store)
        self._where[name] = db
        return doc

    def persists(self, name: str) -> bool:
        """True if store ``name`` is saved on disk."""
        return name in self._where

    def after_write(self, name: str) -> None:
        """A local transaction of ``name`` was applied: commit it now if the store is durable."""
        db = self._where.get(name)
        if db is not None and (db.durable or name in self._durable_stores):
            db.flush(sync=True)

    def is_durable(self, name: str) -> bool:
        """True if writes to ``name`` are committed before they return."""
        db = self._where.get(name) or self._choice.get(name, self._default)
        return db is not None and (db.durable or name in self._durable_stores)

    def flush(self, name: str | None = None) -> None:
        """Commit and fsync the store ``name`` (every store for None); PersistError on failure."""
        dbs = list(self._dbs.values()) if name is None else [d for d in [self._where.get(name)] if d]
        for db in dbs:
            db.flush(sync=True)

    def close(self) -> PersistError | None:
        """Flush and release every database; return the first failure (never raises)."""
        first: PersistError | None = None
        for db in self._dbs.values():
            try:
                db.close()
            except PersistError as exc:
                log.error("%s", exc)
                first = first or exc
        return first
