"""Mini/tiny Qwen2.5-VL building, tokenizer, chat template, processor equivalence, round trips,
and the training-image augmentation (mirror)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from mmrec.attributes.config import LoraSettings, MiniArch, ModelConfig, StageTrain
from mmrec.attributes.data import Collator, Example, Mirrored, PixelCache, encode_records
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
def test_training_set_is_mirrored_and_crops_are_no_option():
    """The product's one augmentation is the mirror (every record once each way per epoch); the
    random crop was measured and not adopted (lab/sft/crop.py), so its keys are unknown."""
    ds = augmented([Example([1, 2], [3], i) for i in range(3)], StageTrain())
    assert isinstance(ds, Mirrored) and len(ds) == 6 and [ds[i].flip for i in range(4)] == [False, True] * 2
    assert augmented([Example([1], [2], 0)], StageTrain(hflip=False)) == [Example([1], [2], 0)]
    with pytest.raises(ConfigError, match=r"unknown key 'lora_stage\.crop_scale'"):
        load_config("sft", profile="mini", overrides=["lora_stage.crop_scale=[0.7, 1.0]"])


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
    from mmrec.attributes.cnn import cached_or_train
    from mmrec.kinds import SFT_CNN as KIND
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
