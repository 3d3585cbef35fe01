"""The `standard` encoder path (`preprocess: open_clip`, pretrained weights on disk) on a tiny
ViT laid out as an open_clip checkpoint (tests/standard_fixtures.py): `mmrec embed train`
(packaging, epochs 0) and `mmrec embed catalog` under the standard profile give exactly the
vectors open_clip itself computes with the model's own transform."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from embed_fixtures import ingest, write_catalog
from mmrec.artifacts import ArtifactStore
from mmrec.cli import main
from standard_fixtures import TINY_VIT, save_open_clip_vit

torch = pytest.importorskip("torch")
open_clip = pytest.importorskip("open_clip")


def _reference(name: str, images, texts, pretrained: str | None = None):
    """Normalised image and text vectors from open_clip directly (its model, transform, tokenizer)."""
    model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=pretrained)
    model.eval()
    tokenizer = open_clip.get_tokenizer(name)
    with torch.no_grad():
        iv = model.encode_image(torch.stack([preprocess(im) for im in images]), normalize=True)
        tv = model.encode_text(tokenizer(texts), normalize=True)
    return iv.numpy(), tv.numpy()


def test_standard_profile_embeds_as_open_clip_does(tmp_path, capsys):
    from mmrec.embed.catalog import read_vectors
    from mmrec.embed.encoder import Encoder
    from mmrec.images import load_image

    torch.set_num_threads(1)
    vit = save_open_clip_vit(tmp_path / "vit")
    store = ArtifactStore(tmp_path / "art")
    ingest(store, write_catalog(tmp_path / "src", 12))
    base = ["--artifacts", str(store.root), "--profile", "standard", "--quiet"]
    sets = ["--set", f"model.name=local-dir:{vit}", "--set", "model.device=cpu", "--set", "catalog.decode_workers=1"]
    assert main([*base, "embed", "train", *sets]) == 0  # the profile's epochs 0: package as is
    enc_version = capsys.readouterr().out.strip()
    assert main([*base, "embed", "catalog", *sets]) == 0
    art = store.load("vectors", capsys.readouterr().out.strip())
    table, vecs = read_vectors(art)
    assert vecs.shape == (12, TINY_VIT["embed_dim"]) and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)

    ids = table.column("item_id").to_pylist()
    images = [load_image(tmp_path / "src" / "images" / f"{i}.jpg") for i in ids]
    texts = ["red tshirt", "navy blue jeans for women"]
    ref_images, ref_texts = _reference(f"local-dir:{vit}", images, texts)
    np.testing.assert_allclose(vecs, ref_images, atol=1e-5)

    enc = Encoder.load(store, enc_version, device="cpu")  # the packaged artifact, reloaded
    assert enc.preprocess_mode == "open_clip" and enc.image_size == 32
    np.testing.assert_allclose(enc.encode_texts(texts), ref_texts, atol=1e-5)
    odd = [Image.new("RGB", (90, 40), (200, 30, 30)), Image.new("RGB", (20, 70), (10, 90, 30))]
    np.testing.assert_allclose(enc.encode_images(odd), _reference(f"local-dir:{vit}", odd, texts)[0], atol=1e-5)
    meta = json.loads((store.load("encoder", enc_version).path / "encoder.json").read_text())
    assert meta["preprocess"] == "open_clip" and meta["dim"] == TINY_VIT["embed_dim"]


def test_registered_architecture_with_a_checkpoint_file(tmp_path):
    """A built-in-style name (registered with open_clip.add_model_config) + `pretrained` as a
    weights file: how a ViT-B-16-SigLIP checkpoint downloaded elsewhere is configured."""
    from mmrec.embed.config import ModelSpec
    from mmrec.embed.encoder import Encoder

    torch.set_num_threads(1)
    vit = save_open_clip_vit(tmp_path / "vit", seed=3)
    configs = tmp_path / "configs"
    configs.mkdir()
    name = "test-standard-tiny-vit"
    (configs / f"{name}.json").write_text(json.dumps(TINY_VIT))
    open_clip.add_model_config(configs)
    weights = str(vit / "open_clip_model.safetensors")
    enc = Encoder.create(ModelSpec(name=name, pretrained=weights, preprocess="open_clip", device="cpu"))
    assert enc.encoder_id == f"{name}:{weights}" and enc.dim == TINY_VIT["embed_dim"]
    images = [Image.new("RGB", (64, 48), (20, 30, 90)), Image.new("RGB", (33, 80), (240, 200, 10))]
    ref_images, ref_texts = _reference(name, images, ["green handbag"], pretrained=weights)
    # the registered config states no preprocessing: open_clip's defaults apply, in both paths
    np.testing.assert_allclose(enc.encode_images(images), ref_images, atol=1e-5)
    np.testing.assert_allclose(enc.encode_texts(["green handbag"]), ref_texts, atol=1e-5)
    # the weights are the file's, not a random init
    np.testing.assert_allclose(enc.encode_texts(["green handbag"]),
                               _reference(f"local-dir:{vit}", images, ["green handbag"])[1], atol=1e-5)
