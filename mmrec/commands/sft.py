"""`mmrec sft build | train | eval | export`: the attribute tagger's dataset, training, evaluation."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from mmrec import kinds
from mmrec.commands import add_config_args, stage_config


def register(sub) -> None:
    p = sub.add_parser("sft", help="attribute tagger: SFT dataset, Qwen-VL LoRA training, eval, export")
    s = p.add_subparsers(dest="sft_command", metavar="SUBCOMMAND")
    s.required = True

    b = s.add_parser("build", help="build the SFT dataset (records + quality report) from the items artifact")
    b.add_argument("--recipe", type=Path, default=None,
                   help="recipe YAML, e.g. sft_data/recipes/myntra_mini.yaml (on top of configs/sft_data.yaml)")
    b.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="dotted override of the recipe (repeatable)")
    b.set_defaults(handler=_build)

    t = s.add_parser("train", help="train the tagger (mini: base stage, then LoRA stage)")
    add_config_args(t)
    t.add_argument("--stage", choices=("base", "lora", "all"), default="all",
                   help="base: mini captioning pre-stage; lora: SFT; all: base (if none yet) then lora")
    t.add_argument("--resume", action="store_true", help="continue from the last Trainer checkpoint")
    t.add_argument("--retrain-base", action="store_true", help="with --stage all: train a new base even if one exists")
    t.set_defaults(handler=_train)

    e = s.add_parser("eval", help="compare base model, LoRA-SFT model, CNN and CLIP probe on the test split")
    add_config_args(e)
    e.add_argument("--vlm", default=None, help="vlm version or path (default: CURRENT)")
    e.set_defaults(handler=_eval)

    x = s.add_parser("export", help="merge the LoRA adapter into the base model (new vlm version)")
    x.add_argument("--vlm", default=None, help="vlm version or path (default: CURRENT)")
    x.set_defaults(handler=_export)


def _quiet_transformers(args) -> None:
    if args.quiet:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()


def _build(args) -> int:
    from mmrec.artifacts import ArtifactStore
    from mmrec.attributes.dataset.build import build_dataset
    from mmrec.config import load_config

    cfg = load_config("sft_data", profile=args.profile, path=args.recipe, overrides=args.overrides,
                      config_dir=args.config_dir)
    t0 = time.perf_counter()
    art = build_dataset(ArtifactStore(args.artifacts), cfg, progress=not args.quiet)
    report = json.loads((art.path / "quality_report.json").read_text())
    steps = report["steps"]
    print(f"clean: {steps['clean']['rows_in']} rows -> {steps['clean']['kept']} kept; "
          f"exact duplicates dropped: {steps['exact_dedup']['dropped']}; near-duplicate groups: "
          f"{steps['near_dedup']['groups_with_duplicates']} (largest {steps['near_dedup']['largest_group']}); "
          f"look-alikes capped: {steps['lookalike_cap']['dropped']}", file=sys.stderr)
    print(f"splits: {report['splits']}  records: {report['records']}  PII after scrub: "
          f"{report['pii']['hits_after']}", file=sys.stderr)
    print(f"wrote {art.path} in {time.perf_counter() - t0:.1f}s (quality_report.json, contact_sheet.jpg)",
          file=sys.stderr)
    print(art.version)
    return 0


def _train(args) -> int:
    from mmrec.artifacts import ArtifactStore
    from mmrec.attributes.train import train_base, train_lora

    _quiet_transformers(args)
    cfg = stage_config(args, "sft")
    store = ArtifactStore(args.artifacts)
    progress = not args.quiet
    if args.stage in ("base", "all") and cfg.model.kind == "mini":
        if args.stage == "base" or args.retrain_base or store.current_version(kinds.VLM_BASE) is None:
            base = train_base(store, cfg, progress=progress, resume=args.resume, profile=args.profile)
            print(f"base stage: {json.dumps(base.metrics)} -> {base.path}", file=sys.stderr)
            if args.stage == "base":
                print(base.version)
                return 0
        else:
            print(f"reusing {kinds.VLM_BASE}/{store.current_version(kinds.VLM_BASE)} (--retrain-base to train a new one)",
                  file=sys.stderr)
    art = train_lora(store, cfg, progress=progress, resume=args.resume and args.stage == "lora",
                     profile=args.profile)
    if art is None:  # a non-main process of a multi-GPU run
        return 0
    print(f"LoRA stage: {json.dumps(art.metrics)} -> {art.path}", file=sys.stderr)
    print(art.version)
    return 0


def _eval(args) -> int:
    from mmrec.artifacts import ArtifactStore
    from mmrec.attributes.evaluate import evaluate, format_table

    _quiet_transformers(args)
    cfg = stage_config(args, "sft")
    art = evaluate(ArtifactStore(args.artifacts), cfg, vlm=args.vlm, progress=not args.quiet)
    print(format_table(json.loads(art.file("metrics.json").read_text())))
    print(f"wrote {art.path / 'metrics.json'}", file=sys.stderr)
    return 0


def _export(args) -> int:
    from mmrec.artifacts import ArtifactStore
    from mmrec.attributes.export import export_merged

    _quiet_transformers(args)
    art = export_merged(ArtifactStore(args.artifacts), vlm=args.vlm)
    print(f"merged model: {json.dumps(art.metrics)} -> {art.path}", file=sys.stderr)
    print(art.version)
    return 0

