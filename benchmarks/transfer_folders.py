"""The real labelled data sets here as ImageFolder trees ``DIR/train/<class>`` + ``DIR/val/<class>``
for ``python -m train.transfer``: symlinks to the CIFAR-10 JPEGs and the Tiny-ImageNet-200
sample, PNGs written from the Fashion-MNIST package. ``limit``: at most that many images per
class and split (smoke runs)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Dict, List, Optional

try:  # `python benchmarks/NAME.py` puts this folder on sys.path; `python -m benchmarks.NAME` does not
    import _common
except ImportError:
    from benchmarks import _common

__all__ = ["DATASETS", "IN_DOMAIN", "build_folder"]

DATA = _common.REPO / ".data"
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
IN_DOMAIN = {"cifar10": "frossl-resnet18-cifar10", "fashion-mnist": "frossl-resnet18-fashion-mnist",
             "tiny-imagenet": "frossl-resnet18-tiny-imagenet"}  # the bundled model of each data set


def _link(files: List[Path], target: Path, limit: Optional[int]) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for file in sorted(files)[:limit]:
        link = target / file.name
        if not link.exists():
            os.symlink(file.resolve(), link)


def _cifar10(root: Path, limit: Optional[int]) -> None:
    source = DATA / "cifar-10-jpeg"
    if not (source / "train").is_dir():
        raise FileNotFoundError(f"CIFAR-10 JPEGs absent: {source}")
    for split, theirs in (("train", "train"), ("val", "test")):
        for folder in sorted(p for p in (source / theirs).iterdir() if p.is_dir()):
            _link(list(folder.glob("*.jpg")), root / split / folder.name, limit)


def _tiny_imagenet(root: Path, limit: Optional[int]) -> None:
    """Train: the sample's 5 training images per class; val: its 1,000 validation images."""
    source = DATA / "tiny-imagenet-200"
    if not (source / "val" / "val_annotations.txt").is_file():
        raise FileNotFoundError(f"Tiny-ImageNet-200 sample absent: {source}")
    for folder in sorted(p for p in (source / "train").iterdir() if p.is_dir()):
        _link(list((folder / "images").glob("*.JPEG")), root / "train" / folder.name, limit)
    per_class: Dict[str, List[Path]] = {}
    for line in (source / "val" / "val_annotations.txt").read_text().splitlines():
        name, wnid = line.split("\t")[:2]
        per_class.setdefault(wnid, []).append(source / "val" / "images" / name)
    for wnid, files in per_class.items():
        _link(files, root / "val" / wnid, limit)


def _fashion_mnist(root: Path, limit: Optional[int]) -> None:
    from PIL import Image

    from frossl_hub.specs import get_dataset_spec
    from train.data import load_arrays

    names = get_dataset_spec("fashion-mnist").label_names
    for split, theirs in (("train", "train"), ("val", "test")):
        arrays = load_arrays("fashion-mnist", FASHION_MNIST, theirs)
        for label, name in enumerate(names):
            folder = root / split / name.replace("/", "-")
            folder.mkdir(parents=True, exist_ok=True)
            for i in (arrays.labels == label).nonzero().squeeze(1)[:limit].tolist():
                path = folder / f"{i:05d}.png"
                if not path.exists():
                    Image.fromarray(arrays.images[i, 0].numpy(), "L").save(path)


DATASETS: Dict[str, Callable[[Path, Optional[int]], None]] = {
    "cifar10": _cifar10, "fashion-mnist": _fashion_mnist, "tiny-imagenet": _tiny_imagenet}


def build_folder(name: str, work: Path, limit: Optional[int] = None) -> Path:
    """``work/<name>[-limitN]``: the data set as train/ + val/ class folders (kept for reruns)."""
    root = work / (name + (f"-limit{limit}" if limit else ""))
    done = root / ".complete"
    if not done.is_file():
        DATASETS[name](root, limit)
        done.write_text("ok\n")
    return root
