"""Writers of tiny data sets in the real on-disk formats, shared by the data and trainer tests."""
from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
from PIL import Image

from frossl_hub.specs import get_dataset_spec

Arrays = Dict[str, Tuple[np.ndarray, np.ndarray]]
CIFAR10_CLASSES = list(get_dataset_spec("cifar10").label_names)
CIFAR100_CLASSES = list(get_dataset_spec("cifar100").label_names)
STL10_CLASSES = list(get_dataset_spec("stl10").label_names)


def _dump(path: Path, obj: dict) -> None:
    # The official batches are Python 2 pickles whose str keys torchvision reads back (with
    # encoding="latin1") as str; a protocol-2 pickle with str keys loads to the same dict.
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def write_cifar10_pickles(folder: Path, per_batch: int = 2) -> Dict[str, Tuple[np.ndarray, list]]:
    """cifar-10-batches-py/: data_batch_1..5, test_batch, batches.meta."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    out: Dict[str, Tuple[np.ndarray, List[int]]] = {"train": (np.zeros((0, 3072), np.uint8), [])}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        x = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        y = rng.integers(0, 10, per_batch).tolist()
        _dump(folder / name, {"batch_label": name, "labels": y, "data": x,
                              "filenames": [f"{name}_{i}.png" for i in range(per_batch)]})
        if name == "test_batch":
            out["test"] = (x, y)
        else:
            out["train"] = (np.concatenate([out["train"][0], x]), out["train"][1] + y)
    _dump(folder / "batches.meta",
          {"label_names": CIFAR10_CLASSES, "num_cases_per_batch": per_batch, "num_vis": 3072})
    return out


def write_cifar100_pickles(folder: Path, n: int = 3) -> Dict[str, Tuple[np.ndarray, List[int]]]:
    """cifar-100-python/: train, test, meta (fine and coarse labels)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    out = {}
    for split in ("train", "test"):
        x = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        fine = rng.integers(0, 100, n).tolist()
        _dump(folder / split, {"filenames": [f"{i}.png" for i in range(n)], "batch_label": split,
                               "fine_labels": fine, "coarse_labels": [f // 5 for f in fine],
                               "data": x})
        out[split] = (x, fine)
    _dump(folder / "meta", {"fine_label_names": CIFAR100_CLASSES,
                            "coarse_label_names": [f"super{i}" for i in range(20)]})
    return out


def _colour(label: int, i: int) -> Tuple[int, int, int]:
    return (20 * label + 10, 250 - 20 * label, (60 * i + 30) % 256)


def _save_jpeg(path: Path, size: Tuple[int, int], colour, mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, colour).save(path, "JPEG", quality=95)


def write_cifar_jpegs(root: Path, train_per_class: int = 2, test_per_class: int = 1) -> Path:
    """train/<class>/*.jpg + test/<class>/*.jpg, constant-colour 32x32 images."""
    for split, n in (("train", train_per_class), ("test", test_per_class)):
        for label, cls in enumerate(CIFAR10_CLASSES):
            for i in range(n):
                _save_jpeg(root / split / cls / f"{i:04d}.jpg", (32, 32), _colour(label, i))
    return root


def write_stl10(folder: Path, n_train: int = 3, n_test: int = 2, n_unlabeled: int = 4) -> Arrays:
    """stl10_binary/: column-major uint8 images, labels 1..10, class_names.txt."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(2)
    out = {}
    for split, n in (("train", n_train), ("test", n_test), ("unlabeled", n_unlabeled)):
        x = rng.integers(0, 256, (n, 3, 96, 96), dtype=np.uint8)  # row-major (N, C, H, W)
        column_major = np.ascontiguousarray(x.transpose(0, 1, 3, 2))
        (folder / f"{split}_X.bin").write_bytes(column_major.tobytes())
        y = np.arange(n, dtype=np.uint8) % 10  # 0-based
        if split != "unlabeled":
            (folder / f"{split}_y.bin").write_bytes((y + 1).tobytes())
        out[split] = (x, y.astype(np.int64))
    (folder / "class_names.txt").write_text("\n".join(STL10_CLASSES) + "\n")
    return out


def write_idx(path: Path, array: np.ndarray, gz: bool) -> Path:
    """An unsigned-byte IDX file: 0x0000 0x08 ndim, big-endian dims, data."""
    header = bytes((0, 0, 8, array.ndim)) + struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + array.tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        raw = gzip.compress(raw)
    path.write_bytes(raw)
    return path


def write_fashion_mnist(folder: Path, gz: bool, n: int = 5) -> Arrays:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    out = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        y = rng.integers(0, 10, n).astype(np.uint8)
        write_idx(folder / f"{prefix}-images-idx3-ubyte", x, gz)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", y, gz)
        out[split] = (x, y)
    return out


TINY_WNIDS = [f"n{9_000_000 - 7 * i:08d}" for i in range(200)]  # written unsorted


def write_tiny_imagenet(root: Path) -> Path:
    """tiny-imagenet-200/: wnids.txt (unsorted), words.txt, one train image per class (the
    first one greyscale), three val images with val_annotations.txt."""
    root.mkdir(parents=True)
    (root / "wnids.txt").write_text("\n".join(TINY_WNIDS) + "\n")
    (root / "words.txt").write_text("".join(f"{w}\tthing {i}\n" for i, w in enumerate(TINY_WNIDS)))
    for i, wnid in enumerate(sorted(TINY_WNIDS)):
        path = root / "train" / wnid / "images" / f"{wnid}_0.JPEG"
        if i == 0:
            _save_jpeg(path, (64, 64), 100, mode="L")
        else:
            _save_jpeg(path, (64, 64), _colour(i % 10, i))
        (root / "train" / wnid / f"{wnid}_boxes.txt").write_text(f"{wnid}_0.JPEG\t0\t0\t63\t63\n")
    lines = []
    for i, wnid in enumerate([TINY_WNIDS[5], TINY_WNIDS[0], TINY_WNIDS[5]]):
        _save_jpeg(root / "val" / "images" / f"val_{i}.JPEG", (64, 64), _colour(i, i))
        lines.append(f"val_{i}.JPEG\t{wnid}\t0\t0\t63\t63\n")
    (root / "val" / "val_annotations.txt").write_text("".join(lines))
    return root


def write_image_folder(root: Path, classes: List[str], size: Tuple[int, int] = (64, 48)) -> Path:
    """ImageFolder trees train/<wnid>/*.JPEG and val/<wnid>/*.JPEG, one image per class."""
    rng = np.random.default_rng(4)
    for split in ("train", "val"):
        for cls in classes:
            path = root / split / cls / f"{cls}_0.JPEG"
            path.parent.mkdir(parents=True)
            Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return root


FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")  # the Debian package


def write_fashion_folder(root: Path, classes: Dict[int, str], per_class: int) -> Path:
    """DIR/<class>/*.png: real Fashion-MNIST test images (greyscale PNGs), ``per_class`` of
    each label in ``classes`` (label -> folder name). Skips the calling test without the package."""
    import pytest

    from train.data import load_arrays

    if not FASHION_MNIST_DIR.is_dir():
        pytest.skip(f"Fashion-MNIST absent ({FASHION_MNIST_DIR}): apt-get install dataset-fashion-mnist")
    test = load_arrays("fashion-mnist", FASHION_MNIST_DIR, "test")
    for label, name in classes.items():
        (root / name).mkdir(parents=True)
        for i, index in enumerate((test.labels == label).nonzero().squeeze(1)[:per_class].tolist()):
            Image.fromarray(test.images[index, 0].numpy(), "L").save(root / name / f"{i:03d}.png")
    return root
