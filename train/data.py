"""Readers for every data set of the trainer, from their real on-disk formats; never downloads.

Small data sets (CIFAR-10/100, STL-10, Tiny-ImageNet, Fashion-MNIST) load whole into one
uint8 tensor (``load_arrays``), so augmentation runs batched on the accelerator. Folders
of encoded images (CIFAR JPEG folders, Tiny-ImageNet) are decoded once into a cached
safetensors file, keyed by the split and a fingerprint of the file list, so no epoch
decodes a JPEG again. ImageNet-sized sets stream from ImageFolder trees through
``ImageFolderCrops``, which decodes and crops in DataLoader workers.

Every failure to find or parse data raises ``DatasetError`` naming the data set, the path
tried and the layout expected there.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import struct
import time
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch.utils.data import Dataset
from torchvision.io import ImageReadMode, decode_image, decode_jpeg, read_file
from torchvision.transforms import RandomResizedCrop
from torchvision.transforms.v2 import functional as TF

from frossl_hub._io import atomic_write
from frossl_hub.specs import DatasetSpec, get_dataset_spec

__all__ = [
    "DatasetError",
    "ArrayDataset",
    "load_arrays",
    "default_data_dir",
    "is_in_memory",
    "ImageFolderCrops",
]

_logger = logging.getLogger(__name__)

PathLike = Union[str, Path]

SPLITS = ("train", "test", "pretrain")
_SPLIT_ALIASES = {"val": "test"}
_IN_MEMORY = frozenset({"cifar10", "cifar100", "stl10", "tiny-imagenet", "fashion-mnist"})
_DEFAULT_DIRS: Dict[str, Path] = {"fashion-mnist": Path("/usr/share/datasets/fashion-mnist")}
_IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})
_CACHE_FORMAT = "frossl_hub.data.v1"
_CACHE_SUBDIR = ".frossl_cache"  # cache folder inside the data folder, when writable
_DECODE_CHUNK = 1024  # images per decode task

_LAYOUTS: Dict[str, str] = {
    "cifar10": "cifar-10-batches-py/ (official pickle batches) or "
               "train/<class>/*.jpg + test/<class>/*.jpg",
    "cifar100": "cifar-100-python/ (official pickle files train, test, meta) or "
                "train/<class>/*.jpg + test/<class>/*.jpg",
    "stl10": "stl10_binary/ with train_X.bin, train_y.bin, test_X.bin, test_y.bin, "
             "unlabeled_X.bin (+ class_names.txt)",
    "tiny-imagenet": "tiny-imagenet-200/ with wnids.txt, train/<wnid>/images/*.JPEG, "
                     "val/images/*.JPEG + val/val_annotations.txt",
    "fashion-mnist": "IDX files train-images-idx3-ubyte, train-labels-idx1-ubyte, "
                     "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte (each optionally .gz)",
    "imagenet100": "ImageFolder trees train/<wnid>/*.JPEG + val/<wnid>/*.JPEG",
    "imagenet": "ImageFolder trees train/<wnid>/*.JPEG + val/<wnid>/*.JPEG",
}


class DatasetError(ValueError):
    """Data missing, incomplete or corrupt; the message names the data set, the path tried
    and the layout expected there, so the fix is obvious without a traceback."""


def _error(name: str, path: PathLike, problem: str) -> DatasetError:
    """``DatasetError`` in the one house format: ``name: problem at path: expected layout``."""
    return DatasetError(f"{name}: {problem} at {path}: expected {_LAYOUTS.get(name, 'see docs')}")


@dataclass
class ArrayDataset:
    """A whole split in memory: what the trainer indexes with random batches."""

    images: torch.Tensor  # uint8, (N, C, H, W), contiguous
    labels: torch.Tensor  # int64, (N,); -1 marks unlabeled images (STL-10 unlabeled split)
    classes: List[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {self.images.dtype} "
                             f"{tuple(self.images.shape)}")
        if self.labels.dtype != torch.int64 or self.labels.shape != (self.images.shape[0],):
            raise ValueError(f"labels must be int64 ({self.images.shape[0]},), got "
                             f"{self.labels.dtype} {tuple(self.labels.shape)}")

    def __len__(self) -> int:
        return int(self.images.shape[0])


# ---------------------------------------------------------------------------------------
# names, splits, folders


def _spec(dataset: str) -> DatasetSpec:
    try:
        return get_dataset_spec(dataset)
    except ValueError as exc:
        raise DatasetError(str(exc)) from None


def _split(name: str, split: str) -> str:
    split = _SPLIT_ALIASES.get(split, split)
    if split not in SPLITS:
        raise DatasetError(f"{name}: unknown split {split!r}; choose one of {list(SPLITS)}")
    return split


def default_data_dir(dataset: str) -> Optional[Path]:
    """Where a data set lives when no folder is given (only system-installed ones), else None."""
    return _DEFAULT_DIRS.get(_spec(dataset).name)


def is_in_memory(dataset: str) -> bool:
    """True when ``load_arrays`` holds the whole data set in memory; False for ImageNet-sized
    sets, which stream from disk through ``ImageFolderCrops``."""
    return _spec(dataset).name in _IN_MEMORY


def _data_root(name: str, data_dir: Optional[PathLike]) -> Path:
    """The folder given (or the default one), which must exist."""
    if data_dir is None:
        data_dir = _DEFAULT_DIRS.get(name)
        if data_dir is None:
            raise DatasetError(f"{name}: no data folder given and {name} has no default location: "
                               f"pass the folder holding {_LAYOUTS[name]}")
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise _error(name, root, "data folder does not exist")
    return root


def _first_dir(candidates: Iterable[Path], test: Callable[[Path], bool]) -> Optional[Path]:
    return next((c for c in candidates if test(c)), None)


# ---------------------------------------------------------------------------------------
# public entry point


def load_arrays(dataset: str, data_dir: Optional[PathLike], split: str,
                cache_dir: Optional[PathLike] = None) -> ArrayDataset:
    """Load one split of an in-memory data set as uint8 images and int64 labels.

    ``split`` is ``"train"``, ``"test"`` (the official evaluation split; ``"val"`` is an
    alias) or ``"pretrain"`` (what self-supervised pretraining sees: STL-10 train +
    unlabeled, 105k images with label -1 on the unlabeled ones; train elsewhere).
    ``data_dir`` may be the data set's own folder or its parent; None means
    ``default_data_dir``. Decoded JPEG folders are cached in ``cache_dir`` if given, else
    next to the data, else in ``~/.cache/frossl_hub/datasets`` when the data is read-only.
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


