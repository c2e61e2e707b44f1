"""A model's gallery: a few real test images of its data set, to show nearest neighbours.

A published folder may hold ``gallery.safetensors``: uint8 images (N, C, H, W), their
labels and their index in the split they come from, chosen deterministically and
class-balanced. Like every file of the folder it is listed in ``SHA256SUMS`` and
checked against it before use, the way ``frossl_hub.hub.verify`` checks the others.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

import torch

from ._io import atomic_write_bytes, sha256_file, write_sums_file
from .hub import GALLERY_NAME, SUMS_NAME, ChecksumError, _check_digest, read_sums

__all__ = [
    "GALLERY_NAME",
    "MAX_GALLERY_BYTES",
    "MAX_GALLERY_IMAGES",
    "Gallery",
    "GalleryError",
    "balanced_indices",
    "gallery_bytes",
    "read_gallery",
    "save_gallery",
    "select_gallery",
]

MAX_GALLERY_IMAGES = 500  # per model
MAX_GALLERY_BYTES = 2_000_000  # of image pixels per model (2 MB): bundled folders stay small
_FORMAT = "frossl_hub.gallery.v1"
_META_KEY = "frossl_gallery"  # ONE metadata key: several would make the file's bytes vary


class GalleryError(ValueError):
    """A gallery that cannot be built or read; the message says what is wrong."""


@dataclass(frozen=True)
class Gallery:
    """Labelled images of one data set split, in the order the nearest-neighbour index uses."""

    images: torch.Tensor  # uint8 (N, C, H, W)
    labels: torch.Tensor  # int64 (N,)
    source_index: torch.Tensor  # int64 (N,): each image's position in the split
    label_names: Tuple[str, ...]
    dataset: str
    split: str

    def __post_init__(self) -> None:
        n = int(self.images.shape[0]) if self.images.ndim == 4 else -1
        if self.images.dtype != torch.uint8 or n < 1:
            raise GalleryError(f"gallery images must be uint8 (N, C, H, W) with N >= 1, got "
                               f"{self.images.dtype} {tuple(self.images.shape)}")
        for name in ("labels", "source_index"):
            value = getattr(self, name)
            if value.dtype != torch.int64 or tuple(value.shape) != (n,):
                raise GalleryError(f"gallery {name} must be int64 ({n},), got {value.dtype} "
                                   f"{tuple(value.shape)}")
        if int(self.labels.min()) < 0 or int(self.labels.max()) >= len(self.label_names):
            raise GalleryError(f"gallery labels must be in [0, {len(self.label_names)}), got "
                               f"[{int(self.labels.min())}, {int(self.labels.max())}]")
        if n > MAX_GALLERY_IMAGES or self.images.numel() > MAX_GALLERY_BYTES:
            raise GalleryError(f"a gallery holds at most {MAX_GALLERY_IMAGES} images and "
                               f"{MAX_GALLERY_BYTES} bytes of pixels; this one has {n} images, "
                               f"{self.images.numel()} bytes")

    def __len__(self) -> int:
        return int(self.images.shape[0])


def balanced_indices(labels: torch.Tensor, count: int) -> torch.Tensor:
    """``count`` indices into ``labels``, as even over the classes as possible, sorted.

    Each class gives its images in split order, one per class and round (lower class ids
    first), so every class gets ``count // classes`` or one more; a class that runs out
    leaves its share to the others.

    Raises:
        GalleryError: ``count`` is not in 1..len(labels).
    """
    if not 1 <= count <= labels.numel():
        raise GalleryError(f"gallery size must be in 1..{labels.numel()}, got {count}")
    rank = torch.empty_like(labels)  # position of each image within its class
    for cls in labels.unique():
        members = (labels == cls).nonzero().flatten()
        rank[members] = torch.arange(members.numel())
    order = torch.argsort(rank * (int(labels.max()) + 1) + labels, stable=True)
    return order[:count].sort().values


def select_gallery(images: torch.Tensor, labels: torch.Tensor, count: int,
                   label_names: Sequence[str], dataset: str, split: str) -> Gallery:
    """A class-balanced gallery of ``count`` images of a split held as uint8 arrays."""
    index = balanced_indices(labels, count)
    return Gallery(images[index].contiguous(), labels[index].to(torch.int64).contiguous(),
                   index.to(torch.int64), tuple(label_names), dataset, split)


def gallery_bytes(gallery: Gallery) -> bytes:
    """The gallery as safetensors bytes; equal galleries give equal bytes."""
    from safetensors.torch import save

    meta = json.dumps({"format": _FORMAT, "dataset": gallery.dataset, "split": gallery.split,
                       "label_names": list(gallery.label_names)}, sort_keys=True)
    return save({"images": gallery.images, "labels": gallery.labels,
                 "source_index": gallery.source_index}, metadata={_META_KEY: meta})


def save_gallery(gallery: Gallery, folder: Union[str, Path]) -> Path:
    """Write ``folder/gallery.safetensors`` and list it in ``folder/SHA256SUMS``, atomically
    each (the gallery first: a crash between them leaves a mismatch that reading reports)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise GalleryError(f"{folder} is not a folder; publish the model first.")
    path = atomic_write_bytes(folder / GALLERY_NAME, gallery_bytes(gallery))
    # only the gallery's line changes: a model file changed since publishing stays reported
    write_sums_file(folder / SUMS_NAME, dict(read_sums(folder), **{GALLERY_NAME: sha256_file(path)}))
    return path


def read_gallery(folder: Union[str, Path], check: bool = True) -> Optional[Gallery]:
    """The folder's gallery, or None when it has none.

    Args:
        folder: a published model folder.
        check: verify the file against the folder's SHA256SUMS first.

    Raises:
        ChecksumError: the gallery is not listed in SHA256SUMS or does not match it.
        GalleryError: the file is not a gallery this version can read.
    """
    from safetensors import SafetensorError, safe_open

    folder = Path(folder)
    path = folder / GALLERY_NAME
    if not path.is_file():
        return None
    if check:
        expected = read_sums(folder).get(GALLERY_NAME)
        if expected is None:
            raise ChecksumError(f"{path} is not listed in {folder / SUMS_NAME}, so it cannot be "
                                "verified; write galleries with `python -m train.gallery`.")
        _check_digest(path, expected, str(folder / SUMS_NAME))
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get(_META_KEY, "{}"))
            tensors = {key: f.get_tensor(key) for key in f.keys()}
        if meta.get("format") != _FORMAT:
            raise ValueError(f"format {meta.get('format')!r}, expected {_FORMAT!r}")
        return Gallery(tensors["images"], tensors["labels"], tensors["source_index"],
                       tuple(meta["label_names"]), meta["dataset"], meta["split"])
    except (SafetensorError, ValueError, KeyError, OSError) as exc:
        raise GalleryError(f"{path} is not a readable gallery: {exc}") from None
