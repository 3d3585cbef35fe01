"""The feedback store: one SQLite file in WAL mode holding impressions, events and profiles.

Why SQLite and not DuckDB: it needs no server and ships with Python (``sqlite3``); WAL lets
readers (an export, a `DELETE /v1/users`) run while a writer appends; per-row inserts with a
primary-key idempotency check (``INSERT OR IGNORE`` on ``event_id``) are what it does best,
whereas DuckDB is built for columnar scans and bulk loads, and allows one writing process per file.
Training never reads this file: `mmrec feedback export` turns it into Parquet.

Durability (``PRAGMA synchronous``, per connection):
- events are acknowledged to the client (202/207), so their connection runs ``FULL``: every
  commit fsyncs the WAL, and an acknowledged event survives a power loss, not only a crash
  of the process (``NORMAL`` in WAL mode survives a process crash but may lose the last
  commits on power loss). Measured cost in docs/serving.md ("Feedback loop").
- impressions are not acknowledged to anyone and are written in batches by one thread, so
  their connection runs ``NORMAL`` (no fsync per commit; a power loss may drop the last batch).

User ids never reach this module raw: callers pass pseudonyms (`mmrec.feedback.events.Pseudonyms`).
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

SCHEMA_VERSION = 4
Synchronous = Literal["NORMAL", "FULL"]

# One migration per schema version, applied in order inside one transaction each; the file
# records the version reached in PRAGMA user_version.
MIGRATIONS: dict[int, list[str]] = {
    1: [
        """CREATE TABLE impressions (
             request_id TEXT PRIMARY KEY,
             ts_us INTEGER NOT NULL,          -- answer time, microseconds since epoch (UTC)
             user_id TEXT,                    -- pseudonym or NULL (anonymous kiosk visitor)
             channel TEXT NOT NULL,
             scene TEXT NOT NULL,
             query TEXT,                      -- JSON: how the typed text was read
             items TEXT NOT NULL,             -- JSON: [[outfit, position in outfit, item_id, slot, score]]
             versions TEXT NOT NULL,          -- JSON: artifact/model versions used
             variant TEXT                     -- A/B variant (none yet)
           )""",
        "CREATE INDEX impressions_ts ON impressions(ts_us)",
        "CREATE INDEX impressions_user ON impressions(user_id)",
        """CREATE TABLE events (
             event_id TEXT PRIMARY KEY,       -- the client's idempotency key
             ts_us INTEGER NOT NULL,          -- when it happened (client clock)
             received_us INTEGER NOT NULL,    -- when the server committed it
             user_id TEXT,
             request_id TEXT,
             item_id TEXT NOT NULL,
             type TEXT NOT NULL,
             value REAL
           )""",
        "CREATE INDEX events_ts ON events(ts_us)",
        "CREATE INDEX events_user ON events(user_id)",
        """CREATE TABLE profiles (
             user_id TEXT PRIMARY KEY,
             updated_us INTEGER NOT NULL,
             profile TEXT NOT NULL            -- JSON of the validated profile fields
           )""",
    ],
}

# 2: live inventory — stock and price changes acknowledged by POST /v1/admin/catalog, read by
# every replica (mmrec.feedback.stock) and re-applied after a reload; the catalog artifact keeps
# the ingested truth, this table the changes since.
MIGRATIONS[2] = [
    """CREATE TABLE stock_updates (
         seq INTEGER PRIMARY KEY AUTOINCREMENT,
         received_us INTEGER NOT NULL,
         item_id TEXT NOT NULL,
         in_stock INTEGER,                -- 1 / 0, NULL: unchanged
         price REAL                       -- NULL: unchanged
       )""",
]

# 3: live catalog — the same log also takes new or replaced items (op 'upsert', the row and
# its vector as JSON in ``body``) and deletions (op 'delete'), so one sequence orders every change
# (a stock change after an upsert applies to the upserted row). Rows written under schema 2 are
# stock/price changes and read as op 'stock'.
MIGRATIONS[3] = [
    "ALTER TABLE stock_updates ADD COLUMN op TEXT NOT NULL DEFAULT 'stock'",  # stock | upsert | delete
    "ALTER TABLE stock_updates ADD COLUMN body TEXT",                        # upsert: JSON row + vector
]
# 4: kiosk photo answers — a photo the kiosk could not read, kept with the shopper's answer to
# "what is it?" only when the shopper agreed (`share_photo`); the image lies beside the store
# (`mmrec.feedback.photo_answers`), the row says what the shopper said it is.
MIGRATIONS[4] = [
    """CREATE TABLE photo_answers (
         photo_id TEXT PRIMARY KEY,       -- sha256 of the stored JPEG
         ts_us INTEGER NOT NULL,          -- when it was answered
         slot TEXT NOT NULL,
         category TEXT,                   -- NULL: the shopper named the slot only
         request_id TEXT
       )""",
    "CREATE INDEX photo_answers_ts ON photo_answers(ts_us)",
]
PHOTO_ANSWER_COLUMNS = ("photo_id", "ts_us", "slot", "category", "request_id")
CATALOG_OPS = ("stock", "upsert", "delete")
# one stored catalog change, as `catalog_changes_since` returns it less its seq
CatalogChange = tuple[str, str, "bool | None", "float | None", "dict | None"]  # (op, item_id, in_stock, price, body)

IMPRESSION_COLUMNS = ("request_id", "ts_us", "user_id", "channel", "scene", "query", "items",
                      "versions", "variant")
EVENT_COLUMNS = ("event_id", "ts_us", "received_us", "user_id", "request_id", "item_id", "type", "value")


def now_us() -> int:
    return int(dt.datetime.now(dt.timezone.utc).timestamp() * 1_000_000)


def to_us(t: dt.datetime) -> int:
    return int(t.timestamp() * 1_000_000)


def connect(path: str | Path, *, synchronous: Synchronous = "FULL", busy_timeout_ms: int = 10_000
            ) -> sqlite3.Connection:
    """Open (creating and migrating) the store at ``path`` in WAL mode.

    ``check_same_thread=False``: the server calls it from the thread pool, always under the
    owner's lock (`FeedbackStore`) or from one thread (the impression writer).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path, timeout=busy_timeout_ms / 1000, isolation_level=None,
                          check_same_thread=False)
    mode = con.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        con.close()
        raise OSError(f"{path}: SQLite refused WAL mode (got {mode!r}); the feedback store "
                      "needs a local filesystem that supports shared memory (not NFS)")
    con.execute(f"PRAGMA synchronous={synchronous}")
    con.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
    _migrate(con, path)
    return con


