"""Benchmark suites: a YAML file of scenes x personas x query modes, expanded into cases.

Format (``benchmark/suites/*.yaml``; paths are relative to the suite file)::

    schema_version: 1
    name: default
    scenes: all                      # or a list of scene names from configs/scenes.yaml
    personas: ../personas/default.yaml
    persona_ids: all                 # or a subset of the file's ids
    personas_per_scene: null         # null: every persona in every scene; n: n per scene, rotating
    modes: [scene, text, photo, real_photo, other_retailer, query]
                                     # scene only; scene + generated typed text; scene + a re-shot
                                     # held-out catalog photo; scene + a real phone photo; scene +
                                     # another retailer's packshot; a hand-written shopper query
    repeats: 1                       # cases per (scene, persona, mode), each a different query
    k: 3                             # outfits per request
    seed: 17
    texts:                           # typed queries per scene, with what catalog truth must show
      office: [{text: "white formal shirt", expect: {category: shirts, colour: white}}]
    probes: {tagging: true, recall: true, ranking: true, recall_k: 50, ranking_negatives: 99}
    data: ../../../shared/data       # real data root (real_photos/, hm_sample/); --data overrides
    real_photos: {table: photos/real_photos.yaml, split: test, limit: null}
    other_retailer: {limit: null}
    queries: {file: queries/shopper_queries.yaml, limit: null}
    withheld: {splits: [test, val]}  # products served as new arrivals: photo and title only

Kiosk photos are products of the held-out split (``mmrec.splits.is_held_out``) that fit the
scene and the persona on catalog truth; the request carries only the image bytes, never the id,
and excludes the photographed product from recall and outfits (a kiosk shopper's garment is not
in the shop's catalog; self-retrieval is measured apart by the neighbour probe). Outside photos
(real phone photos, another retailer's packshots) and hand-written queries are asked by an
anonymous shopper (persona ``anonymous``): the kiosk visitor and the app user without a profile.
Expansion is deterministic: the same suite, catalog and personas give the same cases.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator

from mmrec.bench.judges import gender_ok, rule_failures, truth_value
from mmrec.bench.personas import Persona
from mmrec.config import StrictModel
from mmrec.errors import ConfigError, InputError
from mmrec.splits import is_held_out

SCHEMA_VERSION = 1
MODES = ("scene", "text", "photo", "real_photo", "other_retailer", "query")
PHOTO_MODES = ("photo", "real_photo", "other_retailer")
OUTSIDE_MODES = ("real_photo", "other_retailer")  # photos the system did not make
ANONYMOUS = "anonymous"  # persona id of outside photos and hand-written queries


class TextQuery(StrictModel):
    text: str = Field(min_length=2, max_length=200)
    expect: dict[str, str] = Field(default_factory=dict,
                                   description="taxonomy field -> value some outfit item must have")
    genders: list[Literal["men", "women"]] | None = Field(
        None, description="shoppers the query suits (the catalog may hold no men's heels)")


class Probes(StrictModel):
    """Component measurements run beside each case (in-process systems only for recall/ranking)."""

    tagging: bool = True
    recall: bool = True
    ranking: bool = True
    recall_k: int = Field(50, ge=10, le=1000)
    ranking_negatives: int = Field(99, ge=5, le=1000)


class RealPhotoSpec(StrictModel):
    table: str = Field("photos/real_photos.yaml", description="label table + sender split, "
                                                              "relative to the suite file")
    split: Literal["test", "val"] = "test"
    limit: int | None = Field(None, ge=1, description="first N photos (by id) of the split")


class OtherRetailerSpec(StrictModel):
    limit: int | None = Field(None, ge=1)


class QuerySpec(StrictModel):
    file: str = Field("queries/shopper_queries.yaml", description="relative to the suite file")
    limit: int | None = Field(None, ge=1)


class WithheldSpec(StrictModel):
    """Products the system under test receives as new arrivals (photo and title only)."""

    splits: list[Literal["test", "val"]] = Field(default_factory=lambda: ["test", "val"], min_length=1)


class Suite(StrictModel):
    schema_version: Literal[1] = 1
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,60}$")
    description: str = ""
    scenes: Literal["all"] | list[str] = "all"
    personas: str = Field(description="persona YAML, relative to the suite file")
    persona_ids: Literal["all"] | list[str] = "all"
    personas_per_scene: int | None = Field(None, ge=1)
    modes: list[Literal["scene", "text", "photo", "real_photo", "other_retailer", "query"]] = Field(
        default_factory=lambda: ["scene", "text", "photo"], min_length=1)
    repeats: int = Field(1, ge=1, le=20)
    k: int = Field(3, ge=1, le=20)
    seed: int = 17
    texts: dict[str, list[TextQuery]] = Field(default_factory=dict)
    probes: Probes = Field(default_factory=Probes)
    scenes_file: str | None = Field(None, description="scenes YAML (default configs/scenes.yaml)")
    data: str = Field("../../../shared/data", description="real data root, relative to the suite")
    real_photos: RealPhotoSpec = Field(default_factory=RealPhotoSpec)
    other_retailer: OtherRetailerSpec = Field(default_factory=OtherRetailerSpec)
    queries: QuerySpec = Field(default_factory=QuerySpec)
    withheld: WithheldSpec | None = None

    @field_validator("modes")
    @classmethod
    def _unique_modes(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError(f"modes repeat: {v}")
        return v


class Case(BaseModel):
    """One request of the benchmark and everything its judges need."""

    case_id: str
    scene: str
    persona: str
    segment: str
    mode: Literal["scene", "text", "photo", "real_photo", "other_retailer", "query"]
    k: int
    user_id: str | None = None
    gender: str | None = None
    channel: str = "app"
    budget: float | None = None
    text: str | None = None
    expect: dict[str, str] = {}
    photo_item: str | None = None  # held-out product whose photo is sent (judges only)
    photo_uri: str | None = None
    photo_truth: dict[str, Any] | None = None  # outside photos: the dataset's labels (judges only)
    exclude_item_ids: list[str] = []  # sent as a filter: the photographed product
    query_id: str | None = None
    pair: str | None = None
    lang: str | None = None
    constraints: dict[str, Any] = {}  # what a hand-written query states (judges only)


class LoadedSuite(BaseModel):
    suite: Suite
    path: Path
    sha256: str

    def resolve(self, rel: str) -> Path:
        p = Path(rel)
        return p if p.is_absolute() else (self.path.parent / p).resolve()


def load_suite(path: str | Path) -> LoadedSuite:
    """Read and validate a suite file; errors name the file and the bad key."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        raw = yaml.safe_load(text)
    except OSError as e:
        raise InputError(f"cannot read suite {path}: {e}") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"suite {path} is not valid YAML: {e}") from e
    try:
        suite = Suite.model_validate(raw)
    except ValidationError as e:
        errs = "; ".join(f"{'.'.join(map(str, x['loc'])) or '<root>'}: {x['msg']}" for x in e.errors())
        raise ConfigError(f"suite {path}: {errs}") from e
    return LoadedSuite(suite=suite, path=path.resolve(),
                       sha256=hashlib.sha256(text.encode()).hexdigest()[:16])


