"""Train/serve skew of a ranker trained from logs: the same (answer, item) featurised twice.

    MMREC_PSEUDONYM_KEY=<the key the loop served with> \
    .venv/bin/python -m lab.feedback.skew --work /tmp/fl/run1 [--ranker VERSION] [--day 2]

Training side: `mmrec.rank.logs_train` as `rank train --dataset logs` runs it (join, decode,
`features_for(serve_position=True)`). Serving side: `Ranker.features` of the given ranker
version with the profile the server's `UserStore` gives that shopper (raw id found again by
pseudonymising the store's ids with the key) and the answer's time as ``now``. Per feature:
the share of rows whose two values differ (NaN == NaN), and the two means. Recall features
are not compared (the impression log does not keep recall ranks; training sees NaN).
Prints JSON; writes only the days-1-2 export it reads, under --work.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, required=True, help="a lab/feedback/loop.py work folder")
    ap.add_argument("--ranker", default=None, help="ranker version to serve (default: CURRENT)")
    ap.add_argument("--day", type=int, default=2, help="which logged day's answers (1-based)")
    ap.add_argument("--max-rows", type=int, default=3000)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="rank config override for the training side (e.g. logs.user_state=logs)")
    args = ap.parse_args(argv)

    import pyarrow as pa
    import pyarrow.compute as pc

    from mmrec.artifacts import ArtifactStore
    from mmrec.config import load_config
    from mmrec.feedback import attribution as A
    from mmrec.feedback.events import pseudonymiser
    from mmrec.outfit.scenes import SceneBook
    from mmrec.rank import logs_train as L
    from mmrec.rank.myntra_train import features_for
    from mmrec.rank.ranker import RankContext, Ranker
    from mmrec.rank.users import UserStore

    root = args.work / "artifacts"
    store = ArtifactStore(root)
    db = root / "feedback" / "feedback.sqlite"
    # days 1-2 only (no A/B variant): what the loop's retrain read
    imp, ev = A.read_store(db)
    imp = imp.filter(pc.is_null(imp["variant"]))
    ev = ev.filter(pc.is_in(ev["request_id"], value_set=pa.array(sorted(set(imp["request_id"].to_pylist())))))
    export = args.work / "export-days-1-2"
    if not export.exists():
        import pyarrow.parquet as pq

        for name, t in (("impressions", imp), ("events", ev)):
            (export / name / "date=all").mkdir(parents=True)
            pq.write_table(t, export / name / "date=all" / "part-0.parquet")
    cfg = load_config("rank", overrides=args.set)
    lg = L.featurise_logs(store, cfg, store_path=db, export_dir=export, log=lambda m: None)
    d, items, joined = lg.d, lg.items, lg.joined
    book = SceneBook.load()
    usage = {n: book.get(n).usages[0] for n in book.names()}
    users = UserStore.load(store)
    pseudo = pseudonymiser(cfg.pseudonym)
    raw_of = {pseudo(u): u for u in users.ids()}
    days = sorted(set(L._days(d.req_ts).tolist()))
    day = days[args.day - 1]
    reqs = np.nonzero(L._days(d.req_ts) == day)[0]
    rows = np.nonzero(np.isin(d.req, reqs))[0][: args.max_rows]
    train = features_for(d, rows, serve_position=True)
    user_of = dict(zip(joined["request_id"].to_pylist(), joined["user_id"].to_pylist()))

    ranker = Ranker.load(store, args.ranker)
    serve = np.empty_like(train.X)
    scene_of = dict(zip(joined["request_id"].to_pylist(), joined["scene"].to_pylist()))
    known = 0
    for q in np.unique(d.req[rows]):
        at = np.nonzero(d.req[rows] == q)[0]
        uid = d.request_ids[q]
        pid = user_of[uid]
        prof = users.get(raw_of[pid]) if pid in raw_of else None
        known += prof is not None
        now = dt.datetime.fromtimestamp(d.req_ts[q] / 1e6, dt.timezone.utc)
        ctx = RankContext(occasion=usage.get(scene_of[uid]), now=now)
        ids = [items.item_ids[i] for i in d.item_row[rows[at]]]
        fs = ranker.features(prof, ctx, ids)
        serve[at] = fs.X
    out = {"ranker": ranker.version, "day": day, "rows": int(len(rows)),
           "answers": int(len(np.unique(d.req[rows]))), "answers_with_served_profile": int(known),
           "features": {}}
    for j, name in enumerate(train.names):
        if name.startswith("r_"):
            continue
        a, b = train.X[:, j], serve[:, j]
        same = (a == b) | (np.isnan(a) & np.isnan(b)) | (np.abs(a - b) <= 1e-4 * np.maximum(np.abs(a), 1))
        out["features"][name] = {"differ": round(float(1 - same.mean()), 4),
                                 "train_mean": round(float(np.nanmean(a)), 4) if np.isfinite(a).any() else None,
                                 "serve_mean": round(float(np.nanmean(b)), 4) if np.isfinite(b).any() else None}
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
