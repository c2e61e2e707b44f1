"""Reading a folder of your own images: layouts, sizes, modes, and one clear error per bad input
that leaves no run folder behind."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from train.cli import main as train_main
from train.data import DatasetError, FolderOptions, load_folder
from train.data.user_folder import decode_folder, median_short_side, scan_folder

FAST = ["--batch-size", "2", "--projector-dims", "8", "8", "--no-progress", "--threads", "1", "--no-probe"]


def _png(path: Path, size=(16, 12), colour=(200, 30, 60), mode: str = "RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, colour).save(path)
    return path


def _jpeg_bytes(size=(16, 16)) -> bytes:
    buffer = io.BytesIO()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


def _run(data: Path, out: Path, *extra: str) -> int:
    return train_main(["--dataset", "folder", "--data-dir", str(data), "--out", str(out), *FAST, *extra])


def _fails(data: Path, tmp_path: Path, capsys, *extra: str) -> str:
    """Run, expect exit 2, no run folder left behind; the error message."""
    out = tmp_path / "run"
    assert _run(data, out, *extra) == 2
    assert not out.exists(), sorted(p.name for p in out.iterdir())
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    return err


# --------------------------------------------------------------------------- layouts


def test_class_folders_are_labels_and_loose_images_make_a_tree_unlabelled(tmp_path):
    for name in ("cats", "dogs"):
        _png(tmp_path / "a" / name / "1.png")
        _png(tmp_path / "a" / name / "deeper" / "2.png")
    labelled = scan_folder(tmp_path / "a", val_fraction=0.0)
    assert labelled.classes == ["cats", "dogs"] and sorted(lab for _, lab in labelled.train) == [0, 0, 1, 1]
    _png(tmp_path / "a" / "loose.png")
    unlabelled = scan_folder(tmp_path / "a")
    assert unlabelled.classes == [] and len(unlabelled.train) == 5
    assert {lab for _, lab in unlabelled.train} == {-1}
    assert scan_folder(tmp_path / "a", labels="none").classes == []


def test_train_and_val_folders_are_the_held_out_split(tmp_path):
    for split in ("train", "val"):
        for name in ("cats", "dogs"):
            _png(tmp_path / split / name / "1.png")
    scan = scan_folder(tmp_path)
    assert scan.classes == ["cats", "dogs"] and len(scan.train) == len(scan.val) == 2
    assert scan.held_out == "val/ folder"


def test_val_fraction_holds_out_each_class_the_same_way_every_time(tmp_path):
    for name in ("cats", "dogs"):
        for i in range(10):
            _png(tmp_path / name / f"{i}.png")
    first, again = scan_folder(tmp_path, val_fraction=0.2, seed=1), scan_folder(tmp_path, val_fraction=0.2, seed=1)
    assert first.val == again.val and sorted(lab for _, lab in first.val) == [0, 0, 1, 1]
    assert scan_folder(tmp_path, val_fraction=0.2, seed=2).val != first.val


def test_the_default_image_size_is_the_median_short_side_capped_at_224(tmp_path):
    paths = [str(_png(tmp_path / f"{i}.png", size)) for i, size in enumerate([(40, 30), (50, 60), (100, 80)])]
    assert median_short_side(paths) == 50
    big = [str(_png(tmp_path / f"big{i}.png", (300, 260))) for i in range(3)]
    assert median_short_side(big) == 224


def test_every_image_mode_is_converted_to_rgb(tmp_path):
    samples = [(str(_png(tmp_path / "grey.png", colour=128, mode="L")), -1),
               (str(_png(tmp_path / "alpha.png", colour=(0, 0, 0, 0), mode="RGBA")), -1),
               (str(_png(tmp_path / "palette.png", colour=3, mode="P")), -1)]
    deep = np.full((12, 16), 65535, dtype=np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    samples.append((str(tmp_path / "deep.png"), -1))
    ds = decode_folder(samples, [], size=8, strict=True, progress=False)
    assert ds.images.shape == (4, 3, 8, 8) and ds.images.dtype == torch.uint8
    assert ds.images[0].unique().tolist() == [128]  # greyscale copied to all three channels
    assert ds.images[1].unique().tolist() == [255]  # transparent over white
    assert ds.images[3].unique().tolist() == [255]  # 16-bit white scaled, not clipped


def test_a_folder_too_large_for_memory_is_streamed(tmp_path):
    for name in ("cats", "dogs"):
        for i in range(3):
            _png(tmp_path / name / f"{i}.png")
    found = load_folder(tmp_path, FolderOptions(stream=True, image_size=8, val_fraction=0.0), progress=False)
    assert not found.in_memory and len(found.pretrain) == 6
    views, label = found.pretrain[0]
    assert views.shape == (2, 3, 8, 8) and label in (0, 1)


# --------------------------------------------------------------------------- bad inputs


def test_a_missing_folder_is_named(tmp_path, capsys):
    assert "does not exist" in _fails(tmp_path / "nowhere", tmp_path, capsys)


def test_an_empty_folder_is_refused(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not an image")
    err = _fails(tmp_path / "empty", tmp_path, capsys)
    assert "no images" in err and str(tmp_path / "empty") in err


def test_one_image_is_not_enough(tmp_path, capsys):
    _png(tmp_path / "one" / "a.png")
    assert "only 1 training image" in _fails(tmp_path / "one", tmp_path, capsys)


def test_unreadable_files_are_skipped_and_counted(tmp_path, capsys):
    data = tmp_path / "data"
    for i in range(4):
        _png(data / f"{i}.png")
    (data / "broken.jpg").write_bytes(b"not a jpeg at all")
    (data / "truncated.jpg").write_bytes(_jpeg_bytes()[:200])
    assert _run(data, tmp_path / "run", "--max-steps", "1", "--cache-dir", str(tmp_path / "cache")) == 0
    err = capsys.readouterr().err
    assert "skipped 2 unreadable file(s)" in err and "broken.jpg" in err


@pytest.mark.parametrize("bad", ["broken", "truncated"])
def test_strict_refuses_an_unreadable_file_by_name(bad, tmp_path, capsys):
    data = tmp_path / "data"
    for i in range(4):
        _png(data / f"{i}.png")
    blob = b"not a jpeg at all" if bad == "broken" else _jpeg_bytes()[:200]
    (data / f"{bad}.jpg").write_bytes(blob)
    err = _fails(data, tmp_path, capsys, "--strict", "--cache-dir", str(tmp_path / "cache"))
    assert f"{bad}.jpg" in err and "--strict" in err
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_an_image_over_the_decompression_bomb_limit_is_refused_by_name(tmp_path, capsys, monkeypatch):
    data = tmp_path / "data"
    for i in range(3):
        _png(data / f"{i}.png", size=(8, 8))
    _png(data / "huge.png", size=(64, 64))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # PIL's limit, lowered: 64x64 is over twice it
    err = _fails(data, tmp_path, capsys, "--image-size", "8", "--cache-dir", str(tmp_path / "cache"))
    assert "huge.png" in err and "decompression-bomb" in err


def test_init_from_a_model_of_another_architecture_is_refused(tmp_path, capsys):
    for i in range(4):
        _png(tmp_path / "data" / f"{i}.png")
    err = _fails(tmp_path / "data", tmp_path, capsys, "--init-from", "frossl-resnet18-cifar10",
                 "--arch", "frossl_resnet18_cifar")
    assert "frossl_resnet18_cifar" in err and "same conv1 kernel" in err


def test_folder_flags_belong_to_the_folder_data_set(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        train_main(["--dataset", "cifar10", "--out", str(tmp_path / "r"), "--image-size", "32"])
    assert info.value.code == 2 and "--image-size" in capsys.readouterr().err


def test_a_scan_error_is_a_dataset_error_naming_the_folder(tmp_path):
    with pytest.raises(DatasetError, match=str(tmp_path)):
        scan_folder(tmp_path)


# --------------------------------------------------------------------------- --init-from


def test_init_from_a_greyscale_model_adapts_its_first_conv_as_timm_does():
    from timm.models import adapt_input_conv

    import frossl_hub
    from frossl_hub.models import create_backbone
    from train.init_from import load_parent, resolve_parent

    parent = resolve_parent("frossl-resnet18-fashion-mnist")
    assert (parent.in_chans, parent.architecture) == (1, frossl_hub.CATALOG[parent.name].architecture)
    assert parent.sha256 == frossl_hub.CATALOG["frossl-resnet18-fashion-mnist"].sha256
    backbone = create_backbone(parent.architecture, in_chans=3)
    load_parent(backbone, parent)
    source = frossl_hub.load("frossl-resnet18-fashion-mnist", num_classes=0).state_dict()
    assert torch.equal(backbone.conv1.weight, adapt_input_conv(3, source["conv1.weight"], 1))
    assert torch.equal(backbone.layer4[1].conv2.weight, source["layer4.1.conv2.weight"])


def test_init_from_may_drop_the_max_pool_of_the_parents_stem():
    """Same conv1 kernel, so every weight fits; the run sees twice the feature-map side."""
    import frossl_hub
    from frossl_hub.models import create_backbone
    from train.init_from import load_parent, parent_architecture, resolve_parent

    parent = resolve_parent("frossl-resnet18-tiny-imagenet")  # bundled with the standard stem
    arch = parent_architecture(parent, "frossl_resnet18_nopool")
    backbone = create_backbone(arch)
    load_parent(backbone, parent)
    source = frossl_hub.load("frossl-resnet18-tiny-imagenet", num_classes=0).state_dict()
    assert arch == "frossl_resnet18_nopool" and isinstance(backbone.maxpool, torch.nn.Identity)
    assert all(torch.equal(backbone.state_dict()[k], v) for k, v in source.items())


def test_init_from_a_corrupt_model_is_refused_by_its_checksum(tmp_path):
    from helpers import publish_tiny_model
    from train.init_from import InitError, resolve_parent

    folder = publish_tiny_model(tmp_path / "model")
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(InitError, match="expected sha256"):
        resolve_parent(str(folder))


def test_class_folders_without_a_split_hold_out_a_tenth_of_each_class_by_default(tmp_path):
    for name in ("cats", "dogs"):
        for i in range(20):
            _png(tmp_path / name / f"{i}.png")
    scan = scan_folder(tmp_path, seed=3)
    assert sorted(lab for _, lab in scan.val) == [0, 0, 1, 1] and len(scan.train) == 36
    assert scan.val == scan_folder(tmp_path, seed=3).val
    assert "10% of each class, held out by default (seed 3" in scan.held_out


def test_val_fraction_zero_keeps_every_image_for_training(tmp_path):
    for name in ("cats", "dogs"):
        for i in range(20):
            _png(tmp_path / name / f"{i}.png")
    scan = scan_folder(tmp_path, val_fraction=0.0)
    assert len(scan.train) == 40 and scan.val == [] and scan.held_out == ""


def test_an_unlabelled_folder_holds_nothing_out_by_default(tmp_path):
    for i in range(20):
        _png(tmp_path / f"{i}.png")
    assert scan_folder(tmp_path).val == []
