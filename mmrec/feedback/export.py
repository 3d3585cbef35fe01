"""Export the feedback store to date-partitioned Parquet for training (`mmrec feedback export`).

Layout (Hive-style, what Ray Data and pyarrow read as a dataset with a ``date`` column):
``DIR/impressions/date=YYYY-MM-DD/part-0.parquet`` (one row per item shown) and
``DIR/events/date=YYYY-MM-DD/part-0.parquet``, the date being the UTC day of ``ts``. Exporting
again replaces each exported day's file (atomically), so a re-run never duplicates rows.

The schemas extend `mmrec.rank.interactions.INTERACTIONS_SCHEMA`: its names where they mean
the same thing (user_id, item_id, event, value, ts, request_id, position, scene, channel), new
nullable columns for the rest. Differences: user_id is null for an anonymous kiosk visitor,
and ``event`` adds the API's types (impression_seen, add_to_cart, dismiss) to the contract's.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from mmrec.feedback.store import FeedbackStore, to_us

EXPORT_SCHEMA_VERSION = 1
_TS = pa.timestamp("us", tz="UTC")

IMPRESSIONS_EXPORT_SCHEMA = pa.schema([
    pa.field("user_id", pa.string()),                     # pseudonym; null: anonymous visitor
    pa.field("item_id", pa.string(), nullable=False),
    pa.field("event", pa.string(), nullable=False),       # always "impression"
    pa.field("value", pa.float32()),                      # null (the contract's label column)
    pa.field("ts", _TS, nullable=False),                  # when the answer was sent
    pa.field("request_id", pa.string(), nullable=False),  # groups one answer
    pa.field("position", pa.int16(), nullable=False),     # 0-based rank of the item's outfit
    pa.field("scene", pa.string()),
    pa.field("channel", pa.string()),
    pa.field("item_position", pa.int16(), nullable=False),  # 0-based place inside the outfit
    pa.field("slot", pa.string()),
    pa.field("score", pa.float32()),                      # the ranker's propensity as served
    pa.field("versions", pa.map_(pa.string(), pa.string())),  # artifact/model versions used
    pa.field("variant", pa.string()),                     # A/B variant; null: none
    pa.field("query", pa.string()),                       # JSON: how the typed text was read
], metadata={"mmrec.schema": "impressions", "mmrec.schema_version": str(EXPORT_SCHEMA_VERSION)})

EVENTS_EXPORT_SCHEMA = pa.schema([
    pa.field("user_id", pa.string()),
    pa.field("item_id", pa.string(), nullable=False),
    pa.field("event", pa.string(), nullable=False),       # impression_seen|click|add_to_cart|purchase|dismiss|rating
    pa.field("value", pa.float32()),                      # the rating 1..5; null otherwise
    pa.field("ts", _TS, nullable=False),                  # when it happened (client clock)
    pa.field("request_id", pa.string()),                  # the answer it reacts to, if sent
    pa.field("event_id", pa.string(), nullable=False),    # the client's idempotency key
    pa.field("received_at", _TS, nullable=False),         # when the server committed it
], metadata={"mmrec.schema": "events", "mmrec.schema_version": str(EXPORT_SCHEMA_VERSION)})


def _day(ts_us: int) -> str:
    return dt.datetime.fromtimestamp(ts_us / 1e6, dt.timezone.utc).date().isoformat()


def _ts(us: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(us / 1e6, dt.timezone.utc)


def _impression_rows(rows: list[tuple]) -> pa.Table:
    cols: dict[str, list] = {f.name: [] for f in IMPRESSIONS_EXPORT_SCHEMA}
    for rid, ts_us, user, channel, scene, query, items, versions, variant in rows:
        vers = list(json.loads(versions).items())
        for outfit, place, item_id, slot, score in json.loads(items):
            for k, v in (("user_id", user), ("item_id", item_id), ("event", "impression"), ("value", None),
                         ("ts", _ts(ts_us)), ("request_id", rid), ("position", outfit), ("scene", scene),
                         ("channel", channel), ("item_position", place), ("slot", slot), ("score", score),
                         ("versions", vers), ("variant", variant), ("query", query)):
                cols[k].append(v)
    return pa.table(cols, schema=IMPRESSIONS_EXPORT_SCHEMA)


def _event_rows(rows: list[tuple]) -> pa.Table:
    # store order: event_id, ts_us, received_us, user_id, request_id, item_id, type, value
    return pa.table({
        "user_id": [r[3] for r in rows], "item_id": [r[5] for r in rows], "event": [r[6] for r in rows],
        "value": [r[7] for r in rows], "ts": [_ts(r[1]) for r in rows], "request_id": [r[4] for r in rows],
        "event_id": [r[0] for r in rows], "received_at": [_ts(r[2]) for r in rows],
    }, schema=EVENTS_EXPORT_SCHEMA)


def _by_day(chunks: Iterator[list[tuple]]) -> Iterator[tuple[str, list[tuple]]]:
    """Group time-ordered rows by UTC day; holds one day's rows at a time."""
    day, acc = None, []
    for chunk in chunks:
        for r in chunk:
            d = _day(r[1])
            if d != day and acc:
                yield day, acc
                acc = []
            day = d
            acc.append(r)
    if acc:
        yield day, acc


def _write(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, path)  # a reader sees the old day's file or the new one, never half of one


def export(store: FeedbackStore, out: Path, since: dt.date | None = None) -> dict[str, dict[str, int]]:
    """Write impressions and events (from ``since``, a UTC day, if given) under ``out``.

    Returns:
        {"impressions": {day: rows}, "events": {day: rows}}.
    """
    since_us = to_us(dt.datetime.combine(since, dt.time(), dt.timezone.utc)) if since else None
    written: dict[str, dict[str, int]] = {}
    for table, build in (("impressions", _impression_rows), ("events", _event_rows)):
        written[table] = {}
        for day, rows in _by_day(store.rows(table, since_us=since_us)):
            t = build(rows)
            _write(t, out / table / f"date={day}" / "part-0.parquet")
            written[table][day] = t.num_rows
    return written
