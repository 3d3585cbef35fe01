"""Photos the system did not make: real phone photos and another retailer's packshots.

Each photo becomes a `PhotoTruth`: where the bytes are, and what the dataset's own labels say
about the garment (slot, the categories a right reading may name, colour family, gender), or
that it is an abstention probe (the labeller could not tell). The system under test receives
only the bytes; the judges read the truth.

- ``real_photo``: ``real_photos/images.csv`` with the reviewed label table and the
  photographer split of ``benchmark/suites/photos/real_photos.yaml``; only the split named
  by the suite (``test``) is read, so a model trained on train senders is judged on people,
  rooms and phones it never saw.
- ``other_retailer``: H&M articles (``hm_sample``) that have a photo, read by the catalog's H&M
  adapter and mapped with the taxonomy: product type -> category and slot, colour group ->
  colour family, index group -> gender (children's and sport lines: no adult gender).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from mmrec.config import StrictModel, read_yaml_model, resolve_path
from mmrec.errors import ConfigError, InputError
from mmrec.taxonomy import SLOTS, Taxonomy

PHOTO_SOURCES = ("real_photo", "other_retailer")


@dataclass(frozen=True)
class PhotoTruth:
    """One outside photo and the truth its dataset states (None: not labelled)."""

    photo_id: str
    source: str                         # real_photo | other_retailer
    uri: str
    label: str                          # the dataset's own label, for the report
    slot: str | None = None
    categories: tuple[str, ...] = ()    # categories a correct reading may name
    colour_family: str | None = None
    gender: str | None = None           # adult gender (men | women) when the source states it
    probe: bool = False                 # the labeller could not tell: an abstention probe
    sender: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_truth(self) -> dict[str, Any]:
        return {"slot": self.slot, "categories": list(self.categories),
                "colour_family": self.colour_family, "gender": self.gender, "probe": self.probe,
                "label": self.label, "source": self.source, "photo_id": self.photo_id}


class LabelRule(StrictModel):
    slot: str | None = None
    categories: list[str] = Field(default_factory=list)
    probe: bool = False

    @model_validator(mode="after")
    def _either(self) -> "LabelRule":
        if self.probe == bool(self.slot):
            raise ValueError("a label is either a probe or has a slot (and categories)")
        if self.slot and not self.categories:
            raise ValueError(f"label with slot {self.slot!r} needs categories")
        return self


class RealPhotoTable(StrictModel):
    schema_version: Literal[1] = 1
    source: Literal["real_photos"] = "real_photos"
    labels: dict[str, LabelRule]
    senders: dict[Literal["test", "val", "calibration"], list[int]]

    def split_of(self, sender: str) -> str:
        s = int(sender)
        for name, ids in self.senders.items():
            if s in ids:
                return name
        return "train"


def load_real_photo_table(path: str | Path, taxonomy: Taxonomy) -> RealPhotoTable:
    """Read and check the label table: slots and categories must be the taxonomy's."""
    path = Path(path)
    table = read_yaml_model(path, RealPhotoTable, "real-photo table")
    for label, rule in table.labels.items():
        if rule.slot and rule.slot not in SLOTS:
            raise ConfigError(f"{path}: label {label!r}: slot {rule.slot!r} is not one of {SLOTS}")
        for c in rule.categories:
            if not taxonomy.is_valid("category", c):
                raise ConfigError(f"{path}: label {label!r}: {c!r} is not a taxonomy category")
            if rule.slot and taxonomy.slot_of(c) != rule.slot:
                raise ConfigError(f"{path}: label {label!r}: {c!r} fills slot "
                                  f"{taxonomy.slot_of(c)!r}, not {rule.slot!r}")
    named = list(table.senders.items())
    for i, (a, ids_a) in enumerate(named):
        for b, ids_b in named[i + 1:]:
            overlap = set(ids_a) & set(ids_b)
            if overlap:
                raise ConfigError(f"{path}: senders in both {a} and {b}: {sorted(overlap)}")
    return table


def real_photos(root: str | Path, table: RealPhotoTable, split: str = "test") -> list[PhotoTruth]:
    """The photos of one photographer split, with their mapped truth (stable order).

    Raises:
        InputError: the folder has no images.csv, or a label is missing from the table (a new
            label must be reviewed into the table, not guessed).
    """
    root = Path(root)
    index = root / "images.csv"
    if not index.is_file():
        raise InputError(f"{index} not found: point real_photos.source at the real_photos folder")
    out: list[PhotoTruth] = []
    with open(index, newline="", encoding="utf-8") as f:
        for n, row in enumerate(csv.DictReader(f), start=2):
            if table.split_of(row["sender_id"]) != split:
                continue
            rule = table.labels.get(row["label"])
            if rule is None:
                raise InputError(f"{index} line {n}: label {row['label']!r} is not in the reviewed "
                                 f"table; known: {sorted(table.labels)}")
            out.append(PhotoTruth(
                photo_id=row["image"], source="real_photo",
                uri=str(root / "images" / f"{row['image']}.jpg"), label=row["label"],
                slot=rule.slot, categories=tuple(rule.categories), probe=rule.probe,
                sender=row["sender_id"], extra={"kids": row.get("kids") == "True"}))
    return sorted(out, key=lambda p: p.photo_id)


def training_photos(source: str | Path, table_path: str | Path, taxonomy: Taxonomy) -> list[PhotoTruth]:
    """The labelled (non-probe) photos of the split table's TRAIN photographers, stable order:
    what the mixed-domain recipes (encoder and tagger) and the reference photos may use (never
    the test, val or calibration photographers)."""
    table = load_real_photo_table(resolve_path(table_path), taxonomy)
    photos = [p for p in real_photos(source, table, "train") if not p.probe]
    held = {p.sender for p in photos if table.split_of(str(p.sender)) != "train"}
    if held:  # real_photos filters by split already; this guards the guarantee itself
        raise AssertionError(f"held-out photographers {sorted(held)} reached the training photos")
    return photos


def other_retailer_photos(root: str | Path, taxonomy: Taxonomy) -> list[PhotoTruth]:
    """H&M articles with a photo, their truth mapped by the catalog's H&M adapter."""
    from mmrec.catalog.adapters import read_hm
    from mmrec.catalog.config import IngestConfig

    root = Path(root)
    out: list[PhotoTruth] = []
    for rec in read_hm(root, IngestConfig(format="hm")):
        if rec.image_path is None or not rec.image_path.is_file():
            continue
        f = rec.fields
        cat = taxonomy.canonical("category", f.get("category"))
        slot = taxonomy.slot_of(cat) if cat else None
        colour = taxonomy.canonical("colour", f.get("colour"))
        gender = f.get("gender") if f.get("gender") in ("men", "women") else None
        out.append(PhotoTruth(
            photo_id=str(f["item_id"]), source="other_retailer", uri=str(rec.image_path),
            label=f"{f.get('category')} / {f.get('colour')} / {f.get('gender') or 'no adult gender'}",
            slot=slot, categories=(cat,) if cat else (), colour_family=taxonomy.colour_family(colour),
            gender=gender))
    if not out:
        raise InputError(f"no H&M article with a photo under {root}")
    return sorted(out, key=lambda p: p.photo_id)
