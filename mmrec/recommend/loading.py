"""Build a `Recommender` from whatever artifacts the store holds; say what is missing.

Only ``items`` is required. Every other component is loaded when its artifact exists, and its
absence becomes a load note that every response repeats (see `mmrec.recommend.recommender`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mmrec import kinds
from mmrec.artifacts import ArtifactStore
from mmrec.embed.photo_refs import PhotoRefs
from mmrec.errors import ArtifactNotFound
from mmrec.outfit.items import ItemTable
from mmrec.outfit.loading import attach_vectors, merge_predictions
from mmrec.outfit.photo import PhotoModels
from mmrec.outfit.priors import CooccurrencePriors
from mmrec.outfit.scenes import SceneBook
from mmrec.recommend.config import RecommenderConfig
from mmrec.recommend.slot_confidence import SlotCalibrator
from mmrec.taxonomy import default_taxonomy

if TYPE_CHECKING:
    import pyarrow as pa

    from mmrec.rank.ranker import Ranker
    from mmrec.rank.users import UserStore
    from mmrec.recall.service import Recall


@dataclass
class LoadedParts:
    """The components found in a store, as the `Recommender` constructor takes them."""

    items: ItemTable
    scenes: SceneBook
    config: RecommenderConfig
    recall: "Recall | None" = None
    ranker: "Ranker | None" = None
    users: "UserStore | None" = None
    photo: PhotoModels = field(default_factory=PhotoModels)
    priors: CooccurrencePriors | None = None
    notes: list[str] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)
    slot_calibrator: SlotCalibrator | None = None
    photo_refs: PhotoRefs | None = None

    def kwargs(self) -> dict[str, Any]:
        return {"recall": self.recall, "ranker": self.ranker, "users": self.users,
                "photo": self.photo, "priors": self.priors, "config": self.config,
                "taxonomy": self.items.taxonomy, "notes": self.notes, "versions": self.versions,
                "users_simulated": self.users is not None, "slot_calibrator": self.slot_calibrator,
                "photo_refs": self.photo_refs}


def load_parts(store: ArtifactStore, *, config: RecommenderConfig | None = None,
               with_photo_models: bool = True, device: str = "cpu", profile: str = "mini",
               photo_tagger: bool = True, photo_mirror: bool = False,
               items_table: "pa.Table | None" = None) -> LoadedParts:
    """Load the CURRENT artifacts under ``store`` for a `Recommender`.

    Args:
        with_photo_models: load tagger/encoder here (False when a separate Ray deployment
            serves photos).
        profile: config profile of the recall stage (tiny | mini | standard).
        photo_tagger: read photos with the tagger too (False: encoder only).
        photo_mirror: the tagger reads each photo with its mirror image too (`PhotoModels`).
        items_table: serve this items table (a pyarrow table of the index's items version with
            amended rows, e.g. new arrivals read by the models) instead of the stored one.
    """
    from mmrec.catalog.ingest import load_items

    cfg = config or RecommenderConfig()
    tax = default_taxonomy()
    scenes = SceneBook.load(cfg.scenes_path, tax)
    notes: list[str] = []
    recall = None
    if store.current_version(kinds.INDEX):
        from mmrec.recall.service import Recall

        recall = Recall.load(store, profile=profile, items=items_table)  # with the encoder that made the vectors
    else:
        notes.append("no recall index: candidates from the catalog filter (mmrec index build)")
    # the catalog version the index was built from, so that rules, facts and candidates agree
    items_version = (recall.versions.get("items") if recall is not None else None) or None
    items_art = store.load(kinds.ITEMS, items_version)
    table = items_table if items_table is not None else load_items(store, items_art.version)
    items = ItemTable(table, items_art.version, tax)
    if recall is not None and attach_vectors(items, store, recall.versions.get("vectors") or None) is None:
        notes.append("no vectors artifact: compatibility without embeddings")
    n_pred = merge_predictions(items, store)
    if n_pred:
        notes.append(f"{n_pred} model-tagged attributes fill gaps in the catalog (cited with "
                     "their confidence; scene rules still judge catalog values only)")
    latest = store.current_version(kinds.ITEMS)
    if latest != items_art.version:
        notes.append(f"items/{latest} is newer than the index's items/{items_art.version}: "
                     "rebuild the index to serve it")
    priors = None
    try:
        priors = CooccurrencePriors.load(store)
    except ArtifactNotFound:
        notes.append("no outfit_priors artifact: compatibility without co-occurrence priors "
                     "(mmrec outfit priors --source ../shared/data/polyvore_outfits)")
    photo = PhotoModels()
    versions: dict[str, str] = {}
    if with_photo_models:
        photo, photo_notes = PhotoModels.from_store(
            store, device=device, encoder=getattr(recall, "encoder", None), with_tagger=photo_tagger,
            tagger_mirror=photo_mirror)
        notes += photo_notes
    else:  # photo responses carry the versions the photo deployment used
        versions = {"tagger": "photo deployment", "encoder": "photo deployment"}
    # reference photos vote in the space of the encoder that reads photos (recall's, whichever
    # replica runs it)
    encoder_id = getattr(photo.encoder, "encoder_id", None) or getattr(getattr(recall, "index", None),
                                                                       "encoder_id", None)
    refs, ref_notes = PhotoRefs.load(store, encoder_id)
    notes += ref_notes
    if refs is not None:
        versions[kinds.PHOTO_REFS] = refs.version
    calibrator, cal_notes = SlotCalibrator.load(store, photo_model_versions(store, photo_tagger))
    notes += cal_notes
    if calibrator is not None:
        versions[kinds.SLOT_CALIBRATION] = store.current_version(kinds.SLOT_CALIBRATION) or "?"
    ranker = None
    if store.current_version(kinds.RANKER):
        from mmrec.rank.ranker import Ranker

        ranker = Ranker.load(store, items=items_table)
    else:
        notes.append("no ranker artifact: candidates keep their recall order")
    users = _load_users(store, notes)
    if n_pred:
        versions[kinds.ATTRIBUTE_PREDICTIONS] = store.current_version(kinds.ATTRIBUTE_PREDICTIONS)
    if users is not None and getattr(users, "version", None):
        versions["users"] = f"{users.version} (simulated)"
    return LoadedParts(items, scenes, cfg, recall=recall, ranker=ranker, users=users, photo=photo,
                       priors=priors, notes=notes, versions=versions, slot_calibrator=calibrator,
                       photo_refs=refs)


def photo_model_versions(store: ArtifactStore, with_tagger: bool = True) -> dict[str, str | None]:
    """The CURRENT versions a photo reading depends on (what a slot calibrator is fitted on)."""
    return {kinds.VLM: store.current_version(kinds.VLM) if with_tagger else None,
            kinds.ENCODER: store.current_version(kinds.ENCODER),
            kinds.INDEX: store.current_version(kinds.INDEX),
            kinds.PHOTO_REFS: store.current_version(kinds.PHOTO_REFS)}


def _load_users(store: ArtifactStore, notes: list[str]) -> "UserStore | None":
    try:
        from mmrec.rank.users import UserStore

        return UserStore.load(store)  # the simulated shoppers of the Myntra logs
    except (ImportError, ArtifactNotFound):
        notes.append("no user store: every request is anonymous")
        return None
