"""Mini/tiny Qwen2.5-VL building, tokenizer, chat template, processor equivalence, round trips,
and the training-image augmentations (mirror, random resized crop)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from mmrec.attributes.config import LoraSettings, MiniArch, ModelConfig, StageTrain
from mmrec.attributes.data import (Collator, Example, Mirrored, PixelCache, RandomCropped, encode_records,
                                   resized_crop)
from mmrec.attributes.model import load_model, mrope_sections, save_model
from mmrec.attributes.prompts import chat_messages, messages
from mmrec.attributes.train import augmented, lora_target_regex
from mmrec.config import load_config
from mmrec.errors import ConfigError, InputError
from sft_fixtures import TINY_ARCH, draw_product, tiny_model


@pytest.fixture(scope="module")
def tiny():
    torch.set_num_threads(1)
    return tiny_model()


@pytest.mark.parametrize("head_dim", [8, 16, 32, 64, 128])
def test_mrope_sections_cover_half_the_head(head_dim):
    sec = mrope_sections(head_dim)
    assert sum(sec) == head_dim // 2 and len(sec) == 3 and min(sec) > 0


def test_config_uses_our_token_ids(tiny):
    model, processor, _, _ = tiny
    tok = processor.tokenizer
    cfg = model.config
    assert cfg.image_token_id == tok.convert_tokens_to_ids("<|image_pad|>") < len(tok)
    assert cfg.vision_start_token_id == tok.convert_tokens_to_ids("<|vision_start|>")
    assert cfg.video_token_id == tok.convert_tokens_to_ids("<|video_pad|>")
    assert model.generation_config.eos_token_id == tok.convert_tokens_to_ids("<|im_end|>")
    assert model.generation_config.pad_token_id == tok.pad_token_id
    assert cfg.text_config.vocab_size == len(tok)


def test_chat_template_is_chatml(tiny):
    _, processor, prompts, _ = tiny
    msgs = chat_messages(messages("SYS", "Describe.", "{}"), 1)
    text = processor.apply_chat_template(msgs, tokenize=False)
    assert text == ("<|im_start|>system\nSYS<|im_end|>\n<|im_start|>user\n"
                    "<|vision_start|><|image_pad|><|vision_end|>Describe.<|im_end|>\n"
                    "<|im_start|>assistant\n{}<|im_end|>\n")
    gen = processor.apply_chat_template(msgs[:-1], tokenize=False, add_generation_prompt=True)
    assert gen.endswith("<|im_start|>assistant\n") and text.startswith(gen)


def test_placeholders_must_match_images():
    with pytest.raises(InputError, match="exactly one per image"):
        chat_messages(messages("s", "no image here"[0:0] + "x"), 2)


def test_values_are_single_tokens(tiny):
    _, processor, _, values = tiny
    tok = processor.tokenizer
    for v in ["navy blue", "casual shoes", "men", "women", "unknown"]:
        assert len(tok(v, add_special_tokens=False)["input_ids"]) == 1, v
    assert tok.decode(tok('{"colour": "navy blue"}', add_special_tokens=False)["input_ids"]) == '{"colour": "navy blue"}'


def test_pixel_budget_bounds_image_tokens(tiny):
    _, processor, _, _ = tiny
    side = TINY_ARCH["image_size"]
    for size in [(2000, 3000), (60, 80), (side, side)]:
        out = processor.image_processor(images=[Image.new("RGB", size, "red")], return_tensors="pt")
        assert int(out["image_grid_thw"].prod()) // 4 <= (side // 28) ** 2


def test_collator_matches_processor(tiny, tmp_path):
    """Our pre-tokenised batches equal what Qwen2_5_VLProcessor builds from the same record."""
    _, processor, prompts, _ = tiny
    paths = []
    for i, (cat, col) in enumerate([("tshirts", "red"), ("jeans", "navy blue"), ("dresses", "green")]):
        p = tmp_path / f"{i}.jpg"
        draw_product(cat, col, jitter=i).save(p)
        paths.append(str(p))
    recs = [{"messages": messages(prompts.system, prompts.json_instruction(["category"]), f'{{"category": "x{i}"}}'),
             "images": [p]} for i, p in enumerate(paths)]
    cache = PixelCache.build(paths, TINY_ARCH["image_size"], tmp_path / "cache")
    ours = Collator(processor, cache)(encode_records(recs, processor, cache.index))
    texts = [processor.apply_chat_template(chat_messages(r["messages"], 1), tokenize=False) for r in recs]
    imgs = [Image.fromarray(np.asarray(cache.pixels[cache.index[p]])) for p in paths]
    ref = processor(text=texts, images=imgs, return_tensors="pt", padding=True)
    assert torch.allclose(ours["pixel_values"], ref["pixel_values"])
    assert torch.equal(ours["image_grid_thw"], ref["image_grid_thw"])
    for i in range(len(recs)):
        a, b = ours["attention_mask"][i].bool(), ref["attention_mask"][i].bool()
        assert torch.equal(ours["input_ids"][i][a], ref["input_ids"][i][b])
        assert torch.equal(ours["mm_token_type_ids"][i][a], ref["mm_token_type_ids"][i][b])
    # labels cover exactly the answer (+ <|im_end|> and newline), never the prompt or the image
    lab = ours["labels"][0]
    answer = processor.tokenizer.decode(lab[lab != -100])
    assert answer == '{"category": "x0"}<|im_end|>\n'


def test_save_load_round_trip(tiny, tmp_path):
    model, processor, _, _ = tiny
    with torch.no_grad():  # perturb so equality means the weights really travelled
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    save_model(model, processor, tmp_path / "m")
    cfg = ModelConfig(arch=MiniArch(**TINY_ARCH))
    loaded, proc2 = load_model(cfg, tmp_path / "m")
    img = Image.new("RGB", (56, 56), (10, 200, 30))
    text = processor.apply_chat_template(chat_messages(messages("s", "q"), 1), tokenize=False,
                                         add_generation_prompt=True)
    batch = processor(text=[text], images=[img], return_tensors="pt")
    batch2 = proc2(text=[text], images=[img], return_tensors="pt")
    assert torch.equal(batch["input_ids"], batch2["input_ids"])
    with torch.no_grad():
        assert torch.allclose(model(**batch).logits, loaded(**batch2).logits, atol=1e-6)


def test_arch_and_model_config_refuse_nonsense():
    with pytest.raises(ValueError, match="multiple of 28"):
        MiniArch(image_size=100)
    with pytest.raises(ValueError, match="divisible"):
        MiniArch(hidden_size=130, num_heads=4)
    with pytest.raises(ValueError, match="name_or_path"):
        ModelConfig(kind="standard")
    assert ModelConfig(kind="standard", name_or_path="x").pixel_budget() == (128 * 28 * 28, 256 * 28 * 28)


def test_load_refuses_missing_checkpoint(tmp_path):
    with pytest.raises(ConfigError, match="cannot load a model config"):
        load_model(ModelConfig(kind="standard", name_or_path=str(tmp_path / "nope")))


def test_lora_targets_scope(tiny):
    import re

    model = tiny[0]
    names = [n for n, _ in model.named_modules()]
    lm_only = re.compile(lora_target_regex(LoraSettings()))
    with_vision = re.compile(lora_target_regex(LoraSettings(vision=True, merger=True)))
    hit = [n for n in names if lm_only.fullmatch(n)]
    assert hit and all("language_model" in n for n in hit)
    assert any("visual.blocks" in n and n.endswith("qkv") for n in names if with_vision.fullmatch(n))
    assert any("visual.merger" in n for n in names if with_vision.fullmatch(n))


# ----------------------------------------------------------------------------------- augmentation
RED, BLUE, GREEN, YELLOW = (200, 30, 30), (20, 40, 180), (30, 160, 60), (240, 210, 30)


def _quadrants(side: int = 64) -> Image.Image:
    """Four solid quadrants: red | blue over green | yellow."""
    a = np.zeros((side, side, 3), dtype=np.uint8)
    h = side // 2
    a[:h, :h], a[:h, h:], a[h:, :h], a[h:, h:] = RED, BLUE, GREEN, YELLOW
    return Image.fromarray(a)


def _examples(n: int) -> list[Example]:
    return [Example([1, 2], [3], i) for i in range(n)]


def test_crop_is_off_by_default_and_refuses_bad_values():
    assert StageTrain().crop_scale is None
    cfg = load_config("sft", profile="mini")  # configs/sft.yaml keeps it off in both stages
    assert cfg.lora_stage.crop_scale is None and cfg.base_stage.crop_scale is None
    ds, cbs = augmented(_examples(3), cfg.lora_stage)
    assert isinstance(ds, Mirrored) and cbs == [] and all(ds[i].crop is None for i in range(len(ds)))
    for bad in ([0.9, 0.7], [0, 1], [0.5, 1.2], [-0.1, 0.5], [0.5]):
        with pytest.raises(ValueError, match="crop_scale"):
            StageTrain(crop_scale=bad)
    for bad in ([2, 1], [0, 1]):
        with pytest.raises(ValueError, match="crop_ratio"):
            StageTrain(crop_ratio=bad)
    # the CLI's --set values are YAML: a flow list reaches the tuple, a bad one names the key
    cfg = load_config("sft", profile="mini", overrides=["lora_stage.crop_scale=[0.7, 1.0]",
                                                         "lora_stage.crop_ratio=[1, 1]"])
    assert cfg.lora_stage.crop_scale == (0.7, 1.0) and cfg.lora_stage.crop_ratio == (1.0, 1.0)
    assert cfg.base_stage.crop_scale is None
    with pytest.raises(ConfigError, match=r"lora_stage\.crop_scale"):
        load_config("sft", profile="mini", overrides=["lora_stage.crop_scale=[1.0, 0.7]"])


def test_crop_windows_depend_only_on_seed_epoch_and_index():
    def windows(seed: int, epoch: int, order) -> dict[int, tuple]:
        ds = RandomCropped(Mirrored(_examples(20)), (0.5, 0.9), (1.0, 1.0), seed=seed)
        ds.set_epoch(epoch)
        return {i: ds[i].crop for i in order}

    a = windows(0, 1, range(40))
    assert a == windows(0, 1, reversed(range(40)))   # order of access (prefetch, resume skip) is irrelevant
    assert a != windows(0, 2, range(40)) and a != windows(1, 1, range(40))
    assert len(set(a.values())) == 40                 # the plain and the mirrored copy differ too
    for left, top, right, bottom in a.values():
        assert 0 <= left < right <= 1 and 0 <= top < bottom <= 1
        assert 0.5 - 1e-9 <= (right - left) * (bottom - top) <= 0.9 + 1e-9
        assert abs((right - left) - (bottom - top)) < 1e-9      # ratio [1, 1]: square stays square
    ds = RandomCropped(Mirrored(_examples(2)), (0.5, 0.9), (0.75, 4 / 3), seed=0)
    assert [ds[i].flip for i in range(4)] == [False, True, False, True]  # the mirror survives the crop
    ds, cbs = augmented(_examples(2), StageTrain(crop_scale=[0.7, 1.0], hflip=False))
    assert isinstance(ds, RandomCropped) and len(ds) == 2 and len(cbs) == 1


def test_epoch_sync_enters_the_epoch_of_a_resumed_state():
    from transformers import TrainerState

    from mmrec.attributes.trainer import epoch_sync

    ds = RandomCropped(_examples(4), (0.5, 1.0), (1.0, 1.0), seed=0)
    cb = epoch_sync(ds)
    for epoch, entered in [(0.0, 0), (2.0, 2), (2.75, 2), (3.0, 3)]:
        cb.on_epoch_begin(None, TrainerState(epoch=epoch), None)
        assert ds.epoch == entered


def _colours(img: Image.Image) -> set[tuple[int, ...]]:
    return {tuple(int(c) for c in px) for px in np.asarray(img).reshape(-1, 3)}


def test_crop_only_moves_pixels():
    plain = Image.new("RGB", (70, 50), RED)
    out = resized_crop(plain, (0.13, 0.21, 0.77, 0.94))
    assert out.size == plain.size and _colours(out) == {RED}          # colour untouched
    quads = _quadrants(64)
    # windows inside one quadrant are that quadrant's colour, blown up (2 px off its borders:
    # bicubic's support reaches that far past the window)
    assert _colours(resized_crop(quads, (0.05, 0.1, 0.4, 0.4))) == {RED}
    assert _colours(resized_crop(quads, (0.55, 0.0, 1.0, 0.45))) == {BLUE}
    # a window whose left third is red: the border lands at 64 * 1/3 = 21.3 px (pixel 20.8),
    # with bicubic's few pixels of blend and ringing around it and solid colours beyond
    row = np.asarray(resized_crop(quads, (1 / 3, 0.0, 5 / 6, 0.25)))[5]
    assert (row[:18] == RED).all() and (row[24:] == BLUE).all()
    assert int(np.argmax(row[:, 0] < (RED[0] + BLUE[0]) / 2)) == 21


def test_collator_crops_cached_and_loaded_images_alike(tmp_path):
    from types import SimpleNamespace

    quads, plain = _quadrants(56), Image.new("RGB", (56, 56), GREEN)
    paths = [str(tmp_path / "q.png"), str(tmp_path / "p.png")]
    quads.save(paths[0]), plain.save(paths[1])
    cache = PixelCache(np.stack([np.asarray(quads), np.asarray(plain)]), paths)
    tok = SimpleNamespace(pad_token_id=0, convert_tokens_to_ids=lambda t: 1)
    proc = SimpleNamespace(tokenizer=tok, image_processor=SimpleNamespace(merge_size=2))
    box = (0.2, 0.1, 0.9, 0.8)
    examples = [Example([], [], 0, crop=box), Example([], [], 1, crop=box, flip=True),
                Example([], [], 0, crop=box, flip=True), Example([], [], 0)]
    cached = Collator(proc, cache).images(examples)
    assert cached.shape == (4, 3, 56, 56) and cached.dtype == torch.uint8  # input size unchanged
    assert torch.equal(cached[0].permute(1, 2, 0), torch.from_numpy(np.array(resized_crop(quads, box))))
    assert (cached[1].permute(1, 2, 0) == torch.tensor(GREEN, dtype=torch.uint8)).all()
    assert torch.equal(cached[2], cached[0].flip(-1))        # crop first, then mirror
    assert torch.equal(cached[3].permute(1, 2, 0), torch.from_numpy(np.array(quads)))
    loaded = Collator(proc, None).images([Example([], [], paths[e.image], crop=e.crop, flip=e.flip)
                                          for e in examples])
    assert [im.size for im in loaded] == [(56, 56)] * 4
    for im, x in zip(loaded, cached):
        assert torch.equal(torch.from_numpy(np.array(im)), x.permute(1, 2, 0))


def test_answer_only_logits_keep_loss_and_gradients(tiny, tmp_path):
    """Training asks for logits over the answer columns only (left-padded batches); the loss
    and every gradient must equal those of the full right-padded batch."""
    from mmrec.attributes.trainer import answer_logits_only

    model, processor, prompts, _ = tiny
    paths, recs = [], []
    answers = ['{"category": "tshirts"}', '{"category": "jeans", "colour": "navy blue"}', '{"colour": "red"}']
    for i, ans in enumerate(answers):
        p = tmp_path / f"{i}.jpg"
        draw_product("tshirts", "red", jitter=i).save(p)
        # instructions of different lengths: answers start at different columns
        fields = ["category", "colour", "gender"][: i + 1]
        recs.append({"messages": messages(prompts.system, prompts.json_instruction(fields), ans), "images": [str(p)]})
        paths.append(str(p))
    cache = PixelCache.build(paths, TINY_ARCH["image_size"], tmp_path / "cache")
    ex = encode_records(recs, processor, cache.index)
    full = Collator(processor, cache)(ex)
    cut = answer_logits_only(Collator(processor, cache, left_pad=True)(ex))
    assert cut["logits_to_keep"] < full["input_ids"].shape[1]
    assert int((cut["labels"] != -100).sum()) == int((full["labels"] != -100).sum())

    def loss_and_grads(batch):
        model.zero_grad()
        loss = model(**batch).loss
        loss.backward()
        return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    torch.manual_seed(0)
    l_full, g_full = loss_and_grads(full)
    l_cut, g_cut = loss_and_grads(cut)
    model.zero_grad()
    assert l_cut == pytest.approx(l_full, rel=1e-5)
    assert g_full.keys() == g_cut.keys()
    for n in g_full:
        assert torch.allclose(g_full[n], g_cut[n], atol=1e-5, rtol=1e-4), n
    # a batch without labels (inference) passes through untouched
    plain = {k: v for k, v in full.items() if k != "labels"}
    assert answer_logits_only(plain) is plain


def test_cnn_baseline_is_reused_for_the_same_effective_budget(tmp_path):
    """`sft eval` reuses the reference CNN when the budget is the same, however it was given
    (null = the LoRA stage's CPU seconds, or that number set explicitly), and retrains otherwise."""
    from mmrec.artifacts import ArtifactStore
    from mmrec.attributes.cnn import KIND, cached_or_train
    from mmrec.attributes.config import CnnBaseline

    store = ArtifactStore(tmp_path)
    px = np.random.default_rng(0).integers(0, 255, (8, 16, 16, 3), dtype=np.uint8)
    labels = [{"category": "tshirts" if i % 2 else "jeans"} for i in range(8)]
    implicit = CnnBaseline(width=8, batch_size=4)
    _, _, first = cached_or_train(store, "ds1", px, labels, ["category"], implicit, 0.2, 16)
    _, _, again = cached_or_train(store, "ds1", px, labels, ["category"],
                                  CnnBaseline(width=8, batch_size=4, time_budget_s=0.2), 0.2, 16)
    assert again.version == first.version and store.versions(KIND) == [first.version]
    _, _, other = cached_or_train(store, "ds1", px, labels, ["category"], implicit, 0.4, 16)
    assert other.version != first.version and len(store.versions(KIND)) == 2


def test_label_smoothing_term_matches_torch(tiny, tmp_path):
    """(1 - eps) * the model's own loss + eps * uniform_target_loss == torch's label-smoothed
    cross-entropy on the same (shifted, masked) tokens."""
    from mmrec.attributes.trainer import uniform_target_loss

    model, processor, prompts, _ = tiny
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
