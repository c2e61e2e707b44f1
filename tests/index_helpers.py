"""Real image folders for the search-index tests: Fashion-MNIST test images as PNG files.

Import as ``from index_helpers import ...``. The images come from the Fashion-MNIST IDX
files that CI installs (``/usr/share/datasets/fashion-mnist``); tests skip without them.
"""
from __future__ import annotations

import gzip
import shutil
from pathlib import Path
import numpy as np
import pytest
from PIL import Image

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
MODEL = "frossl-resnet18-fashion-mnist"  # the bundled model of these images


def fashion_images(n: int, start: int = 0) -> np.ndarray:
    """``n`` Fashion-MNIST test images (n x 28 x 28 uint8) from ``start``; skips without them."""
    path = FASHION_MNIST / "t10k-images-idx3-ubyte.gz"
    if not path.is_file():
        pytest.skip(f"Fashion-MNIST absent ({FASHION_MNIST})")
    raw = gzip.decompress(path.read_bytes())
    return np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 28, 28)[start:start + n]


def fashion_folder(root: Path, n: int, start: int = 0, broken: bool = False) -> Path:
    """``root/a|b/NNNNN.png``: ``n`` real images in two sub-folders (+ ``broken.png``)."""
    for i, pixels in enumerate(fashion_images(n, start), start):
        path = root / ("a" if i % 2 else "b") / f"{i:05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path)
    if broken:
        (root / "broken.png").write_bytes(b"\x89PNG\r\n not really a png")
    return root


def copy_index(src: Path, dst: Path) -> Path:
    """A copy of an index folder that a test may damage."""
    shutil.copytree(src, dst, symlinks=True)
    return dst
