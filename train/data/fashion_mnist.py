"""Fashion-MNIST: IDX files, gzipped or not."""
from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from .base import ArrayDataset, DatasetSpec, _error, _first_dir

_IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
              "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
_IDX_UBYTE = 0x08


def _load_fashion_mnist(spec: DatasetSpec, root: Path, split: str) -> ArrayDataset:
    """(N, 1, 28, 28) images and labels from the IDX pair of the split."""
    name = spec.name
    split = "train" if split == "pretrain" else split
    image_name, label_name = _IDX_FILES[split]
    candidates = (root, root / "raw", root / "FashionMNIST" / "raw", root / "fashion-mnist")
    folder = _first_dir(candidates, lambda c: _idx_path(c, image_name) is not None)
    if folder is None:
        raise _error(name, root, f"no {image_name}(.gz)")
    label_path = _idx_path(folder, label_name)
    if label_path is None:
        raise _error(name, folder / label_name, "missing file")
    images = _read_idx(name, _idx_path(folder, image_name), ndim=3)  # type: ignore[arg-type]
    labels = _read_idx(name, label_path, ndim=1)
    if labels.shape[0] != images.shape[0]:
        raise _error(name, label_path, f"{labels.shape[0]} labels for {images.shape[0]} images")
    return ArrayDataset(torch.from_numpy(images[:, None].copy()),
                        torch.from_numpy(labels.astype(np.int64)), list(spec.label_names or ()))


def _idx_path(folder: Path, stem: str) -> Optional[Path]:
    return next((p for p in (folder / stem, folder / f"{stem}.gz") if p.is_file()), None)


def _read_idx(name: str, path: Path, ndim: int) -> np.ndarray:
    """Parse an unsigned-byte IDX file: magic 0x0000 0x08 ndim, ndim big-endian uint32 dims,
    then exactly prod(dims) bytes."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise _error(name, path, f"unreadable file ({type(exc).__name__}: {exc})") from exc
    head = 4 + 4 * ndim
    magic = raw[:4]
    if magic != bytes((0, 0, _IDX_UBYTE, ndim)):
        raise _error(name, path, f"wrong magic number 0x{magic.hex()} (IDX ubyte with {ndim} "
                                 f"dims is 0x0000080{ndim})")
    if len(raw) < head:
        raise _error(name, path, "truncated header")
    dims = struct.unpack(f">{ndim}I", raw[4:head])
    expected = int(np.prod(dims))
    if len(raw) - head != expected:
        raise _error(name, path, f"truncated or corrupt file: {len(raw) - head} data bytes, "
                                 f"dims {dims} need {expected}")
    return np.frombuffer(raw, dtype=np.uint8, offset=head).reshape(dims)
