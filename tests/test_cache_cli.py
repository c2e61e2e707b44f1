"""`python -m frossl_hub cache list|clear`: the decode caches and ONNX exports, shown and freed,
through the real command line in a subprocess with its own $FROSSL_HUB_CACHE."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest

import frossl_hub
from formats import write_cifar_jpegs
from frossl_hub.caches import human_size
from frossl_hub.onnx_export import cached_onnx
from helpers import one_torch_thread, publish_tiny_model  # noqa: F401  (fixture)
from train.data import load_arrays
from train.transfer.features import folder_features

REPO = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.usefixtures("one_torch_thread"),
              pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities")]


@pytest.fixture(scope="module")
def filled(tmp_path_factory) -> Dict[str, Path]:
    """A cache holding one ONNX export and the decode caches of two data folders
    (train and test of ``one``, test of ``two``), built by the real code."""
    base = tmp_path_factory.mktemp("cache-cli")
    before = os.environ["FROSSL_HUB_CACHE"]
    os.environ["FROSSL_HUB_CACHE"] = str(base / "cache")
    try:
        one = write_cifar_jpegs(base / "one" / "cifar-10-jpeg")
        two = write_cifar_jpegs(base / "two" / "cifar-10-jpeg")
        load_arrays("cifar10", one, "train")
        load_arrays("cifar10", one, "test")
        load_arrays("cifar10", two, "test")
        model = frossl_hub.load(publish_tiny_model(base / "model"), num_classes=0)
        onnx = cached_onnx(model)
        folder_features(model, two / "test", [], workers=0, progress=False)  # what train.transfer caches
    finally:
        os.environ["FROSSL_HUB_CACHE"] = before
    return {"cache": base / "cache", "one": one, "two": two, "onnx": onnx}


@pytest.fixture
def cache(filled, tmp_path) -> Path:
    """A fresh copy of the filled cache for one test to change."""
    return Path(shutil.copytree(filled["cache"], tmp_path / "cache"))


def hub(cache: Path, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "frossl_hub", *argv], cwd=REPO, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "FROSSL_HUB_CACHE": str(cache)})


def _files(cache: Path) -> List[str]:
    return sorted(str(p.relative_to(cache)) for p in cache.rglob("*") if p.is_file())


def _size(paths) -> int:
    return sum(p.stat().st_size for p in paths)


def test_list_shows_every_entry_with_its_size_and_source(cache, filled):
    done = hub(cache, "cache", "list")
    assert done.returncode == 0, done.stderr
    rows = done.stdout.splitlines()
    datasets = sorted((cache / "datasets").iterdir())
    assert len(datasets) == 3
    for path in datasets:
        (row,) = [r for r in rows if path.name in r]
        assert row.startswith("datasets") and human_size(path.stat().st_size) in row
    assert sum(str(filled["one"]) in r for r in rows) == 2 and sum(str(filled["two"]) in r for r in rows) == 1
    (graph,) = [r for r in rows if filled["onnx"].name in r]
    onnx_files = list((cache / "onnx").iterdir())  # the graph, its sidecar and its lock: one entry
    assert len(onnx_files) == 3 and graph.startswith("onnx") and human_size(_size(onnx_files)) in graph
    features = list((cache / "transfer-features").iterdir())  # KEY.npy and KEY.paths.txt: one entry
    (row,) = [r for r in rows if r.startswith("transfer-features")]
    assert len(features) == 2 and human_size(_size(features)) in row and "images" in row
    assert rows[-1] == f"5 entries, {human_size(_size(datasets + onnx_files + features))} in {cache}"


def test_list_of_an_empty_cache_says_so(tmp_path):
    done = hub(tmp_path / "nothing-here", "cache", "list")
    assert done.returncode == 0 and "holds nothing" in done.stdout
    assert not (tmp_path / "nothing-here").exists()  # listing creates nothing


def test_clear_one_entry_by_name_frees_only_it_and_says_how_much(cache):
    victim = sorted((cache / "datasets").iterdir())[0]
    size, others = victim.stat().st_size, [f for f in _files(cache) if f != f"datasets/{victim.name}"]
    done = hub(cache, "cache", "clear", victim.name)
    assert done.returncode == 0, done.stderr
    assert f"freed {human_size(size)}: 1 entry in {cache}" in done.stdout
    assert _files(cache) == others


def test_clear_a_data_folder_frees_its_decode_caches_only(cache, filled):
    done = hub(cache, "cache", "clear", str(filled["one"]))
    assert done.returncode == 0, done.stderr
    assert "2 entries" in done.stdout
    assert len(list((cache / "datasets").iterdir())) == 1 and len(list((cache / "onnx").iterdir())) == 3


def test_clear_a_kind_leaves_the_other(cache):
    done = hub(cache, "cache", "clear", "--kind", "onnx")
    assert done.returncode == 0, done.stderr
    assert not list((cache / "onnx").iterdir()) and len(list((cache / "datasets").iterdir())) == 3


def test_clear_with_no_entry_named_frees_everything(cache):
    total = _size([p for p in cache.rglob("*") if p.is_file()])
    done = hub(cache, "cache", "clear")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == f"freed {human_size(total)}: 5 entries in {cache}"
    assert _files(cache) == []


def test_dry_run_says_what_would_be_freed_and_deletes_nothing(cache):
    before = _files(cache)
    done = hub(cache, "cache", "clear", "--dry-run")
    assert done.returncode == 0 and "would free" in done.stdout and _files(cache) == before


def test_clearing_an_unknown_entry_deletes_nothing_and_says_why(cache, filled):
    before = _files(cache)
    done = hub(cache, "cache", "clear", filled["onnx"].name, "no-such-entry")
    assert done.returncode == 2 and "no cache entry is named 'no-such-entry'" in done.stderr
    assert "Traceback" not in done.stderr and _files(cache) == before


def test_a_cleared_decode_cache_is_rebuilt_by_the_next_load(cache, filled, monkeypatch):
    assert hub(cache, "cache", "clear", "--kind", "datasets").returncode == 0
    monkeypatch.setenv("FROSSL_HUB_CACHE", str(cache))
    assert len(load_arrays("cifar10", filled["two"], "test")) == 10
    assert len(list((cache / "datasets").iterdir())) == 1


def test_a_killed_runs_temp_file_is_listed_and_cleared(cache):
    stray = cache / "datasets" / ".cifar10-train-abc.safetensors.x1y2.tmp"  # atomic_write's name
    stray.write_bytes(b"\0" * 100)
    listed = hub(cache, "cache", "list")
    (row,) = [r for r in listed.stdout.splitlines() if stray.name in r]
    assert "unfinished write" in row and "100 B" in row
    done = hub(cache, "cache", "clear", stray.name)
    assert done.returncode == 0 and "freed 100 B: 1 entry" in done.stdout and not stray.exists()
