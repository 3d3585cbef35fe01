"""How the tagger's colour decision rule moves colour-family accuracy, on one trained adapter.

    .venv/bin/python -m lab.sft.colour_decisions [--vlm VERSION] [--split val|test]
                                                  [--artifacts artifacts] [--out runs/colour_decisions]

Decodes the split once as `mmrec sft eval` does (constrained, the config's mirror view), records
the colour distribution each photo's answer was chosen from (the fields before colour are
chosen as usual), then scores decision rules on those same distributions:

- ``greedy``: the most probable colour (the default decoder);
- ``family``: the family with the most probability in total, then its most probable colour
  (`lab.sft.colour_family`, formerly ``decode.colour_by_family``);
- ``greedy_prior`` / ``family_prior``: the same after correcting for the training mix: the
  dataset builder resamples train towards rare categories and colours, so the model's colour
  prior is the resampled one, while val/test products follow the catalog's own mix. Each
  colour's probability is multiplied by (share among train products) / (share among the JSON
  training records) and renormalised (label-shift correction with priors from train only).

Writes ``metrics.json`` (accuracy exact and by family per rule, n) under ``--out``. Decide on
``val``; quote ``test`` once.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--artifacts", default="artifacts")
    ap.add_argument("--vlm", default=None, help="vlm version (default: CURRENT)")
    ap.add_argument("--split", default="val", choices=["val", "test"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="runs/colour_decisions")
    args = ap.parse_args()

    import torch

    from lab.sft.colour_family import group_index, grouped_best
    from mmrec import kinds
    from mmrec.artifacts import ArtifactStore
    from mmrec.attributes import decode
    from mmrec.attributes.config import DecodeSettings
    from mmrec.attributes.evaluate import dataset_version
    from mmrec.attributes.predict import Predictor
    from mmrec.attributes.tagger import load_vlm, vlm_input, vlm_spec
    from mmrec.attributes.train import load_parts, pixel_cache
    from mmrec.taxonomy import default_taxonomy

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    tax = default_taxonomy()
    store = ArtifactStore(args.artifacts)
    vlm_art = store.resolve(args.vlm, kinds.VLM)
    parts = load_parts(store, dataset_version(vlm_art))
    prompts, fields, values = vlm_spec(vlm_art)
    products = [p for p in parts.split(args.split) if p["colour"]]
    size = vlm_input(vlm_art)
    cache = pixel_cache(store, parts, size)
    hflip = bool(vlm_art.config.get("decode", {}).get("hflip_tta", DecodeSettings().hflip_tta))
    model, processor = load_vlm(vlm_art)
    pred = Predictor(model, processor, prompts, fields, values, tax, image_size=size, batch_size=64,
                     inference_only=True, decode_method="lockstep", hflip_tta=hflip)
    colour_i = fields.index("colour")
    allowed = list(pred.grammar.tries[colour_i].children)
    names = [pred.grammar.tries[colour_i].children[t].value for t in allowed]
    seen: list[np.ndarray] = []
    real_pick = decode._pick

    def spy(logits, grammar, i, views=1):  # the lockstep decoder calls it once per field
        if i == colour_i:
            logp = decode.view_mean(torch.log_softmax(logits[:, allowed].float(), -1), views)
            seen.append(logp[:logp.shape[0] // views].exp().numpy())
        return real_pick(logits, grammar, i, views)

    decode._pick = spy
    try:
        pred.predict_cached(cache, [cache.index[p["image_path"]] for p in products])
    finally:
        decode._pick = real_pick
    probs = np.concatenate(seen)  # [products, colours]
    truth = [p["colour"] for p in products]
    fam_of = [tax.colour_family(v) or v for v in names]

    # priors: catalog mix (train products) vs what the model was trained on (JSON train records)
    products_mix = Counter(p["colour"] or "unknown" for p in parts.split("train"))
    records_mix = Counter(json.loads(r["messages"][-1]["content"])["colour"]
                          for r in parts.records("train") if r["task"] == "json")
    ratio = np.array([(products_mix[v] + 1) / sum(products_mix.values())
                      / ((records_mix[v] + 1) / sum(records_mix.values())) for v in names])

    # the grouped decoding rule (lab.sft.colour_family), on the recorded distributions
    groups = group_index(pred.grammar.tries[colour_i], dict(zip(names, fam_of)))

    def choose(p: np.ndarray, by_family: bool) -> list[str]:
        best = grouped_best(torch.from_numpy(p), groups) if by_family else torch.from_numpy(p).argmax(-1)
        return [names[int(b)] for b in best]

    corrected = probs * ratio
    corrected /= corrected.sum(1, keepdims=True)
    rules = {"greedy": choose(probs, False), "family": choose(probs, True),
             "greedy_prior": choose(corrected, False), "family_prior": choose(corrected, True)}
    scores = {}
    for rule, chosen in rules.items():
        exact = float(np.mean([c == t for c, t in zip(chosen, truth)]))
        family = float(np.mean([tax.colour_family(c) == tax.colour_family(t) for c, t in zip(chosen, truth)]))
        scores[rule] = {"colour": round(exact, 4), "colour_family": round(family, 4)}
        print(f"{rule:13s} colour {exact:.3f}  colour family {family:.3f}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    metrics = {"vlm": vlm_art.version, "split": args.split, "products": len(products), "hflip_tta": hflip,
               "rules": scores, "seconds": round(time.perf_counter() - t0, 1)}
    (out / f"metrics_{args.split}.json").write_text(json.dumps(metrics, indent=2))
    print(f"{len(products)} {args.split} products, vlm {vlm_art.version} ({metrics['seconds']} s) -> {out}")


if __name__ == "__main__":
    main()
