"""An A/B experiment as config (serve.yaml ``ab:``) and the deterministic bucketing of users.

Bucketing: a user's point in [0, 1) is the first 8 bytes of
``sha256(salt + "\\x1f" + user_id)`` read as an integer over 2**64; the variants own
consecutive slices of [0, 1) in the order they are listed, each as wide as its share of the
weights. The same user, salt and variant list give the same variant in every process, replica
and restart (Python's ``hash()`` is salted per process, so it is never used). A new experiment
name (or ``salt``) draws a fresh, independent assignment.

The hash reads the app's user id, not its pseudonym: the pseudonym's HMAC key may come from a
per-machine key file (`PseudonymConfig.key_file`), and replicas on two machines with two keys
would then split one user across variants. The raw id is hashed in memory only; what is
stored is the variant name next to the pseudonym (the impression log).

Requests without a user (kiosk visitors) cannot be bucketed stably: they all get
``anonymous_variant`` (default: the first variant), and the report leaves them out.
"""

from __future__ import annotations

import hashlib
from typing import Any

from pydantic import Field, field_validator, model_validator

from mmrec.config import StrictModel

NAME = r"^[A-Za-z0-9_.:\-]+$"
NO_RANKER = "none"  # a variant's ``ranker: none``: candidates keep their recall order


def bucket_point(salt: str, user_id: str) -> float:
    """The user's place in [0, 1) for ``salt``: uniform, and the same in every process."""
    digest = hashlib.sha256(f"{salt}\x1f{user_id}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


class VariantConfig(StrictModel):
    """One arm of the experiment: what differs from the served defaults."""

    name: str = Field(min_length=1, max_length=40, pattern=NAME)
    weight: float = Field(1.0, gt=0, description="share of users, relative to the other variants' weights")
    ranker: str | None = Field(
        None, min_length=1, max_length=200,
        description="a version under <artifacts>/ranker/ (e.g. 20261201-120000-ab12); "
                    "null: the CURRENT ranker; 'none': no ranker (recall order)")
    compose: dict[str, Any] = Field(
        default_factory=dict,
        description="overrides of recommend's compose settings, e.g. {w_compat: 1.5}")

    @field_validator("ranker")
    @classmethod
    def _version_not_path(cls, v: str | None) -> str | None:
        if v is not None and ("/" in v or "\\" in v or v in (".", "..")):
            raise ValueError(f"ranker must be a version name under <artifacts>/ranker/ (or 'none'), "
                             f"not a path: got {v!r}; copy or train the ranker into the served "
                             "artifact root and name its version")
        return v

    @field_validator("compose")
    @classmethod
    def _known_compose_fields(cls, v: dict[str, Any]) -> dict[str, Any]:
        from mmrec.outfit.compose import ComposeConfig

        unknown = sorted(set(v) - set(ComposeConfig.model_fields))
        if unknown:
            raise ValueError(f"unknown compose setting(s) {unknown}; valid: {sorted(ComposeConfig.model_fields)}")
        ComposeConfig.model_validate(v)  # ranges and types, as recommend.yaml's compose section
        return v


class ABConfig(StrictModel):
    """An experiment: users split over ``variants`` by weight, stably (see the module doc)."""

    experiment: str = Field(min_length=1, max_length=64, pattern=NAME,
                            description="reported in every response's versions and in the log")
    salt: str | None = Field(None, min_length=1, max_length=128,
                             description="bucketing salt; default: the experiment name")
    variants: list[VariantConfig] = Field(min_length=2, max_length=16)
    anonymous_variant: str | None = Field(
        None, description="variant of requests without a user_id; default: the first variant")

    @model_validator(mode="after")
    def _consistent(self) -> "ABConfig":
        names = [v.name for v in self.variants]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"ab.variants: names must be unique, repeated: {dup}")
        if self.anonymous_variant is not None and self.anonymous_variant not in names:
            raise ValueError(f"ab.anonymous_variant {self.anonymous_variant!r} is not a variant; "
                             f"choose one of {names}")
        return self

    @property
    def names(self) -> list[str]:
        return [v.name for v in self.variants]

    def variant(self, name: str) -> VariantConfig:
        for v in self.variants:
            if v.name == name:
                return v
        raise KeyError(f"no variant {name!r} in experiment {self.experiment!r}; have {self.names}")

    def assign(self, user_id: str | None) -> str:
        """The variant of ``user_id`` (``anonymous_variant`` when None)."""
        if user_id is None:
            return self.anonymous_variant or self.variants[0].name
        x = bucket_point(self.salt or self.experiment, user_id) * sum(v.weight for v in self.variants)
        edge = 0.0
        for v in self.variants:
            edge += v.weight
            if x < edge:
                return v.name
        return self.variants[-1].name  # x == total by rounding: the last slice
