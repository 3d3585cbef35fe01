"""Checks of an events batch, one event at a time, and the pseudonymisation of user ids.

A batch is answered per event: ``accepted`` (stored now), ``duplicate`` (its event_id was
stored before: ignored, never overwritten) or ``error`` (a message naming the field and what
is valid). Rules beyond the contract (`mmrec.api_models.EventIn`):
- item_id must be in the catalog the server has loaded: "unknown item_id 'x'".
- ts at most ``max_future_s`` ahead of the server clock (clock skew) and at most
  ``max_age_days`` old (late uploads beyond it would land outside retention and the training
  window): refused with the bound in the message.
- an unknown request_id is accepted with a warning: impressions are written asynchronously
  (a click can arrive before its impression's batch commits), and an app may send events of
  answers older than retention. The join at training time decides what it is worth.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Container
from typing import Any

from pydantic import ValidationError

from mmrec.api_models import EventIn, EventResult
from mmrec.feedback.store import now_us, to_us
from mmrec.rank.config import PseudonymConfig

NAMESPACE = "api"  # the pseudonymiser's namespace for ids received by the HTTP API


def pseudonymiser(cfg: PseudonymConfig) -> Callable[[str], str]:
    """raw user id -> ``u_<hmac hex>`` with the key of ``cfg`` (as `mmrec rank ingest` does)."""
    from mmrec.rank.interactions import Pseudonymiser

    return Pseudonymiser.from_config(cfg, namespace=NAMESPACE).one


def _first_error(e: ValidationError) -> str:
    err = e.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(x) for x in err.get("loc", ())) or "event"
    msg = str(err.get("msg", "")).removeprefix("Value error, ")
    if err.get("type") == "missing":
        msg = "required field is missing"
    return f"{where}: {msg}"[:300]


def check_events(raw: list[Any], *, items: Container[str], pseudonymise: Callable[[str], str],
                 max_future_s: float, max_age_days: float, now: dt.datetime | None = None
                 ) -> tuple[list[EventResult], list[tuple], list[int]]:
    """Validate each event of a batch.

    Returns:
        (results, rows, where): a result per event (errors filled in, the valid ones marked
        accepted for now), the store rows of the valid events (`store.EVENT_COLUMNS` order), and
        for each row the index of its result (the caller marks duplicates after the write).
    """
    now = now or dt.datetime.now(dt.timezone.utc)
    latest = now + dt.timedelta(seconds=max_future_s)
    earliest = now - dt.timedelta(days=max_age_days)
    received = now_us()
    results: list[EventResult] = []
    rows: list[tuple] = []
    where: list[int] = []
    for i, obj in enumerate(raw):
        eid = obj.get("event_id") if isinstance(obj, dict) else None
        eid = eid if isinstance(eid, str) and 0 < len(eid) <= 64 else None
        try:
            ev = EventIn.model_validate(obj)
        except ValidationError as e:
            results.append(EventResult(index=i, event_id=eid, status="error", error=_first_error(e)))
            continue
        error = None
        if ev.item_id not in items:
            error = f"item_id: unknown item_id {ev.item_id!r} (not in the loaded catalog)"
        elif ev.ts > latest:
            error = (f"ts: {ev.ts.isoformat()} is more than {max_future_s:g} s in the future "
                     f"(server time {now.isoformat(timespec='seconds')}); check the device clock")
        elif ev.ts < earliest:
            error = (f"ts: {ev.ts.isoformat()} is older than {max_age_days:g} days "
                     f"(earliest accepted {earliest.isoformat(timespec='seconds')})")
        if error:
            results.append(EventResult(index=i, event_id=ev.event_id, status="error", error=error))
            continue
        results.append(EventResult(index=i, event_id=ev.event_id, status="accepted"))
        rows.append((ev.event_id, to_us(ev.ts), received,
                     pseudonymise(ev.user_id) if ev.user_id else None, ev.request_id, ev.item_id,
                     ev.type, None if ev.value is None else float(ev.value)))
        where.append(i)
    return results, rows, where
