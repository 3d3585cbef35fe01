"""SFT dataset builder on a tiny generated catalog: every step, its counts, and its guarantees."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from mmrec.attributes.dataset.build import build_dataset, read_jsonl
from mmrec.attributes.dataset.config import SftDataConfig
from mmrec.attributes.dataset.dedup import fingerprint, near_duplicate_pairs
from mmrec.attributes.dataset.pii import scan
from mmrec.attributes.dataset.sampling import balanced_copies
from mmrec.attributes.prompts import IMAGE_PLACEHOLDER
from mmrec.splits import split_of
from sft_fixtures import PII_TITLES, make_items


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from mmrec.artifacts import ArtifactStore

    root = tmp_path_factory.mktemp("sftdata")
    store = ArtifactStore(root / "artifacts")
    make_items(store, root, 60)
    cfg = SftDataConfig(seed=0, dedup={"max_per_lookalike_cluster": 3},
                        report={"contact_sheet_samples": 8, "thumb_size": 48})
    art = build_dataset(store, cfg)
    report = json.loads((art.path / "quality_report.json").read_text())
    products = pq.read_table(art.path / "products.parquet").to_pylist()
    return store, art, report, products


def test_cleaning_counts(built):
    _, _, report, products = built
    clean = report["steps"]["clean"]
    assert clean["rows_in"] == 66
    assert clean["dropped_no_image"] == 1
    assert clean["dropped_bad_image:truncated"] + clean.get("dropped_bad_image:corrupt", 0) == 1
    assert clean["dropped_missing_label"] == 1 and clean["invalid_label:category"] == 1
    assert clean["kept"] == 63
    assert report["steps"]["exact_dedup"]["dropped"] == 1       # 5002 is a byte copy of 1002
    ids = {p["item_id"] for p in products}
    assert "5002" not in ids and "1002" in ids and not ids & {"5005", "5006", "5007"}


def test_near_duplicates_never_cross_splits(built):
    _, _, report, products = built
    assert report["steps"]["near_dedup"]["pairs"] >= 2
    fps = [fingerprint(Image.open(p["image_path"]).convert("RGB"), p["image_sha256"]) for p in products]
    pairs = near_duplicate_pairs(np.array([f.phash for f in fps], dtype=np.uint64), max_distance=16)
    assert len(pairs) >= 2
    for i, j in pairs:
        assert products[i]["split"] == products[j]["split"], (products[i]["item_id"], products[j]["item_id"])
    by_id = {p["item_id"]: p for p in products}
    assert by_id["5003"]["split"] == "test"    # near-duplicate of held-out 1010 goes to test
    assert by_id["5004"]["split"] == "val"     # near-duplicate of val 1021 goes to val


def test_test_split_is_the_shared_held_out_set(built):
    _, _, report, products = built
    for p in products:
        if split_of(p["item_id"]) == "test":
            assert p["split"] == "test", p["item_id"]
        if p["split"] == "test" and split_of(p["item_id"]) != "test":
            assert p["group"] in {q["group"] for q in products if split_of(q["item_id"]) == "test"}
    assert report["splits"] == dict(Counter(p["split"] for p in products))


def test_no_planted_pii_survives(built):
    _, art, report, products = built
    assert sum(report["pii"]["scrubbed"].values()) >= len(PII_TITLES)
    assert report["pii"]["hits_after"] == {"email": 0, "phone": 0, "national_id": 0}
    texts = [p["title"] for p in products]
    for name in ("train", "val", "test", "caption_train", "caption_val"):
        for r in read_jsonl(art.path / f"{name}.jsonl"):
            texts.extend(m["content"] for m in r["messages"])
    assert all(sum(scan(t).values()) == 0 for t in texts)
    blob = "\n".join(texts)
    for secret in ("13800138000", "0013", "a.b@shop.example.com", "11010519491231002X"):
        assert secret not in blob
    assert "170/92A" in blob and "HRX-20931-BLK" in blob  # sizes and SKUs are not PII


def test_records_format(built):
    _, art, report, products = built
    train = read_jsonl(art.path / "train.jsonl")
    tasks = Counter(r["task"] for r in train)
    assert tasks["json"] > 0 and tasks["single"] > 0
    assert report["records"]["train"] == dict(tasks)
    unknown_single = 0
    for name in ("train", "val", "test", "caption_train"):
        for r in read_jsonl(art.path / f"{name}.jsonl"):
            assert [m["role"] for m in r["messages"]] == ["system", "user", "assistant"]
            placeholders = sum(m["content"].count(IMAGE_PLACEHOLDER) for m in r["messages"])
            assert placeholders == len(r["images"]) == 1
            if r["task"] == "json":
                answer = json.loads(r["messages"][-1]["content"])
                assert list(answer) == SftDataConfig().fields
                assert answer["material"] == "unknown"         # never labelled in this catalog
            if r["task"] == "single" and r["messages"][-1]["content"] == "unknown":
                unknown_single += 1
    assert unknown_single > 0                                   # the model is taught to abstain
    phrasings = {r["messages"][1]["content"] for r in train if r["task"] == "json"}
    assert len(phrasings) > 1
    val_phrasings = {r["messages"][1]["content"] for r in read_jsonl(art.path / "val.jsonl")}
    assert len(val_phrasings) == 1                              # eval uses the inference prompt


def test_balancing_and_lookalike_cap(built):
    _, art, report, products = built
    s = report["steps"]["sampling"]
    assert s["balance_after"]["category"]["normalized_entropy"] >= s["balance_before"]["category"]["normalized_entropy"]
    assert s["max_copies"] <= 3
    assert report["steps"]["lookalike_cap"]["clusters"] > 0
    train = [p for p in products if p["split"] == "train"]
    assert all(p["train_copies"] <= 3 for p in train)
    assert (art.path / "contact_sheet.jpg").stat().st_size > 1000
    assert Image.open(art.path / "contact_sheet.jpg").size[0] > 100


def test_lookalike_clusters_are_capped():
    from mmrec.attributes.dataset.dedup import cap_lookalike_clusters
    from mmrec.attributes.dataset.product import Fingerprint, Product

    def prod(i, colour, layout):
        return Product(str(i), f"/x/{i}.jpg", None, "t", {"category": "tshirts", "colour": colour},
                       fp=Fingerprint(str(i), (i,), layout))

    dense = [prod(i, "black", 7) for i in range(20)]
    other = [prod(100 + i, "black", 8) for i in range(3)] + [prod(200 + i, "red", 7) for i in range(3)]
    kept, stats = cap_lookalike_clusters(dense + other, ["category", "colour"], 5, np.random.default_rng(0))
    assert stats == {"clusters": 3, "largest_cluster": 20, "clusters_over_cap": 1, "dropped": 15}
    assert sum(p.fp.layout == 7 and p.labels["colour"] == "black" for p in kept) == 5
    assert all(p in kept for p in other)


def test_balanced_copies_bounds():
    from types import SimpleNamespace

    prods = [SimpleNamespace(labels={"category": "a"}) for _ in range(90)] + \
            [SimpleNamespace(labels={"category": "b"}) for _ in range(10)]
    copies = balanced_copies(prods, ["category"], 0.5, 1.0, 3.0, 150, np.random.default_rng(0))
    assert copies.min() >= 1 and copies.max() <= 3
    assert abs(int(copies.sum()) - 150) <= 5
    assert copies[90:].mean() > copies[:90].mean()      # the rare class is up-sampled


def test_build_is_stable_across_runs(built, tmp_path):
    store, art, _, products = built
    again = build_dataset(store, SftDataConfig.model_validate(art.config))
    products2 = pq.read_table(again.path / "products.parquet").to_pylist()
    assert [(p["item_id"], p["split"]) for p in products] == [(p["item_id"], p["split"]) for p in products2]
    assert (art.path / "train.jsonl").read_text() == (again.path / "train.jsonl").read_text()


def test_recipe_refuses_unknown_and_model_labels():
    from mmrec.errors import ConfigError
    from mmrec.config import load_config

    with pytest.raises(ConfigError, match="unknown key"):
        load_config("sft_data", profile="tiny", overrides=["sampling.temprature=0.5"])
    with pytest.raises(ConfigError, match="must not contain 'model'"):
        load_config("sft_data", profile="tiny", overrides=["clean.label_sources=[catalog, model]"])
    with pytest.raises(ConfigError, match="unknown field"):
        load_config("sft_data", profile="tiny", overrides=["fields=[category, vibe]"])
