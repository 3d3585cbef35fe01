"""Typed config of the ``recommend`` stage (``configs/recommend.yaml``)."""

from __future__ import annotations

from pydantic import Field

from mmrec.config import StrictModel
from mmrec.outfit.compat import CompatConfig
from mmrec.outfit.compose import ComposeConfig
from mmrec.outfit.explain import ExplainConfig


class RecommenderConfig(StrictModel):
    """Stage ``recommend``: candidate sizes, search, compatibility and explanations."""

    scenes_path: str | None = None  # default: configs/scenes.yaml
    candidates_per_slot: int = Field(60, ge=1, le=2000)
    photo_similar_k: int = Field(12, ge=1, le=200)
    photo_min_confidence: float = Field(0.5, ge=0, le=1)  # tagged values used below this are ignored
    # a photo whose calibrated slot confidence is below this abstains (None: the threshold the
    # slot_calibration artifact was fitted with); without a calibrator photos never abstain
    photo_abstain_below: float | None = Field(None, ge=0, le=1)
    history_limit: int = Field(50, ge=0, le=1000)
    recall_cache_size: int = Field(8192, ge=0, le=1_000_000)
    prewarm_recall: bool = True  # at load: anonymous candidates of every scene/slot/gender
    compose: ComposeConfig = ComposeConfig()
    compat: CompatConfig = CompatConfig()
    explain: ExplainConfig = ExplainConfig()
