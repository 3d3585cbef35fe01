"""Photos as the models read them: the tagger's attributes and the encoder's embedding.

Kept apart from the recommender so that Ray can place the models on their own replica (the
`PhotoModels` deployment) while the JSON path never loads them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from mmrec import kinds
from mmrec.artifacts import ArtifactStore
from mmrec.errors import MmrecError



class ComponentMissing(MmrecError):
    """A request needs a component that is not loaded (HTTP 503): build its artifact."""


@dataclass
class PhotoAnalysis:
    """A decoded photo read by the models: tagged attributes and/or an image embedding."""

    attributes: dict[str, dict[str, Any]] = field(default_factory=dict)  # field -> {value, confidence}
    vector: list[float] | None = None
    encoder_id: str | None = None
    # slot -> probability from the encoder's slot head (None: the encoder has no head)
    slot_probs: dict[str, float] | None = None
    versions: dict[str, str] = field(default_factory=dict)
    # photo_models_ms: the models' pass; photo_batch: photos that shared it (batching at work)
    timings: dict[str, float] = field(default_factory=dict)


class PhotoModels:
    """Tagger + encoder for photos; separable so that Ray can place it on its own replica."""

    def __init__(self, tagger: Any | None = None, encoder: Any | None = None):
        self.tagger = tagger
        self.encoder = encoder

    @classmethod
    def from_store(cls, store: ArtifactStore, *, device: str = "cpu",
                   encoder: Any | None = None, with_tagger: bool = True, tagger_mirror: bool = False
                   ) -> tuple["PhotoModels", list[str]]:
        """Load whatever of tagger and encoder exists; returns (models, notes on what is missing).

        Args:
            encoder: an encoder already loaded (recall's, which made the index vectors).
            tagger_mirror: decode each photo with its mirror image too (``decode.hflip_tta``): off
                for kiosk photos by default (docs/tagger.md: +22 ms per photo on one
                thread, no measured gain on the benchmark's re-shot kiosk photos).
            with_tagger: False reads photos with the encoder only (when the tagger is too slow
                for the latency budget on this hardware).
        """
        notes: list[str] = []
        tagger = None
        if not with_tagger:
            notes.append("tagger switched off for photos: they are read by the encoder only")
        elif store.current_version(kinds.VLM):
            from mmrec.attributes.tagger import Tagger

            tagger = Tagger.load(store, device=device, hflip_tta=tagger_mirror)
        else:
            notes.append("no tagger artifact: photos are read by the encoder only")
        if encoder is None and store.current_version(kinds.ENCODER):
            from mmrec.embed.encoder import Encoder

            encoder = Encoder.load(store, device=device)
        if encoder is None:
            notes.append("no encoder artifact: photos are read by the tagger only")
        return cls(tagger, encoder), notes

    @property
    def available(self) -> bool:
        return self.tagger is not None or self.encoder is not None

    @property
    def versions(self) -> dict[str, str]:
        out = {"tagger": getattr(self.tagger, "version", "absent") if self.tagger else "absent"}
        out["encoder"] = getattr(self.encoder, "encoder_id", "absent") if self.encoder else "absent"
        return out

    def analyze(self, image: Any) -> PhotoAnalysis:
        """Tag and embed one decoded (PIL) image."""
        return self.analyze_many([image])[0]

    def analyze_many(self, images: list[Any]) -> list[PhotoAnalysis]:
        """Tag and embed several images in one pass (the tagger generates for a batch at
        ~60 ms/image instead of ~300 ms one by one on this CPU)."""
        if not self.available:
            raise ComponentMissing("photo routes need a tagger or an encoder artifact; build one "
                                   "(mmrec sft ... / mmrec embed ...)")
        t0 = time.perf_counter()
        outs = [PhotoAnalysis(versions=self.versions) for _ in images]
        if self.tagger is not None:
            for out, tags in zip(outs, self.tagger.tag(list(images))):
                out.attributes = {k: dict(v) for k, v in tags.items() if v and v.get("value") is not None}
        if self.encoder is not None:
            vecs = self.encoder.encode_images(list(images))
            head = getattr(self.encoder, "slot_head", None)
            probs = head.probs(vecs) if head is not None else None
            for n, (out, vec) in enumerate(zip(outs, vecs)):
                out.vector = [float(x) for x in vec]
                out.encoder_id = self.encoder.encoder_id
                if probs is not None:
                    out.slot_probs = {s: round(float(p), 4) for s, p in zip(head.slots, probs[n])}
        took = round((time.perf_counter() - t0) * 1000, 3)
        for out in outs:
            out.timings = {"photo_models_ms": took, "photo_batch": float(len(images))}
        return outs
