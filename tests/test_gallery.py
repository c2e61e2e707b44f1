"""Galleries: a few real test images shipped next to a model's weights, for nearest neighbours."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

import frossl_hub
from frossl_hub.catalog import CATALOG
from frossl_hub.gallery import (GALLERY_NAME, MAX_GALLERY_BYTES, MAX_GALLERY_IMAGES, Gallery,
                                GalleryError, balanced_indices, read_gallery, save_gallery)
from frossl_hub.hub import SUMS_NAME, ChecksumError, read_sums
from helpers import BUNDLED, extract_cifar10_test, extract_tiny_imagenet_sample, publish_tiny_model
from train.data import load_arrays
from train.gallery import attach_gallery, build_gallery
from train.gallery import main as gallery_main

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
BUNDLED_SIZE = {"frossl-resnet18-cifar10": 400, "frossl-resnet18-fashion-mnist": 500,
                "frossl-resnet18-tiny-imagenet": 160}  # 160 x 64 x 64 x 3 bytes: under 2 MB


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return publish_tiny_model(tmp_path_factory.mktemp("gallery") / "model", dataset="fashion-mnist")


@pytest.fixture
def folder(published: Path, tmp_path: Path) -> Path:
    """A published Fashion-MNIST model folder (random weights) without a gallery."""
    return Path(shutil.copytree(published, tmp_path / "model"))


def _needs_fashion_mnist() -> None:
    if not FASHION_MNIST.is_dir():
        pytest.skip(f"Fashion-MNIST absent ({FASHION_MNIST})")


def test_balanced_indices_take_the_first_images_of_each_class_in_split_order() -> None:
    labels = torch.tensor([2, 0, 1, 0, 2, 1, 0, 1, 2, 2])
    assert balanced_indices(labels, 6).tolist() == [0, 1, 2, 3, 4, 5]
    assert balanced_indices(labels, 4).tolist() == [0, 1, 2, 3]  # class 0 takes the extra one


def test_a_class_short_of_images_leaves_its_share_to_the_others() -> None:
    labels = torch.tensor([0, 0, 0, 1, 2, 2, 2])
    assert balanced_indices(labels, 6).tolist() == [0, 1, 2, 3, 4, 5]  # 3, 1 and 2 per class


def test_a_gallery_larger_than_the_split_is_refused() -> None:
    with pytest.raises(GalleryError, match="must be in 1..3"):
        balanced_indices(torch.tensor([0, 1, 2]), 4)


def test_a_gallery_over_the_budget_is_refused() -> None:
    images = torch.zeros(MAX_GALLERY_IMAGES + 1, 1, 28, 28, dtype=torch.uint8)
    labels = torch.zeros(MAX_GALLERY_IMAGES + 1, dtype=torch.int64)
    with pytest.raises(GalleryError, match=f"at most {MAX_GALLERY_IMAGES} images"):
        Gallery(images, labels, labels.clone(), ("a",), "fashion-mnist", "test")


def test_attached_gallery_holds_real_test_images_and_is_listed_in_sha256sums(folder) -> None:
    _needs_fashion_mnist()
    path = attach_gallery(folder, 30, dataset="fashion-mnist")
    gallery = read_gallery(folder)
    test = load_arrays("fashion-mnist", FASHION_MNIST, "test")
    assert path == folder / GALLERY_NAME and len(gallery) == 30
    assert torch.equal(gallery.images, test.images[gallery.source_index])
    assert torch.equal(gallery.labels, test.labels[gallery.source_index])
    assert torch.bincount(gallery.labels).tolist() == [3] * 10
    assert gallery.label_names == frossl_hub.get_dataset_spec("fashion-mnist").label_names
    assert GALLERY_NAME in frossl_hub.verify(folder)  # the hub checks it like any listed file


def test_a_tampered_gallery_is_a_checksum_error(folder) -> None:
    _needs_fashion_mnist()
    path = attach_gallery(folder, 10, dataset="fashion-mnist")
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # one pixel
    path.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match="gallery.safetensors does not match"):
        read_gallery(folder)


def test_a_gallery_missing_from_sha256sums_cannot_be_verified(folder) -> None:
    _needs_fashion_mnist()
    attach_gallery(folder, 10, dataset="fashion-mnist")
    sums = read_sums(folder)
    del sums[GALLERY_NAME]
    (folder / SUMS_NAME).write_text("".join(f"{d}  {n}\n" for n, d in sums.items()))
    with pytest.raises(ChecksumError, match="not listed"):
        read_gallery(folder)


def test_a_folder_without_a_gallery_has_none(folder) -> None:
    assert read_gallery(folder) is None


def test_gallery_command_names_a_data_set_it_cannot_find(folder, tmp_path, capsys) -> None:
    args = [str(folder), "--count", "10", "--dataset", "fashion-mnist", "--data-dir", str(tmp_path / "no")]
    assert gallery_main(args) == 2
    assert "fashion-mnist: data folder does not exist" in capsys.readouterr().err


def test_streamed_data_sets_get_no_gallery() -> None:
    with pytest.raises(GalleryError, match="too large"):
        build_gallery("imagenet", 10, "/nonexistent")


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_gallery_is_verified_class_balanced_and_small(name) -> None:
    folder = CATALOG[name].bundled_path
    gallery = read_gallery(folder)  # checks SHA256SUMS
    assert len(gallery) == BUNDLED_SIZE[name] <= MAX_GALLERY_IMAGES
    assert (folder / GALLERY_NAME).stat().st_size <= MAX_GALLERY_BYTES + 16 * 1024  # + header
    assert gallery.dataset == CATALOG[name].dataset and gallery.split == CATALOG[name].spec.eval_split
    entry = CATALOG[name]
    per_class = torch.bincount(gallery.labels, minlength=entry.spec.num_classes).tolist()
    assert max(per_class) - min(per_class) <= 1  # as even as the count allows
    assert tuple(gallery.images.shape[1:]) == (entry.spec.in_chans, entry.input_side,
                                               entry.input_side)


@pytest.mark.slow
@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_gallery_is_exactly_what_the_gallery_command_writes(name, tmp_path) -> None:
    """Regenerating from the official test split gives the same bytes: no hand-made file."""
    entry = CATALOG[name]
    if entry.dataset == "cifar10":
        data_dir = extract_cifar10_test(tmp_path / "cifar-10-jpeg")
    elif entry.dataset == "tiny-imagenet":  # its gallery comes from the shared sample's val_0..999
        data_dir = extract_tiny_imagenet_sample(tmp_path / "tiny")
    else:
        _needs_fashion_mnist()
        data_dir = FASHION_MNIST
    copy = tmp_path / "copy"
    copy.mkdir()
    for file in ("config.json", SUMS_NAME):
        shutil.copy(entry.bundled_path / file, copy / file)
    args = [str(copy), "--count", str(BUNDLED_SIZE[name]), "--data-dir", str(data_dir),
            "--cache-dir", str(tmp_path / "cache")]
    assert gallery_main(args) == 0
    assert (copy / GALLERY_NAME).read_bytes() == (entry.bundled_path / GALLERY_NAME).read_bytes()
    assert (copy / SUMS_NAME).read_text() == (entry.bundled_path / SUMS_NAME).read_text()


def test_save_gallery_needs_a_published_folder(tmp_path) -> None:
    gallery = Gallery(torch.zeros(1, 1, 2, 2, dtype=torch.uint8), torch.zeros(1, dtype=torch.int64),
                      torch.zeros(1, dtype=torch.int64), ("a",), "fashion-mnist", "test")
    with pytest.raises(GalleryError, match="publish the model first"):
        save_gallery(gallery, tmp_path / "missing")
