"""Choosing the colour by its family first (lab/sft/colour_family.py), plugged into the product's
decoder as a choice rule: every decoding method applies it and still agrees with generate()."""

from __future__ import annotations

import pytest
import torch

from decode_fixtures import assert_fast_equals_generate as _assert_fast_equals_generate
from decode_fixtures import random_images as _images
from decode_fixtures import random_predictor  # noqa: F401  (a fixture)
from lab.sft.colour_family import by_family, grouped_best
from mmrec.attributes.predict import Predictor
from mmrec.taxonomy import default_taxonomy
from sft_fixtures import TINY_FIELDS

TAX = default_taxonomy()


def _grouped(pr, **kw):
    grouped = Predictor(pr.model, pr.processor, pr.prompts, pr.fields, pr.values, TAX, image_size=56,
                        batch_size=4, max_new_tokens=40, **kw)
    by_family(grouped.grammar, TAX, pr.values)
    return grouped


def test_colour_by_family_takes_the_likeliest_family_then_its_likeliest_colour(random_predictor, monkeypatch):
    """Grouped choice: the colour family with the most probability in total wins, and within it the
    most probable colour; the confidence stays that colour's probability. A random model spreads
    probability thinly, so a family of many shades often beats the single likeliest colour."""
    from mmrec.attributes import decode

    grouped = _grouped(random_predictor, decode_method="lockstep")
    seen = []
    real_pick = decode._pick

    def spy(logits, grammar, i, views=1):
        toks, lps = real_pick(logits, grammar, i, views)
        if grammar.fields[i] == "colour":
            allowed = list(grammar.tries[i].children)
            seen.append((torch.softmax(logits[:, allowed].float(), -1), [allowed.index(t) for t in toks], lps))
        return toks, lps

    monkeypatch.setattr(decode, "_pick", spy)
    preds = grouped.predict_images(_images(8, seed=11))
    monkeypatch.undo()
    plain = random_predictor.predict_images(_images(8, seed=11))
    trie = grouped.grammar.tries[TINY_FIELDS.index("colour")]
    values = [c.value for c in trie.children.values()]
    family = [TAX.colour_family(v) or v for v in values]
    rows = [(p[r], k, lp) for p, ks, lps in seen for r, (k, lp) in enumerate(zip(ks, lps))]
    assert len(rows) == 8
    for (probs, k, lp), pred in zip(rows, preds):
        mass = {}
        for f, q in zip(family, probs.tolist()):
            mass[f] = mass.get(f, 0.0) + q
        best_family = max(mass, key=mass.get)
        assert family[k] == best_family
        assert probs[k] == max(q for f, q in zip(family, probs.tolist()) if f == best_family)
        assert lp == pytest.approx(float(torch.log(probs[k])), abs=1e-5)
        value = values[k]
        assert pred.fields["colour"]["value"] == (None if value == "unknown" else value)
        assert pred.fields["colour"]["confidence"] == pytest.approx(float(probs[k]), abs=1e-4)
    # only colour is grouped: the other fields are the greedy answer; colour differs somewhere
    for a, b in zip(plain, preds):
        assert {f: a.fields[f] for f in ("category", "gender")} == {f: b.fields[f] for f in ("category", "gender")}
    assert any(a.fields["colour"]["value"] != b.fields["colour"]["value"] for a, b in zip(plain, preds))


@pytest.mark.parametrize("views", [1, 2])
@pytest.mark.parametrize("method", ["lockstep", "jacobi"])
def test_fast_decoding_by_colour_family_equals_token_by_token_generate(random_predictor, method, views):
    from mmrec.attributes.data import square_pixels

    images = square_pixels(_images(3, seed=23), 56)
    if views == 2:
        images = torch.cat([images, images.flip(-1)])
    _assert_fast_equals_generate(_grouped(random_predictor), images, method, views)


def test_grouped_choice_of_one_row():
    # navy 0.40 alone vs blue 0.30 + teal 0.15 (one family) vs black 0.15: blue's family wins
    probs = torch.tensor([[0.40, 0.30, 0.15, 0.15], [0.70, 0.10, 0.05, 0.15]])
    assert grouped_best(probs, [0, 1, 1, 2]).tolist() == [1, 0]
