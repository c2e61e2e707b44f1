"""The convergence report (benchmarks/convergence) on tiny synthetic runs with known curves.

Three fake runs, evaluations one minute apart, best final kNN top-1 0.90 (frossl), so the
thresholds of `--thresholds 0.85 0.9` are 0.765 (85%) and 0.81 (90%):

* frossl (2 views): 0.50 0.70 0.80 0.90 at 1, 2, 3, 4 min -> 85% at 3.0 min / step 300,
  90% at 4.0 min / step 400; has linear.json and a random-init baseline.
* simclr (2 views): 0.60 0.78 0.82 0.85 at 1.5, 2.5, 3.5, 4.5 min -> 85% at 2.5 min /
  step 200, 90% at 3.5 min / step 300; peak memory recorded in config.json.
* vicreg (2 views): never above 0.70 -> "never" twice; no linear.json.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import pytest

from benchmarks.convergence import report
from benchmarks.convergence.__main__ import main

ROOT = Path(__file__).resolve().parents[1]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def write_run(folder: Path, method: str, knn: Sequence[float], wall_s: Sequence[float],
              views: int = 2, images_per_s: Sequence[float] = (100.0, 300.0, 200.0),
              linear: Optional[Dict[str, Any]] = None, config_extra: Optional[Dict[str, Any]] = None) -> Path:
    """A run folder as `python -m train` leaves it: config.json, metrics.jsonl (+ linear.json)."""
    folder.mkdir(parents=True)
    config = {"recipe": {"dataset": "fashion-mnist", "method": method, "num_views": views,
                         "batch_size": 256, "architecture": "frossl_resnet18", "knn_train_limit": 10000,
                         "eval_test_limit": 2000, "eval_every_epochs": 0.25},
              "options": {"max_minutes": 5.0}, "hardware": "test CPU", **(config_extra or {})}
    (folder / "config.json").write_text(json.dumps(config))
    lines: List[Dict[str, Any]] = []
    for i, ips in enumerate(images_per_s):
        lines.append({"kind": "train", "step": 50 * (i + 1), "epoch": 0.1, "images_per_s": ips,
                      "train_time_s": 10.0 * i, "wall_time_s": 10.0 * i, "loss": 1.0})
    for i, (acc, wall) in enumerate(zip(knn, wall_s)):
        step = 100 * (i + 1)
        lines.append({"kind": "eval", "step": step, "epoch": step / 234, "train_time_s": wall - 5,
                      "wall_time_s": wall, "online_top1": acc - 0.05, "knn_top1": acc,
                      "effective_rank_backbone": 10.0 + i, "effective_rank_projector": 20.0 + i})
    lines.append({"kind": "spectrum", "step": 100 * len(knn), "epoch": 1.0,
                  "backbone": [0.5, 0.3, 0.2], "projector": [0.6, 0.3, 0.1, 0.0]})
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    if linear is not None:
        (folder / "linear.json").write_text(json.dumps(linear))
    return folder


def make_study(root: Path, frossl_knn: Sequence[float] = (0.50, 0.70, 0.80, 0.90),
               frossl_wall: Sequence[float] = (60, 120, 180, 240)) -> Path:
    runs = root / "runs"
    write_run(runs / "frossl", "frossl", frossl_knn, frossl_wall,
              linear={"top1": 0.91, "top5": 0.99, "knn_top1": 0.89, "random_init": {"top1": 0.42}})
    write_run(runs / "simclr", "simclr", (0.60, 0.78, 0.82, 0.85), (90, 150, 210, 270),
              linear={"top1": 0.88, "top5": 0.99, "knn_top1": 0.86}, config_extra={"peak_memory_mb": 1500})
    write_run(runs / "vicreg", "vicreg", (0.30, 0.50, 0.60, 0.70), (60, 120, 180, 240))
    return runs


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Any]:
    """The three-run study, reported once through the CLI (plots take a second)."""
    root = tmp_path_factory.mktemp("study")
    runs = make_study(root)
    out = root / "out"
    assert main([str(runs), "--out", str(out), "--thresholds", "0.85", "0.9"]) == 0
    return {"runs": runs, "out": out, "text": (out / "RESULTS.md").read_text()}


def table_rows(text: str) -> Dict[str, Dict[str, str]]:
    """The markdown results table as {run: {column: cell}}."""
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[cells[0]] = dict(zip(header, cells))
    return rows


def test_summary_numbers_are_what_the_curves_imply(study: Dict[str, Any]) -> None:
    runs = report.find_runs([study["runs"]])
    summary = report.summarize(runs, (0.85, 0.90))
    assert [r.name for r in runs] == ["frossl", "simclr", "vicreg"]
    assert summary.best_final == pytest.approx(0.90) and summary.best_run == "frossl"
    assert summary.targets == pytest.approx({0.85: 0.765, 0.90: 0.81})
    frossl, simclr, vicreg = (summary.crossings[n] for n in ("frossl", "simclr", "vicreg"))
    assert (frossl[0.85].minutes, frossl[0.85].step) == (3.0, 300)
    assert (frossl[0.90].minutes, frossl[0.90].step) == (4.0, 400)
    assert (simclr[0.85].minutes, simclr[0.85].step) == (2.5, 200)
    assert (simclr[0.90].minutes, simclr[0.90].step) == (3.5, 300)
    assert vicreg[0.85] is None and vicreg[0.90] is None


def test_table_reports_each_run(study: Dict[str, Any]) -> None:
    rows = table_rows(study["text"])
    frossl, simclr = rows["frossl"], rows["simclr"]
    assert (frossl["method"], frossl["views"]) == ("FroSSL", "2")
    assert (frossl["linear top-1"], frossl["kNN top-1 (full test)"]) == ("91.0", "89.0")
    assert (frossl["final kNN top-1"], frossl["best kNN top-1"]) == ("90.0", "90.0")
    assert (frossl["min to 85%"], frossl["steps to 85%"]) == ("3.0", "300")
    assert (frossl["min to 90%"], frossl["steps to 90%"]) == ("4.0", "400")
    assert (simclr["min to 85%"], simclr["steps to 85%"]) == ("2.5", "200")
    assert (simclr["min to 90%"], simclr["steps to 90%"]) == ("3.5", "300")
    assert frossl["images/s"] == "200"  # median of 100, 300, 200
    assert frossl["random-init linear top-1"] == "42.0"
    assert frossl["peak memory (MB)"] == "–" and simclr["peak memory (MB)"] == "1500"
    assert simclr["random-init linear top-1"] == "–"  # its linear.json has no baseline


def test_never_and_run_without_linear_json(study: Dict[str, Any]) -> None:
    vicreg = table_rows(study["text"])["vicreg"]
    assert [vicreg[k] for k in ("min to 85%", "steps to 85%", "min to 90%", "steps to 90%")] == ["never"] * 4
    assert vicreg["linear top-1"] == "–" and vicreg["random-init linear top-1"] == "–"
    assert vicreg["final kNN top-1"] == "70.0" and vicreg["best kNN top-1"] == "70.0"


def test_definition_and_finding_are_documented(study: Dict[str, Any]) -> None:
    text = study["text"]
    assert "maximum over runs of the final kNN top-1" in text
    assert "90.0% (frossl)" in text and "85% = 76.5%" in text and "90% = 81.0%" in text
    finding = text.split("## Finding", 1)[1].split("## Results", 1)[0]
    # simclr got there half a minute earlier, within one 1-minute evaluation interval
    assert "FroSSL was not faster here: no measurable difference at any threshold." in finding
    assert "reached first by simclr" in finding and "no measurable difference" in finding
    # only frossl and simclr have a probe: ranked by the final kNN top-1
    assert "frossl 90.0% > simclr 85.0% > vicreg 70.0%" in finding


def test_finding_when_frossl_is_clearly_faster(tmp_path: Path) -> None:
    runs = report.find_runs([make_study(tmp_path, frossl_knn=(0.80, 0.85, 0.88, 0.90),
                                        frossl_wall=(20, 40, 60, 80))])
    summary = report.summarize(runs, (0.85, 0.90))
    finding = report.render_finding(runs, summary)
    assert finding.startswith("FroSSL was faster here, at every threshold.")
    assert "reached first by frossl (FroSSL, 2 views) after 0.3 min (step 100)" in finding


def test_default_thresholds_reach_close_to_the_final_accuracy(tmp_path: Path) -> None:
    """Without --thresholds the table also times 95% and 97% of the best final kNN top-1
    (85.5% and 87.3% here), which simclr (final 85%) never reaches."""
    out = tmp_path / "out"
    assert main([str(make_study(tmp_path)), "--out", str(out)]) == 0
    text = (out / "RESULTS.md").read_text()
    assert "85% = 76.5%, 90% = 81.0%, 95% = 85.5%, 97% = 87.3%" in text
    frossl, simclr = (table_rows(text)[name] for name in ("frossl", "simclr"))
    assert (frossl["min to 95%"], frossl["min to 97%"]) == ("4.0", "4.0")
    assert (simclr["min to 95%"], simclr["min to 97%"]) == ("never", "never")


def test_threshold_outside_zero_one_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([str(make_study(tmp_path)), "--out", str(tmp_path / "out"), "--thresholds", "1.5"])
    assert exit_info.value.code == 2
    assert "threshold '1.5' must be a fraction in (0, 1]" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_report_says_how_to_reproduce_the_study(study: Dict[str, Any]) -> None:
    assert "**Reproduce.** `MINUTES=5 benchmarks/convergence/run_study.sh`" in study["text"]


def test_mixed_finding_names_each_outcome(tmp_path: Path) -> None:
    """Default thresholds on the fixture: ties at 85%/90% (within one evaluation interval),
    only FroSSL reaches 95%/97%."""
    runs = report.find_runs([make_study(tmp_path)])
    finding = report.render_finding(runs, report.summarize(runs))
    assert finding.startswith("Mixed: FroSSL was faster at 95%, 97%; no measurable difference at 85%, 90%.")


def test_plots_are_png_files_and_writes_are_atomic(study: Dict[str, Any]) -> None:
    plots = study["out"] / "plots"
    for name in report.PLOT_NAMES:
        data = (plots / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 1000, name
        assert f"(plots/{name})" in study["text"]
    leftovers = [p.name for p in study["out"].rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []


def test_single_run_folder_and_truncated_last_line(tmp_path: Path) -> None:
    run = write_run(tmp_path / "only", "frossl", (0.5, 0.6), (60, 120))
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"kind": "eval", "step": 3')  # a crash mid-write
    (only,) = report.find_runs([run])
    assert only.final_knn == 0.6 and len(only.evals) == 2


@pytest.mark.parametrize("case", ["missing", "empty folder", "empty metrics"])
def test_cli_error_names_the_path(case: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    target = tmp_path / "runs"
    if case == "empty folder":
        target.mkdir()
    elif case == "empty metrics":
        (target / "frossl").mkdir(parents=True)
        (target / "frossl" / "metrics.jsonl").write_text("")
    assert main([str(target), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(target) in err
    assert not (tmp_path / "out" / "RESULTS.md").exists()


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("flock") is None,
                    reason="run_study.sh needs bash and flock")
def test_study_script_dry_run(tmp_path: Path) -> None:
    """DRY_RUN=1 prints the plan: six runs, one budget and stem, each probed, then the report."""
    env = {"PATH": "/usr/bin:/bin", "DRY_RUN": "1", "MINUTES": "7", "EPOCHS": "4",
           "RUNS_ROOT": str(tmp_path / "r"), "RESULTS": str(tmp_path / "res")}
    done = subprocess.run(["bash", str(ROOT / "benchmarks/convergence/run_study.sh")], env=env,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    trains = [line for line in done.stdout.splitlines() if " -m train --dataset" in line]
    probes = [line for line in done.stdout.splitlines() if " -m train.linear " in line]
    assert len(trains) == 6 and len(probes) == 6
    assert all("--max-minutes 7 " in t and "--arch frossl_resnet18 " in t for t in trains)
    assert all("--eval-every-epochs 0.25 --knn-train-limit 10000 --eval-test-limit 2000" in t for t in trains)
    assert "--num-views 8" in trains[-1] and "--epochs 1.000 " in trains[-1]  # 4 * 2 / 8
    assert all("--random-baseline" in p for p in probes)
    assert "-m benchmarks.convergence" in done.stdout.splitlines()[-1]
    assert list(tmp_path.iterdir()) == []  # printing the plan creates nothing


STEM_REFERENCE = "benchmarks/convergence/cifar10/stems/runs/standard"


def _recipe_plan(tmp_path: Path, **extra: str) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "DRY_RUN": "1", "PRESET": "recipe", "STEM": "frossl_resnet18",
           "REFERENCE": STEM_REFERENCE, "DATASET": "cifar10", "DATA_DIR": "/data/cifar10",
           "MINUTES": "30", "PYTHON": sys.executable, "RUNS_ROOT": str(tmp_path / "r"),
           "RESULTS": str(tmp_path / "res"), **extra}
    return subprocess.run(["bash", str(ROOT / "benchmarks/convergence/run_study.sh")], env=env,
                          cwd=ROOT, capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("flock") is None,
                    reason="run_study.sh needs bash and flock")
def test_recipe_runs_with_the_references_batch_get_its_very_schedule(tmp_path: Path) -> None:
    """A learning-rate run does the reference's work per step: it takes the reference run's
    schedule as is, uncalibrated, so its minutes are the reference machine's minutes."""
    reference = json.loads((ROOT / STEM_REFERENCE / "config.json").read_text())["recipe"]
    done = _recipe_plan(tmp_path)
    assert done.returncode == 0, done.stderr
    trains = {line.split("--out ")[1].split()[0]: line for line in done.stdout.splitlines()
              if " -m train --dataset" in line}
    schedule = f"--epochs {reference['epochs']:.3f} --warmup-epochs {reference['warmup_epochs']:.3f} "
    for name in ("lr0.15", "lr0.6"):
        assert schedule in trains[str(tmp_path / "r" / name)], name
    assert "calibrate batch128 and the reference's set-up, back to back" in done.stdout
    assert ".calibrate-reference" in done.stderr and ".calibrate-lr0.15" not in done.stderr
    assert f"copy {STEM_REFERENCE} -> {tmp_path / 'res' / 'runs' / 'batch256-lr0.3'}" in done.stdout
    assert list(tmp_path.iterdir()) == []  # printing the plan creates nothing


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("flock") is None,
                    reason="run_study.sh needs bash and flock")
