"""Smoke tests of the benchmark scripts: each runs a few iterations and exits 0.

One torch thread everywhere: on a shared 2-core box, torch's OpenMP threads spin against
other jobs and make small CPU steps many times slower (see tests/helpers.py).

No timing is asserted here (speed claims live in benchmarks/RESULTS.md, measured on an
idle machine); only that every script runs end to end with tiny settings and prints its
ratios, and the correctness checks the scripts make themselves (the FroSSL reference
gives the same values, no failed requests).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"
TIMEOUT_S = 600  # generous: a loaded CI machine; the tiny settings take seconds when idle

pytestmark = [pytest.mark.slow, pytest.mark.timeout(TIMEOUT_S + 60)]


def run_script(name: str, args: List[str]) -> str:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    proc = subprocess.run([sys.executable, str(BENCH / name), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=TIMEOUT_S)
    assert proc.returncode == 0, f"{name} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    assert proc.stdout.startswith("# "), proc.stdout  # the header: title, command, machine
    assert "torch threads:" in proc.stdout
    return proc.stdout


def test_train_throughput_runs_every_pipeline() -> None:
    out = run_script("train_throughput.py", ["--dataset", "fashion-mnist", "--device", "cpu", "--steps", "2",
                                             "--warmup", "1", "--batch-size", "4", "--arch", "frossl_resnet18",
                                             "--workers", "1", "--threads", "1"])
    for row in ("1  ceiling", "2  trainer", "3  usual", "augment_views alone", "DataLoader alone"):
        assert row in out, out
    assert "trainer / ceiling (2/1) = " in out and "(2/3) = " in out, out
    assert "data: " in out


def test_train_throughput_epoch_table() -> None:
    out = run_script("train_throughput.py", ["--epoch-table", "--device", "cpu", "--steps", "1", "--warmup", "0",
                                             "--batch-size", "4", "--threads", "1"])
    for arch in ("frossl_resnet18_cifar", "frossl_resnet18 "):
        assert arch in out, out
    assert "Fashion-MNIST (60k" in out and "CIFAR-10 (50k" in out and "s/epoch" in out, out


def test_loss_speed_reference_agrees() -> None:
    out = run_script("loss_speed.py", ["--repeats", "2", "--warmup", "1", "--views", "2,4", "--n", "32",
                                       "--d", "64", "--sizes", "16x32,64x32", "--threads", "1"])
    assert "per-view time, V=4 / V=2 = " in out, out
    assert "same loss values and gradients in every row: yes" in out, out


def test_serve_throughput_measures_ours_and_the_peers_against_the_goals() -> None:
    out = run_script("serve_throughput.py", ["--servers", "ours,litserve,fastapi", "--connections", "1,2",
                                             "--images", "1", "--seconds", "1", "--warmup-seconds", "0.5",
                                             "--raw-batches", "1,2", "--raw-seconds", "0.1", "--threads", "1",
                                             "--sweep", "1x1"])
    assert "load generator: " in out and "best raw onnxruntime: " in out and "best raw torch: " in out, out
    for server in ("ours", "fastapi"):
        assert f"\n{server} " in out, out  # a row in the servers table
    assert "\nlitserve " in out or "litserve: skipped (litserve is not installed" in out, out
    assert "ours / LitServe requests/s, 2 connections, 1 image = " in out, out
    assert "ONNX Runtime / PyTorch forward at batch 1 = " in out, out
    assert "\nours-1w-1t " in out and "best config" in out, out  # the --sweep row and summary
    assert "requests failed" not in out and "traceback" not in out.lower(), out


def test_request_path_prints_each_stage_before_and_after() -> None:
    out = run_script("request_path.py", ["--repeats", "3", "--images", "1"])
    for stage in ("JSON to objects", "validate fields, base64 to bytes", "decode (PNG, checks)", "preprocess",
                  "respond (top-5, JSON bytes)", "all stages outside the forward"):
        assert stage in out, out
    assert "whole request in-process, client included (onnxruntime backend): " in out, out


def test_embed_throughput_names_its_bound() -> None:
    out = run_script("embed_throughput.py", ["--images", "24", "--batch-size", "8", "--workers", "1", "--threads", "1"])
    assert "embed / raw forward = " in out, out
    assert "bound: decode-bound" in out or "bound: compute-bound" in out, out


def test_compare_models_finds_no_difference_between_a_model_and_itself() -> None:
    if not Path("/usr/share/datasets/fashion-mnist").is_dir():
        pytest.skip("Fashion-MNIST absent (/usr/share/datasets/fashion-mnist)")
    name = "frossl-resnet18-fashion-mnist"
    out = run_script("compare_models.py", [name, name, "--limit", "200"])
    assert "fashion-mnist, official evaluation split, 200 images" in out
    assert "right only with the candidate: 0, only with the baseline: 0" in out
    assert "McNemar exact two-sided p = 1.000" in out and "verdict: not measurably better" in out


def test_compare_models_refuses_models_of_different_data_sets() -> None:
    proc = subprocess.run([sys.executable, str(BENCH / "compare_models.py"), "frossl-resnet18-cifar10",
                           "frossl-resnet18-fashion-mnist"], cwd=REPO, capture_output=True, text=True,
                          timeout=TIMEOUT_S, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == ("error: frossl-resnet18-fashion-mnist was trained on fashion-mnist, "
                                   "frossl-resnet18-cifar10 on cifar10")


def test_drop_maxpool_refuses_a_model_without_one() -> None:
    proc = subprocess.run([sys.executable, str(BENCH / "drop_maxpool.py"), "frossl-resnet18-fashion-mnist"],
                          cwd=REPO, capture_output=True, text=True, timeout=TIMEOUT_S,
                          env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == "error: frossl-resnet18-fashion-mnist has no max-pool to drop"


@pytest.mark.parametrize("only_a, only_b, p", [(0, 0, 1.0), (3, 3, 1.0), (0, 5, 0.0625), (5, 0, 0.0625),
                                               (291, 277, 0.585)])
def test_mcnemar_exact_p_is_the_two_sided_binomial_tail(only_a: int, only_b: int, p: float) -> None:
    from benchmarks.compare_models import mcnemar_exact_p

    assert mcnemar_exact_p(only_a, only_b) == pytest.approx(p, abs=5e-4)


def test_transfer_table_runs_with_its_neighbour_columns() -> None:
    if not Path("/usr/share/datasets/fashion-mnist").is_dir():
        pytest.skip("Fashion-MNIST absent: apt-get install dataset-fashion-mnist")
    out = run_script("transfer_table.py", ["--datasets", "fashion-mnist", "--models", "frossl-resnet18-cifar10",
                                           "--limit", "4", "--shots", "1,100,all", "--threads", "1",
                                           "--workers", "0"])
    assert "| in-domain model top-1 (%) | untrained top-1 (%) |" in out, out
    assert "| fashion-mnist | frossl-resnet18-cifar10 | 32 | 1 |" in out, out
    assert "| fashion-mnist | frossl-resnet18-cifar10 | 32 | all |" in out, out
    assert "| 100 |" not in out  # larger than the smallest class: left out
    assert "(frossl-resnet18-fashion-mnist)" in out, out


def test_transfer_speed_prints_the_ratio() -> None:
    if not (REPO / ".data" / "cifar-10-jpeg" / "train").is_dir():
        pytest.skip("the CIFAR-10 JPEGs are absent (.data/cifar-10-jpeg)")
    out = run_script("transfer_speed.py", ["--limit", "4", "--threads", "1"])
    assert "ratio transfer / embed: " in out, out


def test_serve_throughput_rows_for_the_openai_and_v2_protocols() -> None:
    out = run_script("serve_throughput.py", ["--servers", "ours-embeddings,ours-openai,ours-v2",
                                             "--connections", "1", "--images", "1,2", "--seconds", "0.5",
                                             "--warmup-seconds", "0.2", "--raw-batches", "1",
                                             "--raw-seconds", "0.05", "--threads", "1"])
    for server in ("ours-embeddings", "ours-openai", "ours-v2"):
        assert f"\n{server} " in out, out
    for name in ("ours-openai", "ours-v2"):
        assert f"{name} / ours-embeddings requests/s, 1 connections, 1 image(s) = " in out, out
    assert "requests failed" not in out and "traceback" not in out.lower(), out
def test_index_search_compares_the_default_index_with_exact_search() -> None:
    out = run_script("index_search.py", ["--n", "6000", "--queries", "100", "--limit", "50",
                                         "--factory", "IVF64,PQ64x4fs", "--threads", "1"])
    for row in ("numpy brute force", "faiss Flat", "default (Flat)", "IVF64,PQ64x4fs"):
        assert row in out, out
    assert "default / numpy q/s, batch 1 = " in out and "default recall@10 = 1.00" in out, out