def check_against_scenes(suite: Suite, scene_names: Sequence[str]) -> list[str]:
    """The suite's scenes in order; every name and text key must be a known scene."""
    names = list(scene_names) if suite.scenes == "all" else list(suite.scenes)
    unknown = [s for s in names if s not in scene_names]
    unknown += [s for s in suite.texts if s not in scene_names]
    if unknown:
        raise ConfigError(f"suite {suite.name}: unknown scenes {sorted(set(unknown))}; "
                          f"known: {list(scene_names)}")
    if "text" in suite.modes:
        missing = [s for s in names if not suite.texts.get(s)]
        if missing:
            raise ConfigError(f"suite {suite.name}: mode 'text' needs texts for scenes {missing}")
    return names


def _pick(seed: int, key: str, n: int) -> int:
    return int.from_bytes(hashlib.sha1(f"{seed}:{key}".encode()).digest()[:8], "big") % n


def photo_pool(scene: Any, rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Held-out products with a photo that may appear in ``scene`` (catalog truth)."""
    pool = []
    for r in rows:
        if not is_held_out(str(r["item_id"])) or not r.get("image_uri"):
            continue
        slot = truth_value(r, "slot")
        if slot in scene.slots and not rule_failures(scene, r, slot):
            pool.append(r)
    return pool


def expand_cases(loaded: LoadedSuite, scenes: Mapping[str, Any], personas: Sequence[Persona],
                 rows: Sequence[Mapping[str, Any]], *, data_root: Path | None = None,
                 taxonomy: Any | None = None) -> list[Case]:
    """Every case of the suite, in a stable order.

    Args:
        scenes: scene name -> ``mmrec.outfit.scenes.Scene`` (the SceneBook's mapping).
        personas: resolved personas (``persona_ids`` selects among them).
        rows: catalog rows (items.parquet) to draw held-out kiosk photos from.
        data_root: real data (real_photos/, hm_sample/) for the outside-photo modes
            (default: the suite's ``data``).
    """
    s = loaded.suite
    names = check_against_scenes(s, list(scenes))
    by_id = {p.id: p for p in personas}
    ids = list(by_id) if s.persona_ids == "all" else list(s.persona_ids)
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise ConfigError(f"suite {s.name}: persona ids {missing} are not in {s.personas}; "
                          f"known: {list(by_id)}")
    pools: dict[str, list[Mapping[str, Any]]] = {}
    cases: list[Case] = []
    for si, name in enumerate(names):
        scene = scenes[name]
        if s.personas_per_scene is None:
            chosen = ids
        else:
            n = min(s.personas_per_scene, len(ids))
            chosen = [ids[(si * n + j) % len(ids)] for j in range(n)]
        for pid in chosen:
            p = by_id[pid]
            for mode in (m for m in s.modes if m in ("scene", "text", "photo")):
                for rep in range(s.repeats):
                    cid = f"{name}/{pid}/{mode}/{rep}"
                    case = Case(case_id=cid, scene=name, persona=pid, segment=p.segment,
                                mode=mode, k=s.k, user_id=p.user_id, gender=p.gender,
                                channel="kiosk" if mode == "photo" else p.channel,
                                budget=p.budget)
                    if mode == "text":
                        texts = [q for q in s.texts[name] if q.genders is None or p.gender is None
                                 or p.gender in q.genders]
                        if not texts:
                            raise ConfigError(f"suite {s.name}: no text query of scene {name!r} "
                                              f"suits persona {pid!r} ({p.gender})")
                        q = texts[(_pick(s.seed, cid, len(texts)) + rep) % len(texts)]
                        case.text, case.expect = q.text, dict(q.expect)
                    elif mode == "photo":
                        if name not in pools:
                            pools[name] = photo_pool(scene, rows)
                        fit = [r for r in pools[name]
                               if gender_ok(truth_value(r, "gender"), p.gender)] or pools[name]
                        if not fit:
                            raise InputError(f"scene {name!r}: no held-out product with a photo fits "
                                             f"its rules in this catalog; drop 'photo' from modes")
                        r = fit[_pick(s.seed, cid, len(fit))]
                        case.photo_item, case.photo_uri = str(r["item_id"]), str(r["image_uri"])
                        case.exclude_item_ids = [case.photo_item]
                    cases.append(case)
    if any(m in s.modes for m in (*OUTSIDE_MODES, "query")):
        from mmrec.taxonomy import default_taxonomy

        tax = taxonomy or default_taxonomy()
        root = data_root or loaded.resolve(s.data)
        if any(m in s.modes for m in OUTSIDE_MODES):
            cases += outside_photo_cases(loaded, scenes, root, tax)
        if "query" in s.modes:
            cases += query_cases(loaded, scenes, tax)
    return cases


def _scenes_for(scenes: Mapping[str, Any], names: Sequence[str], slot: str | None,
                categories: Sequence[str]) -> list[str]:
    """Scenes whose dress code lets the garment fill its slot (all scenes when none does)."""
    fit = [n for n in names if slot in scenes[n].slots
           and set(categories) & set(scenes[n].slot_categories(slot))]
    return fit or list(names)


def outside_photo_cases(loaded: LoadedSuite, scenes: Mapping[str, Any], root: Path,
                        taxonomy: Any) -> list[Case]:
    """Kiosk cases of real phone photos and another retailer's packshots (anonymous shopper).

    Each photo is asked in a scene whose dress code can use the garment's true slot, so that
    "built around the photo" is judgeable; probes and unusable garments rotate over scenes.
    """
    from mmrec.bench.photo_sources import load_real_photo_table, other_retailer_photos, real_photos

    s = loaded.suite
    names = check_against_scenes(s, list(scenes))
    photos = []
    if "real_photo" in s.modes:
        table = load_real_photo_table(loaded.resolve(s.real_photos.table), taxonomy)
        photos += real_photos(root / "real_photos", table, s.real_photos.split)[: s.real_photos.limit]
    if "other_retailer" in s.modes:
        photos += other_retailer_photos(root / "hm_sample" / "data" / "sample",
                                        taxonomy)[: s.other_retailer.limit]
    cases = []
    for ph in photos:
        options = _scenes_for(scenes, names, ph.slot, ph.categories)
        scene = options[_pick(s.seed, ph.photo_id, len(options))]
        cases.append(Case(case_id=f"{ph.source}/{ph.photo_id}", scene=scene, persona=ANONYMOUS,
                          segment=ANONYMOUS, mode=ph.source, k=s.k, channel="kiosk",
                          photo_uri=ph.uri, photo_truth=ph.as_truth()))
    return cases


def query_cases(loaded: LoadedSuite, scenes: Mapping[str, Any], taxonomy: Any) -> list[Case]:
    """One case per hand-written query, asked by an anonymous app shopper in its scene."""
    from mmrec.bench.queries import load_queries

    s = loaded.suite
    qf = load_queries(loaded.resolve(s.queries.file), taxonomy, list(scenes))
    out = []
    for q in qf.queries[: s.queries.limit]:
        out.append(Case(case_id=f"query/{q.id}", scene=q.scene, persona=ANONYMOUS, segment=ANONYMOUS,
                        mode="query", k=s.k, channel="app", text=q.text, query_id=q.id,
                        pair=q.pair, lang=q.lang,
                        constraints=q.expect.model_dump(exclude_none=True, exclude_defaults=True)))
    return out
