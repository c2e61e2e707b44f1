"""`python -m train`: every recipe runs, runs resume exactly, survive SIGKILL, scale with DDP."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import List

import pytest
import torch

from formats import (
    write_cifar10_pickles,
    write_cifar100_pickles,
    write_fashion_mnist,
    write_image_folder,
    write_stl10,
    write_tiny_imagenet,
)
from train.checkpoint import CKPT_NAME, load_checkpoint
from train.cli import main as train_main

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
# small and fast: tiny projector, tiny evaluation subsets, no progress bars
FAST = ["--batch-size", "8", "--projector-dims", "32", "32", "--knn-train-limit", "16",
        "--eval-test-limit", "16", "--no-progress", "--threads", "1"]


def _write(dataset: str, root: Path) -> Path:
    if dataset == "cifar10":
        write_cifar10_pickles(root / "cifar-10-batches-py")
    elif dataset == "cifar100":
        write_cifar100_pickles(root / "cifar-100-python", n=8)
    elif dataset == "stl10":
        write_stl10(root / "stl10_binary", n_train=4, n_test=4, n_unlabeled=8)
    elif dataset == "tiny-imagenet":
        return write_tiny_imagenet(root / "tiny-imagenet-200")
    elif dataset == "imagenet100":
        write_image_folder(root, [f"n{i:08d}" for i in range(100)])
    elif dataset == "imagenet":
        write_image_folder(root, [f"n{i:08d}" for i in range(1000)], size=(40, 32))
    elif dataset == "fashion-mnist":
        write_fashion_mnist(root, gz=True, n=32)
    return root


@pytest.fixture(scope="module")
def fashion(tmp_path_factory) -> Path:
    return _write("fashion-mnist", tmp_path_factory.mktemp("fashion"))


def _run(dataset: str, data: Path, out: Path, *extra: str) -> int:
    return train_main(["--dataset", dataset, "--data-dir", str(data), "--out", str(out), *FAST, *extra])


def _metrics(run: Path) -> List[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("dataset, extra", [
    ("cifar10", []),
    ("cifar100", []),
    ("stl10", []),
    ("tiny-imagenet", []),
    ("imagenet100", ["--crop-size", "64", "--workers", "2"]),
    ("imagenet", ["--crop-size", "32", "--workers", "0"]),
    ("fashion-mnist", []),
])
def test_every_recipe_runs_two_steps_and_logs_its_metrics(dataset, extra, tmp_path):
    data = _write(dataset, tmp_path / "data")
    run = tmp_path / "run"
    assert _run(dataset, data, run, "--max-steps", "2", "--log-every-steps", "1", "--no-probe", *extra) == 0
    records = _metrics(run)
    train = [r for r in records if r["kind"] == "train"]
    assert [r["step"] for r in train] == [1, 2]
    assert all(r["images_per_s"] > 0 and "regularizer" in r and "effective_rank" in r for r in train)
    evals = [r for r in records if r["kind"] == "eval"]
    assert evals and 0 <= evals[-1]["knn_top1"] <= 1 and 0 <= evals[-1]["online_top1"] <= 1
    assert any(r["kind"] == "spectrum" for r in records)
    config = json.loads((run / "config.json").read_text())
    assert config["recipe"]["dataset"] == dataset and config["total_steps"] >= 2
    assert load_checkpoint(run / CKPT_NAME)["step"] == 2


def test_resume_continues_exactly_like_an_uninterrupted_run(fashion, tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    common = ["--epochs", "2", "--no-probe", "--seed", "3"]
    assert _run("fashion-mnist", fashion, straight, *common, "--max-steps", "5") == 0
    assert _run("fashion-mnist", fashion, split, *common, "--max-steps", "2") == 0
    assert _run("fashion-mnist", fashion, split, *common, "--max-steps", "5", "--resume") == 0
    a, b = load_checkpoint(straight / CKPT_NAME), load_checkpoint(split / CKPT_NAME)
    assert a["step"] == b["step"] == 5
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key


def test_resume_drops_metrics_logged_after_the_checkpoint(fashion, tmp_path):
    run = tmp_path / "run"
    assert _run("fashion-mnist", fashion, run, "--max-steps", "2", "--log-every-steps", "1", "--no-probe") == 0
    with open(run / "metrics.jsonl", "a") as f:  # a step that the checkpoint never saw
        f.write(json.dumps({"kind": "train", "step": 99, "loss": 0.0}) + "\n")
    assert _run("fashion-mnist", fashion, run, "--max-steps", "3", "--log-every-steps", "1",
                "--no-probe", "--resume") == 0
    assert [r["step"] for r in _metrics(run) if r["kind"] == "train"] == [1, 2, 3]


def test_an_existing_run_is_not_overwritten_without_resume(fashion, tmp_path, capsys):
    run = tmp_path / "run"
    assert _run("fashion-mnist", fashion, run, "--max-steps", "1", "--no-probe") == 0
    before = (run / CKPT_NAME).read_bytes()
    assert _run("fashion-mnist", fashion, run, "--max-steps", "1", "--no-probe") == 2
    assert "--resume" in capsys.readouterr().err
    assert (run / CKPT_NAME).read_bytes() == before


def _train_cmd(data: Path, run: Path, *extra: str) -> List[str]:
    return [PYTHON, "-m", "train", "--dataset", "fashion-mnist", "--data-dir", str(data), "--out", str(run),
            *FAST, "--no-probe", *extra]


def _wait_for_checkpoint(run: Path, proc: subprocess.Popen, min_step: int, timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (run / CKPT_NAME).is_file():
            try:
                step = load_checkpoint(run / CKPT_NAME)["step"]
            except Exception:
                step = -1
            if step >= min_step:
                return step
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.2)
    raise AssertionError("no checkpoint appeared")


@pytest.mark.slow
def test_a_run_killed_with_sigkill_resumes_from_its_last_checkpoint(fashion, tmp_path):
    run = tmp_path / "run"
    proc = subprocess.Popen(_train_cmd(fashion, run, "--epochs", "50", "--ckpt-every-min", "0"),
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_checkpoint(run, proc, min_step=2)
    finally:
        proc.kill()
        proc.wait()
    saved = load_checkpoint(run / CKPT_NAME)["step"]  # intact despite the kill
    done = subprocess.run(_train_cmd(fashion, run, "--epochs", "50", "--resume", "--max-steps", str(saved + 2)),
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert load_checkpoint(run / CKPT_NAME)["step"] == saved + 2


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_stops(fashion, tmp_path):
    run = tmp_path / "run"
    proc = subprocess.Popen(_train_cmd(fashion, run, "--epochs", "50", "--log-every-steps", "1"),
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not ((run / "metrics.jsonl").is_file() and (run / "metrics.jsonl").read_text().strip()):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert "--resume" in err
    state = load_checkpoint(run / CKPT_NAME)
    assert state["reason"] == "signal" and state["step"] >= 1


@pytest.mark.slow
def test_two_process_ddp_run_on_cpu_with_gloo(fashion, tmp_path):
    run = tmp_path / "run"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [PYTHON, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(port), "-m", "train",
           "--dataset", "fashion-mnist", "--data-dir", str(fashion), "--out", str(run), *FAST, "--no-probe",
           "--device", "cpu", "--max-steps", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    config = json.loads((run / "config.json").read_text())
    assert config["world_size"] == 2
    state = load_checkpoint(run / CKPT_NAME)
    assert state["step"] == 2 and len(state["rng"]["aug"]) == 2
    assert any(".bn1." in k and k.endswith("running_mean") for k in state["model"])


@pytest.mark.parametrize("args, message", [
    (["--dataset", "mnist"], "invalid choice"),
    (["--batch-size", "0"], "--batch-size must be"),
    (["--num-views", "1"], "--num-views must be at least 2"),
    (["--crop-scale", "0.5", "0.1"], "--crop-scale"),
    (["--gray-prob", "1.5"], "--gray-prob must be in"),
    (["--arch", "vit"], "--arch must be"),
    (["--method", "byol"], "invalid choice"),
])
def test_bad_arguments_exit_2_with_a_clear_message(args, message, tmp_path, capsys):
    argv = ["--dataset", "fashion-mnist", "--out", str(tmp_path / "run"), *args]
    if args[0] == "--dataset":
        argv = ["--out", str(tmp_path / "run"), *args]
    with pytest.raises(SystemExit) as exc:
        train_main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_missing_data_set_fails_fast_naming_the_dataset_and_path(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    assert _run("cifar10", missing, tmp_path / "run", "--max-steps", "1") == 2
    err = capsys.readouterr().err
    assert "cifar10" in err and str(missing) in err and "Traceback" not in err
    assert not (tmp_path / "run" / CKPT_NAME).exists()


def test_a_batch_larger_than_the_data_set_is_refused(fashion, tmp_path, capsys):
    assert _run("fashion-mnist", fashion, tmp_path / "run", "--batch-size", "4096") == 2
    assert "fewer than one batch" in capsys.readouterr().err


@pytest.mark.parametrize("method", ["simclr", "barlow", "vicreg"])
def test_baseline_methods_run_in_the_same_trainer(method, fashion, tmp_path):
    run = tmp_path / method
    assert _run("fashion-mnist", fashion, run, "--method", method, "--max-steps", "2", "--no-probe") == 0
    config = json.loads((run / "config.json").read_text())
    assert config["recipe"]["method"] == method
    assert load_checkpoint(run / CKPT_NAME)["step"] == 2


def test_more_views_run_and_are_recorded(fashion, tmp_path):
    run = tmp_path / "v4"
    assert _run("fashion-mnist", fashion, run, "--num-views", "4", "--max-steps", "1", "--no-probe") == 0
    assert json.loads((run / "config.json").read_text())["recipe"]["num_views"] == 4


def test_a_cpu_run_with_the_papers_small_stem_points_to_the_stem_study(fashion, tmp_path, capsys):
    assert _run("fashion-mnist", fashion, tmp_path / "run", "--max-steps", "1", "--no-probe") == 0
    err = capsys.readouterr().err
    assert "frossl_resnet18_cifar" in err and "--arch frossl_resnet18 " in err
    assert "benchmarks/convergence/cifar10/stems/READING.md" in err


def test_a_cpu_run_with_the_standard_stem_gets_no_stem_note(fashion, tmp_path, capsys):
    run = tmp_path / "run"
    assert _run("fashion-mnist", fashion, run, "--arch", "frossl_resnet18", "--max-steps", "1", "--no-probe") == 0
    assert "stems/READING.md" not in capsys.readouterr().err


def test_a_wall_clock_budget_stops_the_run_with_a_final_evaluation(fashion, tmp_path):
    run = tmp_path / "run"
    assert _run("fashion-mnist", fashion, run, "--epochs", "1000", "--max-minutes", "0.001", "--no-probe") == 0
    state = load_checkpoint(run / CKPT_NAME)
    assert 1 <= state["step"] < 1000
    assert _metrics(run)[-1]["kind"] in ("eval", "spectrum")
