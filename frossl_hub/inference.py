"""Eval preprocessing and batched embedding for loaded models."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

__all__ = ["BatchTransform", "ImageReadError", "get_transform", "embed", "to_model_mode", "model_input_mode",
           "open_image", "check_image_file"]

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


def _pretrained_cfg(model_or_name: Any) -> Dict[str, Any]:
    if isinstance(model_or_name, (str, Path)):
        return _cfg_of(model_or_name)
    if isinstance(model_or_name, dict):
        return dict(model_or_name)
    return dict(model_or_name.pretrained_cfg)


def _timm_eval_transform(cfg: Dict[str, Any], **kwargs: Any) -> Callable:
    from timm.data import create_transform, resolve_data_config

    return create_transform(**resolve_data_config(pretrained_cfg=cfg), **kwargs)


def get_transform(model_or_name: Any) -> Callable[[Image.Image], torch.Tensor]:
    """Eval preprocessing of a model (or catalog name / folder), from its pretrained cfg.

    timm's ``resolve_data_config`` + ``create_transform``, preceded by a conversion of
    any PIL image mode to the model's (grayscale models take RGB input and vice versa).
    """
    from torchvision import transforms as T

    cfg = _pretrained_cfg(model_or_name)
    return T.Compose([_ToMode(model_input_mode(cfg)), _timm_eval_transform(cfg)])


def _chw(image: Image.Image) -> torch.Tensor:
    array = np.array(image)  # a writable copy, as torch wants
    return torch.from_numpy(array[None] if array.ndim == 2 else array.transpose(2, 0, 1))


class BatchTransform:
    """``get_transform`` split in two, so the float work runs once per batch.

    ``to_uint8`` converts the mode, resizes and crops one image (timm's eval transform in its
    prefetcher form) and returns a (C, H, W) uint8 tensor; ``normalize`` turns a stacked
    (N, C, H, W) uint8 batch into the model's float32 input in one vectorised step. Equal to
    ``get_transform`` up to float rounding.
    """

    def __init__(self, model_or_name: Any) -> None:
        cfg = _pretrained_cfg(model_or_name)
        self.mode = model_input_mode(cfg)
        self.geometry = _timm_eval_transform(cfg, use_prefetcher=True)
        mean = torch.tensor(cfg.get("mean", (0.485, 0.456, 0.406)), dtype=torch.float32)
        std = torch.tensor(cfg.get("std", (0.229, 0.224, 0.225)), dtype=torch.float32)
        self.scale = (1.0 / (255.0 * std)).view(1, -1, 1, 1)  # (x / 255 - mean) / std, fused
        self.shift = (mean / std).view(1, -1, 1, 1)
        self._passthrough = self._identity_size(cfg)

    def _identity_size(self, cfg: Dict[str, Any]) -> Optional[Tuple[int, int]]:
        """(W, H) of images the resize and crop leave untouched (the input size when
        crop_pct is 1), found by running them once; None when no size is."""
        channels, height, width = cfg.get("input_size", (3, 224, 224))
        probe = np.random.default_rng(0).integers(0, 256, (height, width, channels), np.uint8)
        image = Image.fromarray(probe.squeeze(2) if channels == 1 else probe, self.mode)
        same = torch.equal(self.geometry(image), _chw(image))
        return (width, height) if same else None

    def to_uint8(self, image: Image.Image) -> torch.Tensor:
        """One image in any PIL mode -> (C, H, W) uint8 at the model's input size."""
        image = to_model_mode(image, self.mode)
        if image.size == self._passthrough:  # already the input size: skip resize and crop
            return _chw(image)
        return self.geometry(image)

    def normalize(self, batch: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) uint8 -> float32 model input."""
        return torch.addcmul(-self.shift, batch.to(torch.float32), self.scale)

    def __call__(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """A list of PIL images -> (N, C, H, W) float32 model input."""
        return self.normalize(torch.stack([self.to_uint8(image) for image in images]))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(mode={self.mode!r}, geometry={self.geometry})"


class ImageReadError(ValueError):
    """An image path that cannot be read as an image: missing, a folder, not an image, corrupt.
    The message names the path."""


def check_image_file(path: Union[str, Path]) -> Path:
    """``path`` as a Path when it is an existing file, else an ``ImageReadError`` saying why."""
    path = Path(path)
    if path.is_dir():
        raise ImageReadError(f"{path} is a folder, not an image file (embed its images: "
                             "python -m frossl_hub embed FOLDER)")
    if not path.exists():
        raise ImageReadError(f"{path}: no such image file")
    if not path.is_file():
        raise ImageReadError(f"{path} is not a regular file")
    return path


def open_image(path: Union[str, Path]) -> Image.Image:
    """Open and fully decode an image file.

    Raises:
        ImageReadError: naming ``path``: missing, a folder, not an image, truncated or corrupt.
    """
    path = check_image_file(path)
    try:
        with Image.open(path) as img:
            img.load()
            return img.copy() if getattr(img, "n_frames", 1) == 1 else _first_frame(img)
    except UnidentifiedImageError:
        raise ImageReadError(f"{path} is not an image PIL can read") from None
    except Image.DecompressionBombError as exc:
        raise ImageReadError(f"{path} is too large to decode safely: {exc}") from None
    except (OSError, SyntaxError, ValueError) as exc:  # truncated data, broken headers
        raise ImageReadError(f"{path} is a truncated or corrupt image: {exc}") from None


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
    backend: str = "auto",
) -> torch.Tensor:
    """N×512 float32 embeddings (pooled backbone features) of images, batched.

    Args:
        model: a loaded model (any head: the pooled pre-logits features are used).
        images: PIL images, image paths, or an already-preprocessed (N, C, H, W) tensor.
        batch_size: images per forward pass.
        normalize: L2-normalise each embedding.
        transform: per-image preprocessing for PIL/path inputs; default the model's eval
            preprocessing (``get_transform(model)``), run as a ``BatchTransform``.
        backend: ``auto`` (ONNX Runtime for a model on the CPU, PyTorch on CUDA), ``torch``
            or ``onnxruntime`` (``frossl_hub.backends``).

    Raises:
        ImageReadError: an image path that is missing, a folder, not an image or corrupt,
            named in the message.
    """
    from .backends import make_runner

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if isinstance(images, torch.Tensor) and images.ndim != 4:
        raise ValueError(f"a tensor batch must be (N, C, H, W), got shape {tuple(images.shape)}")
    items: Sequence[Any] = images if isinstance(images, torch.Tensor) else list(images)
    if not isinstance(items, torch.Tensor):  # a missing file or a folder fails before any work
        for item in items:
            if isinstance(item, (str, Path)):
                check_image_file(item)
    was_training = model.training
    model.eval()
    try:
        runner = make_runner(model, backend)
        batch_transform = None if transform or isinstance(items, torch.Tensor) else BatchTransform(model)
        outputs: List[torch.Tensor] = []
        for chunk in _batches(items, batch_size):
            if not isinstance(chunk, torch.Tensor):
                pil = [open_image(x) if isinstance(x, (str, Path)) else x for x in chunk]
                chunk = batch_transform(pil) if batch_transform else torch.stack(
                    [transform(image) for image in pil])  # type: ignore[misc]
            outputs.append(runner(chunk)[0])
    finally:
        model.train(was_training)
    out = torch.cat(outputs) if outputs else torch.empty(0, getattr(model, "num_features", 512))
    return F.normalize(out, dim=1) if normalize else out
