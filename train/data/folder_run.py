"""The splits of a ``--dataset folder`` run: decoded once into the uint8 cache when they fit
in memory, streamed through DataLoader workers otherwise; size and statistics measured."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple

from frossl_hub.specs import DatasetSpec, folder_spec

from .base import ArrayDataset, DatasetError
from .cache import cached_arrays
from .folders import ImageCrops, _FileList
from .user_folder import (FOLDER, Sample, channel_stats, check_headers, decode_folder, median_short_side,
                          read_full, scan_folder)

__all__ = ["FolderOptions", "FolderData", "load_folder", "IN_MEMORY_MAX_BYTES"]

IN_MEMORY_MAX_BYTES = 200_000 * 3 * 64 * 64  # uint8 pixels held in memory: 200k images at 64 px


@dataclass(frozen=True)
class FolderOptions:
    """How a folder of images is read (the command line's folder flags)."""

    labels: str = "auto"  # class folders: auto (detect), folders (require), none (ignore)
    val_fraction: Optional[float] = None  # held out per class, seeded, when there is no DIR/val
    # (None: 10% of a labelled folder's classes, DEFAULT_VAL_FRACTION; 0: none)
    image_size: Optional[int] = None  # None: the median short side, at most 224
    strict: bool = False  # refuse unreadable files instead of skipping them
    stream: bool = False  # stream through DataLoader workers even when the data fits in memory
    mean: Optional[Tuple[float, ...]] = None  # None: measured on a sample of the train split
    std: Optional[Tuple[float, ...]] = None


@dataclass
class FolderData:
    """A folder run's splits and what was measured on them."""

    spec: DatasetSpec  # classes, image size, mean and std of this folder
    pretrain: Any  # ArrayDataset, or ImageCrops in train mode
    train: Any  # the same images for evaluation: ArrayDataset, or ImageCrops in eval mode
    val: Optional[Any]  # the held-out split (None without one)
    in_memory: bool
    held_out: str
    skipped: List[Tuple[str, str]] = field(default_factory=list)  # unreadable files left out


def _file_list(samples: Sequence[Sample], classes: List[str]) -> _FileList:
    files = _FileList(classes=list(classes))
    for path, label in samples:
        st = os.stat(path)
        files.add([(path, st.st_size, st.st_mtime_ns)], label)
    return files


def _decoded(root: Path, split: str, samples: Sequence[Sample], classes: List[str], size: int,
             opts: FolderOptions, cache_dir: Optional[Path], progress: bool) -> ArrayDataset:
    """A split decoded at ``size`` px, from the cache when nothing changed since last time."""
    ds = cached_arrays(FOLDER, root, split, _file_list(samples, classes), [], cache_dir,
                       lambda: decode_folder(samples, classes, size, opts.strict, progress),
                       tag=f"{size}px-")
    if ds.skipped and opts.strict:  # skipped when the cache was written without --strict
        path, reason = ds.skipped[0]
        raise DatasetError(f"{FOLDER}: unreadable image ({reason}); refused because of --strict: {path}")
    return ds


def _streamed(samples: Sequence[Sample], classes: List[str], size: int, num_views: int,
              scale: Tuple[float, float], eval_mode: bool) -> ImageCrops:
    return ImageCrops(FOLDER, samples, classes, size, num_views=num_views, scale=scale,
                      eval_mode=eval_mode, crop_pct=1.0, decode=read_full)


def load_folder(root: Path, opts: FolderOptions, seed: int = 0, num_views: int = 2,
                scale: Tuple[float, float] = (0.08, 1.0), cache_dir: Optional[Path] = None,
                progress: bool = True) -> FolderData:
    """Scan, size, read and measure a folder of images (see ``train.data.user_folder``).

    Raises:
        DatasetError: naming the folder or file that cannot be used.
    """
    scan = scan_folder(root, opts.labels, opts.val_fraction, seed)
    size = opts.image_size or median_short_side([p for p, _ in scan.train])
    n_images = len(scan.train) + len(scan.val)
    in_memory = not opts.stream and n_images * 3 * size * size <= IN_MEMORY_MAX_BYTES
    if in_memory:
        train = _decoded(scan.root, "train", scan.train, scan.classes, size, opts, cache_dir, progress)
        val = (_decoded(scan.root, "val", scan.val, scan.classes, size, opts, cache_dir, progress)
               if scan.val else None)
        pretrain, skipped = train, train.skipped + (val.skipped if val is not None else [])
        stats_images = train.images
    else:
        kept, skipped = check_headers(scan.train + scan.val, opts.strict, progress)
        readable = {path for path, _ in kept}
        train_samples = [s for s in scan.train if s[0] in readable]
        val_samples = [s for s in scan.val if s[0] in readable]
        pretrain = _streamed(train_samples, scan.classes, size, num_views, scale, eval_mode=False)
        train = _streamed(train_samples, scan.classes, size, 1, scale, eval_mode=True)
        val = _streamed(val_samples, scan.classes, size, 1, scale, eval_mode=True) if val_samples else None
        stats_images = decode_folder(train_samples[:: max(1, len(train_samples) // 2000)], scan.classes,
                                     size, strict=False, progress=progress).images
    if len(train) < 2:
        raise DatasetError(f"{FOLDER}: only {len(train)} readable training image(s) under {root} "
                           f"({len(skipped)} unreadable); self-supervised training needs at least 2")
    mean, std = (opts.mean, opts.std) if opts.mean and opts.std else channel_stats(stats_images, seed)
    spec = folder_spec(f"images in {Path(root).name or root}", scan.classes, size, mean, std,
                       "val" if val is not None else "train")
    return FolderData(spec, pretrain, train, val, in_memory, scan.held_out, skipped)
