"""Decoding and parsing: the tagger's output always parses, with taxonomy values, whatever the weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from mmrec.attributes.metrics import attribute_report, field_scores, selection_macro_f1, top_confusions
from mmrec.attributes.parse import parse_answer
from mmrec.attributes.predict import Predictor
from mmrec.taxonomy import default_taxonomy
from decode_fixtures import assert_fast_equals_generate as _assert_fast_equals_generate
from decode_fixtures import random_images as _images
from decode_fixtures import random_predictor  # noqa: F401  (a fixture)
from sft_fixtures import TINY_FIELDS, tiny_model

TAX = default_taxonomy()


def test_constrained_output_always_parses_from_a_random_model(random_predictor):
    preds = random_predictor.predict_images(_images(6), "constrained")
    assert len(preds) == 6
    for p in preds:
        obj = json.loads(p.text)                       # the raw text itself is valid JSON
        assert list(obj) == TINY_FIELDS
        assert p.valid_json
        for f in TINY_FIELDS:
            v = p.fields[f]["value"]
            assert v is None or TAX.is_valid(f, v), (f, v)
            assert 0.0 <= p.fields[f]["confidence"] <= 1.0
            assert obj[f] == (v if v is not None else "unknown")


def test_constrained_confidence_is_the_value_probability(random_predictor):
    p = random_predictor.predict_images(_images(1, seed=5), "constrained")[0]
    # a value path's probability among all values of the field cannot exceed 1 and is > 0
    assert all(0.0 < p.fields[f]["confidence"] <= 1.0 for f in TINY_FIELDS)


@pytest.mark.parametrize("method", ["lockstep", "jacobi"])
def test_fast_decoding_equals_token_by_token_generate(random_predictor, method):
    from mmrec.attributes.data import square_pixels

    pr = random_predictor
    assert pr.grammar.single_token_values  # the tiny tokenizer keeps every value one token
    _assert_fast_equals_generate(pr, square_pixels(_images(5, seed=7), 56), method)


@pytest.fixture(scope="module")
def sharp_predictor():
    """A random tiny model with a scaled-up output layer: its answers depend visibly on the image
    (a plain random one gives every value ~1% whatever it sees)."""
    torch.set_num_threads(1)
    model, processor, prompts, values = tiny_model(seed=3)
    with torch.no_grad():
        model.lm_head.weight.mul_(300.0)
    model.eval()
    return Predictor(model, processor, prompts, TINY_FIELDS, values, TAX, image_size=56, batch_size=4,
                     max_new_tokens=40)


def _mirror_predictor(pr, batch_size=3):
    return Predictor(pr.model, pr.processor, pr.prompts, pr.fields, pr.values, TAX, image_size=56,
                     batch_size=batch_size, max_new_tokens=40, hflip_tta=True)


def test_mirror_views_choose_each_value_from_the_mean_probability(sharp_predictor):
    """Test-time augmentation: one answer per image, each value chosen from the image's and its
    mirror image's probabilities averaged; the photo path and the cached-pixel path agree."""
    from PIL import ImageOps

    from mmrec.attributes.data import PixelCache

    pr = sharp_predictor
    tta = _mirror_predictor(pr)  # 3 rows a batch: one image and its mirror, odd sizes handled
    rng = np.random.default_rng(21)
    imgs = [Image.fromarray(rng.integers(0, 256, (56, 56, 3), dtype=np.uint8)) for _ in range(5)]
    plain = pr.predict_images(imgs)
    mirror = pr.predict_images([ImageOps.mirror(im) for im in imgs])
    both = tta.predict_images(imgs)
    assert len(both) == 5 and all(json.loads(b.text) for b in both)
    first = TINY_FIELDS[0]  # the first value depends on the image alone
    agreed = 0
    for a, m, b in zip(plain, mirror, both):
        ca, cm, cb = (x.fields[first] for x in (a, m, b))
        if ca["value"] == cm["value"]:
            agreed += 1
            assert cb["value"] == ca["value"]
            assert cb["confidence"] == pytest.approx((ca["confidence"] + cm["confidence"]) / 2, abs=2e-4)
    assert agreed
    # the mirror image changes what the model says, so the mean is not the plain answer
    assert max(abs(a.fields[first]["confidence"] - m.fields[first]["confidence"]) for a, m in zip(plain, mirror)) > 0.01
    cache = PixelCache(np.stack([np.asarray(im) for im in imgs]), [f"{i}.jpg" for i in range(5)])
    cached = _mirror_predictor(pr, batch_size=4).predict_cached(cache, list(range(5)))
    assert [c.fields for c in cached] == [b.fields for b in both]