# ---------------------------------------------------------------------------------------
# CIFAR-10 / CIFAR-100: official pickles (via torchvision) or a JPEG ImageFolder layout

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


# ---------------------------------------------------------------------------------------
# Tiny-ImageNet: official tiny-imagenet-200 layout


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


# ---------------------------------------------------------------------------------------
# STL-10: stl10_binary/ (column-major uint8 images, labels 1..10)

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


# ---------------------------------------------------------------------------------------
# Fashion-MNIST: IDX files, gzipped or not

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


# ---------------------------------------------------------------------------------------
# folders of encoded images: list, fingerprint, decode once, cache

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


def _fingerprint(root: Path, files: _FileList, extras: Sequence[Path]) -> str:
    """Hash of every file's relative path, size and mtime, labels and class names: any
    added, removed, replaced or relabelled file changes it."""
    cut = len(str(root)) + 1  # paths are relative to root: a moved copy keeps its cache
    h = hashlib.sha256(f"{_CACHE_FORMAT}\n{len(files.paths)}\n".encode())
    h.update(json.dumps(files.classes).encode())
    h.update("".join(f"{path[cut:]}\0{size}\0{mtime}\0{label}\n" for path, (size, mtime), label
                     in zip(files.paths, files.stats, files.labels)).encode())
    for path in extras:
        st = path.stat()
        h.update(f"{str(path)[cut:]}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:20]


def _user_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "frossl_hub" / "datasets"


def _dir_writable(path: Path) -> bool:
    """Whether a cache file may be written into ``path`` (created if missing)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(path, os.W_OK | os.X_OK)


def _cache_dirs(root: Path, cache_dir: Optional[Path]) -> List[Path]:
    """Where to look for / write a cache, in order: ``cache_dir`` alone when given, else next
    to the data, then the user cache."""
    if cache_dir is not None:
        return [cache_dir]
    return [root / _CACHE_SUBDIR, _user_cache_dir()]


def _cached_decode(spec: DatasetSpec, root: Path, split: str, files: _FileList,
                   extras: Sequence[Path], cache_dir: Optional[Path]) -> ArrayDataset:
    """Decoded arrays of ``files``, from the cache when its fingerprint matches, else decoded
    now and cached atomically for every later run."""
    name = spec.name
    fingerprint = _fingerprint(root, files, extras)
    root_tag = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:8]
    prefix = f"{name}-{split}-{root_tag}-"
    filename = f"{prefix}{fingerprint}.safetensors"
    dirs = _cache_dirs(root, cache_dir)
    for d in dirs:
        ds = _read_cache(d / filename, files.classes, len(files.paths))
        if ds is not None:
            return ds
    t0 = time.perf_counter()
    images = _decode_files(spec, files.paths)
    _logger.info("%s: decoded %d %s images in %.1f s", name, len(files.paths), split,
                 time.perf_counter() - t0)
    ds = ArrayDataset(images, torch.tensor(files.labels, dtype=torch.int64), list(files.classes))
    _write_cache(dirs, filename, prefix, ds, {"dataset": name, "split": split,
                                              "source": str(root.resolve())})
    return ds


def _read_cache(path: Path, classes: List[str], n: int) -> Optional[ArrayDataset]:
    """The cached arrays, or None when absent or unusable (then they are decoded again)."""
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        tensors = load_file(str(path))
        if meta.get("format") != _CACHE_FORMAT or json.loads(meta["classes"]) != classes:
            raise ValueError("stale metadata")
        ds = ArrayDataset(tensors["images"], tensors["labels"], list(classes))
        if len(ds) != n:
            raise ValueError(f"{len(ds)} images, {n} expected")
        return ds
    except Exception as exc:  # a damaged cache is never fatal: decode again
        warnings.warn(f"ignoring unusable dataset cache {path}: {exc}", stacklevel=3)
        return None


def _write_cache(dirs: Sequence[Path], filename: str, prefix: str, ds: ArrayDataset,
                 meta: Dict[str, str]) -> Optional[Path]:
    """Atomically write the cache into the first writable folder and drop stale caches of
    the same data set, split and source folder there."""
    meta = {**meta, "format": _CACHE_FORMAT, "classes": json.dumps(ds.classes)}
    tensors = {"images": ds.images.contiguous(), "labels": ds.labels.contiguous()}
    for d in dirs:
        if not _dir_writable(d):
            continue
        try:
            path = atomic_write(d / filename, lambda p: _save_readable(tensors, p, meta))
        except OSError as exc:
            _logger.warning("cannot write dataset cache in %s (%s); trying the next place", d, exc)
            continue
        for old in d.glob(f"{prefix}*.safetensors"):
            if old.name != filename:
                old.unlink(missing_ok=True)
        return path
    tried = [str(d) for d in dirs]
    warnings.warn(f"no writable place for the decoded-image cache (tried {tried}); images will "
                  "be decoded again next run", stacklevel=3)
    return None


def _save_readable(tensors: Dict[str, torch.Tensor], path: Path, meta: Dict[str, str]) -> None:
    save_file(tensors, str(path), metadata=meta)
    os.chmod(path, 0o644)  # mkstemp makes 0600; others sharing the data folder may read it


def _decode_files(spec: DatasetSpec, paths: Sequence[str]) -> torch.Tensor:
    """Decode ``paths`` into one (N, 3, S, S) uint8 tensor: batched libjpeg decodes on a
    thread pool (torchvision releases the GIL), with a per-image fallback."""
    size = spec.image_size
    out = torch.empty((len(paths), 3, size, size), dtype=torch.uint8)

    def work(start: int) -> None:
        chunk = paths[start:start + _DECODE_CHUNK]
        try:
            images = decode_jpeg([read_file(p) for p in chunk], mode=ImageReadMode.RGB)
        except RuntimeError:  # a PNG or a broken file in the batch: find it image by image
            images = [_decode_rgb(spec.name, Path(p)) for p in chunk]
        for i, (path, img) in enumerate(zip(chunk, images)):
            if tuple(img.shape) != (3, size, size):
                raise _error(spec.name, path, f"image is {tuple(img.shape[1:])} px, not "
                                              f"{size}x{size}")
            out[start + i] = img

    workers = max(1, min(8, os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool:
        for future in [pool.submit(work, s) for s in range(0, len(paths), _DECODE_CHUNK)]:
            future.result()
    return out


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


class ImageFolderCrops(Dataset):
    """An ImageFolder tree (``train/<wnid>/*.JPEG``, ``val/<wnid>/*.JPEG``) as uint8 crops.

    Each item is ``(views, label)`` with ``views`` a (V, 3, S, S) uint8 tensor. In train
    mode every view is an independent RandomResizedCrop(S, scale, ratio) of the decoded
    image, so decoding and cropping run in DataLoader workers and the accelerator only
    does colour jitter, blur and the rest. In eval mode (for probes) V is 1 and the view is
    deterministic: shorter side resized to S / crop_pct (256 for 224), then center crop S.
    Worker RNG is torch's, which DataLoader seeds per worker.
    """

    def __init__(self, dataset: str, data_dir: Optional[PathLike], split: str = "train", *,
                 num_views: int = 2, image_size: Optional[int] = None,
                 scale: Tuple[float, float] = (0.08, 1.0),
                 ratio: Tuple[float, float] = (3 / 4, 4 / 3),
                 eval_mode: bool = False, crop_pct: float = 0.875) -> None:
        spec = _spec(dataset)
        self.name = spec.name
        self.split = _split(self.name, split)
        root = _data_root(self.name, data_dir)
        sub = "train" if self.split in ("train", "pretrain") else \
            ("val" if (root / "val").is_dir() or not (root / "test").is_dir() else "test")
        self.root = root / sub
        if not self.root.is_dir():
            raise _error(self.name, self.root, f"missing {sub}/ folder")
        self.classes, self.samples = _scan_image_folder(self.name, self.root)
        if len(self.classes) != spec.num_classes:
            raise _error(self.name, self.root, f"{len(self.classes)} class folders, "
                                               f"{spec.num_classes} expected")
        self.targets = [label for _, label in self.samples]
        self.image_size = int(image_size or spec.image_size)
        self.num_views = 1 if eval_mode else int(num_views)
        self.scale = tuple(scale)
        self.ratio = tuple(ratio)
        self.eval_mode = eval_mode
        self.resize_size = int(round(self.image_size / crop_pct))

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        img = _decode_rgb(self.name, Path(path))
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


def _scan_image_folder(name: str, root: Path) -> Tuple[List[str], List[Tuple[str, int]]]:
    """Sorted class folders and (path, label) samples, as torchvision's ImageFolder finds them."""
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

    try:
        classes, class_to_idx = find_classes(str(root))
        samples = make_dataset(str(root), class_to_idx, extensions=IMG_EXTENSIONS)
    except (FileNotFoundError, OSError) as exc:  # no class folder, or one with no images
        raise _error(name, root, f"empty or incomplete ImageFolder tree ({exc})") from exc
    return classes, samples
