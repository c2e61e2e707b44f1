"""The equal training-minute report (benchmarks/convergence/budget.py) on synthetic runs.

Two runs, each calibrated alone: "fast" at 256 images/s (one step of 256 images = 1 s, so
step 600 = 10 training minutes) and "slow" at 128 images/s (step 600 = 20 minutes).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import pytest

from benchmarks.convergence import budget
from test_convergence import PNG_SIGNATURE, write_run


def calibrated_run(folder: Path, knn: Sequence[float], images_per_s: float, arch: str) -> Path:
    write_run(folder, "frossl", knn, (60, 120, 180, 240),
              linear={"top1": knn[-1] + 0.02, "top5": 0.99, "knn_top1": knn[-1], "random_init": {"top1": 0.2}},
              config_extra={})
    config = json.loads((folder / "config.json").read_text())
    config["recipe"].update(architecture=arch, base_lr=0.3)
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "calibration.json").write_text(json.dumps({"images_per_s": images_per_s, "minutes": 30}))
    return folder


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    # write_run puts evaluations at steps 100, 200, 300, 400
    calibrated_run(tmp_path / "runs" / "slow", (0.30, 0.50, 0.60, 0.70), 128.0, "frossl_resnet18_cifar")
    calibrated_run(tmp_path / "runs" / "fast", (0.40, 0.45, 0.50, 0.55), 256.0, "frossl_resnet18")
    return tmp_path / "runs"


def test_training_minutes_come_from_the_calibrated_throughput(runs: Path) -> None:
    slow, fast = (budget.load_run(runs / name) for name in ("slow", "fast"))
    assert budget.training_minutes(fast, 600) == pytest.approx(10.0)
    assert budget.training_minutes(slow, 600) == pytest.approx(20.0)


def test_knn_at_reads_the_last_evaluation_within_the_minutes(runs: Path) -> None:
    slow = budget.load_run(runs / "slow")  # steps 100..400 = 3.33, 6.67, 10, 13.3 minutes
    assert budget.knn_at(slow, 10) == 0.60
    assert budget.knn_at(slow, 3) is None


def test_report_lists_the_cheapest_set_up_first_and_writes_plots(runs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert budget.main([str(runs), "--out", str(out), "--checkpoints", "5", "10"]) == 0
    text = (out / "RESULTS.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| fast") or line.startswith("| slow")]
    assert rows[0].startswith("| fast | `frossl_resnet18` | 256 | 0.3 | 256.0 |")
    assert "kNN top-1 after 10 training minutes: slow 60.0%, fast 55.0%." in text
    for name in budget.PLOT_NAMES:
        assert (out / "plots" / name).read_bytes().startswith(PNG_SIGNATURE)


def test_a_run_without_calibration_is_an_error_naming_the_file(runs: Path, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture) -> None:
    (runs / "slow" / "calibration.json").unlink()
    assert budget.main([str(runs), "--out", str(tmp_path / "out")]) == 2
    assert str(runs / "slow" / "calibration.json") in capsys.readouterr().err
    assert not (tmp_path / "out" / "RESULTS.md").exists()


def test_runs_timed_against_a_reference_say_so(runs: Path, tmp_path: Path) -> None:
    """A recipe study's runs take a reference run's throughput: the set-up names it rather than
    claiming each run was timed alone."""
    calibration = runs / "slow" / "calibration.json"
    calibration.write_text(json.dumps({**json.loads(calibration.read_text()), "reference": "runs/standard",
                                       "ratio": 0.5}))
    out = tmp_path / "out"
    assert budget.main([str(runs), "--out", str(out)]) == 0
    text = (out / "RESULTS.md").read_text()
    assert "The reference set-up (`runs/standard`) was timed alone" in text
    assert "Each run's throughput was timed alone first" not in text


@pytest.mark.parametrize("study", ["stems", "recipe"])
def test_committed_study_report_is_what_its_runs_give(study: str, tmp_path: Path) -> None:
    """The committed RESULTS.md of each CIFAR-10 study is generated, never edited."""
    folder = Path(__file__).resolve().parents[1] / "benchmarks/convergence/cifar10" / study
    assert budget.main([str(folder / "runs"), "--out", str(tmp_path)]) == 0
    assert (tmp_path / "RESULTS.md").read_text() == (folder / "RESULTS.md").read_text()
