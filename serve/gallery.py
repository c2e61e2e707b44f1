"""A served model's gallery: embedded at start-up by the model's own handle, held in memory.

``load_gallery_index`` reads the verified ``gallery.safetensors`` next to the weights, runs
its images through the handle's preprocessing and forward pass (the backend that serves
requests), and keeps L2-normalised embeddings plus each image as a PNG data URL, so a
nearest-neighbour query is one matrix product.
"""
from __future__ import annotations

import base64
import io
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Protocol, Tuple

import torch
import torch.nn.functional as F
from PIL import Image

if TYPE_CHECKING:
    from frossl_hub.gallery import Gallery
    from frossl_hub.inference import BatchTransform

    from .batcher import MicroBatcher

__all__ = ["Embedder", "GalleryIndex", "load_gallery_index", "model_folder", "png_data_url"]

_logger = logging.getLogger("serve")


def model_folder(model: torch.nn.Module) -> Optional[Path]:
    """The published folder a model's weights were loaded from (None if unknown)."""
    weights = (getattr(model, "pretrained_cfg", None) or {}).get("file")
    return Path(weights).parent if weights else None


def _pil(pixels: torch.Tensor) -> Image.Image:
    """A uint8 (C, H, W) tensor, one or three channels, as a PIL image (L or RGB)."""
    array = pixels.permute(1, 2, 0).numpy()
    return Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)


def png_data_url(pixels: torch.Tensor) -> str:
    """A uint8 (C, H, W) image, one or three channels, as a ``data:image/png`` URL."""
    buffer = io.BytesIO()
    _pil(pixels).save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


@dataclass(frozen=True)
class GalleryIndex:
    """A gallery with its embeddings, ready for nearest-neighbour queries."""

    gallery: "Gallery"
    embeddings: torch.Tensor  # float32 (N, D), L2-normalised
    images: Tuple[str, ...]  # PNG data URL of each gallery image

    def __len__(self) -> int:
        return len(self.gallery)

    def describe(self) -> Dict[str, Any]:
        return {"size": len(self), "dataset": self.gallery.dataset, "split": self.gallery.split}

    def nearest(self, features: torch.Tensor, k: int) -> List[List[Dict[str, Any]]]:
        """The ``k`` gallery items most cosine-similar to each row of ``features`` (B, D)."""
        similarity = F.normalize(features.float(), dim=1) @ self.embeddings.T
        scores, ids = similarity.topk(k, dim=1)
        labels = self.gallery.labels.tolist()
        names = self.gallery.label_names
        return [[{"index": i, "label": names[labels[i]], "class_id": labels[i],
                  "similarity": round(s, 6), "image": self.images[i]}
                 for i, s in zip(row_ids, row_scores)]
                for row_ids, row_scores in zip(ids.tolist(), scores.tolist())]

    @staticmethod
    def model_views(batch: torch.Tensor) -> List[str]:
        """The uint8 (N, C, H, W) inputs the model was given (resized, cropped, in its colour
        mode; normalised only after this) as PNG data URLs."""
        return [png_data_url(image) for image in batch]


class Embedder(Protocol):
    """What embeds a gallery: a served model's handle (``serve.registry.ModelHandle``), named
    here by what it offers so this module does not import the registry that imports it."""

    name: str
    model: torch.nn.Module
    transform: "BatchTransform"
    batcher: "MicroBatcher"

    def forward(self, batch: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]: ...


def load_gallery_index(handle: Embedder) -> Optional[GalleryIndex]:
    """Embed the gallery of a handle's model folder; None when the folder has none.

    Raises:
        ChecksumError, GalleryError: the gallery does not match SHA256SUMS or is unreadable.
    """
    from frossl_hub.gallery import read_gallery

    folder = model_folder(handle.model)
    gallery = read_gallery(folder) if folder is not None else None
    if gallery is None:
        return None
    started = time.perf_counter()
    batch = torch.stack([handle.transform.to_uint8(_pil(image)) for image in gallery.images])
    size = handle.batcher.max_batch_size
    features = torch.cat([handle.forward(chunk)[0] for chunk in batch.split(size)])
    index = GalleryIndex(gallery, F.normalize(features.float(), dim=1),
                         tuple(png_data_url(image) for image in gallery.images))
    _logger.info("model %s: gallery of %d %s images embedded in %.1f s", handle.name, len(index),
                 gallery.dataset, time.perf_counter() - started)
    return index
