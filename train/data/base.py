"""What every data-set reader shares: the error type, the in-memory split, names and folders."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Tuple, Union

import torch

from frossl_hub.specs import DatasetSpec, get_dataset_spec

__all__ = ["DatasetError", "ArrayDataset", "default_data_dir", "is_in_memory", "PathLike", "SPLITS"]

PathLike = Union[str, Path]

SPLITS = ("train", "test", "pretrain")
_SPLIT_ALIASES = {"val": "test"}
_IN_MEMORY = frozenset({"cifar10", "cifar100", "stl10", "tiny-imagenet", "fashion-mnist"})
_DEFAULT_DIRS: Dict[str, Path] = {"fashion-mnist": Path("/usr/share/datasets/fashion-mnist")}

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
    skipped: List[Tuple[str, str]] = field(default_factory=list)  # (file, why) left out unread

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
