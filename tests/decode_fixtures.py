"""A tiny tagger with random weights and the check that a fast decoding method answers exactly
as token-by-token generate() (tests/test_attributes_decode.py, lab/tests/test_colour_family.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from mmrec.attributes.predict import Predictor
from mmrec.taxonomy import default_taxonomy
from sft_fixtures import TINY_FIELDS, tiny_model

TAX = default_taxonomy()


@pytest.fixture(scope="module")
def random_predictor():
    torch.set_num_threads(1)
    model, processor, prompts, values = tiny_model(seed=3)
    model.eval()
    return Predictor(model, processor, prompts, TINY_FIELDS, values, TAX, image_size=56, batch_size=4,
                     max_new_tokens=40)


def random_images(n, seed=0):
    """``n`` noise photos of random sizes (40-300 px a side)."""
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (int(rng.integers(40, 300)), int(rng.integers(40, 300)), 3),
                                         dtype=np.uint8)) for _ in range(n)]


def assert_fast_equals_generate(pr, images, method, views=1):
    """``method`` decodes the batch of ``images`` (views stacked) exactly as generate() does."""
    from mmrec.attributes.data import Collator, Example
    from mmrec.attributes.decode import generate_constrained

    batch = Collator(pr.processor, None, left_pad=True)([Example(pr.prompt_ids, [], 0)] * len(images), images=images)
    fast, fast_ids = generate_constrained(pr.model, dict(batch), pr.grammar, pr.pad_id, method=method, views=views)
    slow, slow_ids = generate_constrained(pr.model, dict(batch), pr.grammar, pr.pad_id, method="generate", views=views)
    assert len(fast) == len(slow) == len(images) // views and fast_ids.shape[0] == slow_ids.shape[0] == len(fast)
    assert [{f: r[f]["value"] for f in r} for r in fast] == [{f: r[f]["value"] for f in r} for r in slow]
    for a, b in zip(fast, slow):
        for f in TINY_FIELDS:
            assert a[f]["confidence"] == pytest.approx(b[f]["confidence"], abs=1e-3)
    tok = pr.tokenizer
    assert tok.batch_decode(fast_ids, skip_special_tokens=True) == tok.batch_decode(slow_ids, skip_special_tokens=True)
