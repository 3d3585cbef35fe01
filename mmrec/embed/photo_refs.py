"""Reference photos: labelled phone photos whose slots vote on a kiosk photo's slot.

When the tagger is unsure, a kiosk photo's slot is the majority slot of its nearest neighbours
on the image (`mmrec.recommend.photo_anchor`). Catalog packshots are a poor electorate for a
phone photo of a shirt on a bed: studio shots of socks and watches can sit nearer than any shirt.
Phone photos whose garment class someone has labelled vote better: on the real-photo val
photographers the ten nearest reference photos read the slot right 60.3% of the time, the ten
nearest catalog items 49.0% (demo encoder, 2026-12-07, docs/benchmark.md).

The ``photo_refs`` artifact holds, for the photos of the benchmark's TRAIN photographers (val and
test photographers never enter; "could not tell" labels never do), their slot, garment label and
the categories it allows, and the encoder's image vector. The labels also name the garment class
of a photo whose slot is read (`PhotoRefs.nearest_class`). It is tied to that encoder: a kiosk photo embedded by another encoder lives in
another space, so the loader refuses a mismatched set (the vote then falls back to the catalog).
A retailer grows its own set the same way: kiosk photos kept with the shopper's answer to "what
is it?" (with consent, `mmrec.feedback.photo_answers`) join with `mmrec embed photo-refs --answers`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mmrec import kinds
from mmrec.errors import InputError

REFS_FILE = "refs.parquet"
VECTORS_FILE = "vectors.npy"


@dataclass
class PhotoRefs:
    """Labelled reference photos in one encoder's space."""

    version: str
    encoder_id: str
    photo_ids: list[str]
    slots: np.ndarray        # str [n]
    vectors: np.ndarray      # float32 [n, d], unit norm
    labels: np.ndarray | None = None            # str [n]: the garment label ("Pants", ...)
    classes: list[tuple[str, ...]] | None = None  # the categories each label allows; () none named

    def __post_init__(self) -> None:
        # which references can vote on a garment class, computed once (nearest_class is per photo)
        self._named = np.asarray([bool(c) for c in self.classes or ()], dtype=bool)

    def nearest_slots(self, vector: Sequence[float], k: int) -> list[str]:
        """The slots of the ``k`` reference photos nearest to ``vector`` (a unit image vector),
        nearest first."""
        sims = self.vectors @ np.asarray(vector, dtype=np.float32)
        k = min(k, len(sims))
        top = np.argpartition(-sims, k - 1)[:k]
        return [str(s) for s in self.slots[top[np.argsort(-sims[top])]]]

    def nearest_class(self, vector: Sequence[float], slot: str, k: int) -> tuple[str, tuple[str, ...], float] | None:
        """(label, the categories it allows, its share of the votes) of the commonest garment label
        among the ``k`` reference photos of ``slot`` nearest to ``vector`` that name a class (ties:
        the nearer label); None without such photos. Phone photos name a phone photo's garment
        class better than its catalog look-alikes do (`lab/embed/garment_vote.py`)."""
        if self.labels is None or self.classes is None:
            return None
        named = np.flatnonzero((self.slots == slot) & self._named)
        if not len(named):
            return None
        sims = self.vectors[named] @ np.asarray(vector, dtype=np.float32)
        near = named[np.argsort(-sims)[:k]]
        votes = Counter(str(self.labels[i]) for i in near)
        best = max(votes.values())
        winner = next(i for i in near if votes[str(self.labels[i])] == best)
        return str(self.labels[winner]), self.classes[winner], best / len(near)

    @classmethod
    def load(cls, store: Any, encoder_id: str | None) -> tuple["PhotoRefs | None", list[str]]:
        """The CURRENT ``photo_refs`` if its vectors come from ``encoder_id``; else None and a
        note saying why (no artifact is no note: reference photos are optional)."""
        import pyarrow.parquet as pq

        version = store.current_version(kinds.PHOTO_REFS)
        if not version:
            return None, []
        art = store.load(kinds.PHOTO_REFS, version)
        made_by = art.config.get("encoder_id")
        if encoder_id is None or made_by != encoder_id:
            return None, [f"photo_refs/{version} was embedded by {made_by}, photos are read by "
                          f"{encoder_id}: the slot vote uses catalog look-alikes (mmrec embed photo-refs)"]
        table = pq.read_table(art.file(REFS_FILE))
        named = "classes" in table.column_names  # sets built before 2026-12-08 name no classes
        return cls(version, made_by, table.column("photo_id").to_pylist(),
                   np.asarray(table.column("slot").to_pylist()), np.load(art.file(VECTORS_FILE)),
                   labels=np.asarray(table.column("label").to_pylist()) if named else None,
                   classes=[tuple(c) for c in table.column("classes").to_pylist()] if named else None), []


def reference_senders(store: Any) -> set[str]:
    """The senders of the CURRENT ``photo_refs`` (photographer ids, "kiosk" for kiosk answers);
    empty without one. Whatever encoder embedded them."""
    import pyarrow.parquet as pq

    version = store.current_version(kinds.PHOTO_REFS)
    if not version:
        return set()
    path = store.load(kinds.PHOTO_REFS, version).file(REFS_FILE)
    return set(pq.read_table(path, columns=["sender"]).column("sender").to_pylist())


def build_photo_refs(store: Any, encoder: Any, source: str | Path, table: str | Path,
                     taxonomy: Any, *, answers: Sequence[Any] = (), batch_size: int = 256) -> Any:
    """Embed the train photographers' labelled photos, and ``answers`` (kiosk photos with the
    shopper's answer, `mmrec.feedback.photo_answers.answer_photos`), with ``encoder``; write
    ``photo_refs``.

    Raises:
        InputError: no images.csv under ``source``, or no labelled train-photographer photo.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mmrec.bench.photo_sources import training_photos
    from mmrec.images import ImageError, load_image

    photos = training_photos(source, table, taxonomy)
    if not photos:
        raise InputError(f"no labelled train-photographer photo under {source}")
    photos += list(answers)
    kept, images = [], []
    for p in photos:
        try:
            images.append(load_image(p.uri))
        except ImageError:
            continue  # an unreadable photo is simply not a reference
        kept.append(p)
    vectors = np.asarray(encoder.encode_images(images, batch_size=batch_size), dtype=np.float32)
    # a label names a garment class unless it is only a slot (a kiosk answer without a category)
    rows = pa.table({"photo_id": [p.photo_id for p in kept], "sender": [str(p.sender) for p in kept],
                     "label": [p.label for p in kept], "slot": [p.slot for p in kept],
                     "classes": pa.array([list(p.categories) if p.label != p.slot else [] for p in kept],
                                         type=pa.list_(pa.string()))})
    with store.write(kinds.PHOTO_REFS, config={"encoder_id": encoder.encoder_id, "source": str(source),
                                               "table": str(table), "split": "train"}) as w:
        pq.write_table(rows, w.path / REFS_FILE)
        np.save(w.path / VECTORS_FILE, vectors)
        w.metrics = {"photos": len(kept), "unreadable": len(photos) - len(kept),
                     "kiosk_answers": sum(p.sender == "kiosk" for p in kept),
                     "senders": len({p.sender for p in kept}),
                     "slots": {s: int(n) for s, n in zip(*np.unique(rows.column("slot").to_pylist(),
                                                                    return_counts=True))}}
    return store.load(kinds.PHOTO_REFS, w.version)
