"""The impression logger: answered recommends go to the store off the request's hot path.

A request only builds a small tuple and puts it on a bounded queue (`log`, never blocks);
one writer thread takes what has queued, pseudonymises the user ids and inserts the batch in
one transaction. When the queue is full the impression is dropped and counted (``on_drop``):
a slow disk costs log completeness, never a recommend answer. The first drop is logged once.
"""

from __future__ import annotations

import json
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mmrec.feedback.store import IMPRESSION_COLUMNS, connect, now_us

log = logging.getLogger(__name__)
_STOP = object()


def impression_parts(resp: Any) -> tuple[str, str | None, str, str]:
    """(scene, query JSON, items JSON, versions JSON) of a `RecommendResponse`.

    Items are ``[outfit, position in outfit, item_id, slot, score]`` rows: compact, and what
    training needs (the outfit's rank is the list position the shopper saw). Computed once per
    distinct answer: the response cache keeps these strings beside the cached body.
    """
    items = [[o, p, it.item_id, it.slot, round(float(it.score), 6)]
             for o, outfit in enumerate(resp.outfits) for p, it in enumerate(outfit.items)]
    query = json.dumps(resp.query, sort_keys=True, ensure_ascii=False) if resp.query is not None else None
    return (resp.scene, query, json.dumps(items, separators=(",", ":")),
            json.dumps(resp.versions, sort_keys=True))


class ImpressionLogger:
    """Bounded queue + one writer thread batching inserts into the feedback store.

    Args:
        path: the store file (opened with its own connection, ``synchronous=NORMAL``: see store.py).
        pseudonymise: raw user id -> pseudonym, run on the writer thread.
        queue_size: impressions waiting at most; beyond it `log` drops.
        batch_max: rows per transaction at most.
        on_drop / on_write: counters (metrics) called with the number of rows.
    """

    def __init__(self, path: str | Path, pseudonymise: Callable[[str], str], *, queue_size: int = 10_000,
                 batch_max: int = 500, on_drop: Callable[[int], None] | None = None,
                 on_write: Callable[[int], None] | None = None):
        self._q: queue.Queue = queue.Queue(maxsize=queue_size)
        self._pseudo = pseudonymise
        self._batch_max = batch_max
        self._on_drop = on_drop or (lambda n: None)
        self._on_write = on_write or (lambda n: None)
        self._con = connect(path, synchronous="NORMAL")
        self.dropped = 0
        self.written = 0
        self._warned = False
        self._enqueued = 0
        self._done = 0
        self._cv = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="impression-writer", daemon=True)
        self._thread.start()

    def log(self, request_id: str, user_id: str | None, channel: str,
            parts: tuple[str, str | None, str, str], variant: str | None = None) -> bool:
        """Queue one answered recommend; False (and counted) if the queue is full. Never blocks."""
        row = (request_id, now_us(), user_id, channel, *parts, variant)
        try:
            self._q.put_nowait(row)
        except queue.Full:
            self.dropped += 1
            self._on_drop(1)
            if not self._warned:
                self._warned = True
                log.warning("impression queue full (%d): dropping impressions (counted in "
                            "mmrec_impressions_dropped); the store's disk is slower than traffic",
                            self._q.maxsize)
            return False
        with self._cv:
            self._enqueued += 1
        return True

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every impression queued so far is committed (or timeout); True if so."""
        with self._cv:
            target = self._enqueued
            return self._cv.wait_for(lambda: self._done >= target, timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, stop the thread, close the connection."""
        if not self._thread.is_alive():
            return
        self._q.put(_STOP)
        self._thread.join(timeout)
        self._con.close()

    def _run(self) -> None:
        sql = (f"INSERT OR IGNORE INTO impressions ({', '.join(IMPRESSION_COLUMNS)}) "
               f"VALUES ({', '.join('?' * len(IMPRESSION_COLUMNS))})")
        stop = False
        while not stop:
            # block for the first row, then take whatever else has queued (up to batch_max):
            # under load a transaction carries many rows, when idle each row goes at once
            batch: list[tuple] = []
            row = self._q.get()
            while True:
                if row is _STOP:
                    stop = True
                    break
                batch.append(row)
                if len(batch) >= self._batch_max:
                    break
                try:
                    row = self._q.get_nowait()
                except queue.Empty:
                    break
            if batch:
                self._write(sql, batch)

    def _write(self, sql: str, batch: list[tuple]) -> None:
        rows = [(r[0], r[1], self._pseudo(r[2]) if r[2] else None, *r[3:]) for r in batch]
        for attempt in range(3):
            try:
                self._con.execute("BEGIN IMMEDIATE")
                self._con.executemany(sql, rows)
                self._con.execute("COMMIT")
                self.written += len(rows)
                self._on_write(len(rows))
                break
            except sqlite3.Error as e:
                if self._con.in_transaction:
                    self._con.execute("ROLLBACK")
                # the writer must outlive a locked or full disk: log, retry, then count as dropped
                log.error("impression batch of %d not written (try %d/3): %s", len(rows), attempt + 1, e)
                time.sleep(0.2 * (attempt + 1))
        else:
            self.dropped += len(rows)
            self._on_drop(len(rows))
        with self._cv:
            self._done += len(batch)
            self._cv.notify_all()
