"""Catalog ingest and validation on small generated catalogs: every error kind, threshold, diff."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from catalog_fixtures import good_rows, jpeg, truncated_jpeg_bytes, write_myntra
from mmrec.catalog.config import IngestConfig
from mmrec.catalog.ingest import TooManyErrors, ingest_catalog, load_items, read_and_validate
from mmrec.errors import InputError


def cfg(**kw) -> IngestConfig:
    return IngestConfig(**{"max_error_rate": 1.0, **kw})


def kinds(report) -> dict:
    return report.as_dict()["error_counts"]


def test_good_catalog_ingests_with_slots_and_title_attributes(tmp_path, store):
    src = write_myntra(tmp_path / "m", good_rows(6))
    res = ingest_catalog(src, cfg(), store, progress=False)
    assert res.report.items_out == 6 and res.report.errors == []
    t = load_items(store)
    rows = {r["item_id"]: r for r in t.to_pylist()}
    assert rows["100"]["slot"] == "top" and rows["101"]["slot"] == "bottom"
    assert rows["102"]["slot"] == "shoes" and rows["103"]["slot"] == "bag"
    assert rows["105"]["slot"] == "one-piece"
    assert rows["100"]["pattern"] == "solid" and dict(rows["100"]["attributes"])["pattern"]["source"] == "title"
    assert rows["102"]["material"] == "leather"
    assert rows["101"]["fit"] == "slim"
    assert dict(rows["100"]["attributes"])["colour"]["source"] == "catalog"
    assert rows["100"]["brand"] == "Puma"
    assert rows["100"]["image_sha256"] and rows["100"]["image_width"] == 60
    report = json.loads(res.artifact.file("report.json").read_text())
    assert {"rows_in", "items_out", "error_counts", "errors"} <= set(report)


def test_every_error_kind_is_reported_with_row_and_field(tmp_path):
    rows = good_rows(12)
    rows[0]["id"] = ""                            # missing_id (row 1)
    rows[2]["id"] = rows[1]["id"]                 # duplicate_id (row 3)
    rows[3]["productDisplayName"] = " "           # empty_title
    rows[4]["articleType"] = ""                   # missing_category
    rows[5]["articleType"] = "Spaceships"         # unknown_category
    rows[6]["year"] = "20x1"                      # bad_year (not an int)
    rows[7]["year"] = "1850"                      # bad_year (out of range)
    rows[8]["baseColour"] = "Ultraviolet"         # warning only: colour dropped
    src = write_myntra(tmp_path / "m", rows)
    (src / "images" / f"{rows[9]['id']}.jpg").unlink()                          # missing_image
    (src / "images" / f"{rows[10]['id']}.jpg").write_bytes(truncated_jpeg_bytes())  # unreadable
    jpeg(src / "images" / f"{rows[11]['id']}.jpg", size=(20, 20))             # too_small_image
    with open(src / "styles.csv", "a") as f:
        f.write("999,Men,Apparel,Topwear,Tshirts,Black,Summer,2011,Casual,Title, with comma,60,80\n")
    items, report = read_and_validate(src, cfg(), progress=False)
    d = report.as_dict()
    assert d["rows_in"] == 13
    assert kinds(report) == {"bad_year": 2, "duplicate_id": 1, "empty_title": 1,
                             "malformed_row": 1, "missing_category": 1, "missing_id": 1,
                             "missing_image": 1, "too_small_image": 1, "unknown_category": 1,
                             "unreadable_image": 1}
    by_kind = {e["kind"]: e for e in d["errors"]}
    assert by_kind["missing_id"]["row"] == 1 and by_kind["missing_id"]["field"] == "item_id"
    assert by_kind["duplicate_id"]["row"] == 3 and by_kind["duplicate_id"]["item_id"] == rows[1]["id"]
    assert "Spaceships" in by_kind["unknown_category"]["message"]
    assert by_kind["unreadable_image"]["field"] == "image" and "truncated" in by_kind["unreadable_image"]["message"]
    assert by_kind["malformed_row"]["row"] == 13
    assert d["warning_counts"] == {"unknown_value": 1}
    kept = {it["item_id"]: it for it in items}
    assert set(kept) == {rows[1]["id"], rows[8]["id"]}
    assert kept[rows[8]["id"]]["colour"] is None      # unknown colour: null, not a guess


def test_price_and_stock_errors_in_generic_csv(tmp_path):
    jpeg(tmp_path / "img" / "a.jpg")
    (tmp_path / "cat.csv").write_text(
        "sku,name,type,cost,stock,photo\n"
        "A1,Blue Denim Jeans,Jeans,39.9,yes,img/a.jpg\n"
        "A2,Black Tee,Tshirts,-3,true,img/a.jpg\n"
        "A3,Red Dress,Dresses,abc,true,img/a.jpg\n"
        "A4,White Shirt,Shirts,10,maybe,img/a.jpg\n")
    c = cfg(format="generic", generic={"columns": {"item_id": "sku", "title": "name", "category": "type",
                                                    "price": "cost", "in_stock": "stock", "image": "photo"}})
    items, report = read_and_validate(tmp_path / "cat.csv", c, progress=False)
    assert kinds(report) == {"bad_price": 2, "bad_in_stock": 1}
    assert [(i["item_id"], i["price"], i["in_stock"], i["material"]) for i in items] == [("A1", 39.9, True, "denim")]


def test_generic_requires_mapped_columns(tmp_path):
    (tmp_path / "cat.csv").write_text("sku,name\nA1,Jeans\n")
    with pytest.raises(InputError, match=r"required column\(s\) \['item_id'"):
        read_and_validate(tmp_path / "cat.csv", cfg(format="generic"), progress=False)
    with pytest.raises(ValueError, match="unknown contract field"):
        cfg(format="generic", generic={"columns": {"sku_id": "sku"}})


def test_error_threshold_refuses_and_writes_nothing(tmp_path, store):
    rows = good_rows(10)
    for r in rows[:3]:
        r["articleType"] = "Spaceships"
    src = write_myntra(tmp_path / "m", rows)
    with pytest.raises(TooManyErrors, match=r"3 of 10 rows .*30.0% > max_error_rate 20.0%"):
        ingest_catalog(src, cfg(max_error_rate=0.2), store, progress=False)
    assert store.versions("items") == [] and store.current_version("items") is None
    res = ingest_catalog(src, cfg(max_error_rate=0.3), store, progress=False)
    assert res.report.items_out == 7


def test_reingest_creates_new_version_with_diff_and_keeps_old(tmp_path, store):
    rows = good_rows(6)
    src = write_myntra(tmp_path / "m", rows)
    first = ingest_catalog(src, cfg(), store, progress=False).artifact
    assert json.loads(first.file("diff.json").read_text())["added"] == sorted(r["id"] for r in rows)

    again = ingest_catalog(src, cfg(), store, progress=False)
    assert again.unchanged and again.artifact is None and store.versions("items") == [first.version]

    rows2 = [r for r in rows if r["id"] != "100"]          # removed 100
    rows2[0] = {**rows2[0], "baseColour": "Green"}        # changed 101
    rows2.append(good_rows(1, start=200)[0])              # added 200
    src2 = write_myntra(tmp_path / "m2", rows2)
    second = ingest_catalog(src2, cfg(), store, progress=False).artifact
    diff = json.loads(second.file("diff.json").read_text())
    assert diff == {"previous_version": first.version, "added": ["200"], "removed": ["100"], "changed": ["101"]}
    assert store.current_version("items") == second.version
    old = {r["item_id"]: r for r in load_items(store, first.version).to_pylist()}
    new = {r["item_id"]: r for r in load_items(store).to_pylist()}
    assert "100" in old and old["101"]["colour"] == "blue"   # the old version is intact
    assert new["102"]["updated_at"] == old["102"]["updated_at"]   # unchanged keeps its timestamp
    assert new["101"]["updated_at"] > old["101"]["updated_at"]


def test_hm_adapter(tmp_path, store):
    root = tmp_path / "hm"
    (root / "images").mkdir(parents=True)
    cols = {
        "article_id": [108775015, 108775044, 999], "prod_name": ["Strap top", "Denim trousers", "Mystery"],
        "product_type_name": ["Vest top", "Trousers", "Spaceship"],
        "graphical_appearance_name": ["Solid", "Stripe", "Solid"],
        "colour_group_name": ["Black", "Dark Blue", "White"],
        "index_group_name": ["Ladieswear", "Menswear", "Baby/Children"],
        "index_name": ["Ladieswear", "Menswear", "Children Sizes 92-140"],
        "section_name": ["Womens Basics", "Men Trousers", "Kids Boy"],
        "detail_desc": ["Top in jersey.", "Trousers in denim.", ""],
    }
    pq.write_table(pa.table(cols), root / "articles_sample.parquet")
    jpeg(root / "images" / "0108775015.jpg")
    res = ingest_catalog(root, cfg(format="hm"), store, progress=False)
    d = res.report.as_dict()
    assert d["error_counts"] == {"unknown_category": 1}
    assert d["warning_counts"]["missing_image"] == 2      # images are sampled for H&M: a warning
    rows = {r["item_id"]: r for r in load_items(store).to_pylist()}
    assert rows["0108775015"]["gender"] == "women" and rows["0108775015"]["image_sha256"]
    assert rows["0108775044"]["pattern"] == "striped" and rows["0108775044"]["gender"] == "men"
    assert rows["0108775044"]["image_uri"] is None


def test_bomb_image_is_an_unreadable_row_not_a_crash(tmp_path):
    rows = good_rows(2)
    src = write_myntra(tmp_path / "m", rows)
    Image.new("1", (12000, 12000)).save(src / "images" / f"{rows[0]['id']}.jpg", "PNG")
    items, report = read_and_validate(src, cfg(), progress=False)
    assert kinds(report) == {"unreadable_image": 1}
    assert "pixels" in report.errors[0].message


@pytest.mark.data
def test_real_myntra_and_hm_catalogs_ingest(shared_data, store):
    res = ingest_catalog(shared_data / "myntra", cfg(max_error_rate=0.05), store, progress=False)
    t = load_items(store)
    assert res.report.rows_in == t.num_rows + res.report.rows_with_errors
    assert t.num_rows > 11_000
    assert sum(1 for p in t.column("pattern").to_pylist() if p) >= 2500
    assert set(t.column("slot").to_pylist()) <= {"top", "bottom", "one-piece", "outerwear", "shoes",
                                                  "bag", "accessory", "other"}
    assert all(t.column("image_sha256").to_pylist())
    hm = ingest_catalog(shared_data / "hm_sample" / "data" / "sample", cfg(format="hm", max_error_rate=0.05),
                        type(store)(store.root / "hm"), progress=False)
    assert hm.report.items_out >= 990
