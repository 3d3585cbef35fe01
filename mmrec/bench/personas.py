"""Benchmark personas: real-profile archetypes resolved to users with held-out interactions.

A persona file (``benchmark/personas/*.yaml``) describes shoppers by what real profiles hold
(RTR body type, age band, the occasions they rent for; H&M customers' ages) rather than by raw
ids, which must never be committed. At run time each persona is resolved against the users of
an interactions artifact, normally ``interactions_sim``: SIMULATED Myntra shoppers whose
profiles the ranker's simulator drew from the real RTR and H&M profiles (the catalog has no
real logs). The best-matching user (most held-out positives, ties broken by a stable hash)
becomes the persona: its pseudonymised id goes into requests, and its interactions after the
time cut are the held-out truth that the system under test never saw.

Without user data (CI, a fresh machine) a persona falls back to its archetype: an anonymous
shopper with the stated gender and occasions and no held-out interactions, so the ranking
judges are skipped for it and say so.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator

from mmrec import kinds
from mmrec.config import StrictModel
from mmrec.errors import ConfigError

POSITIVE_EVENTS = ("click", "purchase", "rental")
AGE_BANDS = ((0, 25, "<25"), (25, 35, "25-34"), (35, 45, "35-44"), (45, 55, "45-54"), (55, 200, "55+"))


class PersonaMatch(StrictModel):
    """Which real-profile users a persona stands for; unset fields match anyone."""

    gender: Literal["men", "women"] | None = None
    age: tuple[float, float] | None = Field(None, description="inclusive age range")
    body_type: list[str] | None = None
    occasions: list[str] | None = Field(None, description="any overlap with the user's "
                                                          "preferred occasions")
    segment: str | None = None


class PersonaFallback(StrictModel):
    """The archetype used when no user data is available."""

    gender: Literal["men", "women"] | None = None
    age: float | None = Field(None, ge=10, le=100)
    body_type: str | None = None
    preferred_occasions: list[str] = []
    price_band: str | None = None


class PersonaDef(StrictModel):
    id: str = Field(pattern=r"^[a-z0-9_]{2,40}$")
    label: str = Field(min_length=3, max_length=120)
    source: Literal["rtr", "hm", "any"] = Field(
        "any", description="real profile source the persona is drawn from")
    channel: Literal["app", "kiosk"] = "app"
    budget: float | None = Field(None, gt=0, description="outfit budget (only judged when the "
                                                         "catalog has prices)")
    match: PersonaMatch = Field(default_factory=PersonaMatch)
    fallback: PersonaFallback = Field(default_factory=PersonaFallback)


class PersonaFile(StrictModel):
    version: int = 1
    personas: list[PersonaDef] = Field(min_length=1)

    @field_validator("personas")
    @classmethod
    def _unique(cls, v: list[PersonaDef]) -> list[PersonaDef]:
        ids = [p.id for p in v]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"persona ids must be unique; repeated: {dup}")
        return v


class Persona(BaseModel):
    """A resolved persona: what requests carry and what the ranking judges compare against."""

    id: str
    label: str
    segment: str
    source: str
    resolved_from: str  # "interactions_sim/<version>" or "archetype"
    user_id: str | None = None
    gender: str | None = None
    age: float | None = None
    body_type: str | None = None
    preferred_occasions: list[str] = []
    price_band: str | None = None
    channel: str = "app"
    budget: float | None = None
    history: list[str] = []  # items before the time cut (visible to the system)
    heldout: list[str] = []  # positives at or after the cut (never visible to the system)
    note: str | None = None


def load_persona_file(path: str | Path) -> PersonaFile:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"cannot read persona file {path}: {e}") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"persona file {path} is not valid YAML: {e}") from e
    try:
        return PersonaFile.model_validate(raw)
    except ValidationError as e:
        errs = "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors())
        raise ConfigError(f"persona file {path}: {errs}") from e


def age_band(age: float | None) -> str:
    if age is None or age != age:
        return "unknown"
    for lo, hi, name in AGE_BANDS:
        if lo <= age < hi:
            return name
    return "unknown"


def segment(gender: str | None, age: float | None) -> str:
    """``<gender or any>:<age band>``, the same shape as the ranker's user segments."""
    return f"{gender or 'any'}:{age_band(age)}"


