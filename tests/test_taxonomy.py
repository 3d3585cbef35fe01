"""Taxonomy: loading and validation, forgiving lookup, slots, colours, real-data coverage."""

from __future__ import annotations

import copy
import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mmrec.errors import ConfigError, InputError
from mmrec.taxonomy import (
    COLOUR_FAMILIES,
    DEFAULT_PATH,
    FIELDS,
    SLOTS,
    TONES,
    Taxonomy,
    default_taxonomy,
    normalize,
    zh_key,
)

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
MYNTRA = DATA / "myntra" / "styles.csv"
HM_ARTICLES = DATA / "hm_sample" / "data" / "sample" / "articles_sample.parquet"
RTR = DATA / "rtr" / "interactions.parquet"
FASHIONPEDIA = DATA / "taxonomies" / "fashionpedia_imat2020" / "label_descriptions.json"


@pytest.fixture(scope="module")
def tax() -> Taxonomy:
    return default_taxonomy()


# ------------------------------------------------------------------------------ loading


def test_default_taxonomy_loads_every_field_and_is_cached(tax):
    assert tax.fields == FIELDS
    assert default_taxonomy() is tax
    assert tax.values("slot") == list(SLOTS)
    assert len(tax.values("category")) >= 118 and len(tax.values("colour")) == 46
    for field in FIELDS:
        vals = tax.values(field)
        assert vals and len(vals) == len(set(vals))
        assert all(v == v.lower().strip() for v in vals)


def test_describe_lists_values_and_counts(tax):
    d = tax.describe()
    assert tuple(d) == FIELDS
    assert d["usage"]["values"] == ["casual", "sports", "formal", "ethnic", "smart casual", "party", "travel"]
    assert all(entry["n"] == len(entry["values"]) and entry["description"] for entry in d.values())


def test_importing_taxonomy_and_title_rules_does_not_import_torch():
    code = "import sys, mmrec.taxonomy, mmrec.title_rules; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0


# ------------------------------------------------------------------------------ lookup


@pytest.mark.parametrize(
    ("field", "raw", "expected"),
    [
        ("category", "Tshirts", "tshirts"),
        ("category", "T-Shirt", "tshirts"),
        ("category", "t shirt", "tshirts"),
        ("category", "TSHIRT", "tshirts"),
        ("category", "tee", "tshirts"),
        ("category", "Casual_Shoes", "casual shoes"),
        ("category", "  casual   SHOES ", "casual shoes"),
        ("category", "Sneakers", "casual shoes"),
        ("category", "Leggings/Tights", "leggings"),
        ("category", "Jumpsuit/Playsuit", "jumpsuit"),
        ("category", "clutch", "clutches"),
        ("category", "Hoodie", "sweatshirts"),
        ("category", "gown", "gowns"),
        ("category", "Face Wash and Cleanser", "face wash and cleanser"),
        ("category", "Face Wash & Cleanser", "face wash and cleanser"),
        ("colour", "Navy", "navy blue"),
        ("colour", "gray", "grey"),
        ("colour", "Off-White", "off white"),
        ("colour", "Dark Blue", "navy blue"),
        ("colour", "wine", "maroon"),
        ("colour", "Bronze/Copper", "bronze"),
        ("gender", "Men's", "men"),
        ("gender", "Ladieswear", "women"),
        ("gender", "FEMALE", "women"),
        ("pattern", "Stripes", "striped"),
        ("pattern", "Plaid", "checked"),
        ("pattern", "polka-dots", "polka dot"),
        ("pattern", "All over pattern", "printed"),
        ("material", "PU", "faux leather"),
        ("material", "Genuine Leather", "leather"),
        ("material", "woollen", "wool"),
        ("fit", "Slim Fit", "slim"),
        ("sleeve", "Full Sleeves", "long sleeve"),
        ("sleeve", "half-sleeve", "short sleeve"),
        ("sleeve", "3/4th Sleeve", "three-quarter sleeve"),
        ("neckline", "V Neck", "v-neck"),
        ("neckline", "vneck", "v-neck"),
        ("neckline", "Crew Neck", "round neck"),
        ("neckline", "Hoodie", "hooded"),
        ("season", "Autumn", "fall"),
        ("usage", "Sportswear", "sports"),
        ("usage", "Smart Casual", "smart casual"),
        ("slot", "Footwear", "shoes"),
        ("slot", "one piece", "one-piece"),
    ],
)
def test_canonical_matches_values_and_synonyms_ignoring_case_spacing_and_punctuation(tax, field, raw, expected):
    assert tax.canonical(field, raw) == expected


