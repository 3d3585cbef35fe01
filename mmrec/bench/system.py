"""The system under test: the in-process `Recommender` or a live API, behind one interface.

Both return the API's JSON shape (``mmrec.api_models.RecommendResponse``), so the judges see
exactly what a client sees. Component probes (recall lists at depth, ranker scores on
held-out interactions) need the components themselves and are only offered in-process; over
HTTP they report ``None`` and the metrics say they were not measured.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

from mmrec.api_models import RecommendRequest, RequestFilters
from mmrec.bench.suite import Case
from mmrec.errors import InputError, MmrecError


def build_request(case: Case) -> RecommendRequest:
    """The request a shopper in this case would send (never any ground truth)."""
    genders = [case.gender] if case.gender in ("men", "women") else None
    return RecommendRequest(user_id=case.user_id, scene=case.scene, query_text=case.text,
                            k=case.k, channel=case.channel, explain=True,
                            filters=RequestFilters(genders=genders, budget=case.budget,
                                                   exclude_item_ids=list(case.exclude_item_ids)))


class System(Protocol):
    kind: str

    def describe(self) -> dict[str, Any]: ...

    def recommend(self, case: Case, photo: bytes | None) -> tuple[dict[str, Any], float]: ...

    def photo_neighbours(self, photo: bytes, k: int, gender: str | None) -> list[str] | None: ...

    def text_recall(self, case: Case, k: int) -> list[str] | None: ...

    def rank_scores(self, case: Case, item_ids: list[str]) -> list[float] | None: ...


class InProcessSystem:
    """A `mmrec.recommend.Recommender` called directly (no Ray, no HTTP)."""

    kind = "in-process"

    def __init__(self, recommender: Any, label: str = "Recommender"):
        self.rec = recommender
        self.label = label
        self.notes: list[str] = []
        self.withheld: dict[str, Any] | None = None  # summary of the new arrivals served

    @classmethod
    def from_store(cls, store: Any, config: Any | None = None, *,
                   items_table: Any | None = None) -> "InProcessSystem":
        """Args: items_table: the items to serve (withheld truth: new arrivals read by the
        models) instead of the stored ones."""
        from mmrec.recommend import Recommender

        return cls(Recommender.from_store(store, config=config, items_table=items_table))

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "label": self.label, "versions": dict(self.rec.versions),
                "notes": list(getattr(self.rec, "load_notes", [])) + self.notes,
                "withheld": self.withheld}

    def hide_heldout(self, store: Any, users: Any) -> bool:
        """Serve user histories cut at the benchmark's held-out split.

        The served `UserStore` holds every logged event, including the test window whose
        positives the ranking judges score; a profile built from them would leak the answers.
        Returns False when the recommender has no user store to replace.
        """
        if getattr(self.rec, "users", None) is None or users is None:
            return False
        from mmrec.rank.interactions import load_tables
        from mmrec.rank.users import UserStore, item_taste_meta

        version = users.version.split("/", 1)[1]
        art, tables = load_tables(store, "sim", version)
        tables.interactions = users.visible_interactions(tables.interactions)
        meta = item_taste_meta(store, art)  # the same item summary UserStore.load builds
        self.rec.users = UserStore.from_tables(tables, meta, version=f"{art.version}+before-test")
        self.rec.versions["users"] = f"simulated {art.version}, histories before the test window"
        self.notes = self.notes + ["user histories end where each persona's held-out "
                                   "interactions begin (no leakage into profiles)"]
        ranker = getattr(self.rec, "ranker", None)
        if ranker is not None and hasattr(ranker, "use_stats_before"):
            snap = ranker.use_stats_before(int(users.cut * 1_000_000))
            self.notes.append(f"ranker item statistics cut at the test window: {snap}" if snap else
                              "ranker artifact keeps no weekly statistics: its served snapshot "
                              "includes the test window (retrain the ranker)")
        return True

    def recommend(self, case: Case, photo: bytes | None) -> tuple[dict[str, Any], float]:
        from mmrec.images import load_image

        req = build_request(case)
        t0 = time.perf_counter()
        image = load_image(photo) if photo is not None else None
        resp = self.rec.recommend(req, image=image)
        ms = (time.perf_counter() - t0) * 1000
        return resp.model_dump(mode="json"), ms

    def photo_neighbours(self, photo: bytes, k: int, gender: str | None) -> list[str] | None:
        from mmrec.images import load_image

        if not getattr(self.rec.photo, "available", False):
            return None
        analysis = self.rec.analyze_photo(load_image(photo))
        genders = [gender, "unisex"] if gender in ("men", "women") else None
        return list(self.rec.similar_to_photo(analysis, k=k, genders=genders)[2])

    def text_recall(self, case: Case, k: int) -> list[str] | None:
        if self.rec.recall is None or not case.text:
            return None
        from mmrec.recall.types import Filters, RecallQuery

        genders = [case.gender, "unisex"] if case.gender in ("men", "women") else None
        hits = self.rec.recall.search(RecallQuery(text=case.text, k=k,
                                                  filters=Filters(genders=genders)))
        return [c.item_id for c in hits]

    def rank_scores(self, case: Case, item_ids: list[str]) -> list[float] | None:
        ranker, users = self.rec.ranker, self.rec.users
        if ranker is None or users is None or case.user_id is None:
            return None
        from mmrec.rank.ranker import RankContext

        user = users.get(case.user_id)
        if user is None:
            return None
        scene = self.rec.scene(case.scene)
        ctx = RankContext(scene=scene.name, occasion=scene.usages[0], season=None,
                          channel=case.channel)
        return [float(s) for s in ranker.score(user, ctx, item_ids)]


class HttpSystem:
    """A running mmrec API (``mmrec serve``): POST /v1/recommend and /v1/recommend/photo."""

    kind = "http"

    def __init__(self, url: str, *, api_key: str | None = None, timeout_s: float = 30.0,
                 key_header: str = "X-API-Key"):
        import httpx

        if not url.startswith(("http://", "https://")):
            raise InputError(f"--url must start with http:// or https://, got {url!r}")
        headers = {key_header: api_key} if api_key else {}
        self.url = url.rstrip("/")
        self.client = httpx.Client(base_url=self.url, headers=headers, timeout=timeout_s)
        self._versions: dict[str, str] = {}
        self.notes: list[str] = []

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "label": self.url, "versions": dict(self._versions),
                "notes": ["live API: its user histories are not cut at the held-out split, and "
                          "recall/ranking probes need the in-process system", *self.notes]}

    def _check(self, r: Any) -> dict[str, Any]:
        if r.status_code >= 400:
            raise MmrecError(f"{r.request.method} {r.request.url.path} -> HTTP {r.status_code}: "
                             f"{r.text[:300]}")
        return r.json()

    def recommend(self, case: Case, photo: bytes | None) -> tuple[dict[str, Any], float]:
        req = build_request(case)
        t0 = time.perf_counter()
        if photo is None:
            r = self.client.post("/v1/recommend", json=req.model_dump(mode="json", exclude_none=True))
        else:
            # the photo route takes form fields; filters travel as RequestFilters JSON
            fields = {"scene": req.scene, "k": str(req.k), "explain": "true",
                      "filters": req.filters.model_dump_json(exclude_none=True)}
            if req.user_id:
                fields["user_id"] = req.user_id
            if req.query_text:
                fields["query_text"] = req.query_text
            r = self.client.post("/v1/recommend/photo", data=fields,
                                 files={"image": ("kiosk.jpg", photo, "image/jpeg")})
        ms = (time.perf_counter() - t0) * 1000
        body = self._check(r)
        self._versions = dict(body.get("versions") or {})
        return body, ms

    def photo_neighbours(self, photo: bytes, k: int, gender: str | None) -> list[str] | None:
        return None  # the photo response's `similar` list is used instead

    def text_recall(self, case: Case, k: int) -> list[str] | None:
        return None

    def rank_scores(self, case: Case, item_ids: list[str]) -> list[float] | None:
        return None
