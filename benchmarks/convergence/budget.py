"""Report of an equal *training-minute* study: ``run_study.sh`` with ``PRESET=stems`` or ``recipe``.

Each run folder holds ``calibration.json``: the images/s its set-up reached when timed alone
on the idle machine just before the study, and the budget in minutes. The run's cosine
schedule spans exactly that budget at that throughput, so a run's *training minutes* at an
evaluation are ``step * batch_size / images_per_s / 60``: the compute it had received,
whatever else shared the machine at the time. Evaluations are not counted.

Output (written atomically into ``--out``): ``RESULTS.md`` (set-up, table, a neutral
summary) and ``plots/knn_vs_training_minutes.png``, ``plots/knn_vs_epochs.png``. The reading
(why a set-up wins) belongs to a person: put it beside this file, not in it.

``python -m benchmarks.convergence.budget RUNS_DIR --out DIR [--checkpoints 10 20 30]``
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from frossl_hub._io import atomic_write

from .report import (DASH, RESULTS_NAME, ReportError, Run, _pyplot, find_runs, finish_knn_plot,
                     load_run)

__all__ = ["load_run", "training_minutes", "knn_at", "render_markdown", "write_plots", "write_report", "main"]

CALIBRATION_NAME = "calibration.json"
PLOT_NAMES = ("knn_vs_training_minutes.png", "knn_vs_epochs.png")


def calibration(run: Run) -> Dict[str, Any]:
    """The run's calibration.json; ReportError names the file when it is missing."""
    path = run.path / CALIBRATION_NAME
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ReportError(f"{path}: an equal training-minute run needs its calibration ({exc})") from exc


def training_minutes(run: Run, step: int) -> float:
    """Minutes of training compute after ``step`` steps at the run's calibrated throughput."""
    batch = int(run.recipe.get("batch_size", 0))
    return step * batch / float(calibration(run)["images_per_s"]) / 60


def knn_at(run: Run, minutes: float) -> Optional[float]:
    """kNN top-1 of the last evaluation within ``minutes`` training minutes (no interpolation)."""
    done = [r for r in run.evals if training_minutes(run, r["step"]) <= minutes + 1e-6]
    return float(done[-1]["knn_top1"]) if done else None


def _pct(value: Optional[float]) -> str:
    return DASH if value is None else f"{100 * value:.1f}"


def _row(run: Run, checkpoints: Sequence[float]) -> List[str]:
    recipe = run.recipe
    last = run.evals[-1]
    return [
        run.name, f"`{recipe.get('architecture', DASH)}`", str(recipe.get("batch_size", DASH)),
        f"{float(recipe.get('base_lr', 0)):g}", f"{float(calibration(run)['images_per_s']):.1f}",
        f"{float(last['epoch']):.2f}", str(last["step"]),
        *[_pct(knn_at(run, m)) for m in checkpoints],
        _pct(run.probe("top1")), _pct(run.probe("top5")), _pct(run.probe("knn_top1")),
        _pct(run.random_init_top1),
    ]


def render_table(runs: Sequence[Run], checkpoints: Sequence[float]) -> str:
    head = ["run", "architecture", "batch", "base lr", "images/s alone", "epochs", "steps",
            *[f"kNN at {m:g} min" for m in checkpoints], "linear top-1", "linear top-5",
            "kNN top-1 (full test)", "untrained linear top-1"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(_row(run, checkpoints)) + " |" for run in runs]
    return "\n".join(lines)


def render_summary(runs: Sequence[Run], checkpoints: Sequence[float]) -> str:
    """Who led at each checkpoint and at the end, in numbers only."""
    sentences = []
    for minutes in checkpoints:
        scored = [(knn_at(r, minutes), r.name) for r in runs]
        scored = sorted(((v, n) for v, n in scored if v is not None), reverse=True)
        if scored:
            order = ", ".join(f"{n} {100 * v:.1f}%" for v, n in scored)
            sentences.append(f"kNN top-1 after {minutes:g} training minutes: {order}.")
    probed = sorted(((r.probe("top1"), r.name) for r in runs if r.probe("top1") is not None), reverse=True)
    if probed:
        sentences.append("Linear top-1 at the end: " + ", ".join(f"{n} {100 * v:.2f}%" for v, n in probed) + ".")
    sentences.append("One seed per run: run-to-run variation is not measured.")
    return " ".join(sentences)


