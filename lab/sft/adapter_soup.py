"""A "model soup" of LoRA adapters trained on the same base: what k times the SFT compute buys.

    .venv/bin/python -m lab.sft.adapter_soup --vlm V1,V2,... [--artifacts artifacts]
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vlm", required=True, help="comma-separated adapter versions on one base")
    ap.add_argument("--artifacts", default="artifacts")
    args = ap.parse_args()

    from mmrec.artifacts import ArtifactStore
    from mmrec.attributes.export import write_merged
    from mmrec.attributes.tagger import load_vlm, vlm_base_version, vlm_input
    from mmrec.errors import MmrecError

    store = ArtifactStore(args.artifacts)
    arts = [store.resolve(v.strip(), "vlm") for v in args.vlm.split(",") if v.strip()]
    if len(arts) < 2:
        raise SystemExit("a soup needs at least two adapters")
    first = arts[0]
    for a in arts:
        if a.manifest.get("format") != "adapter":
            raise MmrecError(f"vlm/{a.version} is {a.manifest.get('format')!r}, not an adapter")
        ours, theirs = (vlm_base_version(a), vlm_input(a)), (vlm_base_version(first), vlm_input(first))
        if ours != theirs:
            raise MmrecError(f"vlm/{a.version} has base / input {ours}, vlm/{first.version} has {theirs}: "
                             "not one base")
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
    versions = [a.version for a in arts]
    soup = write_merged(store, model, processor, arts, extra={"soup_of": versions},
                        metrics={"soup_of": versions, "base": vlm_base_version(first)}, make_current=False)
    print(soup.version)


if __name__ == "__main__":
    main()
