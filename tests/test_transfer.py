"""`python -m train.transfer`: a classifier from a bundled hub model on a labelled folder of
real Fashion-MNIST images (the Debian package), whose class names have spaces, unicode and
dots; published, loaded with frossl_hub and timm, served on 127.0.0.1, shown by the page.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Dict, Iterator, List

import pytest
import torch

import formats
import frossl_hub
from benchmarks import _common
from helpers import one_torch_thread  # noqa: F401  (fixture)
from train.transfer.cli import main as transfer_main

REPO = Path(__file__).resolve().parents[1]
PARENT = "frossl-resnet18-cifar10"  # bundled, 32 px
CLASSES = {0: "T-shirt top", 1: "trousers.v2", 8: "sac à main"}  # label -> class folder
NAMES = sorted(CLASSES.values())  # ImageFolder order
PER_CLASS = 12  # 10% held out per class by default: 1 val image each
FAST = ["--no-progress", "--workers", "0", "--threads", "1"]

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]


def write_fashion_folder(root: Path, per_class: int = PER_CLASS,
                         classes: Dict[int, str] = CLASSES) -> Path:
    return formats.write_fashion_folder(root, classes, per_class)


def transfer(data: Path, out: Path, *extra: str) -> int:
    return transfer_main(["--model", PARENT, "--data-dir", str(data), "--out", str(out), *FAST, *extra])


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_fashion_folder(tmp_path_factory.mktemp("transfer") / "clothes")


@pytest.fixture(scope="module")
def linear(data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("linear") / "out"
    assert transfer(data, out, "--shots", "1,all") == 0
    return out


def record_of(out: Path) -> Dict:
    return json.loads((out / "transfer.json").read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- linear


def test_a_linear_transfer_publishes_a_head_with_the_folders_class_names(linear):
    import timm

    model = frossl_hub.load(linear)
    assert model.num_classes == 3 and model.pretrained_cfg["label_names"] == NAMES
    assert json.loads((linear / "config.json").read_text())["label_names"] == NAMES  # timm's key
    theirs = timm.create_model(f"local-dir:{linear}", pretrained=True).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(theirs(x), model(x))


def test_the_backbone_is_the_parents_unchanged(linear):
    parent = frossl_hub.load(PARENT, num_classes=0).state_dict()
    mine = frossl_hub.load(linear).state_dict()
    assert all(torch.equal(mine[k], v) for k, v in parent.items())


def test_transfer_json_holds_the_few_shot_table(linear):
    rows = record_of(linear)["shots"]
    assert [(r["shots"], r["repeats"]) for r in rows] == [("1", 5), ("all", 1)]
    one = rows[0]
    assert [r["train_images"] for r in one["runs"]] == [3] * 5
    tops = [r["top1"] for r in one["runs"]]
    assert one["top1_mean"] == pytest.approx(sum(tops) / 5, abs=1e-4)
    assert rows[1]["runs"][0]["train_images"] == 3 * (PER_CLASS - 1)


def test_the_card_states_the_parent_the_data_the_mode_and_the_results(linear):
    card = (linear / "README.md").read_text(encoding="utf-8")
    record = record_of(linear)
    assert f"from `{PARENT}` (weights sha256 `{frossl_hub.CATALOG[PARENT].sha256}`" in card
    assert "3 classes (`T-shirt top`, `sac à main`, `trousers.v2`)" in card
    assert "33 training images, 3 val images (10% of each class, held out by default" in card
    assert "**Mode:** linear" in card
    assert f"**Val top-1:** {100 * record['published']['top1']:.2f}%" in card
    assert f"**val top-5:** {100 * record['published']['top5']:.2f}%" in card
    assert "| 1 | 5 |" in card and "| all | 1 |" in card


def test_features_are_extracted_once_and_cached(data, linear, tmp_path):
    from frossl_hub.caches import FEATURES
    from train.transfer.features import features_key
    from train.transfer.parent import load_parent

    key = features_key(load_parent(PARENT, None).model, data)
    cached = Path(os.environ["FROSSL_HUB_CACHE"]) / FEATURES / f"{key}.npy"
    before = cached.stat().st_mtime_ns  # written by the first transfer
    assert transfer(data, tmp_path / "again", "--shots", "all") == 0
    assert cached.stat().st_mtime_ns == before
    assert record_of(tmp_path / "again")["published"]["top1"] == record_of(linear)["published"]["top1"]


def test_float16_weights_are_published_and_measured_as_stored(data, tmp_path):
    from safetensors.torch import load_file

    out = tmp_path / "half"
    assert transfer(data, out, "--dtype", "float16", "--image-size", "40") == 0
    assert {t.dtype for t in load_file(str(out / "model.safetensors")).values() if t.is_floating_point()} == {torch.float16}
    model = frossl_hub.load(out)
    assert model.pretrained_cfg["input_size"] == (3, 40, 40)
    assert record_of(out)["dtype"] == "float16" and 0 <= record_of(out)["published"]["top1"] <= 1


def test_val_fraction_zero_trains_on_every_image_and_says_nothing_was_measured(data, linear, tmp_path):
    out = tmp_path / "all"
    assert transfer(data, out, "--val-fraction", "0") == 0
    record = record_of(out)
    assert record["images"] == {"train": 3 * PER_CLASS, "val": 0, "unreadable": 0}
    assert record["published"]["top1"] is None
    assert "**Val top-1:** not measured (no val split)" in (out / "README.md").read_text(encoding="utf-8")


def test_a_timm_written_folder_is_a_parent_too(data, tmp_path):
    import timm

    from frossl_hub._io import sha256_file
    from frossl_hub.models import pretrained_cfg_for

    torch.manual_seed(3)
    theirs = timm.create_model("frossl_resnet18_cifar", num_classes=10,
                               pretrained_cfg_overlay=pretrained_cfg_for(frossl_hub.get_dataset_spec("cifar10")))
    saved = tmp_path / "saved"
    timm.models.save_for_hf(theirs.eval(), str(saved), safe_serialization=True)
    out = tmp_path / "out"
    assert transfer_main(["--model", str(saved), "--data-dir", str(data), "--out", str(out), *FAST]) == 0
    parent = record_of(out)["parent"]
    assert parent["sha256"] == sha256_file(saved / "model.safetensors") and parent["source"] == "path"
    model = frossl_hub.load(out)
    assert model.pretrained_cfg["label_names"] == NAMES and type(model.conv1).__name__ == "Conv2d"
    torch.testing.assert_close(model.conv1.weight, theirs.conv1.weight)


# --------------------------------------------------------------------------- finetune


def test_a_resumed_finetune_equals_an_uninterrupted_one(data, tmp_path):
    common = ["--mode", "finetune", "--epochs", "2", "--batch-size", "16", "--shots", "all"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert transfer(data, straight, *common) == 0
    assert transfer(data, split, *common, "--max-steps", "2") == 0
    assert (tmp_path / "split.partial").is_dir()  # kept for --resume
    assert transfer(data, split, *common, "--resume", "--overwrite") == 0
    assert not (tmp_path / "split.partial").exists() and not (tmp_path / "straight.partial").exists()
    a, b = frossl_hub.load(straight).state_dict(), frossl_hub.load(split).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    parent = frossl_hub.load(PARENT, num_classes=0).state_dict()
    assert not torch.equal(a["conv1.weight"], parent["conv1.weight"])  # the backbone was trained
    record = record_of(straight)
    assert record["mode"] == "finetune" and frossl_hub.load(straight).pretrained_cfg["label_names"] == NAMES


# --------------------------------------------------------------------------- bad input


def _refused(capsys, data: Path, out: Path, *extra: str, model: str = PARENT) -> str:
    code = transfer_main(["--model", model, "--data-dir", str(data), "--out", str(out), *FAST, *extra])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and "Traceback" not in err, err
    assert not out.exists() or not any(out.iterdir())
    return err


def test_a_folder_with_one_class_is_refused_by_name(tmp_path, capsys):
    data = write_fashion_folder(tmp_path / "one", per_class=4, classes={0: "only"})
    err = _refused(capsys, data, tmp_path / "out")
    assert str(data) in err and "two or more class folders" in err


def test_a_class_without_a_readable_image_is_refused_by_name(data, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(data, copy)
    (copy / "broken").mkdir()
    (copy / "broken" / "0.png").write_bytes(b"not a png")
    err = _refused(capsys, copy, tmp_path / "out")
    assert str(copy / "broken") in err and "no readable training image" in err


def test_shots_larger_than_the_smallest_class_are_refused(data, tmp_path, capsys):
    err = _refused(capsys, data, tmp_path / "out", "--shots", "5,20")
    assert "--shots 20 is larger than the smallest class" in err and str(data) in err


def test_an_unknown_model_gets_frossl_hub_loads_message(data, tmp_path, capsys):
    with pytest.raises(frossl_hub.ModelNotFoundError) as expected:
        frossl_hub.load("frossl-resnet18-nope")
    err = _refused(capsys, data, tmp_path / "out", model="frossl-resnet18-nope")
    assert err == f"error: {expected.value}\n"


def test_a_non_empty_out_needs_overwrite(data, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code = transfer(data, out)
    err = capsys.readouterr().err
    assert code == 2 and str(out) in err and "--overwrite" in err
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


@pytest.mark.parametrize("size", ["8", "400"])
def test_an_image_size_outside_the_models_limits_is_refused(data, tmp_path, capsys, size):
    err = _refused(capsys, data, tmp_path / "out", "--image-size", size)
    # the bundled CIFAR-10 model has no max-pool: a total stride of 16, so 16 px at the least
    assert f"--image-size {size} is outside" in err and "16 to 256 px" in err


# --------------------------------------------------------------------------- served, and the page


@pytest.fixture(scope="module")
def server(linear, tmp_path_factory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("serve") / "server.log"
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    try:
        with _common.running_server(["--model", str(linear), "--threads", "1"], env, log, timeout=300) as url:
            yield url
    except RuntimeError as exc:
        pytest.fail(str(exc))


def served_labels(url: str, image: Path) -> List[str]:
    import httpx

    with open(image, "rb") as f:
        response = httpx.post(url + "/v1/predictions", files={"file": (image.name, f, "image/png")}, timeout=120)
    assert response.status_code == 200, response.text
    return [p["label"] for p in response.json()["data"][0]["predictions"]]


def test_the_served_model_predicts_the_folders_class_names(server, data):
    assert sorted(served_labels(server, data / "sac à main" / "000.png")) == NAMES


def test_the_page_shows_the_folders_class_names(server, data, tmp_path):
    from page_helpers import page_top_labels

    assert sorted(page_top_labels(server, data / "sac à main" / "000.png", tmp_path)) == NAMES
