"""STL-10: stl10_binary/ (column-major uint8 images, labels 1..10)."""
from __future__ import annotations

from pathlib import Path
from typing import List

import numpy as np
import torch

from .base import ArrayDataset, DatasetSpec, _error, _first_dir

_STL_SIZE = 96
_STL_BYTES = 3 * _STL_SIZE * _STL_SIZE


def _load_stl10(spec: DatasetSpec, root: Path, split: str) -> ArrayDataset:
    """STL-10 binaries, read in chunks straight into one preallocated tensor.

    Not torchvision's STL10 reader: it md5-hashes all 2.6 GB (unlabeled included) on every
    load and holds three copies of the 105k pretraining set at its peak; the format is
    simple enough to read in place, with the size checks it lacks.
    """
    name = spec.name
    folder = _first_dir((root, root / "stl10_binary"), lambda c: (c / "train_X.bin").is_file()
                        or (c / "test_X.bin").is_file())
    if folder is None:
        raise _error(name, root, "no STL-10 binaries")
    parts = {"train": [("train_X.bin", "train_y.bin")], "test": [("test_X.bin", "test_y.bin")],
             "pretrain": [("train_X.bin", "train_y.bin"), ("unlabeled_X.bin", None)]}[split]
    counts = [_stl_count(name, folder / x) for x, _ in parts]
    images = torch.empty((sum(counts), 3, _STL_SIZE, _STL_SIZE), dtype=torch.uint8)
    labels = torch.full((sum(counts),), -1, dtype=torch.int64)
    start = 0
    for (x_file, y_file), n in zip(parts, counts):
        _read_stl_images(name, folder / x_file, images[start:start + n])
        if y_file is not None:
            labels[start:start + n] = _read_stl_labels(name, folder / y_file, n, spec.num_classes)
        start += n
    return ArrayDataset(images, labels, _stl_classes(spec, folder))


def _stl_count(name: str, path: Path) -> int:
    if not path.is_file():
        raise _error(name, path, "missing file")
    size = path.stat().st_size
    if size == 0 or size % _STL_BYTES:
        raise _error(name, path, f"truncated or corrupt file ({size} bytes is not a positive "
                                 f"multiple of {_STL_BYTES})")
    return size // _STL_BYTES


def _read_stl_images(name: str, path: Path, out: torch.Tensor, chunk: int = 2048) -> None:
    """Fill ``out`` (n, 3, 96, 96) from a column-major STL-10 image file."""
    n = out.shape[0]
    full = np.empty((min(chunk, n), 3, _STL_SIZE, _STL_SIZE), np.uint8)  # reused: no page faults
    with open(path, "rb") as f:
        for start in range(0, n, chunk):
            buf = full[:min(chunk, n - start)]
            if f.readinto(buf) != buf.nbytes:
                raise _error(name, path, "truncated file")
            out[start:start + buf.shape[0]] = torch.from_numpy(buf).transpose(2, 3)


def _read_stl_labels(name: str, path: Path, n: int, num_classes: int) -> torch.Tensor:
    if not path.is_file():
        raise _error(name, path, "missing file")
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.shape[0] != n:
        raise _error(name, path, f"{raw.shape[0]} labels for {n} images")
    if raw.min() < 1 or raw.max() > num_classes:
        raise _error(name, path, f"labels outside 1..{num_classes}")
    return torch.from_numpy(raw.astype(np.int64) - 1)


def _stl_classes(spec: DatasetSpec, folder: Path) -> List[str]:
    names_file = folder / "class_names.txt"
    if names_file.is_file():
        return [c.strip() for c in names_file.read_text().splitlines() if c.strip()]
    return list(spec.label_names or ())
