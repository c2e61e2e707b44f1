"""train.data: every reader on tiny data sets written in the real on-disk formats."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import List

import numpy as np
import pytest
import torch
from PIL import Image

from train.data import (
    ArrayDataset,
    DatasetError,
    ImageFolderCrops,
    default_data_dir,
    is_in_memory,
    load_arrays,
)

# torchvision 0.29 warns on every decode that TorchCodec will take over image decoding
pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities")

REPO = Path(__file__).resolve().parents[1]
REAL_CIFAR10_JPEG = REPO / ".data" / "cifar-10-jpeg"
REAL_TINY_IMAGENET = REPO / ".data" / "tiny-imagenet-200"
REAL_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")

from formats import (  # tests/ is on sys.path: pytest's rootdir-relative import mode
    CIFAR10_CLASSES,
    CIFAR100_CLASSES,
    STL10_CLASSES,
    _colour,
    _dump,
    TINY_WNIDS,
    _save_jpeg,
    write_cifar10_pickles,
    write_cifar100_pickles,
    write_cifar_jpegs,
    write_fashion_mnist,
    write_idx,
    write_image_folder,
    write_stl10,
    write_tiny_imagenet,
)


@pytest.fixture(scope="module")
def tiny_imagenet(tmp_path_factory) -> Path:
    return write_tiny_imagenet(tmp_path_factory.mktemp("tiny") / "tiny-imagenet-200")


@pytest.fixture(scope="module")
def imagenet100(tmp_path_factory) -> Path:
    return write_image_folder(tmp_path_factory.mktemp("in100"), [f"n{i:08d}" for i in range(100)])


def _cache_files(folder: Path) -> List[Path]:
    return sorted(folder.rglob("*.safetensors"))


def _assert_names(err: pytest.ExceptionInfo, name: str, path: Path) -> None:
    message = str(err.value)
    assert message.startswith(f"{name}:"), message
    assert str(path) in message, message
    assert "expected" in message, message


# ---------------------------------------------------------------------------------------
# CIFAR


def test_cifar10_pickles_round_trip_exactly(tmp_path):
    written = write_cifar10_pickles(tmp_path / "cifar-10-batches-py")
    for split in ("train", "test"):
        ds = load_arrays("cifar10", tmp_path, split)
        x, y = written[split]
        assert ds.images.dtype == torch.uint8 and ds.images.is_contiguous()
        assert torch.equal(ds.images, torch.from_numpy(x.reshape(-1, 3, 32, 32)))
        assert ds.labels.dtype == torch.int64 and ds.labels.tolist() == y
        assert ds.classes == CIFAR10_CLASSES and len(ds) == len(y)


def test_cifar10_pickle_folder_may_be_given_itself(tmp_path):
    write_cifar10_pickles(tmp_path / "cifar-10-batches-py")
    assert len(load_arrays("cifar10", tmp_path / "cifar-10-batches-py", "test")) == 2


def test_cifar100_pickles_use_fine_labels(tmp_path):
    written = write_cifar100_pickles(tmp_path / "cifar-100-python")
    ds = load_arrays("cifar-100", tmp_path, "test")
    x, fine = written["test"]
    assert torch.equal(ds.images, torch.from_numpy(x.reshape(-1, 3, 32, 32)))
    assert ds.labels.tolist() == fine and ds.classes == CIFAR100_CLASSES


def test_cifar_pretrain_split_is_the_train_split(tmp_path):
    write_cifar10_pickles(tmp_path / "cifar-10-batches-py")
    pretrain, train = (load_arrays("cifar10", tmp_path, s) for s in ("pretrain", "train"))
    assert torch.equal(pretrain.images, train.images) and torch.equal(pretrain.labels, train.labels)


def test_cifar10_jpeg_folders_decode_in_official_label_order(tmp_path):
    root = write_cifar_jpegs(tmp_path / "cifar-10-jpeg")
    ds = load_arrays("cifar10", root, "train")
    assert ds.images.shape == (20, 3, 32, 32) and ds.images.dtype == torch.uint8
    assert ds.labels.tolist() == [label for label in range(10) for _ in range(2)]
    assert ds.classes == CIFAR10_CLASSES
    expected = torch.tensor([_colour(label, i) for label in range(10) for i in range(2)])
    assert (ds.images.float().mean((2, 3)) - expected).abs().max() <= 3  # JPEG: near, not exact
    assert len(load_arrays("cifar10", tmp_path, "test")) == 10  # parent folder works too


@pytest.fixture
def user_cache(tmp_path, monkeypatch) -> Path:
    """This test's own frossl-hub cache; returns where decode caches go in it."""
    monkeypatch.setenv("FROSSL_HUB_CACHE", str(tmp_path / "hub-cache"))
    return tmp_path / "hub-cache" / "datasets"