@pytest.mark.parametrize(
    ("field", "raw"),
    [("category", "spaceship"), ("colour", ""), ("colour", "   "), ("colour", None),
     ("colour", float("nan")), ("gender", "kids"), ("pattern", "-"), ("material", "unobtainium")],
)  # fmt: skip
def test_canonical_returns_none_for_empty_or_unknown(tax, field, raw):
    assert tax.canonical(field, raw) is None


def test_unknown_field_and_non_string_label_are_input_errors(tax):
    with pytest.raises(InputError, match="unknown taxonomy field 'color'.*colour"):
        tax.canonical("color", "red")
    with pytest.raises(InputError, match="must be a string"):
        tax.canonical("colour", 3)


def test_is_valid_accepts_canonical_values_only(tax):
    assert tax.is_valid("colour", "navy blue")
    assert not tax.is_valid("colour", "navy")  # a synonym, not the canonical value
    assert not tax.is_valid("colour", None)


def test_normalize():
    assert normalize("  Men's  T-Shirt/Top_X ") == "mens t shirt top x"
    assert normalize("U.S. Polo") == "us polo"
    assert normalize("Perfume & Body Mist") == "perfume and body mist"


@pytest.mark.parametrize(
    ("category", "slot"),
    [
        ("tshirts", "top"), ("Kurtas", "top"), ("sweaters", "top"), ("sweatshirts", "top"),
        ("jeans", "bottom"), ("Track Pants", "bottom"), ("leggings", "bottom"), ("salwar", "bottom"),
        ("dresses", "one-piece"), ("sarees", "one-piece"), ("jumpsuit", "one-piece"),
        ("swimwear", "one-piece"), ("night suits", "one-piece"),
        ("jackets", "outerwear"), ("blazer", "outerwear"), ("coat", "outerwear"), ("waistcoat", "outerwear"),
        ("heels", "shoes"), ("sneakers", "shoes"), ("flip flops", "shoes"), ("boots", "shoes"),
        ("handbags", "bag"), ("backpacks", "bag"), ("laptop bag", "bag"),
        ("wallets", "accessory"), ("watches", "accessory"), ("belts", "accessory"), ("scarves", "accessory"),
        ("socks", "other"), ("bra", "other"), ("briefs", "other"), ("lipstick", "other"), ("umbrellas", "other"),
        ("spaceship", "other"), (None, "other"),
    ],
)  # fmt: skip
def test_slot_of(tax, category, slot):
    assert tax.slot_of(category) == slot


def test_every_slot_has_categories(tax):
    used = {tax.slot_of(c) for c in tax.values("category")}
    assert used == set(SLOTS)


def test_colour_family_tone_and_neutral(tax):
    assert tax.colour_family("navy blue") == "navy"
    assert tax.colour_family("Dark Blue") == "navy"
    assert tax.colour_family("maroon") == "red"
    assert tax.colour_family("cream") == "beige"
    assert tax.colour_family("silver") == "metallic"
    assert tax.colour_family("multi") == "multi"
    assert tax.colour_family("spaceship grey") is None
    assert tax.colour_tone("black") == "dark" and tax.colour_tone("white") == "light"
    assert tax.colour_tone("nope") is None
    assert tax.is_neutral("black") and tax.is_neutral("Navy") and not tax.is_neutral("red")
    assert not tax.is_neutral("nope")
    families = {tax.colour_family(c) for c in tax.values("colour")}
    assert families == set(COLOUR_FAMILIES)
    assert {tax.colour_tone(c) for c in tax.values("colour")} == set(TONES)


def test_fashionpedia_names(tax):
    assert tax.fashionpedia("pattern", "striped") == "stripe"
    assert tax.fashionpedia("pattern", "Polka Dots") == "dot"
    assert tax.fashionpedia("neckline", "v-neck") == "v-neck"
    assert tax.fashionpedia("category", "watches") == "watch"
    assert tax.fashionpedia("category", "sarees") is None
    assert tax.fashionpedia("category", "spaceship") is None


