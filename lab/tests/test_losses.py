"""The lab's loss plug-ins (lab/sft/losses.py). On one field's value: the colour-family loss finds
the colour value in real training batches and scores the probability of the true family, so
shades of one family are not penalised against each other; value smoothing is label smoothing
over the colour values only. Label smoothing over the vocabulary equals torch's."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from lab.sft.losses import GroupLoss, LabelSmoothing, ValueSmoothing, uniform_target_loss, value_positions
from mmrec.attributes.data import Collator, PixelCache, encode_records
from mmrec.attributes.decode import JsonGrammar
from mmrec.attributes.prompts import json_answer, messages
from mmrec.attributes.trainer import answer_logits_only
from mmrec.errors import ConfigError
from mmrec.taxonomy import default_taxonomy
from sft_fixtures import TINY_ARCH, TINY_FIELDS, draw_product, tiny_model

TAX = default_taxonomy()


@pytest.fixture(scope="module")
def tiny():
    torch.set_num_threads(1)
    model, processor, prompts, values = tiny_model(seed=5)
    grammar = JsonGrammar(processor.tokenizer, TINY_FIELDS, values, prompts.unknown)
    family = TAX.colour_families(values["colour"])
    return model, processor, prompts, grammar, family


def _batch(processor, prompts, labels_list):
    """A left-padded training batch (as the trainer's collator makes it) of JSON answers."""
    recs = [{"messages": messages(prompts.system, prompts.json_instruction(TINY_FIELDS),
                                  json_answer(lab, TINY_FIELDS)), "images": ["<image>"]} for lab in labels_list]
    examples = encode_records(recs, processor, {"<image>": 0})
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (56, 56, 3), dtype=np.uint8)) for _ in recs]
    from mmrec.attributes.data import square_pixels

    return Collator(processor, None, left_pad=True)(examples, images=square_pixels(images, 56))


def test_finds_the_colour_value_in_training_batches(tiny):
    _, processor, prompts, grammar, family = tiny
    labels_list = [{"category": "tshirts", "gender": "men", "colour": "navy blue", "usage": "casual"},
                   {"category": "jeans", "colour": "charcoal"},            # gender unknown, other lengths
                   {"category": "watches", "gender": "women", "colour": "gold", "usage": "formal"}]
    batch = answer_logits_only(_batch(processor, prompts, labels_list))
    loss = GroupLoss(grammar, "colour", family, 1.0)
    rows, cols = value_positions(loss.key, batch["labels"])
    assert rows.tolist() == [0, 1, 2]
    tok = processor.tokenizer
    assert [tok.decode([int(batch["labels"][r, c])]) for r, c in zip(rows, cols)] == ["navy blue", "charcoal", "gold"]


def test_scores_the_family_not_the_shade(tiny):
    _, processor, prompts, grammar, family = tiny
    batch = answer_logits_only(_batch(processor, prompts, [{"category": "jeans", "colour": "grey"}]))
    loss = GroupLoss(grammar, "colour", family, 1.0)
    (row,), (col,) = value_positions(loss.key, batch["labels"])
    tok = processor.tokenizer
    ids = {v: tok.convert_tokens_to_ids(tok.tokenize(v))[0] for v in ("grey", "charcoal", "grey melange", "black")}
    vocab = len(tok)
    logits = torch.full((1, batch["labels"].shape[1], vocab), -30.0)
    # the model splits the colour between two shades of the true family, none on "grey" itself
    logits[0, col - 1, ids["charcoal"]] = 5.0
    logits[0, col - 1, ids["grey melange"]] = 5.0
    token_ce = float(torch.nn.functional.cross_entropy(logits[0, col - 1][None], batch["labels"][0, col][None]))
    assert token_ce > 30                                       # the token loss calls it very wrong
    assert float(loss.term(logits, batch["labels"])) < 1e-6         # the family is right
    # the same mass on another family's colour is what the loss punishes: -log(1/2)
    logits[0, col - 1, ids["grey melange"]] = -30.0
    logits[0, col - 1, ids["black"]] = 5.0
    assert float(loss.term(logits, batch["labels"])) == pytest.approx(math.log(2), abs=1e-4)


def test_gradient_step_raises_the_true_family(tiny):
    model, processor, prompts, grammar, family = tiny
    batch = answer_logits_only(_batch(processor, prompts, [{"category": "tshirts", "colour": "teal"}] * 2))
    loss = GroupLoss(grammar, "colour", family, 1.0)
    model = model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.5)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        before = float(loss.term(model(**inputs).logits, batch["labels"]))
    for _ in range(3):
        opt.zero_grad()
        loss.term(model(**inputs).logits, batch["labels"]).backward()
        opt.step()
    with torch.no_grad():
        after = float(loss.term(model(**inputs).logits, batch["labels"]))
    model.eval()
    assert after < before - 0.1, (before, after)