@pytest.mark.parametrize("method", ["lockstep", "jacobi"])
def test_fast_decoding_of_mirror_views_equals_token_by_token_generate(sharp_predictor, method):
    from mmrec.attributes.data import square_pixels

    images = square_pixels(_images(3, seed=17), 56)
    _assert_fast_equals_generate(sharp_predictor, torch.cat([images, images.flip(-1)]), method, views=2)
    from mmrec.attributes.decode import view_mean

    # probabilities are averaged (0.9 and 0.1 -> 0.5), not log-probabilities (-> 0.3)
    two = torch.log(torch.tensor([[0.9, 0.1], [0.1, 0.9]]))
    assert torch.allclose(view_mean(two, 2).exp(), torch.full((2, 2), 0.5))
    with pytest.raises(ValueError, match="views"):
        view_mean(torch.zeros(5, 4), 2)


def test_a_choice_rule_replaces_greedy_in_every_decoding_method(random_predictor):
    """`JsonGrammar.set_choice` (the seam experiments use, lab/sft/colour_family.py): a rule on a
    one-token field is applied alike by generate(), lockstep and Jacobi decoding; unknown fields
    are refused by name."""
    from mmrec.attributes.data import square_pixels
    from mmrec.errors import ConfigError

    pr = Predictor(random_predictor.model, random_predictor.processor, random_predictor.prompts, TINY_FIELDS,
                   random_predictor.values, TAX, image_size=56, batch_size=4, max_new_tokens=40)
    least = lambda probs: probs.argmin(-1)  # noqa: E731  (the least likely colour: never greedy's)
    pr.grammar.set_choice("colour", least)
    images = square_pixels(_images(3, seed=29), 56)
    for method in ("lockstep", "jacobi"):
        _assert_fast_equals_generate(pr, images, method)
    plain = random_predictor.predict_images(_images(3, seed=29))
    chosen = pr.predict_images(_images(3, seed=29))
    assert all(a.fields["colour"]["value"] != b.fields["colour"]["value"] for a, b in zip(plain, chosen))
    assert [a.fields["category"] for a in plain] == [b.fields["category"] for b in chosen]
    with pytest.raises(ConfigError, match="no field 'pattern'"):
        pr.grammar.set_choice("pattern", least)
    pr.grammar.set_choice("colour", None)
    assert [a.fields for a in pr.predict_images(_images(3, seed=29))] == [a.fields for a in plain]


def test_jacobi_decoding_follows_earlier_values_like_greedy_decoding(random_predictor, monkeypatch):
    """A model whose every field copies the value chosen before it (the worst case for guessing
    all values at once) still gets the token-by-token answer, in at most one pass per field."""
    from mmrec.attributes import decode
    from mmrec.attributes.data import Collator, Example, square_pixels

    pr = random_predictor
    g = pr.grammar
    images = square_pixels(_images(3, seed=11), 56)
    batch = Collator(pr.processor, None, left_pad=True)([Example(pr.prompt_ids, [], 0)] * 3, images=images)
    value_rank = {t: k for trie in g.tries for k, t in enumerate(trie.children)}
    real_forward = pr.model.forward
    calls = []

    def chained(*args, **kw):
        # at every position, the allowed token ranked one after the last value fed in this call
        # gets a large bonus: field i's greedy value depends on the value chosen before it
        out = real_forward(*args, **kw)
        ids = kw["input_ids"]
        calls.append(ids.shape[1])
        logits = out.logits.clone()
        keep = kw.get("logits_to_keep", 0)
        kept = keep.tolist() if torch.is_tensor(keep) else list(range(ids.shape[1] - logits.shape[1], ids.shape[1]))
        for r in range(ids.shape[0]):
            for pos, at in enumerate(kept):
                seen = ids[r, : at + 1].tolist()
                k = next((value_rank[t] for t in reversed(seen) if t in value_rank), None)
                if k is None:
                    continue
                for trie in g.tries:
                    toks = list(trie.children)
                    logits[r, pos, toks[(k + 1) % len(toks)]] += 50.0
        out.logits = logits
        return out

    monkeypatch.setattr(pr.model, "forward", chained)
    fast, _ = decode.generate_constrained(pr.model, dict(batch), g, pr.pad_id, method="jacobi")
    n_jacobi = len(calls)
    calls.clear()
    slow, _ = decode.generate_constrained(pr.model, dict(batch), g, pr.pad_id, method="lockstep")
    assert [{f: r[f]["value"] for f in r} for r in fast] == [{f: r[f]["value"] for f in r} for r in slow]
    assert n_jacobi <= len(calls) == len(TINY_FIELDS)