def test_jpeg_cache_is_written_once_then_reused_without_decoding(tmp_path, user_cache):
    root = write_cifar_jpegs(tmp_path / "cifar-10-jpeg")
    first = load_arrays("cifar10", root, "train")
    (cache,) = _cache_files(user_cache)
    assert "train" in cache.name and not _cache_files(root)
    stamp = cache.stat().st_mtime_ns
    # Garble one JPEG but keep its size and mtime: only a load that skips decoding succeeds.
    victim = root / "train" / "cat" / "0000.jpg"
    st = victim.stat()
    victim.write_bytes(b"\0" * st.st_size)
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
    second = load_arrays("cifar10", root, "train")
    assert torch.equal(first.images, second.images) and torch.equal(first.labels, second.labels)
    assert _cache_files(user_cache) == [cache] and cache.stat().st_mtime_ns == stamp


def test_jpeg_cache_is_rebuilt_when_a_file_is_added(tmp_path, user_cache):
    root = write_cifar_jpegs(tmp_path / "cifar-10-jpeg")
    assert len(load_arrays("cifar10", root, "train")) == 20
    (old,) = _cache_files(user_cache)
    _save_jpeg(root / "train" / "ship" / "9999.jpg", (32, 32), (1, 2, 3))
    ds = load_arrays("cifar10", root, "train")
    assert len(ds) == 21 and ds.labels.bincount().tolist()[8] == 3
    (new,) = _cache_files(user_cache)  # the stale cache is gone
    assert new != old


def test_train_and_test_splits_have_separate_caches(tmp_path, user_cache):
    root = write_cifar_jpegs(tmp_path / "cifar-10-jpeg")
    load_arrays("cifar10", root, "train")
    load_arrays("cifar10", root, "test")
    assert sorted(p.name.split("-")[1] for p in _cache_files(user_cache)) == ["test", "train"]


def test_two_folders_with_the_same_files_never_share_an_entry(tmp_path, user_cache):
    one = write_cifar_jpegs(tmp_path / "one" / "cifar-10-jpeg")
    two = tmp_path / "two" / "cifar-10-jpeg"
    shutil.copytree(one, two, copy_function=shutil.copy2)  # same names, sizes and mtimes
    load_arrays("cifar10", one, "test")
    load_arrays("cifar10", two, "test")
    assert len(_cache_files(user_cache)) == 2


def test_cache_dir_keeps_the_data_folder_and_the_user_cache_untouched(tmp_path, user_cache):
    root = write_cifar_jpegs(tmp_path / "cifar-10-jpeg")
    load_arrays("cifar10", root, "test", cache_dir=tmp_path / "cache")
    assert len(_cache_files(tmp_path / "cache")) == 1
    assert not _cache_files(root) and not _cache_files(user_cache)


