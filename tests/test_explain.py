"""Grounded explanations: generated text is fully backed; the verifier catches invented claims."""

from __future__ import annotations

import pytest

from mmrec.outfit.explain import ExplainContext, Explainer
from mmrec.outfit.facts import Fact
from mmrec.outfit.taste import harmony_of, taste_from_history
from mmrec.outfit.wording import split_statements
from mmrec.outfit.scenes import SceneBook
from mmrec.taxonomy import default_taxonomy
from outfit_fixtures import item_table

TAX = default_taxonomy()
BOOK = SceneBook.load()
OUTFIT = ["t1", "b1", "s1", "a1"]


@pytest.fixture(scope="module")
def items():
    return item_table()


@pytest.fixture(scope="module")
def explainer():
    return Explainer(TAX, BOOK)


def ctx(items, **kw):
    base = dict(scene=BOOK.get("office"),
                harmony=harmony_of([items.row(i)["colour"] for i in OUTFIT], TAX))
    base.update(kw)
    return ExplainContext(**base)


def test_generated_explanation_is_fully_supported(items, explainer):
    """Every claim kind the facts can back, with room for all of them: each is verified."""
    from mmrec.outfit.explain import ExplainConfig

    roomy = Explainer(TAX, BOOK, ExplainConfig(max_sentences=12, max_words=300))
    c = ctx(items, taste={"colour": ["black"], "category": ["shirts"]}, profile_occasions=["formal"],
            routes={"t1": {"bm25": 2}}, query_text="white shirt", query_matches={"t1"})
    e = roomy.explain(items, OUTFIT, c)
    assert not e.fallback and e.problems == []
    assert e.statements >= 6 and e.supported == e.statements and e.precision == 1.0
    text = e.text
    assert "Office look: white shirt, black trousers, black formal shoes and black belt." in text
    assert "Formal wear per the catalog" in text
    assert "(from the title)" in text  # pattern "solid" came from the title rules
    assert '"no sportswear at the office"' in text
    assert "From your history, you often choose black" in text
    assert "matches your search \"white shirt\"" in text
    sources = {f.source for f in e.facts}
    assert {"catalog", "title", "history", "request", "compat"} <= sources
    assert any(f.field == "pattern" and f.source == "title" for f in e.facts)


def test_a_default_explanation_is_short_personal_and_lists_the_outfit_once(items, explainer):
    """At most three sentences and ~60 words: the outfit, why it answers the request, and a
    personal reason when the shopper has one; the item list is not repeated."""
    c = ctx(items, taste={"colour": ["black"]}, profile_occasions=["formal"],
            query_text="white shirt", query_matches={"t1"})
    e = explainer.explain(items, OUTFIT, c)
    assert e.statements == 3 == e.supported and len(e.text.split()) <= 60
    assert e.text.count("black trousers") == 1
    assert "matches your search" in e.text and "you often choose black" in e.text
    assert "Your profile" not in e.text  # one personal reason is enough
    # no request, no shopper: the scene's rules and the colours say why it suits the occasion
    plain = explainer.explain(items, OUTFIT, ctx(items))
    assert plain.statements <= 3 and '"no sportswear at the office"' in plain.text


def test_chinese_text_says_the_same_verified_claims(items, explainer):
    c = ctx(items, taste={"colour": ["black"]}, query_text="白色衬衫", query_matches={"t1"})
    en = explainer.explain(items, OUTFIT, c)
    zh = explainer.explain(items, OUTFIT, c, lang="zh")
    assert zh.lang == "zh" and zh.statements == en.statements and zh.facts == en.facts
    assert zh.text.startswith("办公室造型：白色衬衫、") and "符合您的搜索“白色衬衫”" in zh.text
    assert "您常选黑色" in zh.text
    assert zh.text.count("。") == en.statements  # one sentence per claim
    assert not any(ch.isascii() and ch.isalpha() for ch in zh.text)  # no English words left


