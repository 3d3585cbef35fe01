"""Settings of the HTTP service (stage ``serve``): bind address, keys, limits, reloads.

API keys are stored only as sha256 hex digests; a plaintext key in the config is refused
(a 64-hex-digit string is the only accepted form). ``mmrec serve`` adds a session key that it
generates (or reads from $MMREC_API_KEY) and prints once.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from mmrec import kinds
from mmrec.ab.config import ABConfig
from mmrec.config import StrictModel, shipped_dir
from mmrec.images import ImageLimits
from mmrec.rank.config import PseudonymConfig

# The repository's serving/ folder, shipped in the wheel as mmrec.serving_files: `mmrec serve`
# from a wheel install (a cluster's runtime_env, a serving image) needs its config and page.
SERVING_DIR = shipped_dir("mmrec.serving_files", "serving")
DEFAULT_KIOSK_DIR = SERVING_DIR / "kiosk"
DEFAULT_SERVE_CONFIG = SERVING_DIR / "serve_config.yaml"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
Scope = Literal["recommend", "admin"]


def hash_key(key: str) -> str:
    """sha256 hex digest of an API key (what the config stores)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> str:
    """A fresh random API key (URL-safe, 256 bits)."""
    return secrets.token_urlsafe(32)


class ApiKey(StrictModel):
    name: str = Field(min_length=1, max_length=64)
    sha256: str
    scopes: list[Scope] = ["recommend"]

    @field_validator("sha256")
    @classmethod
    def _digest(cls, v: str) -> str:
        v = v.strip().lower()
        if not _HEX64.match(v):
            raise ValueError("sha256 must be the 64-hex-digit digest of the key, never the key "
                             "itself; compute it with `mmrec serve hash-key`")
        return v


class FeedbackSettings(StrictModel):
    """The feedback loop (mmrec.feedback): impression log, `POST /v1/events`, `/v1/users`."""

    enabled: bool = False  # off by default in code (tests, embedding); configs/serve.yaml turns it on
    # the SQLite file; null: <artifacts>/feedback/feedback.sqlite
    path: str | None = Field(None, min_length=1, max_length=1000)
    # FULL: an acknowledged event survives power loss (fsync per commit); NORMAL: survives a
    # process crash only. Measured in docs/serving.md ("Feedback loop"); impressions always NORMAL.
    events_synchronous: Literal["NORMAL", "FULL"] = "FULL"
    max_batch: int = Field(500, ge=1, le=10_000)  # events per POST /v1/events; more -> 413
    max_future_s: float = Field(300, ge=0, le=86_400)  # event ts ahead of server time refused
    max_age_days: float = Field(30, gt=0, le=3650)  # older event ts refused
    retention_days: int = Field(365, ge=1, le=3650)  # `mmrec feedback prune` deletes older rows
    queue_size: int = Field(10_000, ge=1, le=1_000_000)  # impressions waiting; full -> dropped, counted
    write_batch: int = Field(500, ge=1, le=100_000)  # impressions per transaction at most
    # false: answers are not logged (events and profiles still work); the switch exists to
    # measure the log's cost on recommend latency (docs/serving.md "Impression log overhead")
    log_impressions: bool = True
    pseudonym: PseudonymConfig = Field(default_factory=PseudonymConfig)

    @field_validator("path")
    @classmethod
    def _file(cls, v: str | None) -> str | None:
        if v is not None and Path(v).expanduser().is_dir():
            raise ValueError(f"feedback.path must be a file (e.g. {v.rstrip('/')}/feedback.sqlite), "
                             f"got the directory {v!r}")
        return v

    @model_validator(mode="after")
    def _windows(self) -> "FeedbackSettings":
        if self.max_age_days > self.retention_days:
            raise ValueError(f"feedback.max_age_days ({self.max_age_days:g}) must be <= retention_days "
                             f"({self.retention_days}): accepted events would be pruned at once")
        return self


