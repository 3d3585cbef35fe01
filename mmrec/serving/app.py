"""The HTTP API as a FastAPI app, constructible without Ray: ``create_app(recommender, settings)``.

Ray Serve wraps the same app (``mmrec.serving.ray_app``); tests drive it in-process with
``fastapi.testclient``. Every route but /healthz, /readyz and the static kiosk page needs an
API key (X-API-Key or ``Authorization: Bearer``). Heavy work runs in the thread pool behind a
backpressure gate; every response of the recommender carries the artifact versions it used.
"""

from __future__ import annotations

import json
import logging
import mimetypes
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Annotated, Any, Protocol

from fastapi import Depends, FastAPI, File, Form, Header, HTTPException, Path as PathParam, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from mmrec.api_models import (ErrorOut, ItemOut, RecommendRequest, RecommendResponse,
                              RequestFilters, SceneOut, ScenesResponse, TagResponse)
from mmrec.errors import ArtifactError, InputError
from mmrec.feedback.impressions import impression_parts
from mmrec.feedback.photo_answers import keep_answer
from mmrec.feedback.stock import StockSync
from mmrec.images import ImageError, load_image
from mmrec.lru import LRU
from mmrec.outfit.photo import ComponentMissing, PhotoAnalysis
from mmrec.recommend.slot_confidence import parse_slot_hint
from mmrec.serving.batching import BatchedPhotos
from mmrec.serving.catalog_api import add_catalog_routes
from mmrec.serving.feedback_api import Feedback, add_feedback_routes
from mmrec.serving.guards import BodyLimitMiddleware, Gate, Overloaded, RequestIdMiddleware
from mmrec.serving.holder import RecommenderHolder
from mmrec.serving.metrics import CONTENT_TYPE_LATEST, Metrics
from mmrec.serving.settings import ApiKey, ServeSettings

log = logging.getLogger(__name__)
ITEM_ID = PathParam(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:\-]+$")
_IMAGE_STATUS = {"too_many_bytes": 413, "too_many_pixels": 413, "unsupported_format": 415}


_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="API key")
_bearer = HTTPBearer(auto_error=False, description="API key as a bearer token")


