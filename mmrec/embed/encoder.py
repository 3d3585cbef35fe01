"""CLIP encoders (open_clip): create, save, load, and embed images and texts.

An encoder artifact (`encoder/<version>/`) is an open_clip "local-dir" model folder
(``open_clip_config.json`` + ``open_clip_model.safetensors``) plus ``encoder.json`` with what
mmrec needs to reproduce the preprocessing. Loading therefore goes through open_clip's own
``create_model("local-dir:...")``, the same code path as any pretrained model on disk.

Architectures are data: ``model_configs/mmrec-clip-*.json`` are registered with
``open_clip.add_model_config``; standard models are named like any open_clip model
(``ViT-B-16-SigLIP`` + pretrained tag, ``hf-hub:Marqo/marqo-fashionSigLIP``, ``local-dir:/path``).
Vectors are float32 and L2-normalised, so inner product == cosine.
"""

from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np

from mmrec import kinds
from mmrec.embed.config import ModelSpec
from mmrec.embed.slot_head import SlotHead
from mmrec.errors import ArtifactError, InputError
from mmrec.images import resize_letterbox

if TYPE_CHECKING:  # heavy: imported only where the encoder is actually used
    import torch
    from PIL import Image

    from mmrec.artifacts import ArtifactStore

META_FILE = "encoder.json"
OPEN_CLIP_CONFIG = "open_clip_config.json"
WEIGHTS_FILE = "open_clip_model.safetensors"
MODEL_CONFIG_DIR = Path(__file__).resolve().parent / "model_configs"

_registered = False


@contextmanager
def _quiet_root_logger(enabled: bool) -> Iterator[None]:
    """open_clip warns on the root logger for every random init, which mmrec does on purpose."""
    root = logging.getLogger()
    old = root.level
    if enabled:
        root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(old)


def register_model_configs() -> None:
    """Make mmrec's architectures (mmrec-clip-tiny, mmrec-clip-mini) known to open_clip (idempotent)."""
    global _registered
    if not _registered:
        import open_clip

        open_clip.add_model_config(MODEL_CONFIG_DIR)
        _registered = True


def resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"model.device={name!r} but no CUDA GPU is available; use 'cpu' or 'auto'")
    return name


def _model_cfg_for(spec: ModelSpec) -> dict[str, Any]:
    """The architecture dict of ``spec.name`` (needed to save the model as a local-dir folder)."""
    import open_clip

    if spec.name.startswith("local-dir:"):
        path = Path(spec.name[len("local-dir:"):]) / OPEN_CLIP_CONFIG
        try:
            return json.loads(path.read_text(encoding="utf-8"))["model_cfg"]
        except (OSError, KeyError, json.JSONDecodeError) as e:
            raise InputError(f"{path}: not an open_clip local-dir config ({e}); it must hold "
                             "{'model_cfg': ..., 'preprocess_cfg': ...}") from e
    if spec.name.startswith("hf-hub:"):
        from open_clip.factory import _get_hf_config  # the hub config is the only source here

        return _get_hf_config(spec.name[len("hf-hub:"):])["model_cfg"]
    cfg = open_clip.get_model_config(spec.name)
    if cfg is None:
        raise InputError(f"unknown open_clip model {spec.name!r}; registered names include "
                         f"{[m for m in open_clip.list_models() if m.startswith('mmrec-')]} and "
                         f"{len(open_clip.list_models())} open_clip built-ins (open_clip.list_models())")
    return cfg


