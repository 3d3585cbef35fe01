"""Encoder: creation from registered configs, normalised outputs, save/load round trip."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mmrec.embed.config import EmbedConfig, ModelSpec
from mmrec.errors import ConfigError, InputError

torch = pytest.importorskip("torch")


def _tiny():
    from mmrec.embed.encoder import Encoder

    torch.manual_seed(0)
    return Encoder.create(ModelSpec(name="mmrec-clip-tiny", device="cpu"))


def _images():
    return [Image.new("RGB", (60, 80), c) for c in [(200, 30, 30), (20, 30, 90), (240, 240, 240)]]


def test_outputs_are_normalised_float32():
    enc = _tiny()
    iv = enc.encode_images(_images())
    tv = enc.encode_texts(["red tshirt", "navy blue jeans"])
    assert iv.dtype == np.float32 and iv.shape == (3, enc.dim) == (3, 32)
    assert tv.dtype == np.float32 and tv.shape == (2, 32)
    np.testing.assert_allclose(np.linalg.norm(iv, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(tv, axis=1), 1.0, atol=1e-5)
    assert enc.encode_texts([]).shape == (0, 32)
    # the uint8 pixel path (what training caches) gives the same vectors as PIL images
    pix = np.stack([enc.to_pixels(im) for im in _images()])
    np.testing.assert_allclose(enc.encode_pixels(pix), iv, atol=1e-5)


def test_save_load_round_trip_with_perturbed_weights(tmp_path):
    from mmrec.embed.encoder import Encoder

    enc = _tiny()
    before = enc.encode_texts(["black shoes"])
    with torch.no_grad():  # move every weight away from its init so equality means something
        g = torch.Generator().manual_seed(1)
        for p in enc.model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    changed = enc.encode_texts(["black shoes"])
    assert not np.allclose(before, changed, atol=1e-3)
    enc.save(tmp_path / "enc", encoder_id="tiny@test")
    loaded = Encoder.from_dir(tmp_path / "enc", device="cpu")
    assert loaded.encoder_id == "tiny@test"
    assert loaded.image_size == 32 and loaded.preprocess_mode == "letterbox"
    np.testing.assert_allclose(loaded.encode_texts(["black shoes"]), changed, atol=1e-6)
    np.testing.assert_allclose(loaded.encode_images(_images()), enc.encode_images(_images()), atol=1e-6)
    for (n1, p1), (n2, p2) in zip(enc.model.state_dict().items(), loaded.model.state_dict().items()):
        assert n1 == n2 and torch.equal(p1, p2), n1


def test_unknown_model_and_missing_weights_are_input_errors():
    from mmrec.embed.encoder import Encoder

    with pytest.raises(InputError, match="unknown open_clip model"):
        Encoder.create(ModelSpec(name="no-such-model", device="cpu"))
    with pytest.raises(InputError, match="checkpoint file"):
        Encoder.create(ModelSpec(name="mmrec-clip-tiny", pretrained="/nonexistent/weights.bin",
                                 device="cpu"))


def test_config_refuses_nonsense():
    from mmrec.config import validate_config

    with pytest.raises(ConfigError, match="unknown field"):
        validate_config(EmbedConfig, {"train": {"templates": [{"text": "{flavour} {category}"}]}},
                        stage="embed", source="test")
    with pytest.raises(ConfigError, match="letterbox"):
        validate_config(EmbedConfig, {"model": {"name": "mmrec-clip-mini", "preprocess": "open_clip"}},
                        stage="embed", source="test")
    with pytest.raises(ConfigError, match="unknown key 'train.epoch'"):
        validate_config(EmbedConfig, {"train": {"epoch": 3}}, stage="embed", source="test")


def test_standard_style_local_dir_model_loads_through_open_clip(tmp_path):
    """`model.name=local-dir:...` (how a pretrained model on disk is named) gives the same model."""
    from mmrec.embed.encoder import Encoder

    enc = _tiny()
    with torch.no_grad():
        for p in enc.model.parameters():
            p.mul_(1.1)
    enc.save(tmp_path / "pretrained")
    other = Encoder.create(ModelSpec(name=f"local-dir:{tmp_path / 'pretrained'}", device="cpu"))
    assert other.encoder_id == f"local-dir:{tmp_path / 'pretrained'}"
    np.testing.assert_allclose(other.encode_texts(["red bag"]), enc.encode_texts(["red bag"]), atol=1e-6)
    with pytest.raises(InputError, match="open_clip_config"):
        Encoder.create(ModelSpec(name=f"local-dir:{tmp_path}", device="cpu"))