def archetype(d: PersonaDef, note: str | None = None) -> Persona:
    f = d.fallback
    return Persona(id=d.id, label=d.label, segment=segment(f.gender, f.age), source=d.source,
                   resolved_from="archetype", gender=f.gender, age=f.age, body_type=f.body_type,
                   preferred_occasions=list(f.preferred_occasions), price_band=f.price_band,
                   channel=d.channel, budget=d.budget, note=note)


class UserDirectory:
    """Users, profiles and the held-out split of one interactions artifact.

    The split mirrors the ranker's (`mmrec.rank.myntra_train.roles`): requests ordered by their
    first event; the last ``test_share`` of them form the test window. A user's positives
    (click, purchase, rental) in test requests are held out; earlier ones are the history the
    system may see. Events without a request id split at the first test request's time.

    Args:
        profiles: rows with ``mmrec.rank.interactions.PROFILES_SCHEMA`` columns (the latest per
            user is used).
        interactions: rows with user_id, item_id, event, ts and optionally request_id.
        version: where the rows came from, e.g. ``interactions_sim/<version>``.
        test_share: share of requests in the test window.
        new_user_buckets: users with ``split_bucket`` below this never trained the ranker;
            personas prefer them (the honest "new shopper" case).
    """

    def __init__(self, profiles: list[dict[str, Any]], interactions: list[dict[str, Any]],
                 version: str, test_share: float = 0.2, new_user_buckets: int = 10):
        if not 0 < test_share < 1:
            raise ConfigError(f"test_share must be in (0, 1), got {test_share}")
        self.version = version
        self.new_user_buckets = new_user_buckets
        latest: dict[str, dict[str, Any]] = {}
        for p in profiles:
            prev = latest.get(p["user_id"])
            if prev is None or _ts(p.get("as_of")) >= _ts(prev.get("as_of")):
                latest[p["user_id"]] = p
        self.profiles = latest
        starts: dict[Any, float] = {}
        for r in interactions:
            key = r.get("request_id") or ("event", r["user_id"], _ts(r["ts"]))
            t = _ts(r["ts"])
            if t < starts.get(key, float("inf")):
                starts[key] = t
        self.cut, self.test_requests = split_requests(starts, test_share)
        self.history: dict[str, list[str]] = {}
        self.heldout: dict[str, list[str]] = {}
        for r in sorted(interactions, key=lambda r: _ts(r["ts"])):
            if r["event"] not in POSITIVE_EVENTS:
                continue
            rid = r.get("request_id")
            test = rid in self.test_requests if rid else _ts(r["ts"]) >= self.cut
            items = (self.heldout if test else self.history).setdefault(r["user_id"], [])
            if r["item_id"] not in items:
                items.append(r["item_id"])

    @classmethod
    def from_store(cls, store: Any, kind: str = kinds.INTERACTIONS_SIM,
                   version: str | None = None) -> "UserDirectory":
        """Read ``<kind>/<version>`` (profiles.parquet + interactions.parquet) from a store.

        The test share and the new-user buckets are the ones the ranker was trained with (the
        artifact's config, `mmrec.rank.myntra_train.NEW_USER_BUCKETS`).
        """
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        art = store.load(kind, version)
        prof = pq.read_table(art.file("profiles.parquet")).to_pylist()
        inter = pq.read_table(art.file("interactions.parquet"),
                              columns=["user_id", "item_id", "event", "ts", "request_id"])
        # impressions only matter for request start times: aggregate them in Arrow
        firsts = inter.filter(pc.is_valid(inter["request_id"])).group_by("request_id").aggregate(
            [("ts", "min")])
        pos = inter.filter(pc.is_in(inter["event"], pa.array(POSITIVE_EVENTS))).to_pylist()
        for rid, t in zip(firsts["request_id"].to_pylist(), firsts["ts_min"].to_pylist()):
            pos.append({"user_id": None, "item_id": None, "event": "start", "ts": t, "request_id": rid})
        share = (art.config.get("myntra") or {}).get("test_share", 0.2)
        try:
            from mmrec.rank.myntra_train import NEW_USER_BUCKETS
        except ImportError:  # the ranker package is optional for the benchmark
            NEW_USER_BUCKETS = 10
        return cls(prof, pos, f"{kind}/{art.version}", share, NEW_USER_BUCKETS)

    def visible_interactions(self, table: Any) -> Any:
        """Rows of an interactions table (Arrow) the system may know: before the test window."""
        import pyarrow as pa
        import pyarrow.compute as pc

        rid = table["request_id"]
        in_test = pc.is_in(rid, pa.array(sorted(self.test_requests), pa.string()))
        no_rid = pc.is_null(rid)
        late = pc.greater_equal(pc.cast(table["ts"], pa.int64()),
                                pa.scalar(int(self.cut * 1_000_000), pa.int64()))
        hide = pc.or_(pc.and_(pc.invert(no_rid), pc.fill_null(in_test, False)), pc.and_(no_rid, late))
        return table.filter(pc.invert(hide))

    def candidates(self, d: PersonaDef, *, use_source: bool = True) -> list[str]:
        m = d.match
        out = []
        for uid, p in self.profiles.items():
            if use_source and d.source != "any" and not _from_source(p, d.source):
                continue
            if m.gender is not None and p.get("gender") != m.gender:
                continue
            age = p.get("age")
            if m.age is not None and (age is None or not m.age[0] <= age <= m.age[1]):
                continue
            if m.body_type is not None and p.get("body_type") not in m.body_type:
                continue
            if m.occasions is not None and not set(m.occasions) & set(p.get("preferred_occasions") or []):
                continue
            if m.segment is not None and p.get("segment") != m.segment:
                continue
            out.append(uid)
        return out

    def _new_user(self, user_id: str) -> bool:
        b = self.profiles[user_id].get("split_bucket")
        return b is not None and b < self.new_user_buckets

    def resolve(self, d: PersonaDef, taken: set[str]) -> Persona:
        """The matching user with the most held-out positives (each user serves one persona)."""
        note = None
        cands = [u for u in self.candidates(d) if u not in taken and self.heldout.get(u)]
        if not cands and d.source != "any":
            # simulated users may not record which real source their profile came from
            cands = [u for u in self.candidates(d, use_source=False)
                     if u not in taken and self.heldout.get(u)]
            note = f"no user records source {d.source!r}; matched on the profile fields only"
        if not cands:
            return archetype(d, note=f"no user in {self.version} matches {d.match.model_dump(exclude_none=True)}"
                                     " with held-out positives; archetype used")
        best = max(cands, key=lambda u: (self._new_user(u), len(self.heldout[u]), _stable(d.id + u)))
        taken.add(best)
        p = self.profiles[best]
        age = p.get("age")
        return Persona(
            id=d.id, label=d.label, source=d.source, resolved_from=self.version, user_id=best,
            segment=p.get("segment") or segment(p.get("gender"), age), gender=p.get("gender"),
            age=age, body_type=p.get("body_type"),
            preferred_occasions=list(p.get("preferred_occasions") or []),
            price_band=p.get("price_band"), channel=d.channel, budget=d.budget,
            history=self.history.get(best, []), heldout=self.heldout[best], note=note)


