"""CIFAR-10 / CIFAR-100: official pickles (via torchvision) or a JPEG ImageFolder layout."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch

from .base import ArrayDataset, DatasetSpec, _error, _first_dir
from .cache import _cached_decode
from .folders import _class_folder_files

_CIFAR_FOLDERS = {"cifar10": ("cifar-10-batches-py", "batches.meta", "cifar-10-jpeg"),
                  "cifar100": ("cifar-100-python", "meta", "cifar-100-jpeg")}


def _load_cifar(spec: DatasetSpec, root: Path, split: str, cache: Optional[Path]) -> ArrayDataset:
    """CIFAR from the official pickle folder if present, else from train/ + test/ class folders."""
    name = spec.name
    base, marker, jpeg_name = _CIFAR_FOLDERS[name]
    split = "train" if split == "pretrain" else split
    pickles = _first_dir((root / base, root), lambda c: c.is_dir() and (
        c.name == base or (c / marker).is_file()))
    if pickles is not None:
        return _read_cifar_pickles(spec, pickles, split)
    folder = _first_dir((root, root / jpeg_name),
                        lambda c: (c / "train").is_dir() and (c / "test").is_dir())
    if folder is not None:
        files = _class_folder_files(spec, folder / split)
        return _cached_decode(spec, folder, split, files, [], cache)
    raise _error(name, root, f"no {spec.title} data")


def _torchvision_cifar(name: str, folder: Path, train: bool):
    """torchvision's official CIFAR reader on ``folder`` (any name), checking files exist but
    not their md5: we validate shapes and labels ourselves, and hashing 170 MB per load
    would only slow every run down."""
    from torchvision.datasets import CIFAR10, CIFAR100

    parent = CIFAR10 if name == "cifar10" else CIFAR100

    class _Reader(parent):  # type: ignore[misc, valid-type]
        base_folder = folder.name
        train_list = [[f, None] for f, _ in parent.train_list]
        test_list = [[f, None] for f, _ in parent.test_list]
        meta = {**parent.meta, "md5": None}

    return _Reader(str(folder.parent), train=train, download=False)


def _read_cifar_pickles(spec: DatasetSpec, folder: Path, split: str) -> ArrayDataset:
    name = spec.name
    required = {"cifar10": ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4",
                            "data_batch_5", "test_batch", "batches.meta"],
                "cifar100": ["train", "test", "meta"]}[name]
    missing = [f for f in required if not (folder / f).is_file()]
    if missing:
        raise _error(name, folder, f"missing pickle file(s) {missing}")
    try:
        reader = _torchvision_cifar(name, folder, train=split == "train")
    except Exception as exc:  # the pickle reader raises anything on a corrupt file
        raise _error(name, folder, f"unreadable {spec.title} pickle files ({type(exc).__name__}: "
                                   f"{exc})") from exc
    data = np.asarray(reader.data)
    if len(reader.targets) != data.shape[0]:
        raise _error(name, folder, f"{data.shape[0]} images but {len(reader.targets)} labels "
                                   f"in the {split} split")
    images = torch.from_numpy(np.ascontiguousarray(data.transpose(0, 3, 1, 2)))
    labels = torch.as_tensor(np.asarray(reader.targets, dtype=np.int64))
    return ArrayDataset(images, labels, [str(c) for c in reader.classes])
