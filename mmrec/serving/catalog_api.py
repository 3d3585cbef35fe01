"""`POST /v1/admin/catalog`: live stock and price changes, new or replaced items, deletions.

Every accepted change is committed to the feedback store before the answer, then applied on
this replica before it answers (`mmrec.feedback.stock.StockSync`, with ``now``): a request
that starts after the answer never sees a deleted or out-of-stock item here, and every other
replica on the store follows within ``interval_s`` plus the time to apply. Answers: 200 when
every change is accepted, 207 when an upsert or delete has an error (each result says which
and why; the accepted ones are stored), 422 when a stock/price update names an unknown item
(nothing is stored: those are all-or-nothing, as before upserts existed).

Upserts are checked like an ingest's rows (`mmrec.catalog.validate`: taxonomy values and
synonyms, category -> slot, title rules, image decoding), then embedded with recall's encoder
when one is loaded (the image, else the title: one embedding space), and the vector is stored
with the row so that replicas and restarts replay it without re-embedding.
"""

# no `from __future__ import annotations`: FastAPI must see the ``admin`` dependency alias
# itself, not its name as a string
from pathlib import Path
from typing import Any, Callable

from fastapi import FastAPI, HTTPException
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from mmrec.api_models import CatalogItemIn, CatalogResult, CatalogUpdates, ErrorOut
from mmrec.feedback.stock import StockSync

SOURCE = "admin-api"  # the items' ``source`` column for rows that came through this route


def check_upserts(raw: list[dict[str, Any]], taxonomy: Any) -> tuple[list[CatalogResult], list[dict[str, Any]]]:
    """Validate upsert objects; returns (a result per object, the accepted items rows)."""
    from mmrec.catalog.adapters import RawRecord
    from mmrec.catalog.config import IngestConfig
    from mmrec.catalog.validate import validate_records

    results: list[CatalogResult] = []
    records = []
    for n, obj in enumerate(raw):
        iid = obj.get("item_id") if isinstance(obj, dict) and isinstance(obj.get("item_id"), str) else None
        try:
            item = CatalogItemIn.model_validate(obj)
        except ValidationError as e:
            err = e.errors()[0]
            where = ".".join(str(x) for x in err["loc"]) or "item"
            results.append(CatalogResult(index=n, item_id=iid, op="upsert", status="error",
                                         error=f"{where}: {err['msg']}"))
            continue
        fields = item.model_dump(exclude={"image_uri"})
        path = Path(item.image_uri) if item.image_uri else None
        if path is not None and not path.is_file():  # a named photo must exist (ingest only warns)
            results.append(CatalogResult(index=n, item_id=item.item_id, op="upsert", status="error",
                                         error=f"image_uri: no file {item.image_uri!r} on the server"))
            continue
        records.append(RawRecord(row=n + 1, fields=fields, image_path=path))
        results.append(CatalogResult(index=n, item_id=item.item_id, op="upsert", status="accepted"))
    if not records:
        return results, []
    cfg = IngestConfig(format="generic", require_image=False, workers=1)
    rows, report = validate_records(records, cfg, taxonomy, progress=False)
    for p in report.errors:
        r = results[p.row - 1]
        if r.status == "accepted":
            r.status, r.error = "error", f"{p.field}: {p.message}"
    for p in report.warnings:
        if p.kind == "missing_image":
            continue  # no photo given: the item is recommendable without one
        r = results[p.row - 1]
        r.warning = f"{r.warning}; " if r.warning else ""
        r.warning += f"{p.field}: {p.message}"
    for row in rows:
        row["source"] = SOURCE
    return results, rows


def embed_rows(rows: list[dict[str, Any]], rec: Any) -> str | None:
    """Add recall's encoder's vector to each row (``_vector``); returns the encoder id, or None
    when no encoder is loaded (the items are then found by the catalog and lexical paths)."""
    recall = getattr(rec, "recall", None)
    encoder = getattr(recall, "encoder", None)
    if encoder is None or not rows:
        return None
    from mmrec.images import load_image

    with_image = [r for r in rows if r.get("image_uri")]
    if with_image:
        vecs = encoder.encode_images([load_image(r["image_uri"]) for r in with_image])
        for r, v in zip(with_image, vecs):
            r["_vector"] = [float(x) for x in v]
    text_only = [r for r in rows if not r.get("image_uri")]
    if text_only:  # CLIP's text and image vectors share one space: the title stands in
        vecs = encoder.encode_texts([r["title"] for r in text_only])
        for r, v in zip(text_only, vecs):
            r["_vector"] = [float(x) for x in v]
    return encoder.encoder_id


def add_catalog_routes(app: FastAPI, stock: StockSync | None, holder: Any,
                       current: Callable[[], Any], admin: Any) -> None:
    """Register the route on ``app`` (``admin``: the admin-scope key dependency)."""

    @app.post("/v1/admin/catalog", tags=["admin"],
              responses={207: {"description": "some upserts or deletes have errors"},
                         401: {"model": ErrorOut}, 422: {"model": ErrorOut}, 503: {"model": ErrorOut}})
    async def catalog_update(body: CatalogUpdates, _: admin) -> JSONResponse:
        """Live catalog changes, stored durably, applied here before this answer and by every
        other replica within about a second (see the module doc)."""
        if stock is None:
            raise HTTPException(503, "live inventory needs the feedback store (feedback.enabled in serve.yaml)")
        rec = current()
        results, rows = await run_in_threadpool(check_upserts, body.upserts, rec.items.taxonomy)
        upserted = {r["item_id"] for r in rows}
        unknown = [u.item_id for u in body.updates if u.item_id not in rec.items.index and u.item_id not in upserted]
        if unknown:
            raise HTTPException(422, f"unknown item_id {unknown[:20]} (not in items/{rec.items.version}); "
                                     "nothing was stored")
        gone: list[str] = []
        for n, iid in enumerate(body.deletes):
            ok = iid in rec.items.index or iid in upserted
            results.append(CatalogResult(index=n, item_id=iid, op="delete", status="accepted" if ok else "error",
                                         error=None if ok else f"item_id: unknown item {iid!r} (nothing to delete)"))
            if ok:
                gone.append(iid)
        encoder_id = await run_in_threadpool(embed_rows, rows, rec)
        changes: list[tuple] = []
        for r in rows:
            vec = r.pop("_vector", None)
            changes.append(("upsert", r["item_id"], None, None,
                            {"row": r, "vector": vec, "encoder_id": encoder_id if vec else None}))
        changes += [("stock", u.item_id, u.in_stock, u.price, None) for u in body.updates]
        changes += [("delete", i, None, None, None) for i in gone]
        seq = await run_in_threadpool(stock.store.add_catalog_changes, changes) if changes else None
        changed = await run_in_threadpool(stock.sync, holder, now=True) if changes else 0
        errors = sum(r.status == "error" for r in results)
        out = {"accepted": len(changes), "errors": errors, "seq": seq, "changed": changed,
               "other_replicas_within_s": stock.interval_s,
               "results": [r.model_dump(exclude_none=True) for r in results]}
        return JSONResponse(out, status_code=207 if errors else 200)
