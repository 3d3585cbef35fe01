"""`mmrec demo`: the README's main job on the embedded default (mini profile, shared catalog).

Builds every missing artifact with a quick mini recipe, reuses what exists, then starts the
service on local Ray and prints the kiosk URL. Each step is the same CLI command a user would
run by hand (called in-process), so the demo never takes a path the documented commands do not.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from mmrec import kinds


@dataclass(frozen=True)
class Step:
    name: str
    produces: tuple[str, ...]        # artifact kinds; the step is skipped when all exist
    estimate_s: int                  # measured on 2 cores (docs/README.md), printed before the step
    argv: Callable[[object], list[str]] | None  # None: the recall builder below
    always: bool = False             # cheap and incremental: run every time
    needs: str | None = None         # a folder under --source; without it the step is skipped
    stale: Callable[[object], bool] | None = None  # store -> its artifact must be rebuilt anyway

    def due(self, store) -> bool:
        """Run it: always, or an artifact it makes is missing or stale."""
        return self.always or any(store.current_version(k) is None for k in self.produces) \
            or (self.stale is not None and self.stale(store))


def _calibration_stale(store) -> bool:
    """The slot calibration was fitted on other models than the CURRENT ones (refit it)."""
    from mmrec.recommend.loading import photo_model_versions
    from mmrec.recommend.slot_confidence import SlotCalibrator

    return SlotCalibrator.load(store, photo_model_versions(store))[0] is None


def _photo_refs_stale(store) -> bool:
    """The reference photos were embedded by another encoder than the CURRENT one."""
    from mmrec.embed.encoder import Encoder
    from mmrec.embed.photo_refs import PhotoRefs

    version = store.current_version(kinds.ENCODER)
    if version is None:
        return False
    encoder_id = Encoder.read_meta(store.load(kinds.ENCODER, version).path)["encoder_id"]
    return PhotoRefs.load(store, encoder_id)[0] is None


# Quick mini recipe: short time budgets so that a fresh machine is serving within ~25 minutes
# (estimates below are measured from empty artifacts on an idle 2-core box, docs/README.md).
# The encoder keeps its full budget (27 CPU-min, ~14 min on 2 threads): it reads the kiosk's
# photos, and its 6-minute budget read real val photos' slot 0.609 against 0.775 for the full one
# (docs/recall.md "Slot head"). The tagger's quick budgets trade quality for time.
DEMO_ENCODER = ["--set", "train.threads=2"]
QUICK_TAGGER = ["--set", "base_stage.time_budget_min=3", "--set", "lora_stage.time_budget_min=3",
                "--set", "base_stage.threads=2", "--set", "lora_stage.threads=2"]

STEPS = (
    Step("catalog ingest", (kinds.ITEMS,), 10,
         lambda a: ["catalog", "ingest", "--source", str(a.source / "myntra")], always=True),
    Step("outfit priors (Polyvore)", (kinds.OUTFIT_PRIORS,), 10,
         lambda a: ["outfit", "priors", "--source", str(a.source / "polyvore_outfits")]),
    Step("encoder: mini CLIP training (full budget)", (kinds.ENCODER,), 870,
         lambda a: ["embed", "train", *DEMO_ENCODER]),
    # incremental embedding, then the index reused / updated in place / rebuilt as needed
    Step("catalog embedding + FAISS index (incremental)", (kinds.VECTORS, kinds.INDEX), 20, None,
         always=True),
    Step("reference photos (train photographers' labelled phone photos)", (kinds.PHOTO_REFS,), 20,
         lambda a: ["embed", "photo-refs", "--source", str(a.source / "real_photos")], needs="real_photos",
         stale=_photo_refs_stale),
    Step("simulated shoppers (SIMULATED logs over the catalog)", (kinds.INTERACTIONS_SIM,), 15,
         lambda a: ["rank", "simulate", "--set", f"shared_data={a.source}"]),
    Step("ranker training", (kinds.RANKER,), 30,
         lambda a: ["rank", "train", "--dataset", "myntra-sim", "--set", f"shared_data={a.source}"]),
    Step("SFT dataset", (kinds.SFT_DATASET,), 25,
         lambda a: ["sft", "build", "--recipe", "sft_data/recipes/myntra_mini.yaml"]),
    Step("tagger: quick mini Qwen-VL (base + LoRA)", (kinds.VLM,), 390,
         lambda a: ["sft", "train", "--stage", "all", *QUICK_TAGGER]),
    # after the models it calibrates: photos whose slot the models cannot read are asked about
    Step("photo slot confidence (real-photo val + calibration photographers)", (kinds.SLOT_CALIBRATION,), 40,
         lambda a: ["bench", "calibrate-slot", "--data", str(a.source)], needs="real_photos",
         stale=_calibration_stale),
)


def register(sub) -> None:
    p = sub.add_parser("demo", help="build what is missing (quick mini recipe), then serve the kiosk")
    p.add_argument("--source", type=Path, default=Path("../shared/data"),
                   help="folder holding myntra/, polyvore_outfits/, rtr/, hm_sample/ (default: ../shared/data)")
    p.add_argument("--no-serve", action="store_true", help="build the artifacts, do not start the service")
    p.add_argument("--skip", action="append", default=[], metavar="KIND",
                   help="do not build this artifact kind (e.g. vlm: serve photos without the tagger)")
    p.set_defaults(handler=_demo)


def _global_argv(args) -> list[str]:
    out = ["--artifacts", str(args.artifacts), "--profile", args.profile]
    if args.config_dir:
        out += ["--config-dir", str(args.config_dir)]
    if args.quiet:
        out.append("--quiet")
    return out


def _demo(args) -> int:
    from mmrec.artifacts import ArtifactStore
    from mmrec.cli import main
    from mmrec.errors import InputError

    if not (args.source / "myntra" / "styles.csv").is_file():
        raise InputError(f"{args.source}/myntra/styles.csv not found; pass --source DIR holding myntra/")
    store = ArtifactStore(args.artifacts)
    todo = [s for s in STEPS if not set(s.produces) <= set(args.skip) and s.due(store)]
    for s in [s for s in todo if s.needs and not (args.source / s.needs).is_dir()]:
        print(f"skipping '{s.name}': {args.source / s.needs} not found", file=sys.stderr)
        todo.remove(s)
    total = sum(s.estimate_s for s in todo)
    print(f"mmrec demo: {len(todo)} step(s) to run, about {total / 60:.0f} min on 2 cores "
          f"(artifacts in {args.artifacts}; existing ones are reused)", file=sys.stderr)
    t_all = time.perf_counter()
    for i, step in enumerate(todo, 1):
        if not step.due(store):
            continue  # an earlier step built it (e.g. rank simulate + train)
        print(f"\n[{i}/{len(todo)}] {step.name} (about {step.estimate_s}s)", file=sys.stderr)
        t0 = time.perf_counter()
        if step.argv is None:
            from mmrec.recall.ensure import ensure_recall_artifacts

            ensure_recall_artifacts(store, profile=args.profile, config_dir=args.config_dir,
                                    progress=not args.quiet)
            rc = 0
        else:
            rc = main(_global_argv(args) + step.argv(args))
        if rc != 0:
            print(f"demo stopped: step '{step.name}' exited {rc}", file=sys.stderr)
            return rc
        print(f"[{i}/{len(todo)}] {step.name}: done in {time.perf_counter() - t0:.0f}s", file=sys.stderr)
    print(f"\nall artifacts ready in {time.perf_counter() - t_all:.0f}s", file=sys.stderr)
    if args.no_serve:
        return 0
    return main(_global_argv(args) + ["serve", "--source", str(args.source)])