def test_refuses_a_field_the_dataset_does_not_answer(tiny):
    _, _, _, grammar, family = tiny
    with pytest.raises(ConfigError, match="pattern"):
        GroupLoss(grammar, "pattern", family, 1.0)


def test_value_smoothing_is_label_smoothing_over_the_fields_values(tiny):
    """Token loss + the term == the mean over answer tokens where the colour token alone has the
    smoothed target ``(1 - eps) * onehot + eps * uniform over the colour values``."""
    _, processor, prompts, grammar, _ = tiny
    labels_list = [{"category": "tshirts", "gender": "men", "colour": "navy blue", "usage": "casual"},
                   {"category": "jeans", "colour": "charcoal"}, {"category": "watches"}]  # 3rd: colour unknown
    labels = answer_logits_only(_batch(processor, prompts, labels_list))["labels"]
    eps = 0.3
    smooth = ValueSmoothing(grammar, "colour", eps)
    logits = torch.randn(labels.shape[0], labels.shape[1], len(processor.tokenizer), generator=torch.Generator().manual_seed(0))
    colour_ids = [t for t, c in grammar.tries[grammar.fields.index("colour")].children.items() if c.value != "unknown"]

    logp = torch.log_softmax(logits[:, :-1], -1)
    target = labels[:, 1:]
    rows, cols = value_positions(smooth.key, labels)
    smoothed_at = {(int(r), int(c) - 1) for r, c in zip(rows, cols)
                   if int(labels[r, c]) in colour_ids}
    assert len(smoothed_at) == 2                         # the "unknown" colour is not smoothed
    per_token = []
    for r in range(target.shape[0]):
        for t in range(target.shape[1]):
            if target[r, t] == -100:
                continue
            nll = -float(logp[r, t, target[r, t]])
            if (r, t) in smoothed_at:
                nll = (1 - eps) * nll + eps * -float(logp[r, t, colour_ids].mean())
            per_token.append(nll)
    token_loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), target.reshape(-1),
                                                   ignore_index=-100)
    assert float(token_loss + smooth.term(logits, labels)) == pytest.approx(sum(per_token) / len(per_token), rel=1e-5)
    only_unknown = answer_logits_only(_batch(processor, prompts, [{"category": "watches"}]))["labels"]
    assert smooth.term(logits[:1, :only_unknown.shape[1]], only_unknown) is None


def test_value_smoothing_refuses_bad_fields_and_eps(tiny):
    _, _, _, grammar, _ = tiny
    with pytest.raises(ConfigError, match="pattern"):
        ValueSmoothing(grammar, "pattern", 0.1)
    with pytest.raises(ConfigError, match=r"value_smoothing eps must be in \[0, 1\), got 1.5"):
        ValueSmoothing(grammar, "colour", 1.5)
    with pytest.raises(ConfigError, match=r"label_smoothing eps must be in \[0, 1\), got -0.1"):
        LabelSmoothing(-0.1)


def test_label_smoothing_term_matches_torch(tiny, tmp_path):
    """(1 - eps) * the model's own loss + eps * uniform_target_loss == torch's label-smoothed
    cross-entropy on the same (shifted, masked) tokens; the plug-in combines them so."""
    model, processor, prompts, _, _ = tiny
    p = tmp_path / "0.jpg"
    draw_product("jeans", "red", jitter=2).save(p)
    recs = [{"messages": messages(prompts.system, prompts.json_instruction(["category", "colour"]),
                                  '{"category": "jeans", "colour": "red"}'), "images": [str(p)]}] * 2
    cache = PixelCache.build([str(p)], TINY_ARCH["image_size"], tmp_path / "cache")
    batch = Collator(processor, cache)(encode_records(recs, processor, cache.index))
    with torch.no_grad():
        out = model(**batch)
    eps = 0.2
    ours = (1 - eps) * out.loss + eps * uniform_target_loss(out.logits, batch["labels"])
    logits, labels = out.logits[:, :-1], batch["labels"][:, 1:]
    ref = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1),
                                            ignore_index=-100, label_smoothing=eps)
    assert float(ours) == pytest.approx(float(ref), rel=1e-5)
    assert uniform_target_loss(out.logits, torch.full_like(batch["labels"], -100)) is None
    plugin = LabelSmoothing(eps)
    term = plugin(out, batch)
    assert float(plugin.add(out.loss, term, 1)) == pytest.approx(float(ref), rel=1e-5)