def test_matches_your_search_names_only_the_items_the_query_names(items, explainer):
    """A search for a white shirt recalls trousers and shoes too (text routes); only the shirt
    may be said to match it, and a planted claim about another item is rejected."""
    c = ctx(items, routes={i: {"bm25": 1} for i in OUTFIT}, query_text="white shirt", query_matches={"t1"})
    e = explainer.explain(items, OUTFIT, c)
    assert 'White shirt matches your search "white shirt".' in e.text and e.supported == e.statements
    planted = e.text + ' Black trousers matches your search "white shirt".'
    assert explainer.verifier.verify(planted, e.facts, items=items, ctx=c, item_ids=OUTFIT)
    forged = e.facts + [Fact(item_id="b1", field="query_match", value="named", source="request")]
    problems = explainer.verifier.verify(planted, forged, items=items, ctx=c, item_ids=OUTFIT)
    assert any("b1 is not an item the query names" in p for p in problems)
    # nothing the query names in the outfit: no search statement at all
    none = explainer.explain(items, OUTFIT, ctx(items, query_text="red dress", query_matches=set()))
    assert "your search" not in none.text


def test_verifier_rejects_an_invented_attribute(items, explainer):
    c = ctx(items)
    e = explainer.explain(items, OUTFIT, c)
    assert explainer.verifier.verify(e.text, e.facts, items=items, ctx=c, item_ids=OUTFIT) == []
    # the shirt is white; saying red is a claim no fact backs
    bad = e.text.replace("white shirt", "red shirt", 1)
    problems = explainer.verifier.verify(bad, e.facts, items=items, ctx=c, item_ids=OUTFIT)
    assert any("'red'" in p for p in problems)
    n, ok = explainer.verifier.statement_precision(bad, e.facts)
    assert ok < n
    # a synonym is caught as well ("crimson" means red)
    assert explainer.verifier.verify(e.text + " The belt is crimson.", e.facts, items=items, ctx=c, item_ids=OUTFIT)
    # and a material nobody stated
    assert explainer.verifier.verify(e.text + " The trousers are made of linen.", e.facts)


def test_verifier_rejects_facts_that_are_not_true(items, explainer):
    c = ctx(items)
    forged = Fact(item_id="t1", field="colour", value="red", source="catalog")
    text = "Office look: red shirt."
    problems = explainer.verifier.verify(text, [forged, Fact(item_id="t1", field="category", value="shirts",
                                                    source="catalog")], items=items, ctx=c, item_ids=OUTFIT)
    assert any("does not match the catalog" in p for p in problems)
    # right value, wrong source: the pattern came from the title, not the catalog
    wrong_source = Fact(item_id="t1", field="pattern", value="solid", source="catalog")
    assert explainer.verifier.check_facts([wrong_source], items=items, ctx=c, item_ids=OUTFIT)
    # a scene rule the outfit does not satisfy, a history the shopper does not have
    rule = Fact(field="scene_rule", value="made for sport", source="scene:office")
    assert explainer.verifier.check_facts([rule], items=items, ctx=c, item_ids=OUTFIT)
    hist = Fact(item_id="t1", field="history.colour", value="white", source="history")
    assert explainer.verifier.check_facts([hist], items=items, ctx=c, item_ids=OUTFIT)


def test_source_claims_need_facts_from_that_source(items, explainer):
    facts = [Fact(item_id="t1", field="colour", value="white", source="catalog"),
             Fact(item_id="t1", field="category", value="shirts", source="catalog")]
    assert explainer.verifier.verify("The white shirt is from the catalog.", facts) == []
    assert explainer.verifier.verify("From your history, you often choose white shirts.", facts)
    assert explainer.verifier.verify("The white shirt is similar to your photo.", facts)
    assert explainer.verifier.verify('Meets the rules: "dress to impress".', facts)
    assert explainer.verifier.verify("The white shirt looks solid to our tagger (91%).", facts)