class Encoder:
    """An open_clip model with its tokenizer and preprocessing; embeds images and texts.

    Args:
        model: an open_clip CLIP model (set to eval mode here).
        tokenizer: open_clip tokenizer of that model.
        encoder_id: identifies the weights; stored beside every vector made with them.
        model_cfg: the architecture dict (saved as open_clip_config.json).
        preprocess: "letterbox" (mmrec's white-square fit) or "open_clip" (the model's transform).
        device: torch device string.
    """

    def __init__(self, model: "torch.nn.Module", tokenizer: Any, *, encoder_id: str,
                 model_cfg: dict[str, Any], preprocess: str = "letterbox", device: str = "cpu",
                 name: str = "", version: str | None = None) -> None:
        import open_clip

        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.encoder_id = encoder_id
        self.model_cfg = model_cfg
        self.preprocess_mode = preprocess
        self.device = device
        self.name = name
        self.version = version
        self.slot_head: SlotHead | None = None  # trained with train.slot_head (mmrec.embed.slot_head)
        pp = open_clip.get_model_preprocess_cfg(model)
        size = pp.get("size", model.visual.image_size)
        self.image_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        self.mean = tuple(float(x) for x in pp.get("mean", open_clip.OPENAI_DATASET_MEAN))
        self.std = tuple(float(x) for x in pp.get("std", open_clip.OPENAI_DATASET_STD))
        self._transform = None
        if preprocess == "open_clip":
            # open_clip exports these from open_clip.transform only (not the package top level)
            from open_clip.transform import PreprocessCfg, image_transform_v2, merge_preprocess_dict

            self._transform = image_transform_v2(PreprocessCfg(**merge_preprocess_dict(PreprocessCfg(), pp)),
                                                 is_train=False)
        elif preprocess != "letterbox":
            raise InputError(f"preprocess must be 'letterbox' or 'open_clip', got {preprocess!r}")

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def create(cls, spec: ModelSpec, *, encoder_id: str | None = None) -> "Encoder":
        """A new encoder from ``spec``: random init for mmrec-clip-*, else the pretrained weights.

        Raises:
            InputError: unknown name, or weights that cannot be found offline (with the fix).
        """
        import open_clip

        register_model_configs()
        device = resolve_device(spec.device)
        model_cfg = _model_cfg_for(spec)
        try:
            with _quiet_root_logger(spec.pretrained is None):
                model = open_clip.create_model(spec.name, pretrained=spec.pretrained, device=device)
        except (RuntimeError, FileNotFoundError, ValueError, OSError) as e:
            raise InputError(
                f"cannot create open_clip model {spec.name!r} (pretrained={spec.pretrained!r}): {e}. "
                "Without a model hub, point model.pretrained at a checkpoint file or use "
                "model.name=local-dir:/folder with open_clip_config.json and weights") from e
        tokenizer = open_clip.get_tokenizer(spec.name)
        # hf-hub:/local-dir: names carry their weights; built-in names need the pretrained tag
        eid = encoder_id or (spec.name if spec.name.startswith(("hf-hub:", "local-dir:"))
                             else f"{spec.name}:{spec.pretrained or 'random'}")
        return cls(model, tokenizer, encoder_id=eid, model_cfg=model_cfg,
                   preprocess=spec.preprocess, device=device, name=spec.name)

    @staticmethod
    def read_meta(path: str | Path) -> dict[str, Any]:
        """The ``encoder.json`` of an encoder folder (its id, name, version, preprocessing), read
        without loading the model.

        Raises:
            ArtifactError: the folder has no readable encoder.json.
        """
        path = Path(path)
        try:
            return json.loads((path / META_FILE).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise ArtifactError(f"{path}: no readable {META_FILE} ({e}); not an mmrec encoder") from e

    @classmethod
    def from_dir(cls, path: str | Path, *, device: str = "auto") -> "Encoder":
        """Load an encoder folder written by `save` (an open_clip local-dir + encoder.json)."""
        import open_clip

        path = Path(path)
        meta = cls.read_meta(path)
        dev = resolve_device(device)
        name = f"local-dir:{path}"
        model = open_clip.create_model(name, device=dev)
        tokenizer = open_clip.get_tokenizer(name)
        model_cfg = json.loads((path / OPEN_CLIP_CONFIG).read_text(encoding="utf-8"))["model_cfg"]
        enc = cls(model, tokenizer, encoder_id=meta["encoder_id"], model_cfg=model_cfg,
                  preprocess=meta["preprocess"], device=dev, name=meta.get("name", ""),
                  version=meta.get("version"))
        enc.slot_head = SlotHead.load(path)
        return enc

    @classmethod
    def load(cls, store: "ArtifactStore", version: str | None = None, *,
             device: str = "auto") -> "Encoder":
        """Load the encoder artifact ``version`` (default: CURRENT) from ``store``."""
        art = store.load(kinds.ENCODER, version)
        return cls.from_dir(art.path, device=device)

    def save(self, out_dir: str | Path, *, encoder_id: str | None = None,
             version: str | None = None) -> None:
        """Write the open_clip local-dir folder + encoder.json into ``out_dir``.

        ``encoder_id`` replaces the id (e.g. with the artifact version once the weights are final).
        """
        import open_clip
        from safetensors.torch import save_model

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        if encoder_id is not None:
            self.encoder_id = encoder_id
        self.version = version or self.version
        pp = dict(open_clip.get_model_preprocess_cfg(self.model))
        pp = {k: (list(v) if isinstance(v, tuple) else v) for k, v in pp.items()}
        (out / OPEN_CLIP_CONFIG).write_text(
            json.dumps({"model_cfg": self.model_cfg, "preprocess_cfg": pp}, indent=2), encoding="utf-8")
        # save_model (not save_file) copes with tied tensors and keeps the state dict's names.
        save_model(self.model, str(out / WEIGHTS_FILE))
        meta = {"encoder_id": self.encoder_id, "name": self.name, "version": self.version,
                "preprocess": self.preprocess_mode, "image_size": self.image_size,
                "dim": self.dim, "context_length": self.context_length}
        (out / META_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
        if self.slot_head is not None:
            self.slot_head.save(out)

    # -- properties -----------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return int(self.model_cfg["embed_dim"])

    @property
    def context_length(self) -> int:
        return int(getattr(self.model, "context_length", 0) or self.tokenizer.context_length)

    # -- preprocessing --------------------------------------------------------------------
    def to_pixels(self, img: "Image.Image") -> np.ndarray:
        """uint8 [S, S, 3] letterboxed pixels of one image (what training caches)."""
        return np.asarray(resize_letterbox(img, self.image_size), dtype=np.uint8)

    def pixels_to_tensor(self, pixels: np.ndarray) -> "torch.Tensor":
        """uint8 [n, S, S, 3] -> normalised float tensor [n, 3, S, S] on the encoder's device."""
        import torch

        x = torch.from_numpy(np.ascontiguousarray(pixels)).to(self.device)
        x = x.permute(0, 3, 1, 2).float().div_(255.0)
        mean = torch.tensor(self.mean, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=self.device).view(1, 3, 1, 1)
        return (x - mean) / std

    def _image_batch(self, images: Sequence["Image.Image"]) -> "torch.Tensor":
        import torch

        if self._transform is not None:
            return torch.stack([self._transform(im) for im in images]).to(self.device)
        return self.pixels_to_tensor(np.stack([self.to_pixels(im) for im in images]))

    # -- embedding ------------------------------------------------------------------------
    def encode_images(self, images: Sequence["Image.Image"], *, batch_size: int = 256) -> np.ndarray:
        """float32 [n, d] L2-normalised image vectors (RGB PIL images, any size)."""
        if not images:
            return np.zeros((0, self.dim), np.float32)
        return self._run(lambda lo, hi: self._image_batch(images[lo:hi]), len(images), batch_size,
                         self.model.encode_image)

    def encode_pixels(self, pixels: np.ndarray, *, batch_size: int = 512) -> np.ndarray:
        """float32 [n, d] vectors of pre-letterboxed uint8 pixels [n, S, S, 3] (letterbox mode only)."""
        if self.preprocess_mode != "letterbox":
            raise InputError("encode_pixels needs a letterbox encoder; use encode_images")
        if pixels.ndim != 4 or pixels.shape[1:] != (self.image_size, self.image_size, 3):
            raise InputError(f"pixels must be uint8 [n, {self.image_size}, {self.image_size}, 3], "
                             f"got {pixels.shape}")
        return self._run(lambda lo, hi: self.pixels_to_tensor(pixels[lo:hi]), len(pixels),
                         batch_size, self.model.encode_image)

    def encode_texts(self, texts: Sequence[str], *, batch_size: int = 1024) -> np.ndarray:
        """float32 [n, d] L2-normalised text vectors."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        return self._run(lambda lo, hi: self.tokenizer(texts[lo:hi]).to(self.device), len(texts),
                         batch_size, self.model.encode_text)

    def _run(self, make_batch, n: int, batch_size: int, fn) -> np.ndarray:
        import torch

        out = []
        with torch.inference_mode():
            for lo in range(0, n, batch_size):
                feats = fn(make_batch(lo, min(n, lo + batch_size)), normalize=True)
                out.append(feats.float().cpu().numpy())
        vecs = np.concatenate(out).astype(np.float32, copy=False)
        # Renormalise in float32: half-precision models normalise in their own dtype.
        vecs /= np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
        return vecs

    def __repr__(self) -> str:
        return f"Encoder({self.encoder_id!r}, image_size={self.image_size}, device={self.device!r})"

