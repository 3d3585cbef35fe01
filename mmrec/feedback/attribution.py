"""Attribution: impressions x events -> one row per shown item with what the shopper did.

The join that training from logs (`mmrec rank train --dataset logs`) and any click-rate report
read. Inputs are the export's tables (`mmrec.feedback.export`: impressions one row per item
shown, events one row per event), or the same tables read straight from the store (`read_store`).

Rules (each tested in tests/test_rank_logs.py):
- A shown item is (request_id, item_id); an item repeated inside one answer counts once, at
  its first (lowest) outfit position.
- An answer's time is the time its client first reported seeing it (the earliest
  ``impression_seen`` event carrying its request_id), else the server's answer time. Labels
  compare client clocks with client clocks: the server's clock and an app's may disagree by
  minutes, and a replayed or simulated day has client times only.
- An event carrying the request_id of a logged answer that showed its item is attributed to
  that row; an event without a request_id, or whose request_id no logged answer has (the
  impression was dropped or pruned), is attributed to the latest answer that showed that item
  to that user before the event. Either way only within ``window`` after the answer's time:
  events before the answer or later than the window are not attributed.
- An event whose request_id names a logged answer that did not show its item is ignored.
- Events are de-duplicated by event_id (two exports of one day, a client retry); repeated
  clicks on one shown item make one positive label.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections import defaultdict
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

LABELS = {"click": "clicked", "add_to_cart": "added", "purchase": "purchased"}
SEEN = "impression_seen"
_TS = pa.timestamp("us", tz="UTC")

JOINED_SCHEMA = pa.schema([
    pa.field("request_id", pa.string(), nullable=False),
    pa.field("user_id", pa.string()),                 # pseudonym; null: anonymous
    pa.field("item_id", pa.string(), nullable=False),
    pa.field("ts", _TS, nullable=False),              # the answer's time (client clock if reported)
    pa.field("server_ts", _TS, nullable=False),       # when the server answered
    pa.field("day", pa.string(), nullable=False),     # UTC day of ts, YYYY-MM-DD
    pa.field("position", pa.int16(), nullable=False),  # 0-based outfit rank the item was shown in
    pa.field("item_position", pa.int16(), nullable=False),
    pa.field("slot", pa.string()),
    pa.field("score", pa.float32()),                  # the served ranker's propensity
    pa.field("scene", pa.string()),
    pa.field("channel", pa.string()),
    pa.field("variant", pa.string()),
    pa.field("seen", pa.bool_(), nullable=False),     # an impression_seen was reported
    pa.field("clicked", pa.bool_(), nullable=False),
    pa.field("added", pa.bool_(), nullable=False),
    pa.field("purchased", pa.bool_(), nullable=False),
    pa.field("click_ts", _TS),                        # first attributed click (null: none)
])


def _us(col) -> list[int]:
    return pc.cast(pc.cast(col, _TS), pa.int64()).to_pylist()


def _day(us: int) -> str:
    return dt.datetime.fromtimestamp(us / 1e6, dt.timezone.utc).date().isoformat()


def read_export(root: str | Path) -> tuple[pa.Table, pa.Table]:
    """(impressions, events) of an export folder (`mmrec feedback export --out DIR`)."""
    root = Path(root)
    out = []
    for name in ("impressions", "events"):
        files = sorted((root / name).glob("date=*/part-*.parquet"))
        if not files:
            out.append(None)
            continue
        # read file by file: the hive ``date`` column is derived from ts, not needed here
        out.append(pa.concat_tables([pq.read_table(f) for f in files], promote_options="default"))
    from mmrec.feedback.export import EVENTS_EXPORT_SCHEMA, IMPRESSIONS_EXPORT_SCHEMA

    imp = out[0] if out[0] is not None else IMPRESSIONS_EXPORT_SCHEMA.empty_table()
    ev = out[1] if out[1] is not None else EVENTS_EXPORT_SCHEMA.empty_table()
    return imp, ev


def read_store(path: str | Path) -> tuple[pa.Table, pa.Table]:
    """(impressions, events) read from a feedback store file, in the export's schemas."""
    from mmrec.feedback.export import (EVENTS_EXPORT_SCHEMA, IMPRESSIONS_EXPORT_SCHEMA,
                                       _event_rows, _impression_rows)
    from mmrec.feedback.store import FeedbackStore

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no feedback store at {path}")
    st = FeedbackStore(path, synchronous="NORMAL")
    try:
        imp = [_impression_rows(c) for c in st.rows("impressions")]
        ev = [_event_rows(c) for c in st.rows("events")]
    finally:
        st.close()
    return (pa.concat_tables(imp) if imp else IMPRESSIONS_EXPORT_SCHEMA.empty_table(),
            pa.concat_tables(ev) if ev else EVENTS_EXPORT_SCHEMA.empty_table())


