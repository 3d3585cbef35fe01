"""Build what recall needs and is missing, reusing what exists (`mmrec demo`'s recall step).

It sits above everything it orchestrates (encoder training, catalog embedding, index building
and the optional embedding evaluation, which itself loads a `Recall`), so no module it calls
has to import it back.
"""

from __future__ import annotations

import sys
from typing import Callable

from mmrec import kinds
from mmrec.artifacts import Artifact, ArtifactStore
from mmrec.recall.build import build_index, remove_from_index, update_index


def ensure_recall_artifacts(store: ArtifactStore, *, profile: str = "mini", config_dir: str | None = None,
                            evaluate: bool = False, progress: bool = True,
                            log: Callable[[str], None] | None = None) -> dict[str, Artifact]:
    """Build what recall needs and is missing, reusing what exists (for `mmrec demo`).

    encoder: trained only when there is none; vectors: incremental (only new or changed images
    are embedded); index: reused when it already holds the CURRENT vectors, updated in place
    when only items changed, rebuilt when the encoder changed. With ``evaluate``, also writes
    `embed_eval` for the vectors. Requires a CURRENT `items` artifact.
    """
    from mmrec.config import load_config
    from mmrec.embed.catalog import embed_catalog
    from mmrec.embed.train import train_encoder

    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    ecfg = load_config("embed", profile=profile, config_dir=config_dir)
    icfg = load_config("index", profile=profile, config_dir=config_dir)
    out: dict[str, Artifact] = {}
    if store.current_version(kinds.ENCODER) is None:
        log(f"encoder: none yet, training {ecfg.model.name} "
            f"({ecfg.train.time_budget_min or 'no'} min {ecfg.train.budget_clock} budget)")
        out["encoder"] = train_encoder(store, ecfg, progress=progress, log=log)
    else:
        out["encoder"] = store.load(kinds.ENCODER)
        log(f"encoder: reusing {kinds.ENCODER}/{out['encoder'].version}")
    res = embed_catalog(store, ecfg, encoder_ref=out["encoder"].version, progress=progress, log=log)
    out["vectors"] = res.artifact
    log(f"vectors: {kinds.VECTORS}/{res.artifact.version} (embedded {res.embedded}, reused {res.reused}, "
        f"dropped {res.removed}, failed {len(res.failures)})")
    current = store.current_version(kinds.INDEX)
    idx_art = store.load(kinds.INDEX) if current else None
    if idx_art is not None and idx_art.manifest.get("vectors_version") == res.artifact.version:
        out["index"] = idx_art
        log(f"index: reusing {kinds.INDEX}/{idx_art.version}")
    elif idx_art is not None and idx_art.manifest.get("encoder_id") == res.artifact.manifest.get("encoder_id"):
        update_index(store, icfg)
        out["index"], _ = remove_from_index(store, icfg, missing=True)
        log(f"index: updated in place -> {kinds.INDEX}/{out['index'].version}")
    else:
        out["index"] = build_index(store, icfg)
        log(f"index: built {kinds.INDEX}/{out['index'].version} ({out['index'].metrics['kind']})")
    if evaluate:
        from mmrec.embed.evaluate import evaluate as run_eval

        out["embed_eval"] = run_eval(store, ecfg, load_config("recall", profile=profile, config_dir=config_dir),
                                     vectors_ref=res.artifact.version, progress=progress, log=log)
    return out
