"""A shopper's photo as an outfit anchor: its slot, its catalog look-alikes, the slot's pool.

Look-alikes come from recall's own index (the image route, with the same hard filters as any
search); without an index, from the tagged category and colour over the catalog. The slot is
the tagger's reading when confident, else the majority slot of the nearest look-alikes.
With a slot calibrator (`mmrec.recommend.slot_confidence`) the reading carries the
probability that its slot is right; below the calibrator's threshold the photo is not
placed at all (the answer abstains and asks the shopper what the item is). A shopper's hint
(slot, optionally category) replaces the reading and is never declined.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from mmrec.api_models import PhotoOut
from mmrec.embed.photo_refs import PhotoRefs
from mmrec.outfit.compat import Features
from mmrec.outfit.compose import Anchor
from mmrec.outfit.items import ItemTable
from mmrec.outfit.photo import PhotoAnalysis
from mmrec.outfit.scenes import Scene, genders_compatible
from mmrec.recommend.components import CandidateRecall
from mmrec.recommend.slot_confidence import (NEIGHBOURS, SlotCalibrator, SlotEvidence, SlotHint,
                                             evidence_of, slot_choices)
from mmrec.taxonomy import Taxonomy

# Reference photos that name a kiosk photo's garment class: on the real-photo val + calibration
# photographers (620 photos whose slot was read right) the 20 nearest named the class right
# 81.8% of the time, 10 80.9%, 5 81.3%; the served rule before them 77.3%
# (lab/embed/garment_vote.py, docs/benchmark.md "Garment class from reference photos").
CLASS_NEIGHBOURS = 20

# Where the slot of a photo comes from in one attempt: the rule (tagger, else neighbours), the
# neighbours only (second opinion on a misread), or no slot at all (match colours only).
SlotFrom = Literal["rule", "neighbours", "colours"]


@dataclass
class PhotoAnchor:
    """The photo read for one attempt: composer anchor, response part, the slot's pool."""

    anchor: Anchor
    out: PhotoOut
    pool: list[str] = field(default_factory=list)  # look-alikes the scene allows in the slot
    notes: list[str] = field(default_factory=list)


