"""One call from an items artifact to a usable tagger (for `mmrec demo` and notebooks)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from mmrec import kinds
from mmrec.artifacts import Artifact, ArtifactStore
from mmrec.errors import MmrecError

# A shorter mini run for demos: same recipe, smaller time budgets (measured numbers in README).
QUICK_OVERRIDES = ("base_stage.time_budget_min=4", "lora_stage.time_budget_min=6",
                   "lora_stage.eval_steps=300")


def build_tagger(store: ArtifactStore, *, profile: str = "mini", quick: bool = False,
                 recipe: str | Path | None = "sft_data/recipes/myntra_mini.yaml",
                 overrides: Sequence[str] = (), reuse: bool = True, progress: bool = False) -> Artifact:
    """Dataset (unless one exists), base stage (mini, unless one exists), LoRA stage -> ``vlm``.

    Args:
        store: artifact store holding a CURRENT ``items`` artifact.
        profile: ``mini`` (offline CPU) or ``tiny`` (seconds, for tests); ``standard`` needs a GPU.
            The mini base stage distils the in-house CLIP: it needs a ``vectors`` artifact
            (`mmrec embed catalog`), or ``overrides=["distill.weight=0"]``.
        quick: use ``QUICK_OVERRIDES`` (about 10 minutes on 2 cores instead of about 42).
        recipe: dataset recipe for `mmrec sft build`; None uses the profile's defaults.
        overrides: extra ``key=value`` overrides of the ``sft`` stage config.
        reuse: keep an existing CURRENT dataset / base model / tagger instead of training anew.
    """
    from mmrec.attributes.dataset.build import KIND as DATASET_KIND, build_dataset
    from mmrec.config import resolve_path
    from mmrec.attributes.train import train_base, train_lora
    from mmrec.config import load_config

    if reuse and store.current_version(kinds.VLM) is not None:
        return store.load(kinds.VLM)
    if not reuse or store.current_version(DATASET_KIND) is None:
        data_cfg = load_config("sft_data", profile=profile,
                               path=resolve_path(recipe) if recipe is not None else None)
        build_dataset(store, data_cfg, progress=progress)
    cfg = load_config("sft", profile=profile, overrides=[*(QUICK_OVERRIDES if quick else ()), *overrides])
    if cfg.model.kind == "mini" and (not reuse or store.current_version(kinds.VLM_BASE) is None):
        train_base(store, cfg, progress=progress, profile=profile)
    art = train_lora(store, cfg, progress=progress, profile=profile)
    if art is None:
        raise MmrecError("build_tagger runs in one process; use `accelerate launch ... sft train` for multi-GPU")
    return art