def render_throughput_note(runs: Sequence[Run]) -> str:
    """Where each run's images/s came from: its own timing, or a reference run's (``run_study.sh``
    with ``REFERENCE``), scaled by a back-to-back timing when the batch size differs."""
    references = sorted({str(calibration(r)["reference"]) for r in runs if "reference" in calibration(r)})
    if not references:
        return ("Each run's throughput was timed alone first (`images/s alone`, steps 5-16 of a "
                "short run) and its cosine schedule spans the budget at that throughput")
    return (f"The reference set-up (`{'`, `'.join(references)}`) was timed alone (`images/s alone`, "
            "steps 5-16 of a short run); a run with its batch size takes its images/s and schedule "
            "as is, and a run with another batch size takes the reference's images/s times the "
            "ratio of the two set-ups timed back to back here (`ratio` in `calibration.json`). "
            "Each cosine schedule spans the budget at that throughput")


def render_markdown(runs: Sequence[Run], checkpoints: Sequence[float]) -> str:
    budgets = sorted({float(calibration(r)["minutes"]) for r in runs})
    datasets = sorted({str(r.recipe.get("dataset", DASH)) for r in runs})
    lines = [
        "# Equal training-minute study",
        "",
        f"Generated by `python -m benchmarks.convergence.budget` from {len(runs)} runs "
        f"({', '.join(r.name for r in runs)}); rerun it instead of editing this file.",
        "",
        f"**Set-up.** Data: {', '.join(datasets)}; budget: {', '.join(f'{b:g}' for b in budgets)} "
        f"training minutes per run. {render_throughput_note(runs)}; evaluations (kNN every "
        "quarter epoch on a fixed 2,000-image test subset, 10,000-image memory bank) come on top. "
        "Same seed, recipe and trainer otherwise; each run's full recipe is in "
        "`runs/<name>/config.json`.",
        "",
        "**Definitions.** *kNN at X min*: the kNN top-1 of the last evaluation within X training "
        "minutes (steps x batch / images/s alone). *Linear top-1/top-5* and *kNN top-1 (full "
        "test)*: `python -m train.linear` on the final backbone (cached features, whole test "
        "split); *untrained*: the same probe on a random-init backbone of the same architecture. "
        f"Accuracies in %; \"{DASH}\" = not recorded.",
        "",
        "## Summary",
        "",
        render_summary(runs, checkpoints),
        "",
        "## Results",
        "",
        render_table(runs, checkpoints),
        "",
        "## Plots",
        "",
    ]
    lines += [f"![{name[:-4].replace('_', ' ')}](plots/{name})" for name in PLOT_NAMES]
    return "\n".join(lines) + "\n"


def _curve_plot(runs: Sequence[Run], path: Path, x_of: Any, xlabel: str) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for run in runs:
        ax.plot([x_of(run, r) for r in run.evals], [100 * r["knn_top1"] for r in run.evals],
                marker="o", ms=2.5, lw=1.4, label=f"{run.name} ({run.recipe.get('architecture')})")
    return finish_knn_plot(fig, ax, xlabel, path)


def write_plots(runs: Sequence[Run], out_dir: Path) -> List[Path]:
    minutes, epochs = (Path(out_dir) / name for name in PLOT_NAMES)
    return [
        _curve_plot(runs, minutes, lambda run, r: training_minutes(run, r["step"]),
                    "training minutes (at each run's images/s alone)"),
        _curve_plot(runs, epochs, lambda run, r: r["epoch"], "epoch"),
    ]


def write_report(paths: Sequence[Path], out_dir: Path, checkpoints: Sequence[float]) -> Path:
    runs = find_runs(paths)
    runs.sort(key=lambda run: -float(calibration(run)["images_per_s"]))  # cheapest set-up first
    text = render_markdown(runs, checkpoints)
    write_plots(runs, Path(out_dir) / "plots")
    return atomic_write(Path(out_dir) / RESULTS_NAME, lambda p: p.write_text(text, encoding="utf-8"))


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.convergence.budget",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, nargs="+", help="run folders or folders of run folders")
    parser.add_argument("--out", type=Path, required=True, help="where RESULTS.md and plots/ go")
    parser.add_argument("--checkpoints", type=float, nargs="+", default=[10.0, 20.0, 30.0],
                        help="training minutes at which the table reads each kNN curve")
    args = parser.parse_args(argv)
    try:
        path = write_report(args.runs, args.out, args.checkpoints)
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
