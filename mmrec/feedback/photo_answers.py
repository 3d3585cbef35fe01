"""Kiosk photo answers: photos the kiosk could not read, kept with what the shopper said they show.

When the kiosk cannot read a photo it asks "what is it?"; the answer labels the photo, and a
labelled phone photo from the store's own kiosk is exactly what the photo models lack (a
supervised model reads val photos' slot 0.78 with 3,469 of them, `lab/embed/slot_cnn_ceiling.py`).
Only with the shopper's consent (`share_photo` on `POST /v1/recommend/photo`, a checkbox on the
kiosk) the server keeps the photo in ``<feedback store folder>/photo_answers/<sha256>.jpg`` and
the answer as a row of the feedback store (`FeedbackStore.add_photo_answer`). The file is
re-encoded from the decoded pixels (at most ``photo_max_side``), so nothing of the upload's
metadata (EXIF: camera, place, time) is kept. Kiosk visitors are anonymous: no user id is stored.

Used by `mmrec embed photo-refs --answers` (the answered photos join the reference photos that
vote on a photo's slot) and by the mixed-domain training of both photo models
(`real_photos.answers` in configs/embed.yaml and configs/sft.yaml), both through `answer_photos`;
`mmrec feedback prune` deletes rows and files past the retention.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ANSWERS_DIR = "photo_answers"
JPEG_QUALITY = 90


@dataclass(frozen=True)
class PhotoAnswer:
    """One kept photo and what the shopper said it is."""

    photo_id: str
    path: Path
    slot: str
    category: str | None


def answers_dir(store_path: str | Path) -> Path:
    """Where the answered photos of the feedback store at ``store_path`` lie."""
    return Path(store_path).parent / ANSWERS_DIR


def keep_answer(store: Any, image: Any, slot: str, category: str | None, request_id: str | None) -> str:
    """Store ``image`` (a decoded PIL image) with the shopper's answer; returns its photo id.

    The file is written (atomically) before the row, so a row always has its photo."""
    buf = io.BytesIO()
    image.convert("RGB").save(buf, "JPEG", quality=JPEG_QUALITY)  # no exif= given: none is written
    data = buf.getvalue()
    photo_id = hashlib.sha256(data).hexdigest()
    folder = answers_dir(store.path)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{photo_id}.jpg"
    if not path.exists():
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    store.add_photo_answer(photo_id, slot, category, request_id)
    return photo_id


def answered_photos(store: Any) -> list[PhotoAnswer]:
    """Every stored answer whose photo is on disk, oldest first."""
    folder = answers_dir(store.path)
    out = []
    for photo_id, _ts, slot, category, _rid in store.photo_answers():
        path = folder / f"{photo_id}.jpg"
        if path.is_file():
            out.append(PhotoAnswer(photo_id, path, slot, category))
    return out


def prune_files(store: Any) -> int:
    """Delete answered photos whose row is gone (pruned); the number deleted."""
    folder = answers_dir(store.path)
    if not folder.is_dir():
        return 0
    kept = {row[0] for row in store.photo_answers()}
    gone = [f for f in folder.glob("*.jpg") if f.stem not in kept]
    for f in gone:
        f.unlink(missing_ok=True)
    return len(gone)


def answer_photos(store_path: str | Path, taxonomy: Any) -> list[Any]:
    """The kept answers of the feedback store at ``store_path`` as labelled photos
    (`mmrec.bench.photo_sources.PhotoTruth`, sender "kiosk"): the slot, and the category when the
    shopper named one (else every category of that slot, the set the tagger's category loss
    allows). Kiosk visitors are not benchmark photographers: none of these is ever judged by the
    benchmark.

    Raises:
        InputError: no feedback store at ``store_path``.
    """
    from mmrec.bench.photo_sources import PhotoTruth
    from mmrec.errors import InputError
    from mmrec.feedback.store import FeedbackStore

    if not Path(store_path).is_file():
        raise InputError(f"no feedback store at {store_path} (kiosk photo answers)")
    store = FeedbackStore(store_path)
    try:
        answers = answered_photos(store)
    finally:
        store.close()
    by_slot: dict[str, list[str]] = {}
    for cat in taxonomy.values("category"):
        by_slot.setdefault(taxonomy.slot_of(cat), []).append(cat)
    return [PhotoTruth(f"kiosk:{a.photo_id}", "kiosk_answer", str(a.path), a.category or a.slot, slot=a.slot,
                       categories=(a.category,) if a.category else tuple(by_slot.get(a.slot, ())), sender="kiosk")
            for a in answers]
