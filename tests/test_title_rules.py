"""Title rules: brand split, attribute matching, spans, category gating, real-data coverage."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import pytest

from mmrec.errors import InputError
from mmrec.taxonomy import Taxonomy, default_taxonomy
from mmrec.title_rules import (TITLE_FIELDS, TitleAttribute, extract_title_attributes, title_category,
                               title_coverage)

MYNTRA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "myntra" / "styles.csv"


@pytest.fixture(scope="module")
def tax() -> Taxonomy:
    return default_taxonomy()


def _values(found: dict[str, TitleAttribute]) -> dict[str, str]:
    return {f: a.value for f, a in found.items()}


@pytest.mark.parametrize(
    ("title", "category", "expected"),
    [
        ("Puma Men Solid Black T-shirt", "tshirts", {"brand": "Puma", "pattern": "solid"}),
        ("Flying Machine Men Slim Fit Striped Shirt", "shirts",
         {"brand": "Flying Machine", "fit": "slim", "pattern": "striped"}),
        ("Lino Perros Women Leather Brown Handbag", "handbags", {"brand": "Lino Perros", "material": "leather"}),
        ("Nike Men Full Sleeve Round Neck Sweatshirt", "sweatshirts",
         {"brand": "Nike", "sleeve": "long sleeve", "neckline": "round neck"}),
        ("Catwalk Women Faux Leather Black Flats", "flats", {"brand": "Catwalk", "material": "faux leather"}),
        ("Spice Art Women Leatherette Black Handbags", "handbags", {"brand": "Spice Art", "material": "faux leather"}),
        ("Wrangler Women Polka Dot Blue Shirt", "shirts", {"brand": "Wrangler", "pattern": "polka dot"}),
        ("ADIDAS Mens Crew Red T-shirt", "tshirts", {"brand": "ADIDAS", "neckline": "round neck"}),
        ("UCB Women's V-Neck Black Printed T-shirt", "tshirts",
         {"brand": "UCB", "neckline": "v-neck", "pattern": "printed"}),
        ("Myntra Men's Sadhu 1/2 Sleeve Black T-shirt", "tshirts", {"brand": "Myntra", "sleeve": "short sleeve"}),
        ("Hanes Men Half Sleeve Crew Pack of 3 Innerwear T-shirts", "innerwear vests",
         {"brand": "Hanes", "sleeve": "short sleeve", "neckline": "round neck"}),
        ("Indigo Nation Men Checks Green Shirts", "shirts", {"brand": "Indigo Nation", "pattern": "checked"}),
        ("Vishudh Women Flower Print Navy Blue Kurtis", "kurtis", {"brand": "Vishudh", "pattern": "floral"}),
        ("Disney Kids Girl's Yellow Polo Tshirt", "tshirts", {"brand": "Disney", "neckline": "polo collar"}),
        ("Arrow Woman Printed Tan Skirt", "skirts", {"brand": "Arrow", "pattern": "printed"}),
        # brand rules
        ("U.S. Polo Assn. Men Blue Checked Shirt", "shirts", {"brand": "U.S. Polo Assn.", "pattern": "checked"}),
        ("U.S. Polo Assn. Tan Belt", "belts", {}),  # no gender word: no brand, and still no polo collar
        ("ADIDAS Silver Astar ride 3M Sports Shoe", "sports shoes", {}),
        ("Men Solid Black T-shirt", "tshirts", {"pattern": "solid"}),
        ("Turtle Check Men Red Shirt", "shirts", {"brand": "Turtle", "pattern": "checked"}),
        ("Wrangler Leather Men Black Belts", "belts", {"brand": "Wrangler", "material": "leather"}),
        ("Classic Polo Men's White Stripes T-shirt", "tshirts", {"brand": "Classic Polo", "pattern": "striped"}),
        ("Mr. Men Men Be Happy Green Tshirts", "tshirts", {"brand": "Mr. Men"}),
        ("Jockey Lace Stretch Skin Boy Leg Brief", "briefs", {"material": "lace"}),
        # masked phrases and category gating
        ("Rockport Men SC Blucher Lace up Brown Casual Shoes", "casual shoes", {"brand": "Rockport"}),
        ("Catwalk Women Gun Metal Grey Heels", "heels", {"brand": "Catwalk"}),
        ("Puma Men Slim Pedal Rose Gold Black Watches", "watches", {"brand": "Puma"}),
        ("Inkfruit Men Havy Metal Brown Tshirts", "tshirts", {"brand": "Inkfruit"}),
        ("Levis Men Fader Stripes Flat Knit Crew Pack of 3 Socks", "socks",
         {"brand": "Levis", "pattern": "striped", "material": "knit"}),
        ("Jockey White Solid Non-Wired Non-Padded Bra SS 12", "bra", {"pattern": "solid"}),  # not "brass"
        ("Hanes Men Half Contrast Piping Ringer T-shirts", "tshirts", {"brand": "Hanes"}),
        ("Nike Men Utd White Jersey", "tshirts", {"brand": "Nike"}),  # a jersey is a shirt here
    ],
)  # fmt: skip
def test_known_titles(tax, title, category, expected):
    found = extract_title_attributes(title, tax, category=category)
    assert _values(found) == expected
    for field, attr in found.items():
        assert attr.field == field
        a, b = attr.span
        assert 0 <= a < b <= len(title)
        if field == "brand":
            assert title[a:b] == attr.value
        else:  # the span holds the words that gave the value
            assert tax.canonical(field, title[a:b]) == attr.value


def test_spans_point_at_the_matched_text(tax):
    title = "Flying Machine Men Slim Fit Striped Full Sleeve Shirt"
    found = extract_title_attributes(title, tax)
    spans = {f: title[a.span[0] : a.span[1]] for f, a in found.items()}
    assert spans == {"brand": "Flying Machine", "fit": "Slim Fit", "pattern": "Striped", "sleeve": "Full Sleeve"}
    assert found["brand"].span == (0, len("Flying Machine"))


def test_longest_match_wins_at_one_position(tax):
    found = extract_title_attributes("Acme Women Polka Dots Faux Leather Slim Fit Bag", tax)
    assert found["pattern"] == TitleAttribute("pattern", "polka dot", (11, 21))
    assert found["material"].value == "faux leather" and found["fit"].value == "slim"


def test_leftmost_match_wins_per_field(tax):
    found = extract_title_attributes("Acme Men Solid Shirt With Printed Pocket", tax)
    assert found["pattern"].value == "solid"


def test_without_category_no_gating(tax):
    found = extract_title_attributes("Puma Men Slim Pedal Rose Gold Black Watches", tax)
    assert found["fit"].value == "slim"  # the catalog category is what tells a watch from trousers


def test_gender_argument_picks_the_gender_word_that_ends_the_brand(tax):
    title = "Woman Within Men Blue Shirt"
    assert "brand" not in extract_title_attributes(title, tax)
    assert extract_title_attributes(title, tax, gender="Men")["brand"].value == "Woman Within"
    kids = "Reebok Kids Kkr Boy's Blue Jerseys"
    assert extract_title_attributes(kids, tax, gender="boys")["brand"].value == "Reebok"


def test_colour_and_category_are_not_extracted(tax):
    found = extract_title_attributes("Nike Men Navy Blue Tshirts", tax)
    assert set(found) == {"brand"}


@pytest.mark.parametrize("title", ["", "   ", None])
def test_empty_title(tax, title):
    assert extract_title_attributes(title, tax) == {}


def test_title_coverage_counts(tax):
    titles = ["Puma Men Solid Black T-shirt", "Nike Men Solid Tshirts", "Lee Men Striped Shirt", "Gift card"]
    cov = title_coverage(titles, tax)
    assert set(cov) == {"brand", *TITLE_FIELDS}
    assert cov["pattern"] == {"items": 3, "fraction": 0.75, "top_values": {"solid": 2, "striped": 1}}
    assert cov["brand"]["items"] == 3 and cov["material"]["items"] == 0
    with pytest.raises(InputError, match="one per title"):
        title_coverage(titles, tax, categories=["tshirts"])


def test_rules_follow_the_taxonomy_they_are_given(tmp_path, tax):
    import yaml

    from mmrec.taxonomy import DEFAULT_PATH

    data = yaml.safe_load(DEFAULT_PATH.read_text())
    data["fields"]["pattern"]["values"]["striped"]["synonyms"].append("zigzag stripe")
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(data))
    custom = Taxonomy.load(path)
    title = "Acme Men Zigzag Stripe Shirt"
    assert extract_title_attributes(title, custom)["pattern"].span == (9, 22)
    assert extract_title_attributes(title, tax)["pattern"].span == (16, 22)  # plain "stripe"


@pytest.mark.data
@pytest.mark.skipif(not MYNTRA.is_file(), reason=f"needs {MYNTRA}")
def test_myntra_title_coverage_and_speed(tax):
    with MYNTRA.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    titles = [r["productDisplayName"] for r in rows]
    extract_title_attributes("warm up", tax)
    start = time.perf_counter()
    cov = title_coverage(titles, tax, categories=[r["articleType"] for r in rows])
    elapsed = time.perf_counter() - start
    assert cov["pattern"]["items"] >= 2500, cov["pattern"]
    assert cov["brand"]["fraction"] > 0.9
    assert {"solid", "printed", "striped", "checked"} <= set(cov["pattern"]["top_values"])
    assert elapsed < 2.0, f"{len(titles)} titles took {elapsed:.2f} s"


@pytest.mark.parametrize("title, kind, words", [
    ("Puma Women Speeder Black Sports Shoes", "sports shoes", "Sports Shoes"),  # longest run ending last
    ("Timex Women Navy Dial Watch M303", "watches", "Watch"),   # singular, a model number after it
    ("Puma Men Black Cap", "caps", "Cap"),
    ("Vero Moda Women Red Cape", "capes", "Cape"),              # not "cap" from "capes"
    ("Flying Machine Men Slim Fit Striped Shirt", "shirts", "Shirt"),
    ("Nike Men Running", None, None),                           # names no type: the photo decides
    ("", None, None),
])
def test_title_category_reads_the_product_type_a_title_ends_with(tax, title, kind, words):
    got = title_category(title, tax)
    assert (got.value if got else None) == kind
    assert (title[got.span[0]:got.span[1]] if got else None) == words
