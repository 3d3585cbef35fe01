"""A/A check of `mmrec ab report`'s intervals on a loop's A/B day: split ONE variant's users
at random into two pretend variants, many times, and count how often the 95% interval of the
difference excludes 0 (it should, about 5% of the time, for every metric).

    .venv/bin/python -m lab.feedback.aa_check --work /tmp/fl/run3 --variant control --splits 100

Reads the loop's feedback store; writes nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, required=True, help="a lab/feedback/loop.py work folder")
    ap.add_argument("--variant", default="control")
    ap.add_argument("--splits", type=int, default=100)
    ap.add_argument("--resamples", type=int, default=500)
    args = ap.parse_args(argv)

    import pyarrow as pa
    import pyarrow.compute as pc

    from mmrec.ab.report import ITEM_METRICS, METRICS, report
    from mmrec.feedback.attribution import read_store

    imp, ev = read_store(args.work / "artifacts" / "feedback" / "feedback.sqlite")
    imp = imp.filter(pc.equal(imp["variant"], args.variant))
    users = imp["user_id"].to_pylist()
    ids = sorted(set(u for u in users if u is not None))
    excl = {m: 0 for m in (*METRICS, *ITEM_METRICS)}
    for s in range(args.splits):
        half = set(np.random.default_rng(s).permutation(ids)[: len(ids) // 2].tolist())
        fake = pa.array(["a" if u in half else "b" for u in users], pa.string())
        t = imp.set_column(imp.schema.get_field_index("variant"), "variant", fake)
        rep = report(t, ev, control="a", resamples=args.resamples, seed=s)
        for m in excl:
            excl[m] += bool(rep["variants"]["b"][m]["diff_vs_control"]["excludes_0"])
    out = {"work": str(args.work), "variant": args.variant, "users": len(ids), "splits": args.splits,
           "resamples": args.resamples,
           "share_of_splits_whose_95pct_interval_excludes_0": {m: k / args.splits for m, k in excl.items()}}
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