def split_requests(starts: dict[Any, float], test_share: float) -> tuple[float, set[Any]]:
    """(cut time, test request ids): the last ``test_share`` of requests by start time."""
    if not starts:
        return float("inf"), set()
    order = sorted(starts, key=lambda k: (starts[k], str(k)))
    n_test = int(round(len(order) * test_share))
    if n_test == 0:
        return float("inf"), set()
    test = order[len(order) - n_test:]
    return starts[test[0]], {k for k in test if isinstance(k, str)}


def resolve_personas(defs: list[PersonaDef], users: UserDirectory | None) -> list[Persona]:
    """Resolve every persona; archetypes for all of them when ``users`` is None."""
    if users is None:
        return [archetype(d, note="no user data: archetype used") for d in defs]
    taken: set[str] = set()
    return [users.resolve(d, taken) for d in defs]


def _from_source(profile: dict[str, Any], source: str) -> bool:
    if profile.get("source") == source:
        return True
    extra = profile.get("extra") or {}
    if isinstance(extra, list):
        extra = dict(extra)
    return source in extra.values()


def _ts(v: Any) -> float:
    if v is None:
        return float("-inf")
    if hasattr(v, "timestamp"):
        return v.timestamp()
    return float(v)


def _stable(text: str) -> int:
    return int.from_bytes(hashlib.sha1(text.encode()).digest()[:8], "big")
