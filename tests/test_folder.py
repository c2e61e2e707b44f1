"""`python -m train --dataset folder`: your own images, with or without labels, from scratch or
from a hub model (`--init-from`), published, embedded and served.

The folders are written here from real images: Fashion-MNIST (the Debian package) as PNG
class folders, CIFAR-10 JPEGs from ../shared/datasets as an unlabelled tree.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Iterator, List

import numpy as np
import pytest
import torch
from PIL import Image

import frossl_hub
from benchmarks import _common
from train.checkpoint import CKPT_NAME, load_checkpoint
from train.cli import main as train_main
from train.init_from import chain_history, chain_totals

REPO = Path(__file__).resolve().parents[1]
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
CIFAR10_ARCHIVE = REPO.parent / "shared" / "datasets" / "cifar-10-jpeg.tar.xz"
PARENT = "frossl-resnet18-cifar10"  # bundled, RGB
FAST = ["--batch-size", "8", "--projector-dims", "32", "32", "--knn-train-limit", "32",
        "--eval-test-limit", "32", "--no-progress", "--threads", "1"]
CLASSES = {0: "tshirt", 1: "trouser", 8: "bag"}

pytestmark = pytest.mark.slow


def write_fashion_folder(root: Path, per_class: int = 16) -> Path:
    """DIR/<class>/*.png: real Fashion-MNIST test images, greyscale PNGs, three classes."""
    if not FASHION_MNIST.is_dir():
        pytest.skip(f"Fashion-MNIST absent ({FASHION_MNIST}): apt-get install dataset-fashion-mnist")
    from train.data import load_arrays

    test = load_arrays("fashion-mnist", FASHION_MNIST, "test")
    for label, name in CLASSES.items():
        (root / name).mkdir(parents=True)
        for i, index in enumerate((test.labels == label).nonzero().squeeze(1)[:per_class].tolist()):
            Image.fromarray(test.images[index, 0].numpy(), "L").save(root / name / f"{i:03d}.png")
    return root


def cifar_jpegs(count: int) -> List[bytes]:
    """The first ``count`` JPEGs of the CIFAR-10 archive, read without extracting it."""
    if not CIFAR10_ARCHIVE.is_file():
        pytest.skip(f"CIFAR-10 JPEG archive absent ({CIFAR10_ARCHIVE})")
    found = []
    with tarfile.open(CIFAR10_ARCHIVE, "r:xz") as archive:
        for member in archive:
            if member.isfile() and member.name.endswith(".jpg"):
                found.append(archive.extractfile(member).read())
                if len(found) == count:
                    return found
    raise AssertionError(f"the archive holds fewer than {count} JPEGs")


def write_unlabelled_tree(root: Path, count: int = 24) -> Path:
    """Loose JPEGs at the top and more in a sub-folder: a tree without class folders."""
    (root / "more").mkdir(parents=True)
    for i, blob in enumerate(cifar_jpegs(count)):
        ((root / f"{i:03d}.jpg") if i % 2 else (root / "more" / f"{i:03d}.jpg")).write_bytes(blob)
    return root


def _train(data: Path, out: Path, *extra: str) -> int:
    return train_main(["--dataset", "folder", "--data-dir", str(data), "--out", str(out), *FAST, *extra])


# --------------------------------------------------------------------------- a labelled folder


@pytest.fixture(scope="module")
def labelled(tmp_path_factory) -> Path:
    """Three class folders, a quarter held out per class, probed and published."""
    root = tmp_path_factory.mktemp("labelled")
    data = write_fashion_folder(root / "clothes")
    run = root / "run"
    assert _train(data, run, "--val-fraction", "0.25", "--arch", "frossl_resnet18", "--max-steps", "2",
                  "--eval-every-epochs", "0.5", "--cache-dir", str(root / "cache")) == 0
    return run


def test_class_folders_are_labels_for_evaluation_only(labelled):
    config = json.loads((labelled / "config.json").read_text())
    assert config["classes"] == ["bag", "trouser", "tshirt"]
    assert config["data"]["labelled"] and config["data"]["val_images"] == 12
    assert config["num_pretrain_images"] == 36  # 48 images, a quarter of each class held out
    evals = [json.loads(line) for line in (labelled / "metrics.jsonl").read_text().splitlines()
             if json.loads(line)["kind"] == "eval"]
    assert evals and 0 <= evals[-1]["knn_top1"] <= 1


def test_image_size_and_statistics_come_from_the_data(labelled):
    config = json.loads((labelled / "config.json").read_text())
    spec = config["dataset_spec"]
    assert spec["image_size"] == 28 and config["recipe"]["crop_size"] == 28  # the median short side
    pixels = np.stack([np.asarray(Image.open(p), dtype=np.float64) / 255
                       for p in sorted((labelled.parent / "clothes").rglob("*.png"))])
    assert spec["mean"] == pytest.approx([pixels.mean()] * 3, abs=0.02)  # greyscale: R = G = B
    published = json.loads((labelled / "published" / "config.json").read_text())["pretrained_cfg"]
    assert published["mean"] == spec["mean"] and published["std"] == spec["std"]
    assert published["input_size"] == [3, 28, 28]


def test_a_labelled_run_publishes_a_probe_head_that_loads_with_frossl_hub_and_timm(labelled):
    import timm

    folder = labelled / "published"
    model = frossl_hub.load(folder)
    theirs = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
    assert model.num_classes == 3 and model.pretrained_cfg["label_names"] == ["bag", "trouser", "tshirt"]
    x = torch.randn(2, 3, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(theirs(x), model(x))


def test_the_card_of_a_folder_run_names_its_data(labelled):
    card = (labelled / "published" / "README.md").read_text()
    spec = json.loads((labelled / "config.json").read_text())["dataset_spec"]
    assert "36 training images in the folder `clothes` (3 class folders; held out: 12 images" in card
    assert "decoded at 28×28 px" in card and str(tuple(spec["mean"])) in card
    assert "Linear-probe top-1" in card and "--dataset folder" in card and "--val-fraction 0.25" in card


# --------------------------------------------------------------------------- unlabelled, warm-started


@pytest.fixture(scope="module")
def unlabelled(tmp_path_factory) -> Path:
    """A tree of JPEGs without labels, started from a bundled model: one step at lr ~ 0."""
    root = tmp_path_factory.mktemp("unlabelled")
    data = write_unlabelled_tree(root / "chips")
    run = root / "run"
    assert _train(data, run, "--init-from", PARENT, "--base-lr", "1e-12", "--max-steps", "1",
                  "--cache-dir", str(root / "cache")) == 0
    return run


def test_init_from_starts_the_backbone_from_the_parents_weights(unlabelled):
    parent = frossl_hub.load(PARENT, num_classes=0).state_dict()
    state = load_checkpoint(unlabelled / CKPT_NAME)
    assert state["step"] == 1
    backbone = {k[len("backbone."):]: v for k, v in state["model"].items() if k.startswith("backbone.")}
    weights = [k for k in parent if "running_" not in k and "num_batches" not in k]
    assert len(weights) == 60  # every conv and batch-norm weight of a ResNet18
    for key in weights:  # the one step at lr 1e-12 moved no weight by more than 1e-12
        torch.testing.assert_close(backbone[key], parent[key], rtol=0, atol=1e-12, msg=key)


def test_the_parent_and_its_sha256_are_recorded(unlabelled):
    expected = {"name": PARENT, "sha256": frossl_hub.CATALOG[PARENT].sha256, "source": "bundled"}
    config = json.loads((unlabelled / "config.json").read_text())
    published = json.loads((unlabelled / "published" / "config.json").read_text())
    for record in (config["init_from"], published["frossl"]["init_from"]):
        assert {k: record[k] for k in expected} == expected
    card = (unlabelled / "published" / "README.md").read_text()
    assert f"**Initialised from** `{PARENT}` (bundled with frossl-hub, weights sha256 `{expected['sha256']}`)" in card
    assert f"base_model: frossl-hub/{PARENT}" in card


def test_a_chained_run_publishes_and_states_the_total_training_budget(unlabelled):
    parent = json.loads((frossl_hub.resolve(PARENT).folder / "metrics.json").read_text())["published"]
    before = chain_totals(parent)  # the bundled parent may itself be a chain
    published = json.loads((unlabelled / "published" / "metrics.json").read_text())["published"]
    assert published["chained_runs"] == before["runs"] + 1
    assert published["total_train_minutes"] == round(before["train_minutes"] + published["train_minutes"], 1)
    assert published["total_epochs"] == round(before["epochs"] + published["epochs"], 3)
    card = (unlabelled / "published" / "README.md").read_text()
    assert f"**{published['total_train_minutes']:.1f} training minutes and " in card
    assert f"epochs in all**, over {before['runs'] + 1} chained runs" in card


def test_a_chained_run_lists_every_run_of_its_chain_in_metrics_and_card(unlabelled):
    parent = frossl_hub.resolve(PARENT).folder
    history = chain_history(json.loads((parent / "config.json").read_text())["frossl"])
    published = json.loads((unlabelled / "published" / "metrics.json").read_text())["published"]
    arch = frossl_hub.CATALOG[PARENT].architecture  # a warm start keeps the parent's stem
    own = {"architecture": arch, "epochs": published["epochs"], "train_minutes": published["train_minutes"]}
    assert published["runs"] == history + [own]
    card = (unlabelled / "published" / "README.md").read_text()
    assert f"The whole chain: {len(history) + 1} runs" in card
    assert f"| {len(history) + 1} | `{arch}` (" in card


def test_an_unlabelled_run_says_what_was_not_measured(unlabelled):
    card = (unlabelled / "published" / "README.md").read_text()
    assert "Not measured: its images have no labels" in card and "no class folders: no labels" in card
    assert not (unlabelled / "linear.json").exists()
    assert frossl_hub.load(unlabelled / "published").num_classes == 0


def test_the_published_folder_embeds_from_the_command_line(unlabelled, tmp_path):
    out = tmp_path / "emb.npy"
    images = unlabelled.parent / "chips"
    done = subprocess.run([sys.executable, "-m", "frossl_hub", "embed", str(images), "--model",
                           str(unlabelled / "published"), "--out", str(out), "--workers", "0",
                           "--no-progress"], cwd=REPO, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1"))
    assert done.returncode == 0, done.stderr
    assert np.load(out).shape == (24, 512)


@pytest.fixture(scope="module")
def server(unlabelled, tmp_path_factory) -> Iterator[str]:
    args = ["--model", str(unlabelled / "published"), "--workers", "1", "--threads", "1"]
    log_path = tmp_path_factory.mktemp("serve") / "server.log"
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    try:
        with _common.running_server(args, env, log_path, timeout=300) as url:
            yield url
    except RuntimeError as exc:  # never healthy: the end of its log
        pytest.fail(str(exc))


def test_the_published_folder_serves_embeddings_and_refuses_predictions(server, unlabelled):
    import httpx

    blob = (unlabelled.parent / "chips" / "001.jpg").read_bytes()
    files = {"file": ("001.jpg", blob, "image/jpeg")}
    embedded = httpx.post(server + "/v1/embeddings", files=files, timeout=120)
    assert embedded.status_code == 200 and len(embedded.json()["data"][0]["embedding"]) == 512
    predicted = httpx.post(server + "/v1/predictions", files=files, timeout=120)
    assert predicted.status_code == 422 and "no linear-probe head" in predicted.text


# --------------------------------------------------------------------------- resume, streaming


def test_a_resumed_folder_run_equals_an_uninterrupted_one(tmp_path):
    data = write_fashion_folder(tmp_path / "clothes", per_class=8)
    common = ["--labels", "none", "--arch", "frossl_resnet18", "--epochs", "2", "--no-probe", "--seed", "3",
              "--cache-dir", str(tmp_path / "cache")]
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert _train(data, straight, *common, "--max-steps", "4") == 0
    assert _train(data, split, *common, "--max-steps", "2") == 0
    assert _train(data, split, *common, "--max-steps", "4", "--resume") == 0
    a, b = load_checkpoint(straight / CKPT_NAME), load_checkpoint(split / CKPT_NAME)
    assert a["step"] == b["step"] == 4
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_a_large_folder_streams_through_dataloader_workers(tmp_path):
    data = write_fashion_folder(tmp_path / "clothes", per_class=8)
    run = tmp_path / "run"
    assert _train(data, run, "--stream", "--workers", "0", "--val-fraction", "0.25", "--arch",
                  "frossl_resnet18", "--max-steps", "2", "--no-probe") == 0
    config = json.loads((run / "config.json").read_text())
    assert config["data"]["in_memory"] is False and load_checkpoint(run / CKPT_NAME)["step"] == 2


# --------------------------------------------------------------------------- the data folder is left alone


def _listing(root: Path) -> List[tuple]:
    """Every entry below ``root`` (itself too) with its type, size, mtime and content hash: a
    file or folder added, removed, touched or rewritten, even briefly, changes it."""
    import hashlib

    rows = []
    for path in sorted([root, *root.rglob("*")]):
        st = path.lstat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
        rows.append((str(path.relative_to(root)), path.is_dir(), st.st_size, st.st_mtime_ns, digest))
    return rows


def write_fashion_tree(root: Path) -> Path:
    """An unlabelled tree: Fashion-MNIST PNGs loose at the top and in one sub-folder."""
    write_fashion_folder(root, per_class=6)
    for i, path in enumerate(sorted(root.rglob("*.png"))):
        path.rename(root / f"{i:03d}.png" if i % 2 else root / "bag" / f"{i:03d}.png")
    for folder in (root / "trouser", root / "tshirt"):
        folder.rmdir()
    return root


@pytest.mark.parametrize("write", [write_fashion_folder, write_fashion_tree], ids=["labelled", "unlabelled"])
def test_training_leaves_the_data_folder_byte_for_byte_as_it_was(write, tmp_path, monkeypatch):
    data = write(tmp_path / "photos")
    before = _listing(data)
    monkeypatch.setenv("FROSSL_HUB_CACHE", str(tmp_path / "hub-cache"))  # the default place
    assert _train(data, tmp_path / "run", "--arch", "frossl_resnet18", "--max-steps", "1") == 0
    assert _listing(data) == before
    assert len(list((tmp_path / "hub-cache" / "datasets").glob("folder-train-*.safetensors"))) == 1
