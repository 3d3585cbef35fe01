"""Query parser: what a shopper typed (English, Chinese, Traditional, mixed) read into constraints.

Each case states what the shopper would expect the shop to have understood. Phrasings are our
own; benchmark/suites/queries/shopper_queries.yaml is the held-out yardstick and is not used here.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mmrec.errors import InputError
from mmrec.outfit.scenes import SceneBook
from mmrec.recommend.query_lexicon import OCCASIONS_ZH
from mmrec.recommend.query_parser import MAX_QUERY_CHARS, ParsedQuery, QueryParser, parse_query
from mmrec.recommend.zh_text import cn_number
from mmrec.taxonomy import default_taxonomy

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tax():
    return default_taxonomy()


@pytest.fixture(scope="module")
def book(tax):
    return SceneBook.load(taxonomy=tax)


@pytest.fixture(scope="module")
def parse(tax, book):
    return lambda text: parse_query(text, tax, book)


def _check(q: ParsedQuery, *, gender=None, wanted=None, excluded=None, price=None, scene=None,
           unknown=()):
    """The whole reading: nothing more and nothing less than what the shopper said."""
    assert q.gender == gender, q
    assert {k: set(v) for k, v in q.wanted.items()} == {k: set(v) for k, v in (wanted or {}).items()}, q
    assert {k: set(v) for k, v in q.excluded.items()} == {k: set(v) for k, v in (excluded or {}).items()}, q
    assert q.price_max == price, q
    assert q.scene == scene, q
    assert set(q.unknown_terms) == set(unknown), q


# ------------------------------------------------------------------------------ who it is for


@pytest.mark.parametrize(
    ("text", "gender", "wanted"),
    [
        ("summer dresses for women", "women", {"category": {"dresses"}, "season": {"summer"}}),
        ("women's kurta", "women", {"category": {"kurtas"}}),
        ("ladies sandals", "women", {"category": {"sandals"}}),
        ("a shirt for my husband", "men", {"category": {"shirts"}}),
        ("boyfriend jeans for her", "women", {"category": {"jeans"}, "fit": {"relaxed"}}),
        ("男士衬衫", "men", {"category": {"shirts"}}),
        ("女生的卫衣", "women", {"category": {"sweatshirts"}}),
        ("女式风衣", "women", {"category": {"coats"}}),
        ("给老婆买条围巾", "women", {"category": {"scarves"}}),
        ("男童运动鞋", "boys", {"category": {"sports shoes"}}),
    ],
)
def test_gender_is_read_from_words_and_from_who_the_outfit_is_for(parse, text, gender, wanted):
    _check(parse(text), gender=gender, wanted=wanted)


def test_two_genders_state_no_single_gender(parse):
    q = parse("t-shirts for men and women")
    assert q.gender is None and {t.value for t in q.terms if t.field == "gender"} == {"men", "women"}


# ------------------------------------------------------------------------------ what they want


@pytest.mark.parametrize(
    ("text", "wanted"),
    [
        ("navy chinos", {"colour": {"navy blue"}, "category": {"trousers"}}),
        ("a blazer", {"category": {"blazers"}}),
        ("white sneakers", {"colour": {"white"}, "category": {"casual shoes"}}),
        ("striped linen shirt", {"pattern": {"striped"}, "material": {"linen"}, "category": {"shirts"}}),
        ("knit dress", {"material": {"knit"}, "category": {"dresses"}}),  # knit before a noun is the fabric
        ("a knit", {"category": {"sweaters"}}),  # ...and alone the jumper
        ("polo neck sweater", {"neckline": {"polo collar"}, "category": {"sweaters"}}),
        ("sleeveless v-neck top", {"sleeve": {"sleeveless"}, "neckline": {"v-neck"}, "category": {"tops"}}),
        ("slim fit black jeans", {"fit": {"slim"}, "colour": {"black"}, "category": {"jeans"}}),
        ("藏青色西裤", {"colour": {"navy blue"}, "category": {"trousers"}}),
        ("海军蓝外套", {"colour": {"navy blue"}, "category": {"jackets"}}),
        ("藏蓝T恤", {"colour": {"navy blue"}, "category": {"tshirts"}}),
        ("白衬衫", {"colour": {"white"}, "category": {"shirts"}}),  # jieba keeps 白衬衫 whole
        ("黑白格子衬衣", {"colour": {"black", "white"}, "pattern": {"checked"}, "category": {"shirts"}}),
        ("碎花雪纺连衣裙", {"pattern": {"floral"}, "material": {"chiffon"}, "category": {"dresses"}}),
        ("真丝睡裙", {"material": {"silk"}, "category": {"nightdress"}}),
        ("酒红色高领毛衣", {"colour": {"maroon"}, "category": {"sweaters"}}),
        ("长袖修身牛仔衬衫", {"sleeve": {"long sleeve"}, "fit": {"slim"}, "material": {"denim"},
                         "category": {"shirts"}}),
        ("金色手拿包", {"colour": {"gold"}, "category": {"clutches"}}),
        ("小白鞋", {"category": {"casual shoes"}, "colour": {"white"}}),  # "little white shoes"
    ],
)
def test_categories_colours_patterns_and_materials(parse, text, wanted):
    _check(parse(text), wanted=wanted)


def test_a_length_word_before_a_category_is_not_a_second_category(parse):
    # "short" would otherwise read as shorts and "maxi" as a dress
    _check(parse("short dress"), wanted={"category": {"dresses"}}, unknown={"short"})
    _check(parse("maxi skirt"), wanted={"category": {"skirts"}}, unknown={"maxi"})


# ------------------------------------------------------------------------------ negation


@pytest.mark.parametrize(
    ("text", "wanted", "excluded"),
    [
        ("no heels", {}, {"category": {"heels"}}),
        ("不要高跟鞋", {}, {"category": {"heels"}}),
        ("别要黑色", {}, {"colour": {"black"}}),
        ("not black but navy", {"colour": {"navy blue"}}, {"colour": {"black"}}),
        ("a dress without any prints", {"category": {"dresses"}}, {"pattern": {"printed"}}),
        ("no heels or prints", {}, {"category": {"heels"}, "pattern": {"printed"}}),
        ("不要高跟鞋和黑色", {}, {"category": {"heels"}, "colour": {"black"}}),
        ("不要高跟鞋，要红色的", {"colour": {"red"}}, {"category": {"heels"}}),
        ("不想要黑色的高跟鞋", {"category": {"heels"}}, {"colour": {"black"}}),
        ("没有图案的纯色T恤", {"pattern": {"solid"}, "category": {"tshirts"}}, {"pattern": {"printed"}}),
        ("不要高跟鞋 红色连衣裙", {"colour": {"red"}, "category": {"dresses"}}, {"category": {"heels"}}),
        ("I don't want anything floral", {}, {"pattern": {"floral"}}),
    ],
)
def test_negations_exclude_what_follows_and_stop_where_the_phrase_ends(parse, text, wanted, excluded):
    _check(parse(text), wanted=wanted, excluded=excluded)


def test_a_negation_never_negates_who_the_outfit_is_for(parse):
    q = parse("without prints, for women")
    _check(q, gender="women", excluded={"pattern": {"printed"}})
    assert [t.negated for t in q.terms] == [True, False]


# ------------------------------------------------------------------------------ price


@pytest.mark.parametrize(
    ("text", "price"),
    [
        ("under 2000", 2000), ("below 1500", 1500), ("less than 3000", 3000), ("< 3000", 3000),
        ("up to rs 1,200", 1200), ("under ₹2,500", 2500), ("max 2k", 2000), ("under $49.99", 49.99),
        ("2000元以内", 2000), ("2000以下", 2000), ("不超过2000", 2000), ("预算两千", 2000),
        ("一千五以内", 1500), ("３０００块以内", 3000), ("不超过1.5万", 15000),
    ],
)
def test_price_ceilings_in_both_languages(parse, text, price):
    q = parse(text)
    _check(q, price=price)
    assert [t.field for t in q.terms] == ["price_max"]  # the number is neither an attribute nor unknown


def test_a_bare_number_is_no_ceiling_and_is_reported(parse):
    _check(parse("size 38 shirt"), wanted={"category": {"shirts"}}, unknown={"size", "38"})


@pytest.mark.parametrize(("text", "n"), [("三百", 300), ("两千", 2000), ("一千五", 1500), ("十", 10),
                                          ("1万", None), ("二三", None)])
def test_chinese_numerals(text, n):
    assert cn_number(text) == n


# ------------------------------------------------------------------------------ Traditional, mixed


@pytest.mark.parametrize(
    ("text", "gender", "wanted"),
    [
        ("紅色連衣裙", None, {"colour": {"red"}, "category": {"dresses"}}),
        ("黑色襯衫 男裝", "men", {"colour": {"black"}, "category": {"shirts"}}),
        ("藍色牛仔褲", None, {"colour": {"blue"}, "category": {"jeans"}}),
        ("红色 dress for women", "women", {"colour": {"red"}, "category": {"dresses"}}),
        ("女士 navy blazer", "women", {"colour": {"navy blue"}, "category": {"blazers"}}),
    ],
)
def test_traditional_and_mixed_text(parse, text, gender, wanted):
    _check(parse(text), gender=gender, wanted=wanted)


def test_traditional_negation_and_price_read_like_simplified(parse):
    assert parse("不要高跟鞋，兩千元以內").excluded == parse("不要高跟鞋，两千元以内").excluded
    assert parse("不要高跟鞋，兩千元以內").price_max == 2000


def test_a_negation_carries_across_scripts(parse):
    _check(parse("black 连衣裙 不要 heels"), wanted={"colour": {"black"}, "category": {"dresses"}},
           excluded={"category": {"heels"}})


@pytest.mark.parametrize("text", ["red dress", "红色连衣裙", "紅色連衣裙", "red 连衣裙"])
def test_paired_queries_read_alike(parse, text):
    assert {k: set(v) for k, v in parse(text).wanted.items()} == {"colour": {"red"}, "category": {"dresses"}}


# ------------------------------------------------------------------------------ occasions


@pytest.mark.parametrize(
    ("text", "scene"),
    [
        ("outfit for a wedding", "wedding_guest"), ("参加婚礼穿", "wedding_guest"),
        ("something for the office", "office"), ("上班穿的", "office"), ("办公室", "office"),
        ("海边度假", "beach_holiday"), ("beach holiday", "beach_holiday"),
        ("去健身房", "sports_gym"), ("约会穿什么", "date_night"),
    ],
)
def test_occasions_imply_a_scene(parse, text, scene):
    q = parse(text)
    assert q.scene == scene and not q.unknown_terms, q


def test_chinese_occasion_words_name_scenes_of_the_default_book(book):
    assert set(OCCASIONS_ZH) <= set(book.names())


def test_without_a_scene_book_occasions_are_unknown_not_claimed(tax):
    q = parse_query("婚礼 red dress", tax)
    assert q.scene is None and q.unknown_terms == ("婚礼",)


# ------------------------------------------------------------------------------ unknown words


def test_unknown_words_are_reported_and_never_claimed(parse):
    q = parse("qwerty dress with zigzag sparkles 红色火箭")
    _check(q, wanted={"category": {"dresses"}, "colour": {"red"}}, unknown={"qwerty", "zigzag", "sparkles", "火箭"})
    understood = {t.text for t in q.terms}
    assert not understood & set(q.unknown_terms)


def test_stop_words_are_neither_understood_nor_unknown(parse):
    for text in ("I want a nice shirt for the weekend please", "我想要一件好看的衬衫"):
        q = parse(text)
        assert q.wanted == {"category": ("shirts",)} and not q.unknown_terms, q


# ------------------------------------------------------------------------------ edges and shape


@pytest.mark.parametrize("text", ["", "   ", "\n\t ", None, "，。！"])
def test_empty_and_blank_queries_state_nothing(parse, text):
    q = parse(text)
    _check(q)
    assert q.terms == () and q.lang is None


def test_a_long_query_is_read_fast_and_an_overlong_one_is_refused_with_the_limit(parse):
    long_text = ("navy blazer for women, 不要高跟鞋, under 2000. " * 40)[:MAX_QUERY_CHARS]
    t0 = time.perf_counter()
    q = parse(long_text)
    assert time.perf_counter() - t0 < 1.0
    assert q.gender == "women" and q.price_max == 2000 and q.excluded == {"category": ("heels",)}
    with pytest.raises(InputError, match=f"at most {MAX_QUERY_CHARS}"):
        parse("x" * (MAX_QUERY_CHARS + 1))
    with pytest.raises(InputError, match="must be a string"):
        parse(42)


def test_language_is_reported(parse):
    assert [parse(t).lang for t in ("red dress", "红色连衣裙", "红色 dress", "2000")] == ["en", "zh", "mixed", None]


def test_to_dict_is_json_and_lists_terms_and_unknown_terms(parse):
    d = json.loads(json.dumps(parse("红色 dress, no heels, under 2000 zzz").to_dict(), ensure_ascii=False))
    assert {"terms", "unknown_terms"} <= set(d) and d["unknown_terms"] == ["zzz"]
    assert {"text": "heels", "field": "category", "value": "heels", "negated": True,
            "context": False} in d["terms"]


@pytest.mark.parametrize("text, wanted, context", [
    ("black belt for formal trousers, men's", {"belts"}, {"trousers"}),
    ("配西裤的棕色皮带，男款", {"belts"}, {"trousers"}),  # 配 ... 的: the head noun comes after
    ("waistcoat to wear over a kurta for diwali", {"waistcoat"}, {"kurtas"}),
    ("shoes to go with a red dress", {"casual shoes"}, {"dresses"}),
    ("dress and sandals for a summer date", {"dresses", "sandals"}, set()),  # a list: both wanted
    ("kurta for office", {"kurtas"}, set()),
    ("for the office, a navy blazer", {"blazers"}, set()),  # no wanted item before "for"
])
def test_what_the_wanted_item_goes_with_is_context_not_a_request(parse, text, wanted, context):
    q = parse(text)
    assert set(q.wanted.get("category", ())) == wanted
    assert set(q.context.get("category", ())) == context


def test_context_colours_stay_with_their_noun(parse):
    q = parse("shoes to go with a red dress")
    assert "colour" not in q.wanted and q.context["colour"] == ("red",)
    assert parse("配西裤的棕色皮带").wanted["colour"] == ("brown",)
    assert parse("dress for a summer date").wanted["season"] == ("summer",)  # the outing, not a garment


def test_the_parser_imports_no_torch_and_leaves_jiebas_global_tokenizer_alone():
    code = ("import sys, jieba; from mmrec.taxonomy import default_taxonomy; "
            "from mmrec.recommend.query_parser import parse_query; "
            "q = parse_query('别要黑色', default_taxonomy()); assert q.excluded == {'colour': ('black',)}, q; "
            "assert 'torch' not in sys.modules; jieba.dt.check_initialized(); "
            "sys.exit('别要' in jieba.dt.FREQ)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]


def test_a_warmed_parser_reads_chinese_without_loading_anything(tax, book):
    parser = QueryParser(tax, book).warm()
    t0 = time.perf_counter()
    assert parser.parse("紅色連衣裙").wanted == {"colour": ("red",), "category": ("dresses",)}
    assert time.perf_counter() - t0 < 0.05