# ------------------------------------------------------------------------------ validation


def _minimal() -> dict:
    one = {f: {"description": f, "values": {"x": {}}} for f in FIELDS}
    one["slot"]["values"] = {s: {} for s in SLOTS}
    one["category"]["values"] = {"tshirts": {"slot": "top", "synonyms": ["tee"]}}
    one["colour"]["values"] = {"red": {"family": "red", "tone": "mid", "neutral": False}}
    one["pattern"]["values"] = {"solid": {"synonyms": ["plain"]}, "printed": {"synonyms": ["print"]}}
    return {"version": 1, "fields": one}


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "taxonomy.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_minimal_yaml_loads(tmp_path):
    tax = Taxonomy.load(_write(tmp_path, _minimal()))
    assert tax.canonical("category", "Tee") == "tshirts" and tax.slot_of("tshirts") == "top"


def _broken(mutate) -> dict:
    data = copy.deepcopy(_minimal())
    mutate(data["fields"])
    return data


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda f: f["pattern"]["values"]["printed"]["synonyms"].append("plain"),
         r"'pattern'.*'plain'.*'printed'.*already names 'solid'"),
        (lambda f: f["pattern"]["values"]["printed"]["synonyms"].append(" SOLID "), r"' SOLID '.*already names 'solid'"),
        (lambda f: f["pattern"]["values"]["printed"]["synonyms"].append("sol id"), r"'sol id'.*matches 'solid'"),
        (lambda f: f["category"]["values"]["tshirts"].update(slot="torso"), r"'tshirts'.*slot 'torso'.*one-piece"),
        (lambda f: f["category"]["values"]["tshirts"].pop("slot"), r"'tshirts'.*missing required keys \['slot'\]"),
        (lambda f: f["category"]["values"]["tshirts"].update(slott="top"), r"'tshirts'.*unknown keys \['slott'\]"),
        (lambda f: f["colour"]["values"]["red"].update(family="crimson"), r"'red'.*family 'crimson'"),
        (lambda f: f["colour"]["values"]["red"].update(tone="bright"), r"'red'.*tone 'bright'"),
        (lambda f: f["colour"]["values"]["red"].update(neutral="no"), r"'red'.*neutral must be true or false"),
        (lambda f: f["fit"]["values"].update({"Slim": {}}), r"'fit', value 'Slim'.*lowercase.*'slim'"),
        (lambda f: f["fit"]["values"].update({"slim": {"synonyms": "slim fit"}}), r"'slim'.*list of strings"),
        (lambda f: f["slot"]["values"].pop("bag"), r"'slot' must have exactly"),
        (lambda f: f.pop("usage"), r"missing: \['usage'\]"),
        (lambda f: f.update(occasion=f["usage"]), r"unknown: \['occasion'\]"),
        (lambda f: f["season"].update(values={}), r"'season' needs a non-empty 'values'"),
    ],
)  # fmt: skip
def test_invalid_yaml_raises_config_error_naming_the_problem(tmp_path, mutate, message):
    with pytest.raises(ConfigError, match=message):
        Taxonomy.load(_write(tmp_path, _broken(mutate)))


def test_duplicate_value_key_in_yaml_is_refused(tmp_path):
    text = _write(tmp_path, _minimal()).read_text()
    twice = "      solid:\n        synonyms: [plain]\n      solid:\n"  # PyYAML alone keeps the last
    path = tmp_path / "dup.yaml"
    path.write_text(text.replace("      solid:\n", twice, 1))
    with pytest.raises(ConfigError, match="duplicate key 'solid'"):
        Taxonomy.load(path)


