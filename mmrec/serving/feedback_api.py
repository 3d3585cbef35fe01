"""HTTP side of the feedback loop: `POST /v1/events`, `PUT|DELETE /v1/users/{user_id}`, and
the `Feedback` bundle (store + impression logger + pseudonymiser) that `create_app` hooks
into the recommend routes. The storage itself is `mmrec.feedback` (no FastAPI there).

Answers of `POST /v1/events`: 202 when every event is accepted or a duplicate, 207 when any
event has an error (even all of them: the per-event results say which and why), both sent only
after the accepted events are committed. 413 when the batch exceeds ``feedback.max_batch``.
"""

import logging
from collections.abc import Callable, Container
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Path as PathParam
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from mmrec.api_models import (ErrorOut, EventsBatch, EventsResponse, UserDeleted, UserProfileIn,
                              UserProfileOut)
from mmrec.feedback.events import check_events, pseudonymiser
from mmrec.feedback.impressions import ImpressionLogger
from mmrec.feedback.store import FeedbackStore
from mmrec.serving.metrics import Metrics
from mmrec.serving.settings import FeedbackSettings

log = logging.getLogger(__name__)
USER_ID = PathParam(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:\-]+$",
                    description="the app's user id; stored only as its keyed-hash pseudonym")


class Feedback:
    """The open feedback store of one server process."""

    def __init__(self, store: FeedbackStore, logger: ImpressionLogger,
                 pseudonymise: Callable[[str], str], settings: FeedbackSettings):
        self.store, self.logger, self.pseudonymise, self.settings = store, logger, pseudonymise, settings

    @classmethod
    def open(cls, path: Path, settings: FeedbackSettings, metrics: Metrics | None = None) -> "Feedback":
        pseudo = pseudonymiser(settings.pseudonym)
        store = FeedbackStore(path, synchronous=settings.events_synchronous)
        logger = ImpressionLogger(
            path, pseudo, queue_size=settings.queue_size, batch_max=settings.write_batch,
            on_drop=metrics.impressions_dropped.inc if metrics else None,
            on_write=metrics.impressions.inc if metrics else None)
        return cls(store, logger, pseudo, settings)

    def close(self) -> None:
        self.logger.close()
        self.store.close()


def add_feedback_routes(app: FastAPI, feedback: "Feedback | None", keyed: Any,
                        catalog: Callable[[], Container[str]], metrics: Metrics) -> None:
    """Register the feedback routes on ``app``.

    Args:
        feedback: the open store, or None when ``feedback.enabled`` is false (routes answer 503).
        keyed: the API-key dependency (an ``Annotated`` alias) the other routes use.
        catalog: the item ids of the catalog the server has loaded now (a reload changes it).
    """

    def need() -> Feedback:
        if feedback is None:
            raise HTTPException(503, "the feedback store is off (set feedback.enabled: true in serve.yaml)")
        return feedback

    errors = {401: {"model": ErrorOut}, 413: {"model": ErrorOut}, 422: {"model": ErrorOut},
              503: {"model": ErrorOut}}

    @app.post("/v1/events", response_model=EventsResponse, status_code=202, tags=["feedback"],
              responses={207: {"model": EventsResponse, "description": "some events have errors"},
                         **errors})
    async def events(body: EventsBatch, _: keyed) -> JSONResponse:
        fb = need()
        limit = fb.settings.max_batch
        if len(body.events) > limit:
            raise HTTPException(413, f"batch of {len(body.events)} events exceeds the limit of {limit} "
                                     "(feedback.max_batch); split it into smaller batches")
        items = catalog()

        def write() -> EventsResponse:
            results, rows, where = check_events(
                body.events, items=items, pseudonymise=fb.pseudonymise,
                max_future_s=fb.settings.max_future_s, max_age_days=fb.settings.max_age_days)
            stored = fb.store.add_events(rows) if rows else []
            for i, new in zip(where, stored):
                if not new:
                    results[i].status = "duplicate"
            asked = {r[4] for r, new in zip(rows, stored) if new and r[4]}
            unknown = asked - fb.store.known_requests(asked)
            for i, r, new in zip(where, rows, stored):
                if new and r[4] in unknown:
                    results[i].warning = (f"unknown request_id {r[4]!r}: no impression logged under it "
                                          "(yet: impressions are written asynchronously)")
            counts = {s: sum(r.status == s for r in results) for s in ("accepted", "duplicate", "error")}
            return EventsResponse(**counts, results=results)

        out = await run_in_threadpool(write)
        for s in ("accepted", "duplicate", "error"):
            if getattr(out, s):
                metrics.events.labels(s).inc(getattr(out, s))
        return JSONResponse(out.model_dump(exclude_none=True), status_code=207 if out.error else 202)

    @app.put("/v1/users/{user_id}", response_model=UserProfileOut, tags=["feedback"], responses=errors)
    async def put_user(user_id: Annotated[str, USER_ID], profile: UserProfileIn, _: keyed) -> UserProfileOut:
        fb = need()
        pid = fb.pseudonymise(user_id)
        created = await run_in_threadpool(fb.store.put_profile, pid, profile.model_dump(mode="json"))
        return UserProfileOut(user_id=pid, created=created, profile=profile)

    @app.delete("/v1/users/{user_id}", response_model=UserDeleted, tags=["feedback"], responses=errors)
    async def delete_user(user_id: Annotated[str, USER_ID], _: keyed) -> UserDeleted:
        fb = need()
        pid = fb.pseudonymise(user_id)

        def delete() -> dict[str, int]:
            # impressions of this user may still be queued: write them first, then delete all
            if not fb.logger.flush(timeout=10.0):
                raise HTTPException(503, "the impression log did not drain in 10 s; retry the deletion")
            return fb.store.delete_user(pid)

        counts = await run_in_threadpool(delete)
        return UserDeleted(user_id=pid, **counts)