def test_model_facts_cite_their_confidence(explainer):
    spec = [("m1", "men", "shirts", "blue", "formal", "fall", None, 10.0)]
    items = item_table(spec)
    items.rows[0]["attributes"]["pattern"] = {"value": "checked", "source": "model", "confidence": 0.87}
    items.rows[0]["attributes"]["material"] = {"value": "linen", "source": "model", "confidence": 0.3}
    c = ExplainContext(scene=BOOK.get("office"))
    from mmrec.outfit.explain import ExplainConfig

    cfg = ExplainConfig(max_sentences=12, max_words=300, model_confidence={"pattern": 0.8, "material": 0.8})
    e = Explainer(TAX, BOOK, cfg).explain(items, ["m1"], c)
    assert "looks checked to our tagger (87%)" in e.text
    assert "linen" not in e.text  # below its field's model_confidence: not cited
    # by default a field the tagger is not sure enough of on val (pattern) is never cited
    assert "checked" not in Explainer(TAX, BOOK, ExplainConfig(max_sentences=12, max_words=300)).explain(
        items, ["m1"], c).text
    assert e.precision == 1.0
    assert explainer.verifier.verify(e.text.replace("87%", "97%"), e.facts)


def test_fallback_when_rich_text_fails(items, explainer, monkeypatch):
    c = ctx(items)
    real = explainer._compose

    from mmrec.outfit.claims_text import Claim

    def lying(items_, ids_, ctx_, rich):
        facts, claims = real(items_, ids_, ctx_, rich)
        return facts, claims + ([Claim("detail", [], "The shirt is made of silk.", "衬衫是丝绸的。")] if rich else [])

    monkeypatch.setattr(explainer, "_compose", lying)
    e = explainer.explain(items, OUTFIT, c)
    assert e.fallback and e.problems and "silk" not in e.text
    assert e.text.startswith("Office look:") and e.precision == 1.0


def test_split_statements_fast_path_splits_like_the_quote_aware_scan():
    # unquoted text takes a regex path; it must cut exactly where the character scan cuts
    import random

    from mmrec.outfit.wording import _split_quoted

    rng = random.Random(7)
    for _ in range(2000):
        text = "".join(rng.choice("ab .!?\n4%(") for _ in range(rng.randint(0, 30)))
        assert split_statements(text) == _split_quoted(text), text


def test_split_statements_keeps_quotes_together():
    assert split_statements('Meets "a. b" rule. Next one! Last') == ['Meets "a. b" rule.', "Next one!", "Last"]


def test_taste_from_history(items):
    hist = [{"item_id": "t1"}, {"item_id": "b1"}, {"item_id": "s1"}, {"item_id": "unknown"}]
    taste = taste_from_history(items, hist)
    assert taste["colour"] == ["black"] and taste["category"] == []


def test_rules_and_harmony_are_not_claimed_on_unsure_tagger_readings():
    """A new arrival's usage read at 70% may be wrong: "no sportswear at the office" could then
    be false, so it is not said (it is said when the catalog states the usage)."""
    from mmrec.outfit.explain import ExplainConfig

    spec = [("m1", "men", "shirts", "white", "formal", "fall", None, 10.0),
            ("m2", "men", "trousers", "black", "formal", "fall", None, 10.0)]
    roomy = Explainer(TAX, BOOK, ExplainConfig(max_sentences=12, max_words=300))
    c = ExplainContext(scene=BOOK.get("office"))
    sure = item_table(spec)
    assert "no sportswear at the office" in roomy.explain(sure, ["m1", "m2"], c).text
    unsure = item_table(spec)
    unsure.rows[1]["attributes"]["usage"] = {"value": "formal", "source": "model", "confidence": 0.7}
    e = roomy.explain(unsure, ["m1", "m2"], c)
    assert "no sportswear at the office" not in e.text and e.precision == 1.0


def test_a_look_alike_is_named_with_its_colour_only_when_the_photo_shares_it(items, explainer):
    """The image route vouches for the look: "the white shirt is similar to your photo" of a
    photo read as green would claim a colour match nobody saw."""
    from mmrec.outfit.wording import split_statements

    def said(**kw):
        e = explainer.explain(items, OUTFIT, ctx(items, photo_similar={"t1"}, **kw))
        return [s for s in split_statements(e.text) if "similar to your photo" in s]

    assert said(photo_colour_family="white") == ["The white shirt is similar to your photo."]
    assert said(photo_colour_family="green") == ["The shirt is similar to your photo."]
    assert said() == ["The shirt is similar to your photo."]  # the photo's colour was not read