def test_missing_or_unparsable_file_is_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read taxonomy file"):
        Taxonomy.load(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("fields: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        Taxonomy.load(bad)
    bad.write_text("- just a list\n")
    with pytest.raises(ConfigError, match="'fields' mapping"):
        Taxonomy.load(bad)


def test_packaged_yaml_is_the_default_path():
    assert DEFAULT_PATH.is_file() and DEFAULT_PATH.parent.name == "data"


# ------------------------------------------------------------------------------ real data

data = pytest.mark.data


@data
@pytest.mark.skipif(not MYNTRA.is_file(), reason=f"needs {MYNTRA}")
def test_every_myntra_label_canonicalises(tax):
    with MYNTRA.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) > 10_000
    for column, field in [("articleType", "category"), ("baseColour", "colour"), ("gender", "gender"),
                          ("season", "season"), ("usage", "usage")]:  # fmt: skip
        labels = {r[column] for r in rows if r[column]}
        missing = sorted(lab for lab in labels if tax.canonical(field, lab) is None)
        assert not missing, f"{column} labels not in the taxonomy: {missing}"
        if column in ("articleType", "baseColour"):  # canonical values are these names lowercased
            assert all(tax.canonical(field, lab) == lab.lower() for lab in labels)


@data
@pytest.mark.skipif(not HM_ARTICLES.is_file() or not RTR.is_file(), reason="needs H&M and RTR samples")
def test_hm_and_rtr_labels_canonicalise_except_documented_ones(tax):
    pq = pytest.importorskip("pyarrow.parquet")
    articles = pq.read_table(HM_ARTICLES)
    unmapped = {  # deliberately unmapped: not a value of that field (see taxonomy.yaml header)
        ("product_type_name", "category"): {"Unknown"},
        ("colour_group_name", "colour"): {"Transparent", "Other"},
        ("perceived_colour_master_name", "colour"): {"Unknown", "undefined"},
        ("graphical_appearance_name", "pattern"): {"Denim", "Chambray", "Lace", "Treatment"},
    }
    for (column, field), allowed in unmapped.items():
        labels = set(articles.column(column).to_pylist())
        missing = {lab for lab in labels if tax.canonical(field, lab) is None}
        assert missing <= allowed, f"H&M {column}: unmapped {sorted(missing - allowed)}"
    rtr = set(pq.read_table(RTR, columns=["category"]).column("category").to_pylist())
    missing = {lab for lab in rtr if lab and tax.canonical("category", lab) is None}
    assert missing <= {"print", "for"}, f"RTR categories unmapped: {sorted(missing)}"


@data
@pytest.mark.skipif(not FASHIONPEDIA.is_file(), reason=f"needs {FASHIONPEDIA}")
def test_every_fashionpedia_name_exists(tax):
    labels = json.loads(FASHIONPEDIA.read_text(encoding="utf-8"))
    names = {c["name"] for c in labels["categories"]} | {a["name"] for a in labels["attributes"]}
    used = {(f, v): tax.fashionpedia(f, v) for f in FIELDS for v in tax.values(f)}
    unknown = {k: n for k, n in used.items() if n is not None and n not in names}
    assert not unknown, f"fashionpedia names not in label_descriptions.json: {unknown}"
    assert sum(n is not None for n in used.values()) > 80


# ------------------------------------------------------------------------------ Chinese (zh)

# Fields whose values a shopper can name in a query; each value needs a Chinese display name.
SHOPPER_FIELDS = ("category", "slot", "gender", "colour", "pattern", "material", "fit", "sleeve",
                  "neckline", "season", "usage")
# zh terms allowed to name two values of ONE field, with the reason. Empty today: every
# ambiguous shop word (背心, 外套, 包) was given to the value shoppers mean most often.
SAME_FIELD_ZH_ALLOWED: dict[str, str] = {}
# zh terms allowed to equal a term (zh or English) of ANOTHER field, with the reason. Empty
# today: where meanings overlap the terms differ in length (皮 leather inside 皮鞋 formal shoes,
# 运动 sports usage inside 运动鞋), and the parser reads the longest term first.
CROSS_FIELD_ZH_ALLOWED: dict[str, str] = {}


def _zh_raw() -> dict:
    return yaml.safe_load(DEFAULT_PATH.read_text(encoding="utf-8"))


def test_every_shopper_nameable_value_has_a_chinese_display_name(tax):
    missing = [(f, v) for f in SHOPPER_FIELDS for v in tax.values(f) if not tax.zh_name(f, v)]
    assert not missing, f"values without zh names: {missing}"
    assert tax.zh_name("category", "dresses") == "连衣裙"
    assert tax.zh_name("category", "dress") == "连衣裙"  # raw labels work like spec()
    assert tax.zh_name("colour", "navy") == "藏青色"
    assert tax.zh_name("category", "no such thing") is None
    cjk = re.compile(r"[\u4e00-\u9fff]")
    assert all(cjk.search(tax.zh_name(f, v)) for f in SHOPPER_FIELDS for v in tax.values(f))


@pytest.mark.parametrize(
    ("term", "expected"),
    [
        ("连衣裙", ("category", "dresses")), ("裙子", ("category", "dresses")),
        ("衬衫", ("category", "shirts")), ("衬衣", ("category", "shirts")),
        ("T恤", ("category", "tshirts")), ("ｔ恤", ("category", "tshirts")),  # full-width, lower case
        ("牛仔裤", ("category", "jeans")), ("高跟鞋", ("category", "heels")),
        ("藏青", ("colour", "navy blue")), ("藏蓝", ("colour", "navy blue")),
        ("海军蓝", ("colour", "navy blue")), ("碎花", ("pattern", "floral")),
        ("真丝", ("material", "silk")), ("女士", ("gender", "women")), ("男款", ("gender", "men")),
    ],
)
def test_zh_lookup_finds_shop_words(tax, term, expected):
    assert expected in tax.zh_lookup(term)
    assert expected in tax.zh_terms()[zh_key(term)]


def test_no_zh_term_names_two_values_of_one_field_unless_allowed(tax):
    clashes = {}
    for term, pairs in tax.zh_terms().items():
        fields = [f for f, _ in pairs]
        for f in set(fields):
            if fields.count(f) > 1 and term not in SAME_FIELD_ZH_ALLOWED:
                clashes[term] = [p for p in pairs if p[0] == f]
    assert not clashes, f"zh terms naming two values of a field: {clashes}"


def test_no_zh_term_equals_another_fields_term_unless_allowed(tax):
    owners: dict[str, set[str]] = {}
    for term, pairs in tax.zh_terms().items():
        owners.setdefault(term, set()).update(f for f, _ in pairs)
    english = {normalize(t).replace(" ", ""): f for f in FIELDS for t, _ in tax.terms(f)}
    clashes = {t: sorted(fs) for t, fs in owners.items() if len(fs) > 1 and t not in CROSS_FIELD_ZH_ALLOWED}
    clashes.update({t: sorted(fs | {english[t]}) for t, fs in owners.items()
                    if t in english and english[t] not in fs and t not in CROSS_FIELD_ZH_ALLOWED})
    assert not clashes, f"zh terms shared across fields: {clashes}"


def test_zh_terms_are_simplified_chinese(tax):
    opencc = pytest.importorskip("opencc")  # the `serve` extra
    t2s = opencc.OpenCC("t2s")
    traditional = {t for t in tax.zh_terms() if t2s.convert(t) != t}
    assert not traditional, f"zh terms written in Traditional characters: {sorted(traditional)}"


def test_zh_terms_leave_english_matching_exactly_as_it_was(tax):
    raw = _zh_raw()
    for body in raw["fields"].values():
        for entry in body["values"].values():
            if isinstance(entry, dict):
                entry.pop("zh", None)
    plain = Taxonomy.from_dict(raw)
    for field in FIELDS:
        assert tax.terms(field) == plain.terms(field)
        assert tax.values(field) == plain.values(field)
    assert tax.canonical("category", "连衣裙") is None and tax.canonical("colour", "红色") is None
    assert tax.spec("colour", "red").zh[0] == "红色" and plain.spec("colour", "red").zh == ()


@pytest.mark.parametrize(
    ("zh", "message"),
    [
        ("红色", "'zh' must be a list"),
        (["红色", ""], "non-empty strings, got ''"),
        (["红色", "  "], "non-empty strings, got '  '"),
        (["红色", 7], "non-empty strings, got 7"),
        (["红色", "红色"], "zh term '红色' is listed twice"),
    ],
)
def test_bad_zh_entries_are_refused_naming_field_value_and_entry(zh, message):
    raw = _zh_raw()
    raw["fields"]["colour"]["values"]["red"]["zh"] = zh
    with pytest.raises(ConfigError, match=re.escape(message)) as e:
        Taxonomy.from_dict(raw)
    assert "'colour'" in str(e.value) and "'red'" in str(e.value)
