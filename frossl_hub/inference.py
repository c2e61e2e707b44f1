"""Eval preprocessing and batched embedding for loaded models."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

__all__ = ["get_transform", "embed", "to_model_mode", "model_input_mode", "open_image"]

ImageInput = Union[Image.Image, str, Path]
HIGH_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")  # 16/32-bit greyscale


def model_input_mode(model_or_cfg: Any) -> str:
    """PIL mode a model expects: "L" for one input channel, else "RGB"."""
    cfg = getattr(model_or_cfg, "pretrained_cfg", model_or_cfg) or {}
    channels = cfg.get("input_size", (3,))[0]
    return "L" if channels == 1 else "RGB"


def to_model_mode(image: Image.Image, mode: str) -> Image.Image:
    """Convert any PIL image (palette, alpha, CMYK, 16-bit, multi-frame) to ``mode``.

    16/32-bit greyscale is rescaled to 8 bits by its range rather than clipped, and
    transparent pixels are composited onto white, as a viewer would show them.
    """
    if getattr(image, "n_frames", 1) > 1:
        image.seek(0)
    if image.mode in HIGH_BIT_MODES:
        arr = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or arr.max() > 255 else 255.0
        if image.mode == "F":
            top = max(float(arr.max()), 1.0)
        image = Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    if image.mode not in ("1", "L", "RGB", "P") and image.mode != mode:
        image = image.convert("RGB")  # LAB, HSV, YCbCr... convert to RGB, not always to L
    return image if image.mode == mode else image.convert(mode)


class _ToMode:
    """Transform step: convert a PIL image to the model's mode (picklable for workers)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode

    def __call__(self, image: Image.Image) -> Image.Image:
        return to_model_mode(image, self.mode)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(mode={self.mode!r})"


def _cfg_of(name_or_path: Union[str, Path]) -> Dict[str, Any]:
    """Pretrained cfg of a published model; a catalog name's own cfg when it has no weights here."""
    from .catalog import CATALOG, clean_name
    from .hub import ModelNotFoundError, resolve
    from .models import pretrained_cfg_for

    try:
        return dict(resolve(name_or_path, check=False).config["pretrained_cfg"])
    except ModelNotFoundError:
        entry = CATALOG.get(clean_name(str(name_or_path)))
        if entry is None:
            raise
        return pretrained_cfg_for(entry.spec, entry.architecture, entry.input_side)


def get_transform(model_or_name: Any) -> Callable[[Image.Image], torch.Tensor]:
    """Eval preprocessing of a model (or catalog name / folder), from its pretrained cfg.

    timm's ``resolve_data_config`` + ``create_transform``, preceded by a conversion of
    any PIL image mode to the model's (grayscale models take RGB input and vice versa).
    """
    from timm.data import create_transform, resolve_data_config
    from torchvision import transforms as T

    if isinstance(model_or_name, (str, Path)):
        cfg = _cfg_of(model_or_name)
    elif isinstance(model_or_name, dict):
        cfg = dict(model_or_name)
    else:
        cfg = dict(model_or_name.pretrained_cfg)
    data_cfg = resolve_data_config(pretrained_cfg=cfg)
    return T.Compose([_ToMode(model_input_mode(cfg)), create_transform(**data_cfg)])


def open_image(path: Union[str, Path]) -> Image.Image:
    """Open and fully decode an image file (raises on truncated or non-image files)."""
    with Image.open(path) as img:
        img.load()
        return img.copy() if getattr(img, "n_frames", 1) == 1 else _first_frame(img)


def _first_frame(img: Image.Image) -> Image.Image:
    img.seek(0)
    return img.convert(img.mode if img.mode != "P" else "RGBA")


def _batches(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


@torch.inference_mode()
def embed(
    model: torch.nn.Module,
    images: Union[torch.Tensor, Sequence[ImageInput]],
    batch_size: int = 256,
    normalize: bool = False,
    transform: Optional[Callable[[Image.Image], torch.Tensor]] = None,
) -> torch.Tensor:
    """N×512 float32 embeddings (pooled backbone features) of images, batched.

    Args:
        model: a loaded model (any head: the pooled pre-logits features are used).
        images: PIL images, image paths, or an already-preprocessed (N, C, H, W) tensor.
        batch_size: images per forward pass.
        normalize: L2-normalise each embedding.
        transform: preprocessing for PIL/path inputs; default ``get_transform(model)``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    param = next(model.parameters())
    if isinstance(images, torch.Tensor):
        if images.ndim != 4:
            raise ValueError(f"a tensor batch must be (N, C, H, W), got shape {tuple(images.shape)}")
        tensors: Sequence[Any] = images
    else:
        tensors = list(images)
        transform = transform or get_transform(model)
    outputs: List[torch.Tensor] = []
    was_training = model.training
    model.eval()
    for chunk in _batches(tensors, batch_size):
        if isinstance(chunk, torch.Tensor):
            batch = chunk
        else:
            batch = torch.stack([
                transform(open_image(x) if isinstance(x, (str, Path)) else x) for x in chunk
            ])
        batch = batch.to(param.device, param.dtype, non_blocking=True)
        features = model.forward_head(model.forward_features(batch), pre_logits=True)
        outputs.append(features.float().cpu())
    model.train(was_training)
    out = torch.cat(outputs) if outputs else torch.empty(0, getattr(model, "num_features", 512))
    return F.normalize(out, dim=1) if normalize else out