def test_the_default_cache_is_under_xdg_cache_home_without_frossl_hub_cache(tmp_path, monkeypatch):
    root = write_cifar_jpegs(tmp_path / "cifar-10-jpeg")
    monkeypatch.delenv("FROSSL_HUB_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    root.chmod(0o555)  # a read-only data folder is fine: nothing is written there
    try:
        first = load_arrays("cifar10", root, "test")
        second = load_arrays("cifar10", root, "test")
    finally:
        root.chmod(0o755)
    assert torch.equal(first.images, second.images) and not _cache_files(root)
    assert len(_cache_files(tmp_path / "xdg" / "frossl_hub" / "datasets")) == 1


def test_an_unwritable_cache_warns_and_still_loads(tmp_path, monkeypatch):
    root = write_cifar_jpegs(tmp_path / "cifar-10-jpeg")
    blocker = tmp_path / "a-file"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("FROSSL_HUB_CACHE", str(blocker))
    with pytest.warns(UserWarning, match=f"cannot write the decoded-image cache in {blocker}"):
        ds = load_arrays("cifar10", root, "test")
    assert len(ds) == 10 and not _cache_files(root)


_BUILD = ("import sys; from train.data import load_arrays; "
          "print(len(load_arrays('cifar10', sys.argv[1], 'train')))")


def test_two_runs_building_the_same_cache_at_once_both_succeed(tmp_path, user_cache):
    root = write_cifar_jpegs(tmp_path / "cifar-10-jpeg")
    env = {**os.environ, "FROSSL_HUB_CACHE": str(user_cache.parent)}
    runs = [subprocess.Popen([sys.executable, "-c", _BUILD, str(root)], cwd=REPO, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    outs = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], [err for _, err in outs]
    assert [out.strip() for out, _ in outs] == ["20", "20"]
    assert [p.suffix for p in user_cache.iterdir()] == [".safetensors"]  # one entry, no temp file
    assert len(load_arrays("cifar10", root, "train")) == 20


def test_damaged_cache_is_ignored_and_rewritten(tmp_path, user_cache):
    root = write_cifar_jpegs(tmp_path / "cifar-10-jpeg")
    good = load_arrays("cifar10", root, "test")
    (cache,) = _cache_files(user_cache)
    cache.write_bytes(b"not a safetensors file")
    with pytest.warns(UserWarning, match="unusable dataset cache"):
        again = load_arrays("cifar10", root, "test")
    assert torch.equal(good.images, again.images)
    assert load_arrays("cifar10", root, "test").images.shape == good.images.shape


# ---------------------------------------------------------------------------------------
# STL-10


def test_stl10_column_major_binaries_round_trip_exactly(tmp_path):
    written = write_stl10(tmp_path / "stl10_binary")
    for split in ("train", "test"):
        ds = load_arrays("stl10", tmp_path, split)
        x, y = written[split]
        assert ds.images.is_contiguous() and torch.equal(ds.images, torch.from_numpy(x))
        assert ds.labels.tolist() == y.tolist() and ds.classes == STL10_CLASSES


def test_stl10_pretrain_is_train_plus_unlabeled_with_label_minus_one(tmp_path):
    written = write_stl10(tmp_path / "stl10_binary")
    ds = load_arrays("stl10", tmp_path / "stl10_binary", "pretrain")
    assert torch.equal(ds.images, torch.from_numpy(np.concatenate([written["train"][0],
                                                                    written["unlabeled"][0]])))
    assert ds.labels.tolist() == written["train"][1].tolist() + [-1] * 4


def test_stl10_truncated_images_are_a_dataset_error(tmp_path):
    folder = tmp_path / "stl10_binary"
    write_stl10(folder)
    with open(folder / "test_X.bin", "r+b") as f:
        f.truncate(3 * 96 * 96 + 5)
    with pytest.raises(DatasetError, match="truncated") as err:
        load_arrays("stl10", tmp_path, "test")
    _assert_names(err, "stl10", folder / "test_X.bin")


def test_stl10_label_count_mismatch_is_a_dataset_error(tmp_path):
    folder = tmp_path / "stl10_binary"
    write_stl10(folder)
    (folder / "train_y.bin").write_bytes(bytes([1, 2]))
    with pytest.raises(DatasetError, match="2 labels for 3 images") as err:
        load_arrays("stl10", tmp_path, "train")
    _assert_names(err, "stl10", folder / "train_y.bin")


def test_stl10_missing_unlabeled_file_is_a_dataset_error(tmp_path):
    folder = tmp_path / "stl10_binary"
    write_stl10(folder)
    (folder / "unlabeled_X.bin").unlink()
    assert len(load_arrays("stl10", tmp_path, "train")) == 3  # only pretraining needs it
    with pytest.raises(DatasetError, match="missing file") as err:
        load_arrays("stl10", tmp_path, "pretrain")
    _assert_names(err, "stl10", folder / "unlabeled_X.bin")


# ---------------------------------------------------------------------------------------
# Tiny-ImageNet


def test_tiny_imagenet_classes_are_sorted_wnids_and_greyscale_becomes_rgb(tiny_imagenet, tmp_path):
    ds = load_arrays("tiny-imagenet", tiny_imagenet.parent, "train", cache_dir=tmp_path)
    assert ds.classes == sorted(TINY_WNIDS) != TINY_WNIDS
    assert ds.images.shape == (200, 3, 64, 64) and ds.labels.tolist() == list(range(200))
    grey = ds.images[0].float()
    assert (grey - 100).abs().max() <= 2  # one grey level copied into R, G and B


def test_tiny_imagenet_test_split_is_the_labelled_val_split(tiny_imagenet, tmp_path):
    ds = load_arrays("tiny-imagenet", tiny_imagenet, "test", cache_dir=tmp_path)
    index = {w: i for i, w in enumerate(sorted(TINY_WNIDS))}
    assert ds.labels.tolist() == [index[TINY_WNIDS[5]], index[TINY_WNIDS[0]], index[TINY_WNIDS[5]]]
    expected = torch.tensor([_colour(i, i) for i in range(3)])
    assert (ds.images.float().mean((2, 3)) - expected).abs().max() <= 3


def test_tiny_imagenet_annotation_with_unknown_wnid_is_a_dataset_error(tmp_path):
    root = write_tiny_imagenet(tmp_path / "tiny-imagenet-200")
    ann = root / "val" / "val_annotations.txt"
    ann.write_text(ann.read_text() + "val_0.JPEG\tn00000000\t0\t0\t1\t1\n")
    with pytest.raises(DatasetError, match="line 4") as err:
        load_arrays("tiny-imagenet", root, "test", cache_dir=tmp_path / "cache")
    _assert_names(err, "tiny-imagenet", ann)


# ---------------------------------------------------------------------------------------
# Fashion-MNIST


@pytest.mark.parametrize("gz", [True, False], ids=["gz", "raw"])
def test_fashion_mnist_idx_round_trips_exactly(tmp_path, gz):
    written = write_fashion_mnist(tmp_path, gz=gz)
    for split in ("train", "test"):
        ds = load_arrays("fashion-mnist", tmp_path, split)
        x, y = written[split]
        assert ds.images.shape == (5, 1, 28, 28) and ds.images.is_contiguous()
        assert torch.equal(ds.images[:, 0], torch.from_numpy(x))
        assert ds.labels.tolist() == y.tolist() and ds.classes[0] == "T-shirt/top"


def test_fashion_mnist_wrong_magic_is_a_dataset_error(tmp_path):
    write_fashion_mnist(tmp_path, gz=False)
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(bytes((0, 0, 8, 1)) + path.read_bytes()[4:])
    with pytest.raises(DatasetError, match="wrong magic number 0x00000801") as err:
        load_arrays("fashion-mnist", tmp_path, "test")
    _assert_names(err, "fashion-mnist", path)


@pytest.mark.parametrize("gz", [True, False], ids=["gz", "raw"])
def test_fashion_mnist_truncated_file_is_a_dataset_error(tmp_path, gz):
    write_fashion_mnist(tmp_path, gz=gz)
    path = tmp_path / ("train-images-idx3-ubyte" + (".gz" if gz else ""))
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(DatasetError) as err:
        load_arrays("fashion-mnist", tmp_path, "pretrain")
    _assert_names(err, "fashion-mnist", path)


def test_fashion_mnist_label_count_mismatch_is_a_dataset_error(tmp_path):
    write_fashion_mnist(tmp_path, gz=True)
    labels = write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(4, np.uint8), gz=True)
    with pytest.raises(DatasetError, match="4 labels for 5 images") as err:
        load_arrays("fashion-mnist", tmp_path, "test")
    _assert_names(err, "fashion-mnist", labels)


# ---------------------------------------------------------------------------------------
# errors common to all readers


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "stl10", "tiny-imagenet", "fashion-mnist"])
def test_missing_data_folder_is_a_dataset_error(tmp_path, name):
    with pytest.raises(DatasetError, match="does not exist") as err:
        load_arrays(name, tmp_path / "nowhere", "train")
    _assert_names(err, name, tmp_path / "nowhere")


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "stl10", "tiny-imagenet", "fashion-mnist"])
def test_folder_without_the_expected_layout_is_a_dataset_error(tmp_path, name):
    with pytest.raises(DatasetError) as err:
        load_arrays(name, tmp_path, "test")
    _assert_names(err, name, tmp_path)