def join(impressions: pa.Table, events: pa.Table, *, window: dt.timedelta = dt.timedelta(hours=24)
         ) -> pa.Table:
    """One row per shown item (`JOINED_SCHEMA`), labelled by the events attributed to it."""
    w_us = int(window.total_seconds() * 1e6)
    ev = _dedup_events(events)

    # -- shown items, first position wins -------------------------------------------------
    rid = impressions["request_id"].to_pylist()
    iid = impressions["item_id"].to_pylist()
    users = impressions["user_id"].to_pylist()
    srv = _us(impressions["ts"])
    pos = impressions["position"].to_pylist()
    place = impressions["item_position"].to_pylist()
    order = sorted(range(len(rid)), key=lambda i: (rid[i], pos[i], place[i]))
    row_of: dict[tuple[str, str], int] = {}
    keep: list[int] = []
    for i in order:
        if (rid[i], iid[i]) not in row_of:
            row_of[(rid[i], iid[i])] = len(keep)
            keep.append(i)
    answered = set(rid)

    # -- an answer's time: the client's first impression_seen, else the server's ---------------
    seen_at: dict[str, int] = {}
    seen_items: set[tuple[str, str]] = set()
    for e in ev:
        if e["event"] == SEEN and e["request_id"] in answered:
            r = e["request_id"]
            seen_at[r] = min(seen_at.get(r, e["ts"]), e["ts"])
            seen_items.add((r, e["item_id"]))
    t_req = [seen_at.get(rid[i], srv[i]) for i in keep]

    # (user, item) -> answers that showed it, by time, for events without a usable request_id
    shown_to: dict[tuple[str, str], list[tuple[int, int]]] = defaultdict(list)
    for k, i in enumerate(keep):
        if users[i] is not None:
            shown_to[(users[i], iid[i])].append((t_req[k], k))
    for v in shown_to.values():
        v.sort()

    labels = {name: [False] * len(keep) for name in LABELS.values()}
    click_ts: list[int | None] = [None] * len(keep)
    for e in ev:
        name = LABELS.get(e["event"])
        if name is None:
            continue
        k = None
        if e["request_id"] in answered:
            k = row_of.get((e["request_id"], e["item_id"]))
            if k is None:
                continue  # that answer did not show this item
            if not 0 <= e["ts"] - t_req[k] <= w_us:
                continue
        elif e["user_id"] is not None:
            cands = shown_to.get((e["user_id"], e["item_id"]), [])
            j = bisect.bisect_right(cands, (e["ts"], len(keep))) - 1
            if j < 0 or e["ts"] - cands[j][0] > w_us:
                continue
            k = cands[j][1]
        if k is None:
            continue
        labels[name][k] = True
        if name == "clicked" and (click_ts[k] is None or e["ts"] < click_ts[k]):
            click_ts[k] = e["ts"]

    take = pa.array(keep, pa.int64())
    sub = impressions.take(take)
    return pa.table({
        "request_id": sub["request_id"], "user_id": sub["user_id"], "item_id": sub["item_id"],
        "ts": pa.array(t_req, pa.int64()).cast(_TS),
        "server_ts": pa.array([srv[i] for i in keep], pa.int64()).cast(_TS),
        "day": pa.array([_day(t) for t in t_req], pa.string()),
        "position": pc.cast(sub["position"], pa.int16()),
        "item_position": pc.cast(sub["item_position"], pa.int16()),
        "slot": sub["slot"], "score": pc.cast(sub["score"], pa.float32()),
        "scene": sub["scene"], "channel": sub["channel"], "variant": sub["variant"],
        "seen": pa.array([(rid[i], iid[i]) in seen_items for i in keep], pa.bool_()),
        **{name: pa.array(v, pa.bool_()) for name, v in labels.items()},
        "click_ts": pa.array(click_ts, pa.int64()).cast(_TS),
    }, schema=JOINED_SCHEMA)


def _dedup_events(events: pa.Table) -> list[dict]:
    """Events as dicts (ts in microseconds), first copy of each event_id, time-ordered."""
    cols = {c: events[c].to_pylist() for c in ("event_id", "request_id", "user_id", "item_id", "event")}
    ts = _us(events["ts"])
    seen: set[str] = set()
    out = []
    for i in range(events.num_rows):
        eid = cols["event_id"][i]
        if eid in seen:
            continue
        seen.add(eid)
        out.append({c: cols[c][i] for c in cols} | {"ts": ts[i]})
    out.sort(key=lambda e: e["ts"])
    return out


def summary(joined: pa.Table) -> dict:
    """Counts a report or an error message needs: answers, shown items, days, labels."""
    days = sorted(set(joined["day"].to_pylist()))
    return {"requests": len(set(joined["request_id"].to_pylist())), "shown_items": joined.num_rows,
            "days": days, **{name: int(pc.sum(joined[name]).as_py() or 0) for name in LABELS.values()}}