class PhotoAnchoring:
    """Places photos in outfits.

    Args:
        items: the catalog in memory.
        taxonomy: category -> slot, feature vocabularies.
        recall: the index the look-alikes are searched in (None: attribute match only).
        similar_k: look-alikes per photo (the anchor slot's pool size).
        min_confidence: tagged values below this are not used.
        calibrator: maps a reading's evidence to its slot confidence (None: uncalibrated, never
            abstains).
        abstain_below: slot confidence under which the reading abstains (None: the
            calibrator's own threshold, chosen on the val + calibration photographers).
        refs: labelled reference photos that vote on an unread slot (None: catalog look-alikes
            vote).
    """

    def __init__(self, items: ItemTable, taxonomy: Taxonomy, recall: CandidateRecall | None,
                 similar_k: int, min_confidence: float, calibrator: SlotCalibrator | None = None,
                 abstain_below: float | None = None, refs: PhotoRefs | None = None):
        self.items = items
        self.tax = taxonomy
        self.recall = recall
        self.k = similar_k
        self.min_confidence = min_confidence
        self.calibrator = calibrator
        self.abstain_below = abstain_below
        self.refs = refs

    @property
    def abstain_below(self) -> float | None:
        """The configured threshold, else the calibrator's own (follows a swapped calibrator)."""
        if self._abstain_below is not None:
            return self._abstain_below
        return self.calibrator.threshold if self.calibrator is not None else None

    @abstain_below.setter
    def abstain_below(self, value: float | None) -> None:
        self._abstain_below = value

    def _confident(self, photo: PhotoAnalysis, fields: tuple[str, ...] | None = None) -> dict[str, str]:
        return {f: v["value"] for f, v in photo.attributes.items()
                if (fields is None or f in fields) and (v.get("confidence") or 0) >= self.min_confidence}

    def read_slot(self, photo: PhotoAnalysis) -> tuple[str | None, str]:
        """The photo's slot before any vote: the encoder's slot head when it has one, else the
        tagger's confident category (`tagged_slot`). The head first: on the real-photo val
        photographers the quick (6 CPU-min) encoder's head read the slot right 0.609 against 0.570
        for the tagger-else-vote rule, and 0.737 against 0.711 on the photos where the tagger was
        confident; at the encoder's full budget the head reads val 0.775
        (`lab/embed/slot_head_eval.py`, docs/recall.md "Slot head")."""
        if photo.slot_probs:
            return max(photo.slot_probs, key=photo.slot_probs.__getitem__), "encoder"
        return self.tagged_slot(photo)

    def tagged_slot(self, photo: PhotoAnalysis) -> tuple[str | None, str]:
        """(slot, "tagger") when the tagger read a category confidently, else (None, "none")."""
        cat = photo.attributes.get("category", {})
        if cat.get("value") and (cat.get("confidence") or 0) >= self.min_confidence:
            slot = self.tax.slot_of(cat["value"])
            if slot != "other":
                return slot, "tagger"
        return None, "none"

    @staticmethod
    def majority_slot(slots: list[str]) -> str | None:
        """The commonest outfit slot among the voters (``other`` does not vote)."""
        votes = Counter(slots)
        votes.pop("other", None)
        return votes.most_common(1)[0][0] if votes else None

    def similar(self, photo: PhotoAnalysis, slot: str | None, genders: list[str] | None, k: int,
                exclude: list[str], categories: list[str] | None = None, *,
                tags: bool = True) -> list[str]:
        """Catalog items most like the photo, optionally within ``slot`` and ``categories``:
        recall's image route (plus the tagged attributes unless ``tags`` is False and there is
        an image vector), or the attribute match without an index."""
        attrs = self._confident(photo, ("category", "colour", "pattern", "usage"))
        if not tags and photo.vector is not None:
            attrs = {}  # a second opinion on the tagger's reading must not repeat it
        if slot and attrs.get("category") and self.tax.slot_of(attrs["category"]) != slot:
            del attrs["category"]  # the shopper named another slot than the tagger read
        if categories and len(categories) == 1 and tags and attrs.get("category") not in categories:
            attrs["category"] = categories[0]  # a tagged category outside the filter finds nothing
        if self.recall is not None:
            from mmrec.recall.types import Filters, RecallQuery

            vec = photo.vector
            index_encoder = getattr(getattr(self.recall, "index", None), "encoder_id", None)
            if vec is not None and photo.encoder_id and index_encoder and photo.encoder_id != index_encoder:
                vec = None  # a vector from another encoder would search the wrong space
            if vec is None and not attrs:
                return []
            q = RecallQuery(image_vector=vec, attributes=attrs,
                            filters=Filters(slots=[slot] if slot else None, genders=genders,
                                            categories=categories, exclude_ids=exclude), k=k)
            # the index may hold an item the items table no longer has (a vector outliving its row)
            return [c.item_id for c in self.recall.search(q) if c.item_id in self.items.index][:k]
        if attrs.get("category") and (categories is None or attrs["category"] in categories):
            pos = [p for p, r in enumerate(self.items.rows) if r["category"] == attrs["category"]
                   and (attrs.get("colour") is None or r.get("colour") == attrs["colour"])]
            return [self.items.ids[p] for p in pos[:k]]
        return []

    def similar_to_photo(self, photo: PhotoAnalysis, k: int, genders: list[str] | None = None
                         ) -> tuple[str | None, str, list[str]]:
        """(slot, how the slot was found, similar catalog item ids) for a photo, any scene."""
        slot, how = self.read_slot(photo)
        if slot is None:
            slot = self.majority_slot(self.voter_slots(photo, []))
            how = "neighbours" if slot else "none"
        return slot, how, self.similar(photo, slot, genders, k, exclude=[])

    def voter_slots(self, photo: PhotoAnalysis, exclude: list[str]) -> list[str]:
        """The slots that vote on a photo's slot and back its confidence: its `NEIGHBOURS`
        nearest catalog items on the image alone (every slot and gender), plus its `NEIGHBOURS`
        nearest labelled reference photos when there are (`PhotoRefs`, in the photo's encoder
        space). Both, because each electorate knows its own domain: a packshot's catalog
        neighbours agree on its slot while phone photos scatter over it, and the other way round
        for a phone photo (real-photo val senders: catalog 49%, reference photos 60%, both 57%;
        re-shot catalog photos lost 7 points of look-alike category P@10 with reference photos
        alone). Never the attribute-mixed search: with the tagger's colour and usage in the query
        its top ten are whatever shares them (that vote read val photos right 12% of the time)."""
        out = [self.items.row(i)["slot"] for i in self.similar(photo, None, None, NEIGHBOURS, exclude, tags=False)]
        refs = self._refs_for(photo)
        if refs is not None:
            out += refs.nearest_slots(photo.vector, NEIGHBOURS)
        return out

    def _refs_for(self, photo: PhotoAnalysis) -> PhotoRefs | None:
        """The reference photos, if they live in the space the photo was embedded in."""
        refs = self.refs
        if refs is None or photo.vector is None or photo.encoder_id != refs.encoder_id:
            return None
        return refs

    def evidence(self, photo: PhotoAnalysis, slot: str | None, exclude: list[str],
                 voters: list[str] | None = None) -> SlotEvidence:
        """What backs reading ``photo`` as ``slot``: the tagger, and the slots of its nearest
        neighbours on the image (``voters``, `voter_slots`, found when not given; any gender:
        an item's slot does not depend on whom the outfit is for)."""
        voters = self.voter_slots(photo, exclude) if voters is None else voters
        return evidence_of(slot, photo.attributes, voters, self.tax, photo.slot_probs)

    def anchor(self, photo: PhotoAnalysis, scene: Scene, genders: list[str] | None,
               exclude: list[str], slot_from: SlotFrom = "rule", hint: SlotHint | None = None
               ) -> PhotoAnchor:
        """The photo as an outfit anchor: its slot, its look-alikes (any category), and the
        look-alikes the scene allows in that slot (the slot's candidates).

        ``slot_from``: "rule" (the tagged category's slot, else the majority of the
        look-alikes'), "neighbours" (skip the tagger's reading) or "colours" (no slot: the
        outfits are matched to the photo's colours; the caller says why). ``hint``: the
        shopper said what the item is (slot_from is then ignored). A reading whose slot
        confidence is under the threshold abstains: no anchor slot, no look-alikes."""
        k, notes = self.k, []
        if hint is not None:
            slot, how = hint.slot, "shopper"
        else:
            slot, how = self.read_slot(photo) if slot_from == "rule" else (None, "none")
        cats = [hint.category] if hint is not None and hint.category else None
        reading = hint is None and slot_from != "colours"
        # the image's nearest neighbours vote on an unread slot and back the calibrated confidence
        voters = self.voter_slots(photo, exclude) if reading and (slot is None or self.calibrator) else []
        if slot is None and reading:
            slot = self.majority_slot(voters)
            how = "neighbours" if slot else "none"
        ev = self.evidence(photo, slot, exclude, voters) if reading and self.calibrator else None
        conf = round(self.calibrator.confidence(ev), 4) if ev is not None else None
        if conf is not None and self.abstain_below is not None and conf < self.abstain_below:
            return self._abstain(photo, ev, conf)
        # one wide search (in the read slot) serves the look-alikes and (usually) the slot's pool
        wide = self.similar(photo, slot, genders, 4 * k, exclude, cats,
                            tags=slot_from != "neighbours" or hint is not None)
        ids = [i for i in wide if slot is None or self.items.row(i)["slot"] == slot][:k]
        pool: list[str] = []
        if slot is None:
            if slot_from != "colours":
                notes.append("the photo could not be placed in an outfit slot; outfits are matched "
                             "to its colours only")
        elif slot not in scene.template_slots():
            notes.append(f"the photo shows a {slot} item, which {scene.label} outfits do not use")
        else:
            allowed = set(scene.slot_categories(slot))
            pool = [i for i in wide if self.items.row(i)["category"] in allowed
                    and self.items.row(i)["slot"] == slot][:k]
            if cats:
                allowed &= set(cats)
            if len(pool) < k // 2:  # few allowed look-alikes among the wide ones: ask for them
                pool = self.similar(photo, slot, genders, k, exclude, categories=sorted(allowed))
            if not pool:
                notes.append(f"nothing like the photo is allowed as a {slot} for {scene.label}")
        attrs = self._confident(photo)
        told = hint is not None and hint.category
        if slot is not None and (told or self._of_another_slot(attrs.get("category"), slot)):
            # the shopper's word (or the slot head's reading) over the tagger's category: a
            # category of another slot would describe a different item
            attrs.pop("category", None)
            if told:
                attrs["category"] = hint.category
        read_as = attrs.get("gender")
        asked = [g for g in genders or () if g != "unisex"]  # unisex items go with anyone
        if read_as and asked and not any(genders_compatible([read_as, g]) for g in asked):
            # the shopper (or their profile) says who the outfit is for; the tagger's reading of
            # a kiosk photo is a guess that would otherwise veto every item of that gender
            del attrs["gender"]
            notes.append(f"the photo reads as {read_as}'s; outfits follow the requested "
                         f"{', '.join(asked)}")
        vec = np.asarray(photo.vector, dtype=np.float32) if photo.vector is not None else None
        feats = Features.of_attributes(attrs, self.items, self.tax, vec)
        out = PhotoOut(attributes=self.reading(photo, slot, ids, hint), slot=slot,
                       slot_source=how if slot else "none", similar=ids, slot_confidence=conf)
        return PhotoAnchor(Anchor(feats, slot, attrs), out, pool, notes)

    def _of_another_slot(self, category: str | None, slot: str) -> bool:
        """A tagged category that describes an item of another slot than the one read."""
        return bool(category) and self.tax.slot_of(category) != slot

    def reading(self, photo: PhotoAnalysis, slot: str | None, look_alikes: list[str],
                hint: SlotHint | None = None) -> dict[str, dict[str, Any]]:
        """What the photo reads as, consistent with the slot the outfits are built around.

        The tagger's attributes, with the category decided in this order: the shopper's; the
        garment class the nearest labelled reference photos of the slot name (`reference_class`);
        the tagger's, if of ``slot`` ("tshirts" on a photo read as a bottom describes a different
        item); the commonest category among the photo's look-alikes in the slot (confidence:
        their share, ``source`` "look-alikes"); else none. A replaced tagger's word is kept as
        ``tagger``."""
        out = {f: dict(v) for f, v in photo.attributes.items()}
        if slot is None:
            return out
        if hint is not None and hint.category:
            out["category"] = {"value": hint.category, "confidence": None, "source": "shopper"}
            return out
        named = self.reference_class(photo, slot, look_alikes)
        if named is not None:
            tagged = (out.get("category") or {}).get("value")
            if named["value"] != tagged and tagged:
                named["tagger"] = tagged
            out["category"] = named
            return out
        if not self._of_another_slot((out.get("category") or {}).get("value"), slot):
            return out
        tagged = out.pop("category")
        common = self._commonest_category(look_alikes)
        if common:
            value, n = common
            out["category"] = {"value": value, "confidence": round(n / len(look_alikes), 4),
                               "source": "look-alikes", "tagger": tagged.get("value")}
        return out

    def _commonest_category(self, item_ids: list[str], allowed: tuple[str, ...] | None = None
                            ) -> tuple[str, int] | None:
        """(category, count) of the commonest category among ``item_ids`` (within ``allowed``)."""
        votes = Counter(c for c in (self.items.row(i)["category"] for i in item_ids)
                        if allowed is None or c in allowed)
        return votes.most_common(1)[0] if votes else None

    def reference_class(self, photo: PhotoAnalysis, slot: str, look_alikes: list[str]) -> dict[str, Any] | None:
        """The photo's category from the garment label of its nearest reference photos of
        ``slot`` (`PhotoRefs.nearest_class`): the tagger's category if the label allows it
        (finer: "jeans" for "Pants"), else the commonest look-alike category it allows, else its
        first. Confidence: the label's share of the votes; None without named reference photos
        in the photo's encoder space."""
        refs = self._refs_for(photo)
        found = refs.nearest_class(photo.vector, slot, CLASS_NEIGHBOURS) if refs is not None else None
        if found is None:
            return None
        label, allowed, share = found
        tagged = (photo.attributes.get("category") or {}).get("value")
        if tagged in allowed:
            value = tagged
        else:
            common = self._commonest_category(look_alikes, allowed)
            value = common[0] if common else allowed[0]
        return {"value": value, "confidence": round(share, 4), "source": "reference photos", "label": label}

    def _abstain(self, photo: PhotoAnalysis, ev: SlotEvidence, conf: float) -> PhotoAnchor:
        """No anchor: the reading is too unsure to build outfits around (the caller asks, the
        likeliest slots first)."""
        guess, choices = ev.slot, slot_choices(ev)
        if not guess:
            why = "no slot could be read"
        elif self.abstain_below >= 1.0:  # the calibrator found no confidence that keeps its target
            why = (f"slot confidence {conf:.2f}; the photo models are not reliable enough on such "
                   "photos to answer without asking")
        else:
            why = f"slot confidence {conf:.2f} is below {self.abstain_below:.2f}"
        out = PhotoOut(attributes={f: dict(v) for f, v in photo.attributes.items()}, slot=None,
                       slot_source="none", slot_guess=guess, slot_confidence=conf, abstained=True,
                       abstain_reason=why, slot_choices=choices)
        note = (f"the photo could not be read ({why}); say what the item is to get outfits "
                f"around it: {', '.join(choices)}")
        return PhotoAnchor(Anchor(Features.of_attributes({}, self.items, self.tax, None), None, {}),
                           out, [], [note])
