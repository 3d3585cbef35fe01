"""Config of the `rank` stage (configs/rank.yaml): ingest, simulator, training, evaluation, latency.

One model, validated with ``extra="forbid"``; the sub-sections map onto the commands:
``pseudonym`` (ingest), ``sim`` (simulate), ``lgbm`` + ``rtr``/``hm``/``myntra`` (train, eval),
``latency``. Secrets never live here: the pseudonymisation key is read from the environment
variable named by ``pseudonym.key_env`` or from the file ``pseudonym.key_file``.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from mmrec.config import StrictModel


class PseudonymConfig(StrictModel):
    """Keyed hashing of user ids at ingest (HMAC-SHA256); the key itself is never stored."""

    key_env: str = Field("MMREC_PSEUDONYM_KEY", description="env var holding the secret key")
    key_file: str | None = Field(
        "~/.config/mmrec/pseudonym.key",
        description="used when the env var is unset; created (mode 0600, 32 random bytes) on "
                    "first use. null: the env var is required")
    digest_chars: int = Field(16, ge=12, le=64, description="hex chars kept from the HMAC")


class LgbmConfig(StrictModel):
    """LightGBM parameters shared by the lambdarank and the binary propensity models."""

    num_leaves: int = Field(31, ge=2)
    learning_rate: float = Field(0.05, gt=0, le=1)
    n_estimators: int = Field(400, ge=1, description="upper bound; early stopping picks the best")
    early_stopping_rounds: int = Field(30, ge=1)
    min_data_in_leaf: int = Field(50, ge=1)
    feature_fraction: float = Field(0.9, gt=0, le=1)
    bagging_fraction: float = Field(0.8, gt=0, le=1)
    bagging_freq: int = Field(1, ge=0)
    lambda_l2: float = Field(1.0, ge=0)
    max_bin: int = Field(63, ge=3, description="fewer bins: faster training, no loss measured here")
    num_threads: int = Field(1, ge=0, description="training threads (0: all cores); the build "
                                                  "machine has 2 shared cores, so 1 there")
    seed: int = 0


class LgbmOverrides(StrictModel):
    """Per-dataset changes to `LgbmConfig` (unset fields keep the shared value)."""

    num_leaves: int | None = Field(None, ge=2)
    learning_rate: float | None = Field(None, gt=0, le=1)
    n_estimators: int | None = Field(None, ge=1)
    min_data_in_leaf: int | None = Field(None, ge=1)

    def apply(self, base: LgbmConfig) -> LgbmConfig:
        return LgbmConfig.model_validate({**base.model_dump(), **self.model_dump(exclude_none=True)})


class RtrConfig(StrictModel):
    """Rent the Runway: held-out users + later time, sampled candidates."""

    test_start: _dt.date = Field(_dt.date(2017, 9, 1), description="test rentals are on/after this")
    val_start: _dt.date = Field(_dt.date(2017, 5, 1),
                                description="validation rentals in [val_start, test_start)")
    train_start: _dt.date = Field(_dt.date(2014, 1, 1),
                                  description="training rentals from here (stats use all history)")
    test_user_share: float = Field(0.15, gt=0, lt=0.5, description="users held out for test")
    val_user_share: float = Field(0.10, gt=0, lt=0.5, description="users held out for validation")
    negatives_train: int = Field(15, ge=1, description="sampled negatives per training rental")
    negatives_eval: int = Field(99, ge=1, description="sampled negatives per evaluated rental")
    sampling: Literal["uniform_active", "popularity_active"] = Field(
        "uniform_active",
        description="negatives: uniform over items rented in the same calendar month "
                    "(uniform_active), or proportional to that month's rentals (popularity_active)")
    max_train_groups: int = Field(60000, ge=100, description="random subset of training rentals")
    max_eval_groups: int = Field(20000, ge=10)
    seed: int = 13

    @model_validator(mode="after")
    def _order(self) -> "RtrConfig":
        if not self.train_start < self.val_start < self.test_start:
            raise ValueError(f"need train_start < val_start < test_start, got {self.train_start}, "
                             f"{self.val_start}, {self.test_start}")
        return self


class HmConfig(StrictModel):
    """H&M sample: a time split over 5,000 transactions (tiny: read its numbers as such)."""

    test_start: _dt.date = Field(_dt.date(2020, 6, 1), description="test purchases on/after this")
    val_share: float = Field(0.15, gt=0, lt=0.5, description="last share of training time for "
                                                               "early stopping/calibration")
    negatives_train: int = Field(30, ge=1)
    k: int = Field(12, ge=1, description="MAP@k cut-off (the competition used 12)")
    lgbm: LgbmOverrides = Field(
        default_factory=lambda: LgbmOverrides(num_leaves=7, min_data_in_leaf=20),
        description="small trees: ~3,300 training purchases")
    seed: int = 5


class UtilityWeights(StrictModel):
    """The simulator's hidden utility (documented in mmrec/rank/simulator.py). Never a feature."""

    category: float = 1.2
    colour: float = 0.7
    occasion_match: float = 1.0
    preferred_occasion: float = 0.5
    season_match: float = 0.4
    quality: float = 0.6
    age_formality: float = 0.3
    gender_mismatch: float = -4.0
    click_bias: float = 1.0
    purchase_bias: float = 3.0