@contextmanager
def _immediate(con: sqlite3.Connection) -> Iterator[sqlite3.Cursor]:
    """One write transaction (BEGIN IMMEDIATE ... COMMIT, ROLLBACK on any exception)."""
    cur = con.cursor()
    cur.execute("BEGIN IMMEDIATE")
    try:
        yield cur
        cur.execute("COMMIT")
    except BaseException:
        cur.execute("ROLLBACK")
        raise


def _migrate(con: sqlite3.Connection, path: Path) -> None:
    with _immediate(con) as cur:  # one migrator at a time across processes
        have = cur.execute("PRAGMA user_version").fetchone()[0]
        if have > SCHEMA_VERSION:
            raise OSError(f"{path}: feedback store schema {have} is newer than this mmrec "
                          f"understands ({SCHEMA_VERSION}); upgrade mmrec")
        for v in range(have + 1, SCHEMA_VERSION + 1):
            for stmt in MIGRATIONS[v]:
                cur.execute(stmt)
            cur.execute(f"PRAGMA user_version={v}")


class FeedbackStore:
    """Synchronous writes (events, profiles, deletion, retention) over one connection.

    The impression logger writes through its own connection (`mmrec.feedback.impressions`);
    SQLite serialises the two writers with its lock (busy timeout), WAL keeps readers unblocked.
    """

    def __init__(self, path: str | Path, *, synchronous: Synchronous = "FULL"):
        self.path = Path(path)
        self.synchronous = synchronous
        self._con = connect(self.path, synchronous=synchronous)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._con.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Cursor]:
        """A write transaction on the store's connection, under its lock."""
        with self._lock, _immediate(self._con) as cur:
            yield cur

    # -- events ----------------------------------------------------------------------------
    def add_events(self, rows: list[tuple]) -> list[bool]:
        """Insert events (tuples in EVENT_COLUMNS order) in one transaction; commit before returning.

        Returns, per row, True if stored now, False if its event_id was already stored (a
        retry, or a repeat within the batch): the duplicate is ignored, never overwritten.
        """
        sql = f"INSERT OR IGNORE INTO events ({', '.join(EVENT_COLUMNS)}) VALUES ({', '.join('?' * len(EVENT_COLUMNS))})"
        out: list[bool] = []
        with self._write() as cur:
            for r in rows:
                cur.execute(sql, r)
                out.append(cur.rowcount == 1)
        return out

    def known_requests(self, request_ids: Iterable[str]) -> set[str]:
        ids = sorted(set(request_ids))
        if not ids:
            return set()
        with self._lock:
            rows = self._con.execute(
                f"SELECT request_id FROM impressions WHERE request_id IN ({', '.join('?' * len(ids))})",
                ids).fetchall()
        return {r[0] for r in rows}

    # -- live inventory --------------------------------------------------------------------
    def add_stock_updates(self, rows: list[tuple[str, bool | None, float | None]]) -> int:
        """Store (item_id, in_stock, price) changes in one transaction; the last sequence number."""
        return self.add_catalog_changes([("stock", i, st, p, None) for i, st, p in rows])

    def add_catalog_changes(self, rows: list[CatalogChange]) -> int:
        """Store (op, item_id, in_stock, price, body) changes in one transaction, in order;
        returns the last sequence number. ``op`` is one of CATALOG_OPS; ``body`` (upserts) is
        stored as JSON."""
        for op, *_ in rows:
            if op not in CATALOG_OPS:
                raise ValueError(f"catalog change op must be one of {CATALOG_OPS}, got {op!r}")
        with self._write() as cur:
            t = now_us()
            for op, item_id, in_stock, price, body in rows:
                cur.execute("INSERT INTO stock_updates (received_us, item_id, in_stock, price, op, body) "
                            "VALUES (?, ?, ?, ?, ?, ?)",
                            (t, item_id, None if in_stock is None else int(in_stock), price, op,
                             None if body is None else json.dumps(body, separators=(",", ":"))))
            seq = cur.execute("SELECT MAX(seq) FROM stock_updates").fetchone()[0] or 0
        return int(seq)

    def catalog_changes_since(self, seq: int, limit: int | None = None
                              ) -> list[tuple[int, str, str, bool | None, float | None, dict | None]]:
        """(seq, op, item_id, in_stock, price, body) of every change after ``seq``, oldest first."""
        sql = "SELECT seq, op, item_id, in_stock, price, body FROM stock_updates WHERE seq > ? ORDER BY seq"
        with self._lock:
            rows = self._con.execute(sql + (f" LIMIT {int(limit)}" if limit else ""), (seq,)).fetchall()
        return [(s, op, i, None if st is None else bool(st), p, None if b is None else json.loads(b))
                for s, op, i, st, p, b in rows]

    def stock_updates_since(self, seq: int) -> list[tuple[int, str, bool | None, float | None]]:
        """(seq, item_id, in_stock, price) of every stock/price change after ``seq``, oldest first."""
        return [(s, i, st, p) for s, op, i, st, p, _ in self.catalog_changes_since(seq) if op == "stock"]

    # -- profiles --------------------------------------------------------------------------
    def put_profile(self, user_id: str, profile: dict) -> bool:
        """Store (replace) a profile; True if the user had none before."""
        with self._write() as cur:
            had = cur.execute("SELECT 1 FROM profiles WHERE user_id = ?", (user_id,)).fetchone()
            cur.execute("INSERT OR REPLACE INTO profiles (user_id, updated_us, profile) VALUES (?, ?, ?)",
                        (user_id, now_us(), json.dumps(profile, sort_keys=True)))
        return had is None

    def get_profile(self, user_id: str) -> dict | None:
        with self._lock:
            row = self._con.execute("SELECT profile FROM profiles WHERE user_id = ?", (user_id,)).fetchone()
        return json.loads(row[0]) if row else None

    # -- kiosk photo answers ---------------------------------------------------------------
    def add_photo_answer(self, photo_id: str, slot: str, category: str | None, request_id: str | None) -> bool:
        """Store what a shopper said a photo shows; True if the photo was new (a later answer
        for the same photo replaces the earlier one: the shopper corrected it)."""
        with self._write() as cur:
            had = cur.execute("SELECT 1 FROM photo_answers WHERE photo_id = ?", (photo_id,)).fetchone()
            cur.execute(f"INSERT OR REPLACE INTO photo_answers ({', '.join(PHOTO_ANSWER_COLUMNS)}) "
                        "VALUES (?, ?, ?, ?, ?)", (photo_id, now_us(), slot, category, request_id))
        return had is None

    def photo_answers(self) -> list[tuple[str, int, str, str | None, str | None]]:
        """Every stored photo answer (PHOTO_ANSWER_COLUMNS), oldest first."""
        with self._lock:
            return self._con.execute(f"SELECT {', '.join(PHOTO_ANSWER_COLUMNS)} FROM photo_answers "
                                     "ORDER BY ts_us, photo_id").fetchall()

    # -- deletion and retention ------------------------------------------------------------
    def delete_user(self, user_id: str) -> dict[str, int]:
        """Remove the user's profile, events and impressions in one transaction; the counts."""
        return self._delete({t: ("user_id = ?", (user_id,)) for t in ("profiles", "events", "impressions")})

    def prune(self, older_than: dt.datetime) -> dict[str, int]:
        """Delete events, impressions and photo answers whose time is before ``older_than``
        (retention; the answers' image files go with `mmrec.feedback.photo_answers.prune_files`)."""
        cut = to_us(older_than)
        return self._delete({t: ("ts_us < ?", (cut,)) for t in ("events", "impressions", "photo_answers")})

    def _delete(self, where: dict[str, tuple[str, tuple]]) -> dict[str, int]:
        counts: dict[str, int] = {}
        with self._write() as cur:
            for table, (cond, args) in where.items():
                cur.execute(f"DELETE FROM {table} WHERE {cond}", args)
                counts[table] = cur.rowcount
        return counts

    # -- reads (export, tests) -------------------------------------------------------------
    def rows(self, table: Literal["impressions", "events", "profiles"], *, since_us: int | None = None,
             batch: int = 10_000) -> Iterator[list[tuple]]:
        """Rows of ``table`` (time-ordered for impressions/events) in chunks, from a read snapshot.

        A separate read-only connection: an export never holds the writers' lock.
        """
        cols = {"impressions": IMPRESSION_COLUMNS, "events": EVENT_COLUMNS,
                "profiles": ("user_id", "updated_us", "profile")}[table]
        sql = f"SELECT {', '.join(cols)} FROM {table}"
        args: tuple = ()
        if table != "profiles":
            if since_us is not None:
                sql, args = sql + " WHERE ts_us >= ?", (since_us,)
            sql += " ORDER BY ts_us"
        con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        try:
            cur = con.execute(sql, args)
            while chunk := cur.fetchmany(batch):
                yield chunk
        finally:
            con.close()

    def count(self, table: str) -> int:
        if table not in ("impressions", "events", "profiles"):
            raise ValueError(f"no table {table!r}; choose impressions, events or profiles")
        with self._lock:
            return int(self._con.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
