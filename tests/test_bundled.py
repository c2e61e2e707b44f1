"""The models shipped inside the package: load offline by name and score like their cards say."""
from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import List, Tuple

import pytest
import torch
import yaml
from PIL import Image

import frossl_hub
from frossl_hub._io import sha256_file
from frossl_hub.catalog import CATALOG
from helpers import BUNDLED, extract_tiny_imagenet_sample

REPO = Path(__file__).resolve().parents[1]
CIFAR10_ARCHIVE = REPO.parent / "shared" / "datasets" / "cifar-10-jpeg.tar.xz"
CIFAR10_FOLDER = REPO / ".data" / "cifar-10-jpeg"
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
PER_CLASS = 100  # a fixed, class-balanced subset of the official test split
TOLERANCE = 0.05  # |subset top-1 - card top-1|; 3 sigma of a 1,000-image estimate


def _cifar10_test_subset(tmp_path: Path) -> List[Tuple[Image.Image, int]]:
    classes = list(frossl_hub.get_dataset_spec("cifar10").label_names)
    if CIFAR10_FOLDER.is_dir():
        return [(Image.open(path).convert("RGB"), label)
                for label, cls in enumerate(classes)
                for path in sorted((CIFAR10_FOLDER / "test" / cls).glob("*.jpg"))[:PER_CLASS]]
    if not CIFAR10_ARCHIVE.is_file():
        pytest.skip(f"CIFAR-10 JPEG data absent ({CIFAR10_FOLDER}, {CIFAR10_ARCHIVE})")
    found = {cls: [] for cls in classes}
    with tarfile.open(CIFAR10_ARCHIVE, "r:xz") as archive:  # streamed, never extracted to disk
        for member in archive:
            parts = Path(member.name).parts
            if member.isfile() and len(parts) >= 3 and parts[-3] == "test" and parts[-2] in found:
                found[parts[-2]].append((member.name, archive.extractfile(member).read()))
    return [(Image.open(io.BytesIO(data)).convert("RGB"), label)
            for label, cls in enumerate(classes) for _, data in sorted(found[cls])[:PER_CLASS]]


def _fashion_mnist_test_subset(tmp_path: Path) -> List[Tuple[Image.Image, int]]:
    if not FASHION_MNIST.is_dir():
        pytest.skip(f"Fashion-MNIST absent ({FASHION_MNIST})")
    from train.data import load_arrays

    test = load_arrays("fashion-mnist", FASHION_MNIST, "test")
    picked = torch.cat([(test.labels == c).nonzero().squeeze(1)[:PER_CLASS] for c in range(10)])
    return [(Image.fromarray(test.images[i, 0].numpy(), "L"), int(test.labels[i])) for i in picked]


def _tiny_imagenet_val_sample(tmp_path: Path) -> List[Tuple[Image.Image, int]]:
    """The shared sample's 1,000 official validation images (val_0 ... val_999), labelled as
    the trainer labels them (sorted wnids)."""
    folder = extract_tiny_imagenet_sample(tmp_path / "tiny")
    classes = sorted((folder / "wnids.txt").read_text().split())
    rows = [line.split("\t") for line in (folder / "val" / "val_annotations.txt").read_text().splitlines() if line]
    return [(Image.open(folder / "val" / "images" / name).convert("RGB"), classes.index(wnid))
            for name, wnid, *_ in rows]


SUBSETS = {"cifar10": _cifar10_test_subset, "fashion-mnist": _fashion_mnist_test_subset,
           "tiny-imagenet": _tiny_imagenet_val_sample}


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_model_loads_offline_by_name(name, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("FROSSL_HUB_DIR", raising=False)
    model = frossl_hub.load(name)
    entry = CATALOG[name]
    assert model.num_classes == entry.spec.num_classes
    assert next(model.parameters()).dtype == torch.float32


@pytest.mark.parametrize("name", BUNDLED)
def test_catalog_digest_and_metrics_match_the_bundled_files(name):
    entry = CATALOG[name]
    folder = entry.bundled_path
    assert sha256_file(folder / entry.filename) == entry.sha256
    card = (folder / "README.md").read_text()
    front = yaml.safe_load(card.split("---\n")[1])
    values = {m["name"]: m["value"] for m in front["model-index"][0]["results"][0]["metrics"]}
    assert values["Linear-probe top-1"] == round(100 * entry.metrics["linear_top1"], 2)
    published = json.loads((folder / "metrics.json").read_text())["published"]
    assert {k: v for k, v in published.items() if v is not None and k != "runs"} == entry.metrics


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_weights_are_float16_and_fit_the_size_budget(name):
    from safetensors import safe_open

    path = CATALOG[name].bundled_path / CATALOG[name].filename
    with safe_open(str(path), "pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys() if "num_batches" not in k} == {"F16"}
    total = sum(p.stat().st_size for p in (REPO / "frossl_hub" / "bundled").rglob("*") if p.is_file())
    assert total <= 72_000_000  # 72 MB for every bundled file together, galleries included


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_model_scores_near_its_card_on_real_test_images(name, tmp_path):
    entry = CATALOG[name]
    subset = SUBSETS[entry.dataset](tmp_path)
    model = frossl_hub.load(name)
    transform = frossl_hub.get_transform(model)
    x = torch.stack([transform(img) for img, _ in subset])
    labels = torch.tensor([label for _, label in subset])
    with torch.inference_mode():
        top1 = float((model(x).argmax(1) == labels).float().mean())
    assert abs(top1 - entry.metrics["linear_top1"]) <= TOLERANCE, (top1, entry.metrics["linear_top1"])


@pytest.mark.parametrize("name", BUNDLED)
def test_readme_table_shows_the_catalog_numbers(name):
    metrics = CATALOG[name].metrics
    row = next(line for line in (REPO / "README.md").read_text().splitlines() if f"`{name}`" in line and "|" in line)
    for key in ("linear_top1", "knn_top1", "random_init_linear_top1"):
        assert f"{100 * metrics[key]:.2f}%" in row, key


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_card_tables_every_run_of_its_chain(name):
    from train.init_from import chain_history

    folder = CATALOG[name].bundled_path
    runs = chain_history(json.loads((folder / "config.json").read_text())["frossl"])
    metrics = CATALOG[name].metrics
    assert len(runs) == metrics.get("chained_runs", 1)
    card = (folder / "README.md").read_text()
    for i, run in enumerate(runs, 1):
        assert f"| {i} | `{run['architecture']}` (" in card
        assert f"| {run['epochs']:.2f} | {run['train_minutes']:.1f} |" in card
    if len(runs) > 1:
        assert f"| all | | **{metrics['total_epochs']:.2f}** | **{metrics['total_train_minutes']:.1f}** |" in card


def test_cifar10_card_shows_solo_learns_published_accuracies_as_theirs():
    card = (CATALOG["frossl-resnet18-cifar10"].bundled_path / "README.md").read_text()
    assert "solo-learn's published ResNet18 CIFAR-10 results" in card and "their numbers, not measured here" in card
    for row in ("| Barlow Twins | ResNet18 | 1,000 | 92.10 % |", "| VICReg | ResNet18 | 1,000 | 92.07 % |",
                "| SimCLR | ResNet18 | 1,000 | 90.74 % |"):
        assert row in card
