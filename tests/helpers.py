"""Shared test helpers: publish a real (randomly initialised) model folder in seconds.

Import from tests as ``from helpers import publish_tiny_model`` (pytest puts ``tests/`` on
``sys.path``). The folder is exactly what ``python -m train.publish`` writes, minus plots:
``model.safetensors``, ``config.json``, ``README.md`` and ``SHA256SUMS``.

``one_torch_thread`` is a module-scoped fixture: on a shared 2-core box, torch's OpenMP
threads spin against other jobs and make small CPU forwards several times slower. Use it with
``from helpers import one_torch_thread`` and
``pytestmark = pytest.mark.usefixtures("one_torch_thread")``.

``extract_cifar10_test`` unpacks real CIFAR-10 test images from the shared JPEG archive
(``../shared/datasets/cifar-10-jpeg.tar.xz``), skipping the test when it is absent;
``extract_tiny_imagenet_sample`` does the same for the shared Tiny-ImageNet-200 sample.
"""
from __future__ import annotations

import tarfile
from pathlib import Path
from typing import Iterator, Optional, Union

import pytest
import torch

from frossl_hub.catalog import CATALOG

__all__ = ["BUNDLED", "CIFAR10_ARCHIVE", "TINY_SAMPLE_ARCHIVE", "extract_cifar10_test",
           "extract_tiny_imagenet_sample", "publish_tiny_model", "one_torch_thread"]

BUNDLED = [name for name, entry in sorted(CATALOG.items()) if entry.bundled]  # the models shipped with frossl-hub

SHARED_DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
CIFAR10_ARCHIVE = SHARED_DATASETS / "cifar-10-jpeg.tar.xz"
TINY_SAMPLE_ARCHIVE = SHARED_DATASETS / "tiny-imagenet-200-sample.tar.xz"


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Run a test module's CPU forwards on one torch thread, then restore the setting."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def publish_tiny_model(
    folder: Union[str, Path],
    dataset: str = "cifar10",
    arch: Optional[str] = None,
    dtype: str = "float32",
    seed: int = 0,
    num_classes: Optional[int] = None,
) -> Path:
    """Publish a random-init FroSSL ResNet18 with ``dataset``'s input spec into ``folder``
    (``benchmarks._common.publish_tiny_model``); the default ``arch`` is the small-image stem
    ``frossl_resnet18_cifar`` for 28-32 px data, else ``frossl_resnet18``."""
    import frossl_hub
    from benchmarks import _common
    from frossl_hub.catalog import SMALL_STEM_ARCH, STANDARD_STEM_ARCH

    spec = frossl_hub.get_dataset_spec(dataset)
    arch = arch or (SMALL_STEM_ARCH if spec.small_images else STANDARD_STEM_ARCH)
    return _common.publish_tiny_model(Path(folder), dataset, arch, dtype, seed, num_classes)


def extract_cifar10_test(dest: Union[str, Path], limit: Optional[int] = None) -> Path:
    """Unpack the first ``limit`` (default: all) CIFAR-10 test JPEGs into ``dest``.

    Returns the data set folder, laid out as ``train.data`` reads it: ``test/<class>/*.jpg``
    and an empty ``train/``. The archive lists the test split first, so only that part is
    read. Skips the calling test when the archive is absent.
    """
    if not CIFAR10_ARCHIVE.is_file():
        pytest.skip(f"the CIFAR-10 JPEG archive is absent ({CIFAR10_ARCHIVE})")
    root = Path(dest)
    (root / "train").mkdir(parents=True, exist_ok=True)
    count = 0
    with tarfile.open(CIFAR10_ARCHIVE, "r:xz") as archive:  # streamed member by member
        for member in archive:
            parts = Path(member.name).parts
            if "train" in parts or (limit is not None and count >= limit):
                break
            if member.isfile() and len(parts) >= 3 and parts[-3] == "test":
                target = root / "test" / parts[-2] / parts[-1]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(archive.extractfile(member).read())
                count += 1
    return root


def extract_tiny_imagenet_sample(dest: Union[str, Path]) -> Path:
    """Unpack the shared sample of the official Tiny-ImageNet-200 release (3.6 MB: all wnids,
    5 training images per class, validation images val_0 ... val_999 with their annotations)
    into ``dest``; returns its ``tiny-imagenet-200`` folder. Skips the calling test when the
    archive is absent."""
    if not TINY_SAMPLE_ARCHIVE.is_file():
        pytest.skip(f"the Tiny-ImageNet-200 sample is absent ({TINY_SAMPLE_ARCHIVE})")
    root = Path(dest)
    with tarfile.open(TINY_SAMPLE_ARCHIVE, "r:xz") as archive:
        archive.extractall(root, filter="data")
    return next(p.parent for p in sorted(root.rglob("wnids.txt")))