def test_every_planned_command_names_its_batch_size_once(tmp_path: Path) -> None:
    """The batch-size run's commands carry its own --batch-size only, so the recorded command
    is the one to copy."""
    done = _recipe_plan(tmp_path)
    assert done.returncode == 0, done.stderr
    commands = [line for line in (done.stdout + done.stderr).splitlines() if " -m train --dataset" in line]
    batch128 = [c for c in commands if "batch128" in c]
    assert len(batch128) == 2  # its calibration and its run
    assert all(c.split().count("--batch-size") == 1 for c in commands)
    assert all("--batch-size 128 " in c for c in batch128)


@pytest.mark.skipif(shutil.which("bash") is None, reason="run_study.sh needs bash")
@pytest.mark.parametrize("extra, message", [
    ({"STEM": "frossl_resnet18_s2"}, "REFERENCE trained frossl_resnet18, not STEM=frossl_resnet18_s2"),
    ({"MINUTES": "20"}, "REFERENCE had a budget of 30 minutes, not MINUTES=20"),
    ({"REFERENCE": "/nope"}, "REFERENCE=/nope needs the run's calibration.json and config.json"),
])
def test_recipe_study_refuses_a_reference_of_another_stem_or_budget(tmp_path: Path, extra, message) -> None:
    done = _recipe_plan(tmp_path, **extra)
    assert done.returncode == 2 and done.stderr.strip() == f"error: {message}"


@pytest.mark.parametrize("study_dir", ["benchmarks/convergence", "benchmarks/convergence/cifar10"])
def test_committed_report_is_what_the_committed_runs_give(study_dir: str, tmp_path: Path) -> None:
    """RESULTS.md under benchmarks/convergence is generated, never edited: regenerating it from
    the committed runs' metrics gives the same text."""
    folder = ROOT / study_dir
    assert main([str(folder / "runs"), "--out", str(tmp_path)]) == 0
    assert (tmp_path / "RESULTS.md").read_text() == (folder / "RESULTS.md").read_text()


def test_the_report_imports_no_torch() -> None:
    """The report reads JSON and draws plots: it shares frossl_hub's atomic writes and the
    trainer's metrics reader without paying for torch."""
    code = ("import sys\nimport benchmarks.convergence.report\n"
            "assert 'torch' not in sys.modules and 'timm' not in sys.modules, 'imported torch'\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