class SimConfig(StrictModel):
    """Myntra interaction simulator: SIMULATED users and logs over the real catalog."""

    seed: int = 7
    n_users: int = Field(4000, ge=2)
    sessions_per_user: float = Field(12.0, gt=0, description="mean (Poisson, at least 1)")
    candidates: int = Field(30, ge=2, description="items shown per request (an impression list)")
    share_women: float = Field(0.5, ge=0, le=1)
    days: int = Field(120, ge=1, description="simulated calendar span")
    start: _dt.date = _dt.date(2024, 1, 1)
    position_eta: float = Field(0.8, ge=0, description="examination prob = (1 + pos) ** -eta")
    taste_concentration: float = Field(0.3, gt=0, description="Dirichlet alpha of user tastes")
    occasion_route_share: float = Field(
        0.5, ge=0, le=1, description="share of candidates from the occasion route of the "
                                     "emulated recall (the rest: the browse route)")
    no_recall_share: float = Field(0.2, ge=0, le=1,
                                   description="requests logged without recall metadata")
    rtr_path: str | None = Field(None, description="RTR parquet for body profiles (default: "
                                                   "<shared data>/rtr/interactions.parquet)")
    hm_path: str | None = Field(None, description="H&M customers parquet for ages")
    utility: UtilityWeights = Field(default_factory=UtilityWeights)


class MyntraConfig(StrictModel):
    """Training on the simulated Myntra logs: time split by request."""

    val_share: float = Field(0.1, gt=0, lt=0.5, description="requests before test, for early "
                                                             "stopping and calibration")
    test_share: float = Field(0.2, gt=0, lt=0.5, description="last share of requests in time")
    brands: int = Field(150, ge=1, description="top brands with their own affinity slot")
    label: Literal["click", "purchase"] = "click"
    max_train_requests: int = Field(40000, ge=10)
    lgbm: LgbmOverrides = Field(
        default_factory=lambda: LgbmOverrides(num_leaves=7, learning_rate=0.2, min_data_in_leaf=100),
        description="the served model: small trees, few of them (latency budget). Measured on "
                    "the simulated utility: 7 leaves matched 31; lr 0.2 (~45 trees) cost 0.004 "
                    "NDCG against lr 0.1 (~120 trees) and scores ~2.5x faster")


class LogsConfig(StrictModel):
    """Training from served logs (`rank train --dataset logs`): how each answer is featurised.

    The defaults make training see what serving saw: measured on the simulated loop
    (docs/ranker.md, "Training from your logs"), the first version's own history rebuild and
    empty item statistics lost the day-3 A/B to the ranker it was meant to replace.
    """

    user_state: Literal["served", "logs"] = Field(
        "served", description="served: the shopper's state from the user store the server "
        "answered with (the version logged with each answer; what Ranker.score saw); logs: "
        "rebuilt from the logged profiles and clicks before the answer (right only once serving "
        "reads the same)")
    warm_start: bool = Field(
        True, description="start from the ranker that answered the logs (the version logged "
        "with the answers): its item statistics are the base the logged ones add to, and its "
        "trees the model the new trees continue; false: statistics and trees from the logs alone")
    negatives: Literal["seen", "shown"] = Field(
        "seen", description="seen: rows are the shown items the app reported seen "
        "(impression_seen), when the logs hold any; shown: every shown item, its outfit rank "
        "standing in for whether it was looked at")
    refit_all_days: bool = Field(
        True, description="after the evaluation on the last --eval-days days (of a fit that never "
        "saw them), ship a model refitted on every day, the last share of answers validating "
        "(measured in the loop: +2.7 / +1.6 pp item click rate over the old ranker vs +1.7 / +0.7 "
        "for the fit without the last day; docs/ranker.md)")


class LatencyConfig(StrictModel):
    """`mmrec rank latency`: one request of ``candidates`` items, timed ``requests`` times."""

    candidates: int = Field(500, ge=1)
    requests: int = Field(400, ge=10)
    warmup: int = Field(30, ge=0)
    seed: int = 3


class RankConfig(StrictModel):
    """Everything `mmrec rank ...` reads; see configs/rank.yaml for the documented defaults."""

    pseudonym: PseudonymConfig = Field(default_factory=PseudonymConfig)
    lgbm: LgbmConfig = Field(default_factory=LgbmConfig)
    calibration: Literal["platt", "isotonic"] = Field(
        "platt", description="probability calibration fitted on the validation slice; platt is "
                             "strictly monotone, so it never ties candidates that the model ordered")
    serve_model: Literal["auto", "lambdarank", "binary"] = Field(
        "auto", description="model behind Ranker.score (calibrated either way); auto: the one "
                            "with the higher validation NDCG@10")
    rtr: RtrConfig = Field(default_factory=RtrConfig)
    hm: HmConfig = Field(default_factory=HmConfig)
    sim: SimConfig = Field(default_factory=SimConfig)
    myntra: MyntraConfig = Field(default_factory=MyntraConfig)
    logs: LogsConfig = Field(default_factory=LogsConfig)
    latency: LatencyConfig = Field(default_factory=LatencyConfig)
    shared_data: str = Field("../shared/data", description="folder holding rtr/ and hm_sample/")

    def shared_path(self) -> Path:
        return Path(self.shared_data).expanduser()
