"""`mmrec sft eval`: the LoRA-SFT tagger against its references on held-out products.

Compared on the same products (the dataset's test split: the project-wide held-out ids):
- ``sft``: the tagger (constrained decoding, as deployed) and free generation (for the JSON
  validity rate and parse-and-repair accuracy);
- ``base``: the model before SFT prompted for JSON (mini: the captioning base; standard: the
  pretrained checkpoint), free and constrained;
- ``cnn``: a small CNN on the same pixels for the same CPU seconds as the LoRA stage;
- ``clip_probe``: logistic regression on the mini CLIP image embeddings, if an encoder exists.
Per field: accuracy, macro-F1; colour also by colour family. Writes
``artifacts/sft_eval/<version>/metrics.json``. Never tunes anything on the test split.
"""

from __future__ import annotations

import json
import time
from typing import Any, Sequence

from mmrec import kinds
from mmrec.artifacts import Artifact, ArtifactStore
from mmrec.attributes.config import ModelConfig, SftConfig
from mmrec.attributes.metrics import HEADLINE_FIELDS, attribute_report
from mmrec.attributes.tagger import load_vlm, vlm_base_version, vlm_input, vlm_spec
from mmrec.attributes.train import DatasetParts, load_parts, pixel_cache
from mmrec.errors import ConfigError

# Targets of the issue for the SFT model on the test split (accuracy).
TARGETS = {"category": 0.75, "gender": 0.88, "colour_family": 0.70, "usage": 0.86}


def dataset_version(art: Artifact) -> str | None:
    """The sft_dataset version a vlm artifact was trained on (None when it does not say)."""
    for inp in art.manifest.get("inputs", []):
        if inp.get("kind") == kinds.SFT_DATASET:
            return inp.get("version")
    return None


def _images(products: Sequence[dict[str, Any]]):
    from mmrec.images import load_image

    return [load_image(p["image_path"]) for p in products]


def _vlm_reports(predictor, products, truth, fields, tax, cache, rows) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for mode in ("constrained", "free"):
        t = time.perf_counter()
        preds = (predictor.predict_cached(cache, rows, mode) if cache is not None
                 else predictor.predict_images(_images(products), mode))
        rep = attribute_report(truth, [p.values() for p in preds], fields, tax, confusions=5)
        rep["json_valid_rate"] = round(sum(p.valid_json for p in preds) / max(len(preds), 1), 4)
        rep["seconds"] = round(time.perf_counter() - t, 1)
        rep["examples"] = [p.text for p in preds[:3]]
        out[mode] = rep
    return out


def _probe(store: ArtifactStore, parts: DatasetParts, test, truth, fields, tax) -> dict[str, Any] | None:
    """Linear probe on the mini CLIP image embeddings (None when no encoder artifact exists)."""
    from mmrec.errors import ArtifactNotFound

    try:
        from mmrec.embed.encoder import Encoder

        enc = Encoder.load(store, device="cpu")
    except (ArtifactNotFound, ImportError):
        return None
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    train = parts.split("train")
    t = time.perf_counter()
    xtr = enc.encode_images(_images(train))
    xte = enc.encode_images(_images(test))
    preds: list[dict[str, str | None]] = [dict() for _ in test]
    for f in fields:
        y = [p.get(f) for p in train]
        keep = [i for i, v in enumerate(y) if v is not None]
        if len({y[i] for i in keep}) < 2:
            continue
        clf = LogisticRegression(max_iter=500, C=10.0)
        clf.fit(xtr[keep], np.array([y[i] for i in keep]))
        for k, v in enumerate(clf.predict(xte)):
            preds[k][f] = str(v)
    rep = attribute_report(truth, preds, fields, tax, confusions=5)
    rep["encoder_id"] = enc.encoder_id
    rep["seconds"] = round(time.perf_counter() - t, 1)
    return rep


