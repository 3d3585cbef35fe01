"""How right is a new arrival's product type read from its title, against the tagger's photo reading?

For the products a benchmark run served as new arrivals (``withheld_arrivals.parquet`` in the run
directory: the tagger's readings), against the catalog's category: the share of titles naming
a type (`mmrec.title_rules.title_category`), its accuracy there and the tagger's on the same
products, and the category and slot accuracy of the tagger alone and of title-else-tagger (what
`mmrec.catalog.arrivals.infer_arrival` serves).

Measured 2026-12-07 (night), ADOPTED (`infer_arrival`: the title's type wins): on the 2,651
withheld products of ``runs/p21-calsplit`` (demo tagger vlm/20261207T204751550Z-6ce0a7) the
title names a type for 98.8%, right 94.4% of the time there (tagger 65.9% on the same
products); category 0.657 -> 0.939, slot 0.896 -> 0.991. On the catalog's train split (never
served as arrivals) the rule reads 98.7% of titles, 94.5% right: the same rule, not one fitted
to the slice. The commonest disagreements are within a slot (titles saying flats for products
catalogued as heels, casual for sports shoes). Rerun:

  .venv/bin/python -m lab.catalog.title_category --run runs/<bench run>
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=Path, required=True, help="a bench run directory with withheld_arrivals.parquet")
    p.add_argument("--artifacts", type=Path, default=Path("artifacts"))
    args = p.parse_args(argv)

    import pyarrow.parquet as pq

    from mmrec.artifacts import ArtifactStore
    from mmrec.catalog.ingest import load_items
    from mmrec.splits import split_of
    from mmrec.taxonomy import default_taxonomy
    from mmrec.title_rules import title_category

    tax = default_taxonomy()
    items = load_items(ArtifactStore(args.artifacts), None).to_pandas().set_index("item_id")

    def types(titles) -> np.ndarray:
        return np.array([(lambda r: r.value if r else None)(title_category(str(t), tax)) for t in titles], dtype=object)

    arrivals = pq.read_table(args.run / "withheld_arrivals.parquet").to_pandas().set_index("item_id")
    truth = items.loc[arrivals.index]
    named = types(arrivals["title"])
    found = np.array([t is not None for t in named])
    want = truth["category"].to_numpy()
    tagged = arrivals["category"].to_numpy()
    served = np.where(found, named, tagged)
    train = items[[split_of(str(i)) == "train" for i in items.index]]
    named_train = types(train["title"])
    found_train = np.array([t is not None for t in named_train])
    out = {"run": str(args.run), "arrivals": len(arrivals),
           "title_names_a_type": float(found.mean()),
           "title_right_where_named": float(np.mean(named[found] == want[found])),
           "tagger_right_there": float(np.mean(tagged[found] == want[found])),
           "category": {"tagger": float(np.mean(tagged == want)), "title_else_tagger": float(np.mean(served == want))},
           "slot": {"tagger": float(np.mean(arrivals["slot"].to_numpy() == truth["slot"].to_numpy())),
                    "title_else_tagger": float(np.mean(np.array([tax.slot_of(c) for c in served])
                                                       == truth["slot"].to_numpy()))},
           "train_split": {"products": len(train), "title_names_a_type": float(found_train.mean()),
                           "title_right_where_named": float(np.mean(named_train[found_train]
                                                                    == train["category"].to_numpy()[found_train]))},
           "commonest_disagreements": [[a, b, n] for (a, b), n in collections.Counter(
               (a, b) for a, b, f in zip(named, want, found) if f and a != b).most_common(8)]}
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
