"""Tiny-ImageNet-200 in its official layout: tiny-imagenet-200/ with wnids.txt."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from .base import ArrayDataset, DatasetSpec, _error, _first_dir
from .cache import _cached_decode
from .folders import _FileList, _image_entries

def _load_tiny_imagenet(spec: DatasetSpec, root: Path, split: str,
                        cache: Optional[Path]) -> ArrayDataset:
    """Train from train/<wnid>/images/, test from the official val split (labelled by
    val/val_annotations.txt). Classes are the wnids of wnids.txt sorted, the order of
    ImageFolder, solo-learn and the Hugging Face copy."""
    name = spec.name
    folder = _first_dir((root, root / "tiny-imagenet-200"), lambda c: (c / "wnids.txt").is_file())
    if folder is None:
        raise _error(name, root, "no wnids.txt")
    wnids_file = folder / "wnids.txt"
    wnids = [w.strip() for w in wnids_file.read_text().splitlines() if w.strip()]
    if len(set(wnids)) != len(wnids):
        raise _error(name, wnids_file, "duplicate wnids")
    classes = sorted(wnids)
    index = {w: i for i, w in enumerate(classes)}
    files = _FileList(classes=classes)
    if split in ("train", "pretrain"):
        split = "train"
        for wnid in classes:
            images = folder / "train" / wnid / "images"
            entries = _image_entries(images)
            if not entries:
                raise _error(name, images, "missing or empty class folder")
            files.add(entries, index[wnid])
        extras = [wnids_file]
    else:
        ann = folder / "val" / "val_annotations.txt"
        if not ann.is_file():
            raise _error(name, ann, "missing val annotations")
        available = {os.path.basename(e[0]): e for e in _image_entries(folder / "val" / "images")}
        for lineno, line in enumerate(ann.read_text().splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split("\t")
            if len(parts) < 2 or parts[1] not in index:
                raise _error(name, ann, f"line {lineno} has no known wnid: {line[:80]!r}")
            if parts[0] not in available:
                raise _error(name, folder / "val" / "images" / parts[0], "missing val image")
            files.add([available[parts[0]]], index[parts[1]])
        extras = [wnids_file, ann]
    if not files.paths:
        raise _error(name, folder, f"no images in the {split} split")
    return _cached_decode(spec, folder, split, files, extras, cache)