class ServeSettings(StrictModel):
    """Stage ``serve``."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    api_keys: list[ApiKey] = []
    max_body_bytes: int = Field(8_000_000, ge=1024, le=100_000_000)
    image: ImageLimits = ImageLimits(max_bytes=8_000_000, max_pixels=24_000_000, min_side=32)
    photo_max_side: int = Field(512, ge=64, le=4096)  # photos are shrunk before the models see them
    max_inflight: int = Field(4, ge=1, le=1024)  # requests computing at once per replica
    max_queue: int = Field(48, ge=0, le=100_000)  # waiting beyond that -> 429
    queue_timeout_s: float = Field(5.0, gt=0, le=600)  # waited that long -> 503
    retry_after_s: int = Field(1, ge=1, le=3600)
    reload_poll_s: float = Field(10.0, ge=0, le=3600)  # 0: reload only through the admin route
    # JSON recommend answers kept per replica (same request + same artifacts = same outfits;
    # a reload starts afresh). 0 turns the cache off.
    response_cache_size: int = Field(4096, ge=0, le=1_000_000)
    # Ray's HTTP front: "haproxy" (Ray 2.60's HAProxy feature flag: no Python proxy hop; ~1.6x
    # the JSON throughput measured here) or "python" (Ray's default proxy actor).
    ray_proxy: Literal["haproxy", "python"] = "haproxy"
    # Read kiosk photos with the VLM tagger (attributes) as well as the encoder; the mini
    # tagger costs ~30 ms for one photo, ~60 ms for 4 on one thread here (lab/perf/tagger_latency.py).
    photo_tagger: bool = True
    # The tagger also reads each photo's mirror image (decode.hflip_tta, on for catalog tagging
    # and `mmrec sft eval`): off for photos, +22 ms per photo on one thread and no measured gain
    # on the benchmark's re-shot kiosk photos (docs/tagger.md).
    photo_mirror_view: bool = False
    # Photos are tagged in batches on the PhotoModels deployment (8 photos cost ~2.5x one): a pass
    # takes every photo that queued while the last one ran (mmrec.serving.batching); only an idle
    # model waits photo_batch_wait_ms for photos sent together.
    photo_batch_size: int = Field(8, ge=1, le=256)
    # where a separate PhotoModels deployment (serving/serve_config.gpu.yaml) runs the models
    photo_device: str = Field("cpu", pattern=r"^(cpu|cuda(:[0-9]+)?|mps)$")
    photo_batch_wait_ms: float = Field(5.0, ge=0, le=1000)
    kiosk_dir: str | None = None  # default: serving/kiosk as shipped (DEFAULT_KIOSK_DIR)
    profile: Literal["tiny", "mini", "standard"] = "mini"
    artifacts: str = "artifacts"
    feedback: FeedbackSettings = Field(default_factory=FeedbackSettings)
    # an A/B experiment (mmrec.ab): users split over variants (ranker versions, compose
    # weights); null: one recommender, responses and impressions carry no variant
    ab: ABConfig | None = None

    @model_validator(mode="after")
    def _unique_names(self) -> "ServeSettings":
        names = [k.name for k in self.api_keys]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"api key names must be unique, repeated: {sorted(dup)}")
        return self

    def feedback_path(self) -> Path:
        """The feedback store file: ``feedback.path``, else under the artifact root."""
        if self.feedback.path:
            return Path(self.feedback.path).expanduser()
        return Path(self.artifacts) / kinds.FEEDBACK / "feedback.sqlite"

    def kiosk_path(self) -> Path:
        return Path(self.kiosk_dir) if self.kiosk_dir else DEFAULT_KIOSK_DIR

    def with_key(self, key: str, name: str = "session", scopes: tuple[str, ...] = ("recommend", "admin")
                 ) -> "ServeSettings":
        """A copy that also accepts ``key`` (stored hashed)."""
        keys = [k for k in self.api_keys if k.name != name]
        keys.append(ApiKey(name=name, sha256=hash_key(key), scopes=list(scopes)))
        return self.model_copy(update={"api_keys": keys})

    def match_key(self, presented: str | None) -> ApiKey | None:
        """The key entry whose digest equals ``presented``'s, compared in constant time.

        Every stored digest is compared (no early exit), so timing does not tell how many
        keys exist or which one nearly matched.
        """
        if not presented or len(presented) > 512:
            return None
        digest = hash_key(presented)
        found = None
        for k in self.api_keys:
            if secrets.compare_digest(digest, k.sha256):
                found = k
        return found