def evaluate(store: ArtifactStore, cfg: SftConfig, *, vlm: str | None = None, progress: bool = False) -> Artifact:
    """Run every comparison and write a ``sft_eval`` artifact (metrics.json)."""
    import numpy as np

    from mmrec.attributes import cnn
    from mmrec.attributes.model import load_model
    from mmrec.attributes.predict import Predictor
    from mmrec.attributes.train import set_threads
    from mmrec.taxonomy import default_taxonomy

    set_threads(cfg.lora_stage.threads)
    tax = default_taxonomy()
    vlm_art = store.resolve(vlm, kinds.VLM)
    parts = load_parts(store, dataset_version(vlm_art) or cfg.dataset)
    prompts, fields, values = vlm_spec(vlm_art)
    test = parts.split(cfg.eval.split)
    if cfg.eval.max_items:
        test = test[:cfg.eval.max_items]
    if not test:
        raise ConfigError(f"no {cfg.eval.split} products in sft_dataset/{parts.art.version}")
    truth = [{f: p.get(f) for f in fields} for p in test]
    size = vlm_input(vlm_art)
    cache = pixel_cache(store, parts, size, progress=progress) if size else None
    rows = [cache.index[p["image_path"]] for p in test] if cache is not None else None
    models: dict[str, Any] = {}

    def predictor(model, processor):
        return Predictor(model, processor, prompts, fields, values, tax, image_size=size,
                         batch_size=cfg.decode.batch_size, max_new_tokens=cfg.decode.max_new_tokens,
                         inference_only=True, hflip_tta=cfg.decode.hflip_tta)

    model, processor = load_vlm(vlm_art)
    models["sft"] = _vlm_reports(predictor(model, processor), test, truth, fields, tax, cache, rows)
    del model

    if cfg.eval.base_model:
        # only the model section: the artifact may predate later changes to the training keys
        mcfg = ModelConfig.model_validate(vlm_art.config["model"])
        if mcfg.kind == "mini":
            # the base this tagger was trained from, as recorded in its manifest
            base_art = store.load(kinds.VLM_BASE, vlm_base_version(vlm_art) or mcfg.base_version)
            bmodel, bproc = load_model(mcfg, base_art.path / "model")
        else:  # the checkpoint the adapter was trained on, as its manifest names it
            bmodel, bproc = load_model(mcfg, vlm_art.manifest.get("base") or None)
        bmodel.eval()
        models["base"] = _vlm_reports(predictor(bmodel, bproc), test, truth, fields, tax, cache, rows)
        del bmodel

    cnn_info = None
    if cfg.eval.cnn and cache is not None:
        budget = cfg.eval.cnn_baseline.time_budget_s or float(vlm_art.metrics.get("train_cpu_seconds")
                                                               or vlm_art.metrics.get("train_seconds"))
        train = parts.split("train")
        train_px = cache.pixels[np.asarray([cache.index[p["image_path"]] for p in train])]
        labels = [{f: p.get(f) for f in fields} for p in train]
        threads = cfg.eval.cnn_baseline.threads or int(
            (vlm_art.config.get("lora_stage") or {}).get("threads") or 1)
        net, meta, cnn_art = cnn.cached_or_train(store, parts.art.version, train_px, labels, fields,
                                                 cfg.eval.cnn_baseline, budget, size, threads)
        preds = cnn.predict_cnn(net, meta["classes"], cache.pixels[np.asarray(rows)])
        models["cnn"] = attribute_report(truth, preds, fields, tax, confusions=5)
        cnn_info = {"version": cnn_art.version, "steps": meta["steps"], "cpu_seconds": meta["cpu_seconds"],
                    "budget_s": round(budget, 1), "threads": threads}
    if cfg.eval.probe:
        probe = _probe(store, parts, test, truth, fields, tax)
        if probe is not None:
            models["clip_probe"] = probe

    sft = models["sft"]["constrained"]
    headline = {name: _headline(rep) for name, rep in models.items()}
    targets = {f: {"target": t, "sft": sft[f]["accuracy"], "met": (sft[f]["accuracy"] or 0) >= t}
               for f, t in TARGETS.items()}
    targets["json_valid_rate"] = {"target": 1.0, "sft": models["sft"]["free"]["json_valid_rate"],
                                  "met": models["sft"]["free"]["json_valid_rate"] >= 1.0}
    vs_cnn = None
    if "cnn" in models:
        wins = [f for f in HEADLINE_FIELDS
                if (sft[f]["accuracy"] or 0) >= (models["cnn"][f]["accuracy"] or 0)]
        vs_cnn = {"fields_at_least_as_accurate": wins, "count": len(wins), "met": len(wins) >= 3}
    metrics = {"split": cfg.eval.split, "n_items": len(test), "vlm_version": vlm_art.version,
               "dataset_version": parts.art.version, "fields": fields, "headline": headline,
               "targets": targets, "sft_vs_cnn": vs_cnn, "cnn": cnn_info, "models": models,
               "vlm_train": vlm_art.metrics}
    with store.write(kinds.SFT_EVAL, config=cfg.model_dump(mode="json")) as w:
        (w.path / "metrics.json").write_text(json.dumps(metrics, indent=1))
        w.add_artifact_input(vlm_art)
        w.add_artifact_input(parts.art)
        w.metrics = {"headline": headline, "sft_vs_cnn": vs_cnn}
    return store.load(kinds.SFT_EVAL, w.version)


def _headline(rep: dict[str, Any]) -> dict[str, Any]:
    r = rep.get("constrained", rep)
    out = {f: (r.get(f) or {}).get("accuracy") for f in ("category", "gender", "colour", "colour_family", "usage")}
    out["macro_f1"] = r["summary"]["macro_f1"]
    if "free" in rep:
        out["json_valid_rate"] = rep["free"]["json_valid_rate"]
        out["free_category"] = rep["free"]["category"]["accuracy"]
    return out


def format_table(metrics: dict[str, Any]) -> str:
    """Plain-text table of the headline numbers (accuracy; macro-F1 over all fields)."""
    cols = ["category", "gender", "colour", "colour_family", "usage", "macro_f1", "json_valid_rate"]
    lines = [f"{metrics['split']} split, {metrics['n_items']} products, vlm/{metrics['vlm_version']}",
             f"{'model':<12}" + "".join(f"{c:>15}" for c in cols)]
    for name, h in metrics["headline"].items():
        lines.append(f"{name:<12}" + "".join(
            f"{'-' if h.get(c) is None else format(h[c], '.3f'):>15}" for c in cols))
    lines.append("targets (sft): " + ", ".join(
        f"{k} {v['sft']} vs {v['target']} {'ok' if v['met'] else 'MISSED'}" for k, v in metrics["targets"].items()))
    if metrics.get("sft_vs_cnn"):
        v = metrics["sft_vs_cnn"]
        lines.append(f"sft >= cnn on {v['count']}/4 headline fields {v['fields_at_least_as_accurate']} "
                     f"({'ok' if v['met'] else 'MISSED'})")
    return "\n".join(lines)
