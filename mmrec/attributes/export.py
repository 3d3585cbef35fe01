"""`mmrec sft export`: merge the LoRA adapter into its base and write a self-contained model.

The merged model needs no peft at inference and loads with plain ``from_pretrained``. The
export checks its own work: the merged and adapter models' logits are compared on a probe batch
(the inference prompt with fixed random images) and the largest difference is recorded in the
artifact's metrics; above ``tolerance`` the export fails and nothing is written.

Merging and the comparison run in float32 whatever ``model.dtype`` says: in bfloat16 (what
``dtype: auto`` gives a standard model on a GPU machine) rounding alone moves the logits by
~1e-2, so the check could not tell a wrong merge from a right one and every export failed. The
merged weights are then saved in the dtype the model is served in: ``model.dtype`` when set,
else the dtype of the base checkpoint (bfloat16 for the Qwen2.5-VL hub checkpoints).
"""

from __future__ import annotations

import shutil
from typing import Any

from mmrec import kinds
from mmrec.artifacts import Artifact, ArtifactStore
from mmrec.attributes.tagger import load_vlm, vlm_input, vlm_spec
from mmrec.errors import MmrecError


class ExportMismatch(MmrecError):
    """The merged model does not reproduce the adapter model's outputs."""


def probe_batch(processor, prompts, fields, image_size: int | None, n: int = 4, seed: int = 0) -> dict[str, Any]:
    """The inference prompt over ``n`` seeded random images, as model inputs."""
    import numpy as np
    from PIL import Image

    from mmrec.attributes.data import Collator, Example, encode_records, square_pixels
    from mmrec.attributes.prompts import messages

    rng = np.random.default_rng(seed)
    side = image_size or 224
    images = [Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)) for _ in range(n)]
    record = {"messages": messages(prompts.system, prompts.json_instruction(fields)), "images": ["x"]}
    prompt_ids = encode_records([record], processor, {"x": 0})[0].prompt_ids
    pix = square_pixels(images, image_size) if image_size else images
    return Collator(processor, None, left_pad=True)([Example(prompt_ids, [], 0)] * n, images=pix)


def max_logit_diff(a, b, batch: dict[str, Any]) -> float:
    import torch

    with torch.no_grad():
        la = a(**batch).logits.float()
        lb = b(**batch).logits.float()
    return float((la - lb).abs().max())


def export_merged(store: ArtifactStore, *, vlm: str | None = None,
                  tolerance: float = 1e-4, device: str = "cpu") -> Artifact:
    """Merge the adapter of ``vlm`` (default CURRENT) into a new ``vlm`` version (format merged)."""
    import copy

    import torch

    art = store.resolve(vlm, kinds.VLM)
    if art.manifest.get("format") == "merged":
        raise MmrecError(f"vlm/{art.version} is already a merged model")
    adapter_model, processor = load_vlm(art, device=device, dtype="float32")
    prompts, fields, _ = vlm_spec(art)
    image_size = vlm_input(art)
    batch = probe_batch(processor, prompts, fields, image_size)
    merged = copy.deepcopy(adapter_model).merge_and_unload()
    merged.eval()
    diff = max_logit_diff(adapter_model, merged, batch)
    if diff > tolerance:
        raise ExportMismatch(f"merged model differs from the adapter model by {diff:.2e} in logits "
                             f"(tolerance {tolerance:.0e}); nothing was written")
    dtype = saved_dtype(art)
    merged = merged.to(getattr(torch, dtype))
    return write_merged(store, merged, processor, [art], extra={"merged_from": art.version},
                        metrics={**art.metrics, "merged_from": art.version, "max_abs_logit_diff": diff,
                                 "dtype": dtype})


def saved_dtype(art: Artifact) -> str:
    """The dtype a merged model of adapter ``art`` is saved in: the artifact's ``model.dtype``,
    or for ``auto`` the dtype its base checkpoint was saved in."""
    from mmrec.attributes.config import ModelConfig
    from mmrec.attributes.model import checkpoint_dtype
    from mmrec.attributes.tagger import vlm_base_path

    configured = ModelConfig.model_validate(art.config["model"]).dtype
    return configured if configured != "auto" else checkpoint_dtype(vlm_base_path(art))


def write_merged(store: ArtifactStore, model, processor, sources: list[Artifact], *, extra: dict[str, Any],
                 metrics: dict[str, Any], make_current: bool = True) -> Artifact:
    """A new ``vlm`` version holding ``model`` as a plain merged model, made from ``sources``
    (adapters; the first gives the config, the dataset's fields and prompts and the input size)."""
    from mmrec.attributes.model import save_model

    first = sources[0]
    image_size = vlm_input(first)
    with store.write(kinds.VLM, config=first.config, make_current=make_current) as w:
        save_model(model, processor, w.path / "merged")
        logs = ("train_log.jsonl",) if len(sources) == 1 else ()  # a soup has no one training log
        for name in ("fields.json", "prompts.json", *logs):
            if (first.path / name).is_file():
                shutil.copy(first.path / name, w.path / name)
        for art in sources:
            w.add_artifact_input(art)
        w.extra.update({"format": "merged", "base": None, "image_size": image_size,
                        "profile": first.manifest.get("profile"), **extra})
        w.metrics = metrics
    return store.load(kinds.VLM, w.version)