def test_cifar10_error_names_both_layouts(tmp_path):
    with pytest.raises(DatasetError) as err:
        load_arrays("cifar10", tmp_path, "train")
    assert str(err.value) == (
        f"cifar10: no CIFAR-10 data at {tmp_path}: expected cifar-10-batches-py/ (official pickle "
        "batches) or train/<class>/*.jpg + test/<class>/*.jpg")


def test_corrupt_cifar_pickle_is_a_dataset_error(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar10_pickles(folder)
    (folder / "data_batch_3").write_bytes(b"\x80\x02}q\x00(X")  # cut mid-stream
    with pytest.raises(DatasetError, match="unreadable") as err:
        load_arrays("cifar10", tmp_path, "train")
    _assert_names(err, "cifar10", folder)


def test_missing_cifar_pickle_file_is_a_dataset_error(tmp_path):
    folder = tmp_path / "cifar-100-python"
    write_cifar100_pickles(folder)
    (folder / "meta").unlink()
    with pytest.raises(DatasetError, match=r"missing pickle file\(s\) \['meta'\]") as err:
        load_arrays("cifar100", tmp_path, "train")
    _assert_names(err, "cifar100", folder)


def test_cifar_pickle_label_count_mismatch_is_a_dataset_error(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar10_pickles(folder)
    _dump(folder / "test_batch", {"labels": [1], "data": np.zeros((2, 3072), np.uint8)})
    with pytest.raises(DatasetError, match="2 images but 1 labels") as err:
        load_arrays("cifar10", tmp_path, "test")
    _assert_names(err, "cifar10", folder)


def test_empty_class_folder_is_a_dataset_error(tmp_path):
    root = write_cifar_jpegs(tmp_path / "cifar-10-jpeg")
    for f in (root / "test" / "frog").iterdir():
        f.unlink()
    with pytest.raises(DatasetError, match="empty class folder") as err:
        load_arrays("cifar10", root, "test")
    _assert_names(err, "cifar10", root / "test" / "frog")


def test_missing_class_folder_is_a_dataset_error(tmp_path):
    root = write_cifar_jpegs(tmp_path / "cifar-10-jpeg")
    (root / "test" / "frog").rename(root / "test" / "toad")
    with pytest.raises(DatasetError, match=r"missing \['frog'\], unexpected \['toad'\]") as err:
        load_arrays("cifar10", root, "test")
    _assert_names(err, "cifar10", root / "test")


def test_undecodable_jpeg_is_a_dataset_error(tmp_path):
    root = write_cifar_jpegs(tmp_path / "cifar-10-jpeg")
    bad = root / "test" / "dog" / "0000.jpg"
    bad.write_bytes(b"garbage")
    with pytest.raises(DatasetError, match="cannot decode image") as err:
        load_arrays("cifar10", root, "test")
    _assert_names(err, "cifar10", bad)
    assert not _cache_files(root)


def test_wrong_image_size_is_a_dataset_error(tmp_path):
    root = write_cifar_jpegs(tmp_path / "cifar-10-jpeg")
    big = root / "test" / "dog" / "0000.jpg"
    _save_jpeg(big, (40, 32), (0, 0, 0))
    with pytest.raises(DatasetError, match="not 32x32") as err:
        load_arrays("cifar10", root, "test")
    _assert_names(err, "cifar10", big)


def test_unknown_split_and_dataset_are_dataset_errors(tmp_path):
    with pytest.raises(DatasetError, match="unknown split"):
        load_arrays("cifar10", tmp_path, "validation")
    with pytest.raises(DatasetError, match="unknown dataset"):
        load_arrays("mnist-3d", tmp_path, "train")


def test_imagenet_streams_instead_of_loading_into_memory(tmp_path):
    names = ("cifar10", "stl10", "tiny-imagenet", "imagenet100", "imagenet")
    assert [is_in_memory(n) for n in names] == [True, True, True, False, False]
    with pytest.raises(DatasetError, match="ImageFolderCrops"):
        load_arrays("imagenet", tmp_path, "train")


def test_default_data_dir_is_only_set_for_system_data():
    assert default_data_dir("fashion_mnist") == Path("/usr/share/datasets/fashion-mnist")
    assert default_data_dir("cifar10") is None


def test_no_data_folder_and_no_default_is_a_dataset_error():
    with pytest.raises(DatasetError, match="cifar100: no data folder given"):
        load_arrays("cifar100", None, "train")


def test_array_dataset_rejects_wrong_dtypes():
    with pytest.raises(ValueError):
        ArrayDataset(torch.zeros(2, 3, 4, 4), torch.zeros(2, dtype=torch.int64), [])


# ---------------------------------------------------------------------------------------
# ImageFolderCrops


def test_image_folder_crops_give_independent_uint8_views(imagenet100):
    ds = ImageFolderCrops("imagenet100", imagenet100, "train", num_views=3, image_size=24,
                          scale=(0.1, 0.5))
    assert len(ds) == 100 and ds.classes[7] == "n00000007"
    views, label = ds[7]
    assert views.shape == (3, 3, 24, 24) and views.dtype == torch.uint8 and label == 7
    assert not torch.equal(views[0], views[1])
    batch, labels = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert batch.shape == (4, 3, 3, 24, 24) and labels.tolist() == [0, 1, 2, 3]


def test_image_folder_crops_eval_mode_resizes_then_center_crops(imagenet100):
    ds = ImageFolderCrops("imagenet100", imagenet100, "test", image_size=28, eval_mode=True)
    assert ds.root == imagenet100 / "val" and ds.resize_size == 32
    views, label = ds[3]
    assert views.shape == (1, 3, 28, 28) and label == 3
    assert torch.equal(views, ds[3][0])
    image = torch.from_numpy(np.array(Image.open(ds.samples[3][0]))).permute(2, 0, 1)
    resized = torch.nn.functional.interpolate(image[None].float(), size=(32, 42), mode="bilinear",
                                              antialias=True, align_corners=False)[0]
    assert (views[0].float() - resized[:, 2:30, 7:35]).abs().mean() < 2  # a center crop


def test_image_folder_crops_class_count_must_match_the_spec(tmp_path):
    root = write_image_folder(tmp_path, ["n1", "n2", "n3"], size=(8, 8))
    with pytest.raises(DatasetError, match="3 class folders, 100 expected") as err:
        ImageFolderCrops("imagenet100", root, "train")
    _assert_names(err, "imagenet100", root / "train")


def test_image_folder_crops_empty_class_folder_is_a_dataset_error(tmp_path):
    root = write_image_folder(tmp_path, ["n1", "n2"], size=(8, 8))
    (root / "val" / "n2" / "n2_0.JPEG").unlink()
    with pytest.raises(DatasetError, match="empty or incomplete") as err:
        ImageFolderCrops("imagenet", root, "val")
    _assert_names(err, "imagenet", root / "val")


# ---------------------------------------------------------------------------------------
# the real data, where this machine has it


@pytest.mark.skipif(not REAL_FASHION_MNIST.is_dir(), reason="no Fashion-MNIST on this machine")
def test_real_fashion_mnist_test_split():
    ds = load_arrays("fashion-mnist", None, "test")
    assert ds.images.shape == (10_000, 1, 28, 28)
    assert ds.labels.bincount().tolist() == [1000] * 10
    assert abs(ds.images.float().mean().item() / 255 - 0.2860) < 0.01


@pytest.mark.skipif(not REAL_TINY_IMAGENET.is_dir(), reason="no Tiny-ImageNet sample here")
def test_real_tiny_imagenet_sample(tmp_path):
    val = load_arrays("tiny-imagenet", REAL_TINY_IMAGENET, "test", cache_dir=tmp_path)
    assert val.images.shape == (1000, 3, 64, 64) and len(val.classes) == 200
    assert val.classes == sorted(val.classes)
    train = load_arrays("tiny-imagenet", REAL_TINY_IMAGENET.parent, "pretrain", cache_dir=tmp_path)
    assert len(train) == sum(1 for _ in REAL_TINY_IMAGENET.glob("train/*/images/*.JPEG"))
    assert train.labels.bincount(minlength=200).min() > 0


@pytest.mark.skipif(not REAL_CIFAR10_JPEG.is_dir(), reason="no CIFAR-10 JPEGs on this machine")
def test_real_cifar10_jpeg_test_split(tmp_path):
    ds = load_arrays("cifar10", REAL_CIFAR10_JPEG, "test", cache_dir=tmp_path)
    assert ds.images.shape == (10_000, 3, 32, 32)
    assert ds.labels.bincount().tolist() == [1000] * 10
    mean = ds.images.float().mean((0, 2, 3)) / 255
    assert torch.allclose(mean, torch.tensor([0.494, 0.485, 0.450]), atol=0.01)
