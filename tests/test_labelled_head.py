"""`python -m train --dataset folder` on class folders with no split: 10% of each class is
held out by default, the probe runs, and the published head carries the folder's class
names (timm's ``label_names``), which `/v1/predictions` and the demo page show."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterator

import pytest

import formats
import frossl_hub
from benchmarks import _common
from train.cli import main as train_main

CLASSES = {0: "T-shirt top", 1: "trousers.v2", 8: "sac à main"}  # spaces, a dot, unicode
NAMES = sorted(CLASSES.values())
FAST = ["--batch-size", "8", "--projector-dims", "32", "32", "--knn-train-limit", "32",
        "--eval-test-limit", "32", "--no-progress", "--threads", "1", "--arch", "frossl_resnet18",
        "--max-steps", "2"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("labelled-head")
    data = formats.write_fashion_folder(root / "clothes", CLASSES, per_class=20)
    out = root / "run"
    assert train_main(["--dataset", "folder", "--data-dir", str(data), "--out", str(out), *FAST,
                       "--cache-dir", str(root / "cache")]) == 0
    return out


def test_a_tenth_of_each_class_is_held_out_by_default_and_said_so(run):
    config = json.loads((run / "config.json").read_text())
    assert config["data"]["val_images"] == 6 and config["data"]["train_images"] == 54
    assert "10% of each class, held out by default (seed" in config["data"]["held_out"]
    card = (run / "published" / "README.md").read_text(encoding="utf-8")
    assert "held out: 6 images (10% of each class, held out by default" in card


def test_the_published_head_carries_the_folders_class_names(run):
    config = json.loads((run / "published" / "config.json").read_text())
    assert config["label_names"] == NAMES and config["num_classes"] == 3
    assert frossl_hub.load(run / "published").pretrained_cfg["label_names"] == NAMES


def test_val_fraction_zero_keeps_every_image_and_skips_the_probe(tmp_path, capsys):
    data = formats.write_fashion_folder(tmp_path / "clothes", CLASSES, per_class=4)
    out = tmp_path / "run"
    assert train_main(["--dataset", "folder", "--data-dir", str(data), "--out", str(out), *FAST,
                       "--val-fraction", "0", "--cache-dir", str(tmp_path / "cache")]) == 0
    assert "no held-out split (--val-fraction 0)" in capsys.readouterr().err
    assert json.loads((out / "config.json").read_text())["data"]["val_images"] == 0
    assert frossl_hub.load(out / "published").num_classes == 0


@pytest.fixture(scope="module")
def server(run, tmp_path_factory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("serve") / "server.log"
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    try:
        with _common.running_server(["--model", str(run / "published"), "--threads", "1"], env, log,
                                    timeout=300) as url:
            yield url
    except RuntimeError as exc:
        pytest.fail(str(exc))


def test_predictions_answer_with_the_folders_class_names(server, run):
    import httpx

    image = run.parent / "clothes" / "sac à main" / "000.png"
    response = httpx.post(server + "/v1/predictions", files={"file": (image.name, image.read_bytes(), "image/png")},
                          timeout=120)
    assert response.status_code == 200, response.text
    assert sorted(p["label"] for p in response.json()["data"][0]["predictions"]) == NAMES


def test_the_page_shows_the_folders_class_names(server, run, tmp_path):
    from page_helpers import page_top_labels

    image = run.parent / "clothes" / "sac à main" / "000.png"
    assert sorted(page_top_labels(server, image, tmp_path)) == NAMES
