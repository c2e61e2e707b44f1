"""Folders of encoded images: listing them, decoding one, and ImageFolder trees streamed as crops."""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.io import ImageReadMode, decode_image, read_file
from torchvision.transforms import RandomResizedCrop
from torchvision.transforms.v2 import functional as TF

from .base import DatasetSpec, PathLike, _data_root, _error, _spec, _split

__all__ = ["ImageCrops", "ImageFolderCrops"]

_IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})

_Entry = Tuple[str, int, int]  # path, size, mtime_ns


@dataclass
class _FileList:
    """Images of one split with their labels and the stat data that fingerprints them."""

    classes: List[str]
    paths: List[str] = field(default_factory=list)
    labels: List[int] = field(default_factory=list)
    stats: List[Tuple[int, int]] = field(default_factory=list)

    def add(self, entries: Sequence[_Entry], label: int) -> None:
        for path, size, mtime in entries:
            self.paths.append(path)
            self.stats.append((size, mtime))
            self.labels.append(label)


def _image_entries(folder: Path) -> List[_Entry]:
    """Image files of one folder, sorted by name, with size and mtime (one scandir)."""
    try:
        entries = [e for e in os.scandir(folder)
                   if e.is_file() and Path(e.name).suffix.lower() in _IMAGE_SUFFIXES]
    except (FileNotFoundError, NotADirectoryError):
        return []
    entries.sort(key=lambda e: e.name)
    out = []
    for e in entries:
        st = e.stat()
        out.append((e.path, st.st_size, st.st_mtime_ns))
    return out



def _class_folder_files(spec: DatasetSpec, split_dir: Path) -> "_FileList":
    """``split_dir/<class>/*.jpg`` in the spec's official label order."""
    name = spec.name
    if not split_dir.is_dir():
        raise _error(name, split_dir, "missing split folder")
    found = sorted(e.name for e in os.scandir(split_dir)
                   if e.is_dir() and not e.name.startswith("."))
    classes = list(spec.label_names or found)
    if set(found) != set(classes):
        missing = sorted(set(classes) - set(found))
        extra = sorted(set(found) - set(classes))
        raise _error(name, split_dir, f"class folders do not match the {len(classes)} official "
                                      f"classes (missing {missing[:5]}, unexpected {extra[:5]})")
    files = _FileList(classes=classes)
    for label, cls in enumerate(classes):
        entries = _image_entries(split_dir / cls)
        if not entries:
            raise _error(name, split_dir / cls, "empty class folder")
        files.add(entries, label)
    return files


def _decode_rgb(name: str, path: Path) -> torch.Tensor:
    """One image as (3, H, W) uint8 RGB: torchvision's decoders (JPEG, PNG, greyscale, also a
    PNG named .JPEG), PIL as the fallback (CMYK and other oddities)."""
    try:
        return decode_image(read_file(str(path)), mode=ImageReadMode.RGB)
    except (RuntimeError, OSError):
        pass
    try:
        with Image.open(path) as img:
            arr = np.asarray(img.convert("RGB"))
    except (OSError, ValueError) as exc:
        raise _error(name, path, f"cannot decode image ({exc})") from exc
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()



# ---------------------------------------------------------------------------------------
# ImageNet-sized sets: crops decoded in DataLoader workers


class ImageCrops(Dataset):
    """Image files as uint8 crops, decoded and cropped in DataLoader workers.

    Each item is ``(views, label)`` with ``views`` a (V, 3, S, S) uint8 tensor. In train
    mode every view is an independent RandomResizedCrop(S, scale, ratio) of the decoded
    image, so decoding and cropping run in DataLoader workers and the accelerator only
    does colour jitter, blur and the rest. In eval mode (for probes) V is 1 and the view is
    deterministic: shorter side resized to S / crop_pct (256 for 224), then center crop S.
    Worker RNG is torch's, which DataLoader seeds per worker. ``decode(path)`` gives a
    (3, H, W) uint8 image (default: torchvision's decoders, PIL as the fallback).
    """

    def __init__(self, name: str, samples: Sequence[Tuple[str, int]], classes: Sequence[str],
                 image_size: int, *, num_views: int = 2, scale: Tuple[float, float] = (0.08, 1.0),
                 ratio: Tuple[float, float] = (3 / 4, 4 / 3), eval_mode: bool = False,
                 crop_pct: float = 0.875, decode: Optional[Callable[[str], torch.Tensor]] = None) -> None:
        self.name = name
        self.samples = list(samples)
        self.classes = list(classes)
        self.targets = [label for _, label in self.samples]
        self.image_size = int(image_size)
        self.num_views = 1 if eval_mode else int(num_views)
        self.scale = tuple(scale)
        self.ratio = tuple(ratio)
        self.eval_mode = eval_mode
        self.resize_size = int(round(self.image_size / crop_pct))
        self.decode = decode or functools.partial(_decode_path, name)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        img = self.decode(path)
        if self.eval_mode:
            return self._center(img)[None], label
        return torch.stack([self._random_crop(img) for _ in range(self.num_views)]), label

    def _random_crop(self, img: torch.Tensor) -> torch.Tensor:
        top, left, h, w = RandomResizedCrop.get_params(img, list(self.scale), list(self.ratio))
        size = [self.image_size, self.image_size]
        return TF.resized_crop(img, top, left, h, w, size, antialias=True)

    def _center(self, img: torch.Tensor) -> torch.Tensor:
        img = TF.resize(img, [self.resize_size], antialias=True)
        return TF.center_crop(img, [self.image_size, self.image_size])


def _decode_path(name: str, path: str) -> torch.Tensor:
    return _decode_rgb(name, Path(path))


class ImageFolderCrops(ImageCrops):
    """An official ImageFolder tree (``train/<wnid>/*.JPEG``, ``val/<wnid>/*.JPEG``) of a
    built-in data set as uint8 crops (see :class:`ImageCrops`)."""

    def __init__(self, dataset: str, data_dir: Optional[PathLike], split: str = "train", *,
                 num_views: int = 2, image_size: Optional[int] = None,
                 scale: Tuple[float, float] = (0.08, 1.0),
                 ratio: Tuple[float, float] = (3 / 4, 4 / 3),
                 eval_mode: bool = False, crop_pct: float = 0.875) -> None:
        spec = _spec(dataset)
        self.split = _split(spec.name, split)
        root = _data_root(spec.name, data_dir)
        sub = "train" if self.split in ("train", "pretrain") else \
            ("val" if (root / "val").is_dir() or not (root / "test").is_dir() else "test")
        self.root = root / sub
        if not self.root.is_dir():
            raise _error(spec.name, self.root, f"missing {sub}/ folder")
        classes, samples = _scan_image_folder(spec.name, self.root)
        if len(classes) != spec.num_classes:
            raise _error(spec.name, self.root, f"{len(classes)} class folders, "
                                               f"{spec.num_classes} expected")
        super().__init__(spec.name, samples, classes, int(image_size or spec.image_size),
                         num_views=num_views, scale=scale, ratio=ratio, eval_mode=eval_mode,
                         crop_pct=crop_pct)


def _scan_image_folder(name: str, root: Path) -> Tuple[List[str], List[Tuple[str, int]]]:
    """Sorted class folders and (path, label) samples, as torchvision's ImageFolder finds them."""
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

    try:
        classes, class_to_idx = find_classes(str(root))
        samples = make_dataset(str(root), class_to_idx, extensions=IMG_EXTENSIONS)
    except (FileNotFoundError, OSError) as exc:  # no class folder, or one with no images
        raise _error(name, root, f"empty or incomplete ImageFolder tree ({exc})") from exc
    return classes, samples
