"""``load_arrays``: one split of an in-memory data set, from whichever format is on disk."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from .base import _IN_MEMORY, _LAYOUTS, ArrayDataset, DatasetError, DatasetSpec, PathLike, _data_root, _error, _spec, _split
from .cifar import _load_cifar
from .fashion_mnist import _load_fashion_mnist
from .stl10 import _load_stl10
from .tiny_imagenet import _load_tiny_imagenet

__all__ = ["load_arrays"]

def load_arrays(dataset: str, data_dir: Optional[PathLike], split: str,
                cache_dir: Optional[PathLike] = None) -> ArrayDataset:
    """Load one split of an in-memory data set as uint8 images and int64 labels.

    ``split`` is ``"train"``, ``"test"`` (the official evaluation split; ``"val"`` is an
    alias) or ``"pretrain"`` (what self-supervised pretraining sees: STL-10 train +
    unlabeled, 105k images with label -1 on the unlabeled ones; train elsewhere).
    ``data_dir`` may be the data set's own folder or its parent; None means
    ``default_data_dir``. Decoded JPEG folders are cached in ``cache_dir`` if given, else in
    the user cache (``frossl_hub.caches.cache_root() / "datasets"``), never in the data folder.
    """
    spec = _spec(dataset)
    name = spec.name
    split = _split(name, split)
    if name not in _IN_MEMORY:
        raise DatasetError(f"{name}: too large to hold in memory; stream it with "
                           f"ImageFolderCrops({name!r}, data_dir) from {_LAYOUTS[name]}")
    root = _data_root(name, data_dir)
    cache = Path(cache_dir).expanduser() if cache_dir is not None else None
    if name in ("cifar10", "cifar100"):
        ds = _load_cifar(spec, root, split, cache)
    elif name == "stl10":
        ds = _load_stl10(spec, root, split)
    elif name == "tiny-imagenet":
        ds = _load_tiny_imagenet(spec, root, split, cache)
    else:
        ds = _load_fashion_mnist(spec, root, split)
    _check_arrays(spec, root, split, ds)
    return ds


def _check_arrays(spec: DatasetSpec, root: Path, split: str, ds: ArrayDataset) -> None:
    """Reject anything the trainer would silently mis-train on."""
    name = spec.name
    if len(ds) == 0:
        raise _error(name, root, f"no images in the {split} split")
    expected = (spec.in_chans, spec.image_size, spec.image_size)
    if tuple(ds.images.shape[1:]) != expected:
        raise _error(name, root, f"images are {tuple(ds.images.shape[1:])}, not {expected}")
    if len(ds.classes) != spec.num_classes:
        raise _error(name, root, f"{len(ds.classes)} classes found, {spec.num_classes} expected")
    allow_unlabeled = name == "stl10" and split == "pretrain"
    low = -1 if allow_unlabeled else 0
    if int(ds.labels.min()) < low or int(ds.labels.max()) >= spec.num_classes:
        raise _error(name, root, f"labels outside [{low}, {spec.num_classes})")
    if not ds.images.is_contiguous():
        ds.images = ds.images.contiguous()