def _require(scope: str):
    """Dependency: a valid API key (X-API-Key or bearer) that has ``scope``."""

    async def check(request: Request, x_api_key: Annotated[str | None, Depends(_key_header)],
                    auth: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> ApiKey:
        settings: ServeSettings = request.app.state.settings
        key = settings.match_key(x_api_key or (auth.credentials if auth else None))
        if key is None:
            request.app.state.metrics.rejected.labels("auth").inc()
            raise HTTPException(401, "missing or invalid API key (send X-API-Key)",
                                headers={"WWW-Authenticate": "Bearer"})
        if scope not in key.scopes:
            raise HTTPException(403, f"key {key.name!r} lacks the {scope!r} scope")
        return key

    return check


# Module level: FastAPI resolves these annotations by name (postponed evaluation).
Keyed = Annotated[ApiKey, Depends(_require("recommend"))]
Admin = Annotated[ApiKey, Depends(_require("admin"))]


class PhotoBackend(Protocol):
    async def analyze(self, image: Any) -> PhotoAnalysis: ...


class LocalPhotoBackend(BatchedPhotos):
    """Photos analysed by the recommender's own tagger/encoder in this process, concurrent
    photos in one pass (in a worker thread)."""

    def __init__(self, holder: RecommenderHolder, max_batch: int, gather_ms: float):
        super().__init__(lambda: holder.current.photo, max_batch=max_batch, gather_ms=gather_ms)


def accepted_lang(header: str | None) -> str:
    """"zh" when the Accept-Language header prefers Chinese (zh, zh-CN, zh-TW ...), else "en"
    (the first language listed wins; quality values are not weighed)."""
    first = (header or "").split(",")[0].strip().lower()
    return "zh" if first.startswith("zh") else "en"


def _error(status: int, error: str, detail: str, request: Request,
           headers: dict[str, str] | None = None) -> JSONResponse:
    rid = request.scope.get("state", {}).get("request_id")
    body = ErrorOut(error=error, detail=detail, request_id=rid).model_dump()
    return JSONResponse(body, status_code=status, headers=headers)


# Cached answers are kept serialised: bytes cost nothing to the garbage collector (thousands
# of cached pydantic trees made its full passes slow: a tail-latency source) and a hit is one
# replace of the request id (the impression log's parts are kept as strings for the same reason). The mark is as long as a uuid4 hex; request_id is the response's
# first field, so the first occurrence is it even if a request's text echoed the mark.
_RID_MARK = b"cached-response-rid-00000000000a"


def _cacheable(resp: RecommendResponse) -> tuple[int, bytes]:
    """(number of outfits, the response as sent on a hit, with a mark for the request id)."""
    body = resp.model_copy(update={"request_id": _RID_MARK.decode(), "timings": {"cache_hit": 1.0}})
    return len(resp.outfits), body.model_dump_json().encode()


def create_app(recommender: Any, settings: ServeSettings | None = None, *,
               photo: PhotoBackend | None = None, metrics: Metrics | None = None,
               feedback: Feedback | None = None) -> FastAPI:
    """Build the API.

    Args:
        recommender: a `Recommender` or a `RecommenderHolder` (for reloads without restart).
        settings: keys and limits; with no key configured every keyed route answers 401.
        photo: where photos are analysed (default: the recommender's own models).
        metrics: a shared metrics registry (default: a new one).
        feedback: the impression log and events store (default: opened from ``settings.feedback``
            when enabled, flushed at shutdown; None and disabled: no log, feedback routes 503).
    """
    settings = settings or ServeSettings()
    holder = recommender if isinstance(recommender, RecommenderHolder) else RecommenderHolder.fixed(recommender)
    photo = photo or LocalPhotoBackend(holder, settings.photo_batch_size, settings.photo_batch_wait_ms)
    metrics = metrics or Metrics()
    holder.on_reload = lambda outcome: metrics.reloads.labels(outcome).inc()
    gate = Gate(settings.max_inflight, settings.max_queue, settings.queue_timeout_s,
                settings.retry_after_s)
    cache = LRU(settings.response_cache_size)
    app = FastAPI(title="mmrec", version="1", docs_url=None, redoc_url=None, openapi_url=None,
                  description="Outfit recommendations with grounded explanations.",
                  form_limits={"max_fields": 16, "max_files": 1, "max_part_size": 16_384})
    app.state.holder, app.state.settings, app.state.metrics = holder, settings, metrics
    app.state.gate = gate
    if feedback is None and settings.feedback.enabled:
        feedback = Feedback.open(settings.feedback_path(), settings.feedback, metrics)
        # flush, not close: a lifespan may run more than once per app (test clients), and the
        # connections close with the process; a shutdown must not lose queued impressions
        app.router.on_shutdown.append(feedback.logger.flush)
    app.state.feedback = feedback
    log_on = feedback is not None and feedback.settings.log_impressions

    def log_impression(request_id: str, req: RecommendRequest, parts, variant: str | None) -> None:
        if log_on and parts is not None:
            feedback.logger.log(request_id, req.user_id, req.channel, parts, variant)

    stock = StockSync(feedback.store) if feedback is not None else None

    def current():
        rec = holder.current
        if rec is None:
            raise Overloaded(503, "the recommender is still loading", settings.retry_after_s)
        if stock is not None:  # acknowledged catalog changes, at most one look per second
            stock.sync(holder)
            rec = holder.current  # upserts and deletes swap in a derived recommender
        return rec

    # ------------------------------------------------------------------ errors
    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        errs = [{"loc": [str(x) for x in e.get("loc", ())], "msg": str(e.get("msg", ""))[:300],
                 "type": str(e.get("type", ""))} for e in exc.errors()[:20]]
        return _error(422, "invalid_request", json.dumps(errs), request)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException):
        return _error(exc.status_code, "http_error", str(exc.detail), request, exc.headers)

    @app.exception_handler(Overloaded)
    async def _overloaded(request: Request, exc: Overloaded):
        metrics.rejected.labels(str(exc.status)).inc()
        return _error(exc.status, "overloaded" if exc.status == 503 else "too_many_requests",
                      exc.detail, request, {"Retry-After": str(exc.retry_after)})

    @app.exception_handler(ImageError)
    async def _image(request: Request, exc: ImageError):
        return _error(_IMAGE_STATUS.get(exc.reason, 400), f"image_{exc.reason}", exc.detail, request)

    @app.exception_handler(ComponentMissing)
    async def _missing(request: Request, exc: ComponentMissing):
        return _error(503, "component_missing", str(exc), request)

    @app.exception_handler(InputError)
    async def _input(request: Request, exc: InputError):
        return _error(400, "bad_request", str(exc), request)

    @app.exception_handler(ArtifactError)
    async def _artifact(request: Request, exc: ArtifactError):
        return _error(503, "artifact_error", str(exc), request)

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception):
        log.exception("internal error")
        return _error(500, "internal_error", f"{type(exc).__name__} (see the server log)", request)

    # ------------------------------------------------------------------ health
    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], responses={503: {"model": ErrorOut}})
    async def readyz(request: Request):
        st = holder.status()
        if not st["ready"]:
            return _error(503, "not_ready", "the recommender is still loading", request,
                          {"Retry-After": str(settings.retry_after_s)})
        return st

    @app.get("/metrics", tags=["health"], response_class=Response)
    async def metrics_route(_: Keyed) -> Response:
        metrics.inflight.set(gate.inflight)
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi(_: Keyed) -> JSONResponse:
        return JSONResponse(app.openapi())

    # ------------------------------------------------------------------ recommend
    @app.get("/v1/scenes", response_model=ScenesResponse, tags=["recommend"])
    async def scenes(_: Keyed) -> ScenesResponse:
        book = current().scenes
        return ScenesResponse(version=book.version, scenes=[
            SceneOut(name=s.name, label=s.label, label_zh=s.label_zh, usages=s.usages, templates=s.templates)
            for s in book.scenes.values()])

    @app.post("/v1/recommend", response_model=RecommendResponse, tags=["recommend"],
              responses={400: {"model": ErrorOut}, 401: {"model": ErrorOut}, 413: {"model": ErrorOut},
                         429: {"model": ErrorOut}, 503: {"model": ErrorOut}})
    async def recommend(body: RecommendRequest, _: Keyed, request: Request) -> Response:
        rec = current()
        if body.lang is None:  # the browser's or app's language, when the body does not say
            body = body.model_copy(update={"lang": accepted_lang(request.headers.get("accept-language"))})
        # Same request, same artifacts -> same outfits: answer repeats from the cache. The key
        # holds the recommender's generation, so a reload (new versions) starts a fresh cache.
        key = (rec.generation, body.model_dump_json())
        hit = cache.get(key) if settings.response_cache_size else None
        if hit is None:
            metrics.cache.labels("miss").inc()
            async with gate:
                resp = await run_in_threadpool(rec.recommend, body)
            parts = impression_parts(resp) if log_on else None
            variant = resp.versions.get("variant")  # an A/B experiment's arm (mmrec.ab), else None
            if settings.response_cache_size:
                cache.put(key, (*_cacheable(resp), parts, variant))
            metrics.outfits.inc(len(resp.outfits))
            log_impression(resp.request_id, body, parts, variant)
            return Response(resp.model_dump_json(), media_type="application/json")
        metrics.cache.labels("hit").inc()
        n_outfits, body_bytes, parts, variant = hit
        metrics.outfits.inc(n_outfits)
        rid = uuid.uuid4().hex
        log_impression(rid, body, parts, variant)
        return Response(body_bytes.replace(_RID_MARK, rid.encode(), 1), media_type="application/json")

    @app.post("/v1/recommend/photo", response_model=RecommendResponse, tags=["recommend"],
              responses={400: {"model": ErrorOut}, 413: {"model": ErrorOut},
                         415: {"model": ErrorOut}, 503: {"model": ErrorOut}})
    async def recommend_photo(
        _: Keyed,
        image: Annotated[UploadFile, File(description="JPEG, PNG or WEBP photo")],
        scene: Annotated[str, Form(min_length=1, max_length=40)],
        k: Annotated[int, Form(ge=1, le=20)] = 3,
        user_id: Annotated[str | None, Form(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:\-]+$")] = None,
        query_text: Annotated[str | None, Form(max_length=200)] = None,
        explain: Annotated[bool, Form()] = True,
        filters: Annotated[str | None, Form(max_length=8000, description="RequestFilters as JSON")] = None,
        lang: Annotated[str | None, Form(pattern="^(en|zh)$", description="explanations' language "
                                         "(default: the Accept-Language header's, else en)")] = None,
        slot: Annotated[str | None, Form(max_length=20, description="what the item is, as the shopper "
                                         "says (top, bottom, ...): the photo anchors there")] = None,
        category: Annotated[str | None, Form(max_length=40, description="its catalog category")] = None,
        share_photo: Annotated[bool, Form(description="the shopper agreed to keep this photo with their "
                                          "slot/category answer, to improve photo reading (needs slot or "
                                          "category; kept without metadata, no user id)")] = False,
        accept_language: Annotated[str | None, Header(max_length=500)] = None,
    ) -> Response:
        rec = current()
        try:
            req = RecommendRequest(scene=scene, k=k, user_id=user_id, query_text=query_text,
                                   explain=explain, channel="kiosk", lang=lang or accepted_lang(accept_language),
                                   filters=RequestFilters.model_validate_json(filters) if filters
                                   else RequestFilters())
            hint = parse_slot_hint(slot, category, rec.tax)  # InputError -> 422 naming the choices
            if share_photo and hint is None:
                raise InputError("share_photo keeps a photo with the shopper's answer: give slot or category")
        except ValidationError as e:
            raise RequestValidationError(e.errors(include_input=False)) from None
        except InputError as e:
            raise RequestValidationError([{"loc": ("body", "slot/category"), "msg": str(e),
                                           "type": "value_error"}]) from None
        async with gate:
            img = await _decode(image)
        # not under the gate: the photo models may run elsewhere (a Ray deployment that tags
        # concurrent photos as one batch); holding a slot meanwhile would cap the batch
        analysis = await photo.analyze(img)
        async with gate:
            resp = await run_in_threadpool(rec.recommend, req, photo=analysis, slot_hint=hint)
        if share_photo and hint is not None:
            resp.notes.append(await _keep_answer(img, hint, resp.request_id))
        metrics.outfits.inc(len(resp.outfits))
        if log_on:
            log_impression(resp.request_id, req, impression_parts(resp), resp.versions.get("variant"))
        return Response(resp.model_dump_json(), media_type="application/json")

    @app.post("/v1/tag", response_model=TagResponse, tags=["recommend"],
              responses={400: {"model": ErrorOut}, 413: {"model": ErrorOut},
                         415: {"model": ErrorOut}, 503: {"model": ErrorOut}})
    async def tag(request: Request, _: Keyed,
                  image: Annotated[UploadFile, File(description="JPEG, PNG or WEBP photo")]) -> TagResponse:
        rec = current()
        async with gate:
            img = await _decode(image)
        analysis = await photo.analyze(img)
        async with gate:
            slot, how, similar = await run_in_threadpool(rec.similar_to_photo, analysis)
        notes = [] if analysis.attributes else ["no tagger loaded: attributes unavailable"]
        versions = {**rec.versions, **analysis.versions}
        return TagResponse(request_id=request.scope.get("state", {}).get("request_id", ""),
                           versions=versions, attributes=analysis.attributes, slot=slot,
                           similar=similar, notes=notes)

    async def _keep_answer(img, hint, request_id: str) -> str:
        """Keep a consented photo with the shopper's answer (`mmrec.feedback.photo_answers`);
        the note that says what happened to it."""
        if feedback is None:
            return "your photo was not kept: this server keeps no feedback"
        try:
            await run_in_threadpool(keep_answer, feedback.store, img, hint.slot, hint.category, request_id)
        except (OSError, sqlite3.Error) as e:  # a full disk must not cost the shopper the outfits
            log.warning("photo answer of %s not kept: %s", request_id, e)
            return "your photo could not be kept (storage error); your outfits are unaffected"
        return "your photo is kept with your answer to help read photos better"

    async def _decode(upload: UploadFile):
        data = await upload.read(settings.image.max_bytes + 1)

        def decode():
            img = load_image(data, settings.image)
            img.thumbnail((settings.photo_max_side, settings.photo_max_side))
            return img
        return await run_in_threadpool(decode)

    # ------------------------------------------------------------------ items
    @app.get("/v1/items/{item_id}", response_model=ItemOut, tags=["items"],
             responses={404: {"model": ErrorOut}})
    async def item(_: Keyed, item_id: Annotated[str, ITEM_ID]) -> ItemOut:
        rec = current()
        if item_id not in rec.items.index:
            raise HTTPException(404, f"no item {item_id!r} in items/{rec.items.version}")
        r = rec.items.row(item_id)
        return ItemOut(item_id=item_id, title=r["title"], brand=r.get("brand"), gender=r.get("gender"),
                       category=r["category"], slot=r["slot"], colour=r.get("colour"),
                       price=r.get("price"), in_stock=bool(r.get("in_stock")),
                       attributes={k: dict(v) for k, v in r["attributes"].items()},
                       image_url=f"/v1/items/{item_id}/image" if r.get("image_uri") else None)

    @app.get("/v1/items/{item_id}/image", tags=["items"], response_class=FileResponse,
             responses={200: {"content": {"image/jpeg": {}}}, 404: {"model": ErrorOut}})
    async def item_image(_: Keyed, item_id: Annotated[str, ITEM_ID]):
        rec = current()
        if item_id not in rec.items.index:
            raise HTTPException(404, f"no item {item_id!r} in items/{rec.items.version}")
        uri = rec.items.row(item_id).get("image_uri")
        if not uri or not Path(uri).is_file():
            raise HTTPException(404, f"item {item_id!r} has no image file")
        media = mimetypes.guess_type(uri)[0] or "application/octet-stream"
        return FileResponse(uri, media_type=media, headers={"Cache-Control": "max-age=3600"})

    # ------------------------------------------------------------------ admin
    @app.post("/v1/admin/reload", tags=["admin"])
    async def reload(_: Admin, force: bool = False) -> dict[str, Any]:
        t0 = time.perf_counter()
        out = await run_in_threadpool(holder.reload, force)
        out.pop("recommender", None)
        return {**out, "versions": holder.status()["versions"],
                "seconds": round(time.perf_counter() - t0, 3)}

    add_catalog_routes(app, stock, holder, current, Admin)

    # ------------------------------------------------------------------ feedback
    add_feedback_routes(app, feedback, Keyed, lambda: current().items.index, metrics)

    # ------------------------------------------------------------------ kiosk
    # The page is static HTML/JS with no data in it; it reads the key from the URL fragment
    # (never sent to the server) and calls the keyed API with it.
    kiosk = settings.kiosk_path()
    if kiosk.is_dir():
        app.mount("/kiosk", StaticFiles(directory=kiosk, html=True), name="kiosk")

        @app.get("/", include_in_schema=False)
        async def root() -> RedirectResponse:
            return RedirectResponse("/kiosk/")

    _instrument(app, metrics)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes,
                       on_reject=lambda why: metrics.rejected.labels(f"body_{why}").inc())
    app.add_middleware(RequestIdMiddleware)
    return app


def _instrument(app: FastAPI, metrics: Metrics) -> None:
    """Count and time every request by route template and status (pure ASGI, cheap)."""
    inner = app.build_middleware_stack

    class Instrument:
        def __init__(self, asgi):
            self.asgi = asgi

        async def __call__(self, scope, receive, send):
            if scope["type"] != "http":
                await self.asgi(scope, receive, send)
                return
            t0 = time.perf_counter()
            status = {"code": 500}

            async def send_status(message):
                if message["type"] == "http.response.start":
                    status["code"] = message["status"]
                await send(message)

            try:
                await self.asgi(scope, receive, send_status)
            finally:
                route = scope.get("route")
                name = getattr(route, "path", None) or ("/kiosk" if scope["path"].startswith("/kiosk") else "other")
                metrics.requests.labels(name, str(status["code"])).inc()
                metrics.latency.labels(name).observe(time.perf_counter() - t0)

    def build():
        return Instrument(inner())
    app.build_middleware_stack = build  # type: ignore[method-assign]
