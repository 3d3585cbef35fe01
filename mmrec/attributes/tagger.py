"""The attribute tagger: a trained ``vlm`` artifact behind `Tagger.tag(images)`.

The serving layer calls ``Tagger.load(store)`` once and ``tagger.tag([PIL images])`` per
request; ``mmrec tag`` and ``mmrec tag --catalog`` use the same object. Output per image:
``{field: {"value": str | None, "confidence": float}}`` over the fields the model was trained on,
values always canonical taxonomy values (``None`` where the model abstains with "unknown").
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from mmrec import kinds
from mmrec.artifacts import Artifact, ArtifactStore
from mmrec.attributes.config import ModelConfig
from mmrec.attributes.prompts import PromptSet
from mmrec.errors import ArtifactError, ConfigError, InputError


def vlm_base_path(art: Artifact) -> Path | str:
    """Where an adapter's base model is: the artifact's own ``base`` folder (mini) or the
    pretrained checkpoint it was trained on (standard: a local directory or a hub name)."""
    base = art.manifest.get("base")
    if base is None:
        raise ArtifactError(f"vlm/{art.version} records no base model (format {art.manifest.get('format')!r})")
    return art.path / "base" if base == "base" else base


def load_vlm(art: Artifact, *, device: str = "cpu", merge: bool = False, dtype: str | None = None):
    """Model + processor of a ``vlm`` artifact (adapter on its base, or a merged model).

    ``merge`` folds an adapter into the base weights in memory (inference only: same outputs,
    tested by `mmrec sft export`, without the LoRA branches' extra matmuls on every layer).
    ``dtype`` overrides the artifact's ``model.dtype`` (e.g. float32 to merge exactly).
    """
    from mmrec.attributes.model import load_pretrained

    cfg = ModelConfig.model_validate(art.config["model"])
    lo, hi = cfg.pixel_budget()
    fmt = art.manifest.get("format")
    kw = dict(min_pixels=lo, max_pixels=hi, dtype=dtype or cfg.dtype, attn_implementation=cfg.attn_implementation,
              device=device)
    if fmt == "merged":
        return load_pretrained(art.path / "merged", **kw)
    if fmt != "adapter":
        raise ArtifactError(f"vlm/{art.version}: unknown format {fmt!r} (expected 'adapter' or 'merged')")
    from peft import PeftModel

    model, processor = load_pretrained(vlm_base_path(art), **kw)
    if (art.path / "processor").is_dir():  # standard: the processor saved at training time
        from transformers import AutoProcessor

        from mmrec.attributes.model import set_pixel_budget

        processor = AutoProcessor.from_pretrained(str(art.path / "processor"))
        set_pixel_budget(processor, lo, hi)
    model = PeftModel.from_pretrained(model, str(art.path / "adapter")).to(device)
    if merge:
        model = model.merge_and_unload()
    model.eval()
    return model, processor


def vlm_spec(art: Artifact) -> tuple[PromptSet, list[str], dict[str, list[str]]]:
    prompts = PromptSet.model_validate_json(art.file("prompts.json").read_text())
    spec = json.loads(art.file("fields.json").read_text())
    return prompts, spec["fields"], spec["values"]


def vlm_input(art: Artifact) -> int | None:
    """The square side a mini tagger (or base) was trained on; None for standard models.

    Every photo is squashed to that square. Artifacts of 2026-12-06 record the fit they were
    trained on (``image_fit`` in a vlm manifest, ``model.arch.image_fit`` in a config): "squash"
    loads as before; another fit was an experiment (lab/README.md) and is refused, since the
    product would feed it differently framed photos than it learned from.
    """
    arch = (art.config.get("model") or {}).get("arch") or {}
    fit = art.manifest.get("image_fit") or arch.get("image_fit") or "squash"
    if fit != "squash":
        raise ConfigError(f"{art.kind}/{art.version} was trained on image fit {fit!r}, an experiment the "
                          "product does not ship (lab/README.md); it squashes photos only: use a tagger "
                          "trained with image_fit 'squash' (every CURRENT one is)")
    return art.manifest.get("image_size")


def vlm_base_version(art: Artifact) -> str | None:
    """The ``vlm_base`` version a mini adapter was trained on (None: standard, or not recorded)."""
    inputs = art.manifest.get("inputs", [])
    return next((i.get("version") for i in inputs if i.get("kind") == kinds.VLM_BASE), None)


class Tagger:
    """Image -> fine-grained attributes, from one ``vlm`` artifact version."""

    def __init__(self, predictor, version: str, *, mode: str = "constrained"):
        self.predictor = predictor
        self.version = version
        self.mode = mode
        self.fields: list[str] = predictor.fields

    @classmethod
    def load(cls, store: ArtifactStore, version: str | None = None, *, device: str = "cpu",
             batch_size: int = 32, mode: str | None = None, hflip_tta: bool | None = None) -> Tagger:
        """Load a ``vlm`` artifact (version name, path, or None for CURRENT).

        Args:
            mode: ``constrained`` (default: always-valid JSON, values from the taxonomy) or
                ``free`` (generation + parse-and-repair); None uses the artifact's config.
            hflip_tta: decode each photo with its mirror image (`Predictor`); None uses the
                artifact's config, or today's default for an artifact older than the setting.
        """
        from mmrec.attributes.config import DecodeSettings
        from mmrec.attributes.predict import Predictor
        from mmrec.taxonomy import default_taxonomy

        art = store.resolve(version, kinds.VLM)
        model, processor = load_vlm(art, device=device, merge=True)
        prompts, fields, values = vlm_spec(art)
        decode = art.config.get("decode", {})
        mode = mode or decode.get("mode", "constrained")
        if hflip_tta is None:
            hflip_tta = bool(decode.get("hflip_tta", DecodeSettings().hflip_tta))
        if mode not in ("constrained", "free"):
            raise InputError(f"tagger mode must be 'constrained' or 'free', got {mode!r}")
        predictor = Predictor(model, processor, prompts, fields, values, default_taxonomy(),
                              image_size=vlm_input(art), batch_size=batch_size,
                              max_new_tokens=int(decode.get("max_new_tokens", 128)), inference_only=True,
                              hflip_tta=hflip_tta)
        return cls(predictor, art.version, mode=mode)

    def tag(self, images: Sequence[Any], *, progress=None) -> list[dict[str, dict]]:
        """Per image ``{field: {"value": str | None, "confidence": float}}``."""
        if not images:
            return []
        return [p.fields for p in self.predictor.predict_images(list(images), self.mode, progress)]


def tag_catalog(store: ArtifactStore, tagger: Tagger, *, items_version: str | None = None,
                limit: int | None = None, progress: bool = False, chunk: int = 256) -> Artifact:
    """Tag every catalog item with an image; write an ``attribute_predictions`` artifact.

    One row per (item, field) where the model gave a value; ``model_version`` is the vlm
    version, so a consumer can tell model-sourced attributes apart and trace them.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq
    from tqdm import tqdm

    from mmrec.catalog.ingest import KIND as ITEMS_KIND, load_items
    from mmrec.images import ImageError, load_image
    from mmrec.schemas import ATTRIBUTE_PREDICTIONS_SCHEMA

    items_art = store.load(ITEMS_KIND, items_version)
    table = load_items(store, items_art.version, columns=["item_id", "image_uri"])
    rows = [r for r in table.to_pylist() if r["image_uri"]]
    if limit is not None:
        rows = rows[:limit]
    out: dict[str, list] = {f.name: [] for f in ATTRIBUTE_PREDICTIONS_SCHEMA}
    unreadable = 0
    bar = tqdm(total=len(rows), desc="tag", unit="img", disable=not progress)
    for start in range(0, len(rows), chunk):
        batch, ids = [], []
        for r in rows[start:start + chunk]:
            try:
                batch.append(load_image(r["image_uri"]))
                ids.append(r["item_id"])
            except ImageError:
                unreadable += 1
                bar.update(1)
        for item_id, result in zip(ids, tagger.tag(batch, progress=bar.update)):
            for field, pred in result.items():
                if pred["value"] is None:
                    continue
                out["item_id"].append(item_id)
                out["field"].append(field)
                out["value"].append(pred["value"])
                out["confidence"].append(float(pred["confidence"]))
                out["model_version"].append(tagger.version)
    bar.close()
    result_table = pa.table(out, schema=ATTRIBUTE_PREDICTIONS_SCHEMA)
    with store.write(kinds.ATTRIBUTE_PREDICTIONS, config={"vlm": tagger.version, "mode": tagger.mode,
                                               "hflip_tta": tagger.predictor.hflip_tta,
                                               "items_version": items_art.version}) as w:
        pq.write_table(result_table, w.path / "predictions.parquet")
        w.add_artifact_input(items_art)
        w.add_input(Path(store.kind_dir(kinds.VLM) / tagger.version), kind=kinds.VLM, version=tagger.version)
        w.metrics = {"items": len(rows) - unreadable, "unreadable_images": unreadable,
                     "predictions": result_table.num_rows, "model_version": tagger.version}
    return store.load(kinds.ATTRIBUTE_PREDICTIONS, w.version)
