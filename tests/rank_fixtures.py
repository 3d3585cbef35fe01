"""Small hand-made inputs for the ranker tests: catalog, profile pool, RTR and H&M files."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mmrec.artifacts import ArtifactStore
from mmrec.rank.simulator import ProfilePool
from mmrec.schemas import ITEMS_SCHEMA

CATEGORIES = [("tshirts", "top"), ("shirts", "top"), ("jeans", "bottom"), ("trousers", "bottom"),
              ("kurtas", "top"), ("dresses", "one-piece"), ("heels", "shoes"),
              ("casual shoes", "shoes"), ("watches", "accessory"), ("handbags", "bag")]
COLOURS = ["black", "white", "navy blue", "red", "green", "beige", "grey", "pink"]
USAGES = ["casual", "casual", "formal", "ethnic", "sports"]
SEASONS = ["summer", "fall", "winter", "spring"]
BRANDS = ["Puma", "Nike", "Arrow", "Biba", "Levis", "Fossil"]


def write_items(store: ArtifactStore, n: int = 240, seed: int = 0) -> str:
    """An items artifact of ``n`` varied Myntra-like items (ids 1000.., some held out)."""
    rng = np.random.default_rng(seed)
    now = _dt.datetime(2024, 1, 1, tzinfo=_dt.timezone.utc)
    rows = []
    for i in range(n):
        cat, slot = CATEGORIES[i % len(CATEGORIES)]
        gender = ["men", "women", "unisex"][int(rng.integers(3))]
        rows.append({
            "item_id": str(1000 + i), "title": f"item {i}", "brand": BRANDS[int(rng.integers(len(BRANDS)))],
            "gender": gender, "category": cat, "slot": slot,
            "colour": COLOURS[int(rng.integers(len(COLOURS)))], "pattern": None, "material": None,
            "fit": None, "sleeve": None, "neckline": None,
            "season": SEASONS[int(rng.integers(len(SEASONS)))],
            "usage": USAGES[int(rng.integers(len(USAGES)))], "year": 2012 + int(rng.integers(6)),
            "price": None, "in_stock": True, "image_uri": None, "image_sha256": None,
            "image_width": None, "image_height": None, "attributes": [], "source": "test",
            "updated_at": now,
        })
    table = pa.Table.from_pylist(rows, schema=ITEMS_SCHEMA)
    with store.write("items", config={}) as w:
        pq.write_table(table, w.path / "items.parquet")
    return w.version


def profile_pool(n: int = 50, seed: int = 1) -> ProfilePool:
    """A stand-in for the real RTR/H&M distributions (tests must not need ../shared)."""
    rng = np.random.default_rng(seed)
    occ = ["wedding", "party", "work", "everyday", "vacation", "formal affair"]
    return ProfilePool(
        ages=rng.integers(18, 70, 200).astype(np.float32),
        body_type=np.array([["hourglass", "pear", "athletic", None][i % 4] for i in range(n)], dtype=object),
        size=rng.integers(0, 24, n).astype(np.float32),
        height_cm=rng.normal(165, 7, n).astype(np.float32),
        weight_kg=rng.normal(62, 8, n).astype(np.float32),
        occasions=[sorted(set(rng.choice(occ, 2).tolist())) for _ in range(n)])


RTR_COLUMNS = ["fit", "user_id", "item_id", "weight_lbs", "rating", "rented_for", "body_type",
               "category", "size", "age", "review_date", "bust_size_num", "bust_size_letter",
               "height_in", "review_month", "review_day_of_month", "review_year", "recommend"]


def rtr_rows() -> list[dict]:
    """Rentals with known statistics (see test_rank_features); raw ids are distinctive."""
    def r(user, item, day, occ, body, size, age, rating=10.0, fit="fit", cat="dress"):
        d = _dt.datetime.fromisoformat(day)
        return {"fit": fit, "user_id": user, "item_id": item, "weight_lbs": 130.0, "rating": rating,
                "rented_for": occ, "body_type": body, "category": cat, "size": size, "age": age,
                "review_date": d, "bust_size_num": 34.0, "bust_size_letter": "c", "height_in": 65.0,
                "review_month": d.month, "review_day_of_month": d.day, "review_year": d.year,
                "recommend": int(rating == 10.0)}
    return [
        r(987654321, 11, "2016-01-05", "wedding", "hourglass", 8, 30.0),
        r(876543210, 11, "2016-01-09", "party", "pear", 12, 40.0, rating=8.0, fit="small"),
        r(765432109, 22, "2016-01-20", "wedding", "hourglass", 4, 26.0, cat="gown"),
        r(654321098, 11, "2016-02-02", "wedding", "athletic", 10, 35.0),
        r(987654321, 22, "2016-02-14", "party", "hourglass", 8, 30.0, cat="gown"),
        r(543210987, 33, "2016-03-01", "work", None, 6, 116.0, rating=6.0, fit="large", cat="sheath"),
    ]


RAW_RTR_USERS = [987654321, 876543210, 765432109, 654321098, 543210987]


def write_rtr(path: Path, rows: list[dict] | None = None) -> Path:
    rows = rows or rtr_rows()
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


RAW_HM_CUSTOMERS = ["c0ffee" + "a" * 58, "beef" + "b" * 60, "f00d" + "c" * 60]


def write_hm(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({
        "t_dat": ["2019-01-02", "2019-05-03", "2020-07-01"],
        "customer_id": RAW_HM_CUSTOMERS, "article_id": [101, 102, 101],
        "price": [0.02, 0.03, 0.02]}), folder / "transactions_sample.parquet")
    pq.write_table(pa.table({
        "customer_id": RAW_HM_CUSTOMERS, "FN": [1.0, None, None], "Active": [1.0, None, None],
        "club_member_status": ["ACTIVE", "ACTIVE", None], "fashion_news_frequency": ["NONE", "Regularly", None],
        "age": [25, 41, None], "postal_code": ["p" * 64, "q" * 64, "r" * 64]}),
        folder / "customers_sample.parquet")
    arts = {"article_id": [101, 102, 103], "product_code": [1, 1, 2],
            "prod_name": ["a", "b", "c"]}
    for c in ("product_type_name", "product_group_name", "graphical_appearance_name",
              "colour_group_name", "perceived_colour_master_name", "department_name",
              "index_name", "index_group_name", "section_name", "garment_group_name"):
        arts[c] = ["x", "y", "x"]
    pq.write_table(pa.table(arts), folder / "articles_sample.parquet")
    return folder
