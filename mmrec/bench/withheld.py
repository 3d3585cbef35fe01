"""Withheld truth: a fixed slice of the catalog served to the system as new arrivals.

The products of the shared splits ``test`` and ``val`` (``mmrec.splits``: 20% of the catalog,
``id % 10`` in {0, 1}; no model trains on them) reach the system under test with their photo
and title only. Their category, gender, colour, occasion, season and details are what the
tagger reads from the photo and the title rules read from the title
(`mmrec.catalog.arrivals`); recall filters, ranker features, outfit rules and explanations
all work from those readings. The judges keep the withheld catalog values, so every rule,
gender check and statement about these items is measured against a truth the system never
received: these are the benchmark's quality numbers for catalog reasoning. On the other 80%,
where the system and the judges read the same rows, the same checks are consistency checks.

The models' readings are cached per (items version, tagger version) in the run directory, so
a resumed run serves the same catalog.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Sequence

from mmrec import kinds
from mmrec.errors import InputError
from mmrec.splits import split_of

ARRIVALS_FILE = "withheld_arrivals.parquet"


def withheld_ids(item_ids: Iterable[str], splits: Sequence[str]) -> set[str]:
    """Items of the given shared splits (stable: the split is a function of the id)."""
    want = set(splits)
    return {str(i) for i in item_ids if split_of(str(i)) in want}


def served_items(store: Any, withheld: set[str], out_dir: Path, *, progress: bool = True
                 ) -> tuple[Any, dict[str, Any]]:
    """The items table the system under test serves: the index's items version with the
    withheld rows replaced by new arrivals read by the CURRENT tagger (cached in ``out_dir``;
    the tagger is loaded only for readings not cached yet), every other row as stored.

    Returns:
        (pyarrow items table, summary for run.json: counts and the tagger's version).

    Raises:
        InputError: no tagger artifact (a new arrival cannot be read without one).
    """
    import pyarrow.parquet as pq

    from mmrec.catalog.arrivals import infer_arrivals
    from mmrec.catalog.ingest import items_table, load_items
    from mmrec.taxonomy import default_taxonomy

    tagger_version = store.current_version(kinds.VLM)
    if tagger_version is None:
        raise InputError("the suite withholds catalog truth, and new arrivals are read by the tagger, "
                         "but there is no vlm artifact; train one (mmrec sft train), drop `withheld` "
                         "from the suite, or pass --full-truth")
    items_version = store.load(kinds.INDEX).manifest["items_version"]
    table = load_items(store, items_version)
    rows = table.to_pylist()
    for r in rows:
        r["attributes"] = dict(r.get("attributes") or [])
    key = {"items_version": items_version, "tagger": tagger_version, "n_withheld": len(withheld)}
    cache = out_dir / ARRIVALS_FILE
    arrivals: dict[str, dict[str, Any]] = {}
    if cache.is_file():
        cached = pq.read_table(cache)
        meta = {k.decode(): v.decode() for k, v in (cached.schema.metadata or {}).items()}
        if meta.get("key") == repr(key):
            for r in cached.to_pylist():
                r["attributes"] = dict(r.get("attributes") or [])
                arrivals[r["item_id"]] = r
    todo = [r for r in rows if r["item_id"] in withheld and r["item_id"] not in arrivals
            and r.get("image_uri")]
    if todo:
        from tqdm import tqdm

        from mmrec.attributes.tagger import Tagger

        tagger = Tagger.load(store, tagger_version)
        with tqdm(total=len(todo), disable=not progress, desc="withheld: tag new arrivals",
                  unit="item") as bar:
            for r in infer_arrivals(todo, tagger, default_taxonomy(), progress=bar.update):
                arrivals[r["item_id"]] = r
        t = items_table(list(arrivals.values()))
        pq.write_table(t.replace_schema_metadata({**(t.schema.metadata or {}), b"key": repr(key).encode()}),
                       cache)
    served = [arrivals.get(r["item_id"], r) if r["item_id"] in withheld else r for r in rows]
    summary = {**key, "served_as_arrivals": sum(r["item_id"] in arrivals for r in served),
               "without_photo": sum(1 for r in rows if r["item_id"] in withheld and not r.get("image_uri"))}
    return items_table(served).cast(table.schema), summary