def test_free_generation_never_breaks_the_tagger(random_predictor):
    for p in random_predictor.predict_images(_images(4, seed=1), "free"):
        assert set(p.fields) == set(TINY_FIELDS)
        for f in TINY_FIELDS:
            v = p.fields[f]["value"]
            assert v is None or TAX.is_valid(f, v)
            assert 0.0 <= p.fields[f]["confidence"] <= 1.0


def test_parse_strict_repair_and_canonicalise():
    ok = parse_answer('{"category": "T-Shirt", "gender": "Men", "colour": "Navy Blue", "usage": "unknown"}',
                      TINY_FIELDS, TAX)
    assert ok.valid_json and ok.values == {"category": "tshirts", "gender": "men", "colour": "navy blue",
                                           "usage": None}
    cut = parse_answer('Sure! {"category": "jeans", "gender": "wom', TINY_FIELDS, TAX)
    assert not cut.valid_json and cut.values["category"] == "jeans" and cut.values["gender"] is None
    bad = parse_answer('{"category": "spacesuit", "colour": "blue"}', TINY_FIELDS, TAX)
    assert bad.values["category"] is None and bad.invalid == {"category": "spacesuit"}
    assert bad.values["colour"] == "blue" and bad.values["usage"] is None
    assert parse_answer("", TINY_FIELDS, TAX).values == {f: None for f in TINY_FIELDS}
    assert parse_answer("[1, 2]", TINY_FIELDS, TAX).valid_json is False


def test_field_scores_and_colour_family():
    s = field_scores(["a", "a", "b", None], ["a", "b", "b", "a"])
    assert s["n"] == 3 and s["accuracy"] == pytest.approx(2 / 3, abs=1e-3)
    # f1(a) = 2*1/(2+0+1) = 0.667, f1(b) = 2*1/(2+1+0) = 0.667
    assert s["macro_f1"] == pytest.approx(0.6667, abs=1e-3)
    rep = attribute_report([{"colour": "navy blue"}, {"colour": "black"}],
                           [{"colour": "navy blue"}, {"colour": "charcoal"}], ["colour"], TAX)
    assert rep["colour"]["accuracy"] == 0.5
    fam = TAX.colour_family
    assert rep["colour_family"]["accuracy"] == (0.5 + 0.5 * (fam("black") == fam("charcoal")))


def test_top_confusions_say_where_the_tagger_goes_wrong():
    truth = ["tshirts", "tshirts", "tshirts", "shirts", "shirts", None, "tops"]
    pred = ["tops", "tops", "tshirts", "tshirts", None, "tops", "tops"]
    assert top_confusions(truth, pred, k=2) == [
        {"truth": "tshirts", "predicted": "tops", "count": 2, "of": 3},
        {"truth": "shirts", "predicted": "tshirts", "count": 1, "of": 2}]
    rep = attribute_report([{"category": t} for t in truth], [{"category": p} for p in pred],
                           ["category"], TAX, confusions=5)
    assert {"truth": "shirts", "predicted": "unknown", "count": 1, "of": 2} in rep["category"]["top_confusions"]
    assert "top_confusions" not in attribute_report([{"category": "tops"}], [{"category": "tops"}],
                                                    ["category"], TAX)["category"]


def test_checkpoint_pick_ignores_fields_too_rare_to_measure():
    """Two checkpoints: A reads category better, B only guesses the one labelled sleeve right.
    Over all labelled fields B wins on that single product; the pick must not."""
    truth = [{"category": c, "sleeve": None} for c in ["tshirts", "shirts", "jeans", "tops"] * 30]
    truth[0]["sleeve"] = "long sleeve"
    a = [{"category": t["category"], "sleeve": None} for t in truth]          # category all right
    b = [{"category": "tshirts", "sleeve": t["sleeve"]} for t in truth]       # category mostly wrong
    fields = ["category", "sleeve"]
    rep_a, rep_b = (attribute_report(truth, p, fields, TAX) for p in (a, b))
    assert rep_b["summary"]["macro_f1"] > rep_a["summary"]["macro_f1"]       # the old rule picked B
    sel_a, voting = selection_macro_f1(rep_a, fields, min_labelled=100)
    sel_b, _ = selection_macro_f1(rep_b, fields, min_labelled=100)
    assert voting == ["category"] and sel_a > sel_b
    # nothing measurable (a tiny validation set): every labelled field votes
    assert selection_macro_f1(rep_a, fields, min_labelled=10_000)[1] == ["category", "sleeve"]
