"""A "model soup" of LoRA adapters trained on the same base: what k times the SFT compute buys.

    .venv/bin/python benchmark/adapter_soup.py --vlm V1,V2,... [--artifacts artifacts]
    mmrec sft eval --vlm <printed version> --set eval.split=val --set eval.base_model=false \
        --set eval.cnn=false --set eval.probe=false

Each adapter is merged into its base (``merge_and_unload``) and the merged weights are averaged
uniformly (Wortsman et al., 2022: fine-tunings of one pretrained model average into one model
that is often better than each). The result is written as a new ``merged`` vlm version that
does NOT become CURRENT. It is a measurement, not a recipe: a soup of k adapters costs k LoRA
stages, and the issue's limit is one LoRA stage under 30 minutes.
"""

from __future__ import annotations

import argparse
import shutil


def _base_of(art) -> str | None:
    return next((i["version"] for i in art.manifest.get("inputs", []) if i["kind"] == "vlm_base"), None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vlm", required=True, help="comma-separated adapter versions on one base")
    ap.add_argument("--artifacts", default="artifacts")
    args = ap.parse_args()

    from mmrec.artifacts import ArtifactStore
    from mmrec.attributes.model import save_model
    from mmrec.attributes.tagger import load_vlm, vlm_input
    from mmrec.errors import MmrecError

    store = ArtifactStore(args.artifacts)
    arts = [store.resolve(v.strip(), "vlm") for v in args.vlm.split(",") if v.strip()]
    if len(arts) < 2:
        raise SystemExit("a soup needs at least two adapters")
    first = arts[0]
    for a in arts:
        if a.manifest.get("format") != "adapter":
            raise MmrecError(f"vlm/{a.version} is {a.manifest.get('format')!r}, not an adapter")
        if _base_of(a) != _base_of(first) or vlm_input(a) != vlm_input(first):
            raise MmrecError(f"vlm/{a.version} has base {_base_of(a)} / input {vlm_input(a)}, "
                             f"vlm/{first.version} has {_base_of(first)} / {vlm_input(first)}: not one base")
    total = model = processor = None
    for a in arts:
        m, p = load_vlm(a, merge=True)
        weights = {k: t.detach().float() for k, t in m.state_dict().items()}
        if total is None:
            total, model, processor = {k: t.clone() for k, t in weights.items()}, m, p
        else:
            for k in total:
                total[k] += weights[k]
    model.load_state_dict({k: t / len(arts) for k, t in total.items()})
    image_size, image_fit = vlm_input(first)
    with store.write("vlm", config=first.config, make_current=False) as w:
        save_model(model, processor, w.path / "merged")
        for name in ("fields.json", "prompts.json"):
            shutil.copy(first.path / name, w.path / name)
        for a in arts:
            w.add_artifact_input(a)
        w.extra.update({"format": "merged", "base": None, "image_size": image_size, "image_fit": image_fit,
                        "profile": first.manifest.get("profile"), "soup_of": [a.version for a in arts]})
        w.metrics = {"soup_of": [a.version for a in arts], "base": _base_of(first)}
    print(w.version)


if __name__ == "__main__":
    main()
