"""Turn equal-budget training runs into a convergence table, plots and a neutral finding.

Input: run folders made by ``python -m train`` (or copies holding only ``metrics.jsonl``,
``config.json`` and, when the probe ran, ``linear.json``). Output, written atomically into
``--out``: ``RESULTS.md`` and ``plots/*.png``.

Convergence is read off each run's kNN curve (the trainer's periodic kNN top-1 on a fixed
test subset). The reference is the *best final accuracy*: the highest final kNN top-1 (last
evaluation of a run) over all runs. A run reaches a threshold (a fraction of it: 85%, 90%,
95%, 97% by default) at its first evaluation whose kNN top-1 is at or above it; the minutes
are wall-clock (``wall_time_s``: training and evaluations, the same clock as
``--max-minutes``), so the resolution is one evaluation interval. No interpolation: the
numbers are what was measured.
"""
from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from frossl_hub._io import atomic_write  # frossl_hub imports neither torch nor timm up front
from train.metrics_log import METRICS_NAME, read_metrics
from train.plot import save_png

__all__ = ["ReportError", "Run", "finish_knn_plot", "Crossing", "Summary", "THRESHOLDS", "PLOT_NAMES",
           "load_run", "find_runs", "first_crossing", "summarize", "render_table", "render_finding",
           "render_markdown", "write_plots", "write_report"]

# Fractions of the best final kNN top-1. 85% and 90% are the issue's; on easy data (Fashion-MNIST
# kNN passes 70% within 60 steps) every method crosses those at its first evaluation, so 95% and
# 97% are there to separate methods near the end of the curve.
THRESHOLDS = (0.85, 0.90, 0.95, 0.97)
RESULTS_NAME = "RESULTS.md"
PLOT_DIR = "plots"
PLOT_NAMES = ("accuracy_vs_minutes.png", "accuracy_vs_steps.png", "effective_rank_vs_steps.png",
              "spectra.png")
DASH = "–"  # a value the run did not record
NEVER = "never"  # a threshold the run did not reach
BASELINE_TITLES = {"simclr": "SimCLR", "barlow": "Barlow Twins", "vicreg": "VICReg", "frossl": "FroSSL"}


class ReportError(Exception):
    """The runs cannot be reported; the message names the path and what is missing."""


# ---------------------------------------------------------------------------------------------
# reading runs


@dataclass
class Run:
    """One training run as the report sees it: its config, curves and probe result."""

    name: str
    path: Path
    config: Dict[str, Any]
    train: List[Dict[str, Any]]
    evals: List[Dict[str, Any]]
    spectra: List[Dict[str, Any]]
    linear: Optional[Dict[str, Any]]

    @property
    def recipe(self) -> Dict[str, Any]:
        return self.config.get("recipe", {})

    @property
    def method(self) -> str:
        return str(self.recipe.get("method", "?"))

    @property
    def views(self) -> Optional[int]:
        views = self.recipe.get("num_views")
        return int(views) if views is not None else None

    @property
    def is_frossl(self) -> bool:
        return self.method == "frossl"

    @property
    def label(self) -> str:
        """Name plus method and views, for prose and legends."""
        return f"{self.name} ({BASELINE_TITLES.get(self.method, self.method)}, {self.views} views)"

    @property
    def final_knn(self) -> float:
        """kNN top-1 of the last evaluation (the end of the budget)."""
        return float(self.evals[-1]["knn_top1"])

    @property
    def best_knn(self) -> float:
        return max(float(r["knn_top1"]) for r in self.evals)

    @property
    def images_per_s(self) -> Optional[float]:
        """Median training throughput over the logged intervals (robust to a slow first one)."""
        values = [float(r["images_per_s"]) for r in self.train if r.get("images_per_s") is not None]
        return statistics.median(values) if values else None

    @property
    def peak_memory_mb(self) -> Optional[float]:
        """``peak_memory_mb`` from config.json or the metrics, when the trainer recorded it."""
        values = [r["peak_memory_mb"] for r in self.train + self.evals if r.get("peak_memory_mb") is not None]
        if self.config.get("peak_memory_mb") is not None:
            values.append(self.config["peak_memory_mb"])
        return max(float(v) for v in values) if values else None

    @property
    def eval_interval_min(self) -> float:
        """Median wall-clock minutes between evaluations: the resolution of a crossing time."""
        gaps = [b["wall_time_s"] - a["wall_time_s"] for a, b in zip(self.evals, self.evals[1:])]
        return statistics.median(gaps) / 60 if gaps else float(self.evals[-1]["wall_time_s"]) / 60

    def probe(self, key: str) -> Optional[float]:
        """A linear.json number (``top1``, ``knn_top1``...), None without a probe."""
        value = (self.linear or {}).get(key)
        return float(value) if value is not None else None

    @property
    def random_init_top1(self) -> Optional[float]:
        value = ((self.linear or {}).get("random_init") or {}).get("top1")
        return float(value) if value is not None else None


def _read_json(path: Path) -> Dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ReportError(f"{path}: cannot read it as JSON ({exc})") from exc


def load_run(path: Path, name: Optional[str] = None) -> Run:
    """Read one run folder; raises ReportError naming the path when it is not a usable run."""
    path = Path(path)
    metrics_path = path / METRICS_NAME
    if not metrics_path.is_file():
        raise ReportError(f"{path}: no metrics.jsonl (not a `python -m train` run folder)")
    try:
        metrics = read_metrics(path)
    except ValueError as exc:
        raise ReportError(str(exc)) from exc
    evals = sorted(metrics["eval"], key=lambda r: r["step"])
    if not evals:
        raise ReportError(f"{metrics_path}: no evaluation records (kind \"eval\"); the run stopped "
                          "before its first kNN evaluation or the file is empty")
    config_path = path / "config.json"
    config = _read_json(config_path) if config_path.is_file() else {}
    linear_path = path / "linear.json"
    linear = _read_json(linear_path) if linear_path.is_file() else None
    return Run(name or path.name, path, config, sorted(metrics["train"], key=lambda r: r["step"]),
               evals, sorted(metrics["spectrum"], key=lambda r: r["step"]), linear)


def _run_folders(path: Path) -> List[Path]:
    """``path`` itself when it is a run, else its sub-folders that are runs."""
    if not path.exists():
        raise ReportError(f"{path}: no such folder")
    if not path.is_dir():
        raise ReportError(f"{path}: not a folder")
    if (path / METRICS_NAME).is_file():
        return [path]
    folders = sorted(p for p in path.iterdir() if p.is_dir() and (p / METRICS_NAME).is_file())
    if not folders:
        raise ReportError(f"{path}: holds no runs (no metrics.jsonl in it or in its sub-folders)")
    return folders


def _study_order(run: Run) -> Tuple[Any, ...]:
    """FroSSL first (by views), then the baselines by name: a stable, readable table."""
    return (not run.is_frossl, run.method, run.views or 0, run.name)


def find_runs(paths: Sequence[Path]) -> List[Run]:
    """Every run under ``paths`` (run folders or folders of runs), in study order."""
    folders = [folder for path in paths for folder in _run_folders(Path(path))]
    names = [f.name for f in folders]
    runs = [load_run(f, f.name if names.count(f.name) == 1 else f"{f.parent.name}/{f.name}")
            for f in folders]
    return sorted(runs, key=_study_order)


# ---------------------------------------------------------------------------------------------
# numbers


@dataclass(frozen=True)
class Crossing:
    """The first evaluation at or above a threshold."""

    minutes: float  # wall-clock, evaluations included
    step: int
    knn_top1: float


@dataclass
class Summary:
    """Study-wide numbers: the reference accuracy and every run's threshold crossings."""

    best_final: float
    best_run: str
    targets: Dict[float, float]  # fraction -> kNN top-1 to reach
    crossings: Dict[str, Dict[float, Optional[Crossing]]]  # run name -> fraction -> crossing


def first_crossing(evals: Iterable[Dict[str, Any]], target: float) -> Optional[Crossing]:
    """The first evaluation whose kNN top-1 is >= ``target``; None when none is."""
    for record in evals:
        if float(record["knn_top1"]) >= target - 1e-12:  # a printed value equal to the target counts
            return Crossing(float(record["wall_time_s"]) / 60, int(record["step"]), float(record["knn_top1"]))
    return None


def summarize(runs: Sequence[Run], thresholds: Sequence[float] = THRESHOLDS) -> Summary:
    """Best final kNN top-1 over runs, the thresholds it implies and when each run reached them."""
    best = max(runs, key=lambda r: r.final_knn)
    targets = {frac: frac * best.final_knn for frac in thresholds}
    crossings = {run.name: {frac: first_crossing(run.evals, target) for frac, target in targets.items()}
                 for run in runs}
    return Summary(best.final_knn, best.name, targets, crossings)


# ---------------------------------------------------------------------------------------------
# markdown


def _pct(value: Optional[float]) -> str:
    return DASH if value is None else f"{100 * value:.1f}"


def _num(value: Optional[float], fmt: str = "{:.0f}") -> str:
    return DASH if value is None else fmt.format(value)


def _frac(frac: float) -> str:
    return f"{100 * frac:g}%"


def render_table(runs: Sequence[Run], summary: Summary) -> str:
    """The results table, one row per run (accuracies in %, minutes wall-clock)."""
    header = ["run", "method", "views", "linear top-1", "kNN top-1 (full test)", "final kNN top-1",
              "best kNN top-1"]
    for frac in summary.targets:
        header += [f"min to {_frac(frac)}", f"steps to {_frac(frac)}"]
    header += ["steps", "images/s", "peak memory (MB)", "random-init linear top-1"]
    rows = [header, ["---"] * len(header)]
    for run in runs:
        row = [run.name, BASELINE_TITLES.get(run.method, run.method), _num(run.views, "{}"),
               _pct(run.probe("top1")), _pct(run.probe("knn_top1")), _pct(run.final_knn), _pct(run.best_knn)]
        for frac in summary.targets:
            hit = summary.crossings[run.name][frac]
            row += [NEVER, NEVER] if hit is None else [f"{hit.minutes:.1f}", str(hit.step)]
        row += [str(run.evals[-1]["step"]), _num(run.images_per_s), _num(run.peak_memory_mb),
                _pct(run.random_init_top1)]
        rows.append(row)
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def _shared(runs: Sequence[Run], get: Callable[[Run], Any]) -> Tuple[str, bool]:
    """The value every run shares, or the distinct values joined; and whether they agree."""
    values: List[str] = []
    for run in runs:
        value = get(run)
        text = DASH if value is None else str(value)
        if text not in values:
            values.append(text)
    return " / ".join(values), len(values) == 1


def _dataset(run: Run) -> Any:
    return run.recipe.get("dataset")


def _budget_minutes(run: Run) -> Any:
    """The run's ``--max-minutes``."""
    return (run.config.get("options") or {}).get("max_minutes")


def _setup(runs: Sequence[Run]) -> Tuple[str, List[str]]:
    """One line describing the common set-up, and the fields in which runs differ."""
    fields: List[Tuple[str, Callable[[Run], Any]]] = [
        ("data set", _dataset),
        ("architecture", lambda r: r.recipe.get("architecture")),
        ("batch size", lambda r: r.recipe.get("batch_size")),
        ("budget (min)", _budget_minutes),
        ("kNN train bank", lambda r: r.recipe.get("knn_train_limit")),
        ("kNN test subset", lambda r: r.recipe.get("eval_test_limit")),
        ("evaluation every (epochs)", lambda r: r.recipe.get("eval_every_epochs")),
        ("hardware", lambda r: r.config.get("hardware")),
    ]
    parts, differ = [], []
    for title, get in fields:
        text, same = _shared(runs, get)
        parts.append(f"{title}: {text}")
        if not same:
            differ.append(title)
    return "; ".join(parts), differ


def _fastest(runs: Sequence[Run], summary: Summary, frac: float) -> Optional[Tuple[Run, Crossing]]:
    """The run that reached ``frac`` first in minutes (ties: fewer steps, then name)."""
    hits = [(run, summary.crossings[run.name][frac]) for run in runs]
    reached = [(run, hit) for run, hit in hits if hit is not None]
    if not reached:
        return None
    return min(reached, key=lambda rh: (rh[1].minutes, rh[1].step, rh[0].name))


def _compare(frossl: Sequence[Run], baselines: Sequence[Run], summary: Summary,
             frac: float) -> Tuple[str, str]:
    """FroSSL's fastest run against the fastest baseline at one threshold: (outcome, sentence).

    Outcomes: faster, slower, tie (within one evaluation interval: not measurable), none.
    """
    f, b = _fastest(frossl, summary, frac), _fastest(baselines, summary, frac)
    if f is None and b is None:
        return "none", "neither FroSSL nor any baseline reached it"
    if b is None:
        return "faster", f"only FroSSL reached it ({f[0].name})"
    if f is None:
        return "slower", f"no FroSSL run reached it; {b[0].name} did"
    gap = b[1].minutes - f[1].minutes
    resolution = max(f[0].eval_interval_min, b[0].eval_interval_min)
    if abs(gap) <= resolution:
        return "tie", (f"FroSSL ({f[0].name}, {f[1].minutes:.1f} min) and the fastest baseline "
                       f"({b[0].name}, {b[1].minutes:.1f} min) are within one evaluation interval "
                       f"({resolution:.1f} min): no measurable difference")
    word = "before" if gap > 0 else "after"
    return ("faster" if gap > 0 else "slower"), (
        f"FroSSL ({f[0].name}) got there {abs(gap):.1f} min {word} the fastest baseline "
        f"({b[0].name}): {f[1].minutes:.1f} vs {b[1].minutes:.1f} min")


def _ranking(runs: Sequence[Run]) -> str:
    """Final ranking by linear-probe top-1 when every run has one, else by final kNN top-1."""
    if all(run.probe("top1") is not None for run in runs):
        key, what = (lambda r: r.probe("top1")), "linear-probe top-1"
    else:
        key, what = (lambda r: r.final_knn), "final kNN top-1 (not every run has a linear probe)"
    ordered = sorted(runs, key=key, reverse=True)
    return f"Final ranking by {what}: " + " > ".join(f"{r.name} {100 * key(r):.1f}%" for r in ordered) + "."


def _times(runs: Sequence[Run], summary: Summary, frac: float) -> str:
    """Every run's minutes to ``frac``, fastest first, "never" last."""
    def key(run: Run) -> Tuple[bool, float]:
        hit = summary.crossings[run.name][frac]
        return (hit is None, hit.minutes if hit else 0.0)

    def text(run: Run) -> str:
        hit = summary.crossings[run.name][frac]
        return f"{run.name} {NEVER if hit is None else f'{hit.minutes:.1f} min'}"

    return ", ".join(text(run) for run in sorted(runs, key=key))


def _mixed_verdict(summary: Summary, outcomes: Sequence[str]) -> str:
    """'Mixed: FroSSL was faster at 95%; no measurable difference at 85%, 90%; ...'."""
    wording = {"faster": "FroSSL was faster at", "tie": "no measurable difference at",
               "slower": "FroSSL was slower at", "none": "no run reached"}
    parts = []
    for outcome, words in wording.items():
        fracs = [_frac(f) for f, o in zip(summary.targets, outcomes) if o == outcome]
        if fracs:
            parts.append(f"{words} {', '.join(fracs)}")
    return "Mixed: " + "; ".join(parts) + "."


def render_finding(runs: Sequence[Run], summary: Summary) -> str:
    """A short paragraph computed from the numbers: who reached each threshold first, the
    FroSSL-vs-baselines verdict and the final ranking. Neutral wording, no claims beyond data."""
    frossl = [r for r in runs if r.is_frossl]
    baselines = [r for r in runs if not r.is_frossl]
    sentences, outcomes = [], []
    for frac, target in summary.targets.items():
        first = _fastest(runs, summary, frac)
        if first is None:
            lead = f"No run reached {_frac(frac)} of the best final kNN top-1 ({100 * target:.1f}%)."
        else:
            lead = (f"{_frac(frac)} of the best final kNN top-1 ({100 * target:.1f}%) was reached first by "
                    f"{first[0].label} after {first[1].minutes:.1f} min (step {first[1].step}) "
                    f"[{_times(runs, summary, frac)}].")
        if frossl and baselines:
            outcome, text = _compare(frossl, baselines, summary, frac)
            outcomes.append(outcome)
            lead += f" FroSSL vs baselines: {text}."
        sentences.append(lead)
    if not frossl or not baselines:
        verdict = "The study lacks FroSSL or baseline runs, so it says nothing about FroSSL's speed."
    elif outcomes and all(o == "faster" for o in outcomes):
        verdict = "FroSSL was faster here, at every threshold."
    elif outcomes and all(o == "tie" for o in outcomes):
        verdict = "FroSSL was not faster here: no measurable difference at any threshold."
    elif not any(o == "faster" for o in outcomes):
        verdict = "FroSSL was not faster here."
    else:
        verdict = _mixed_verdict(summary, outcomes)
    caveat = ("One seed per run and one budget: run-to-run variation is not measured, and crossing "
              "times are only as fine as the evaluation interval.")
    return " ".join([verdict] + sentences + [_ranking(runs), caveat])


def _study_command(runs: Sequence[Run]) -> str:
    """The run_study.sh invocation that makes runs like these (the set-up they share)."""
    env = []
    dataset, same_data = _shared(runs, _dataset)
    if same_data and dataset not in ("fashion-mnist", DASH):
        env.append(f"DATASET={dataset} DATA_DIR=<its folder>")
    minutes, same_budget = _shared(runs, _budget_minutes)
    if same_budget and minutes != DASH:
        env.append(f"MINUTES={float(minutes):g}")
    return " ".join(env + ["benchmarks/convergence/run_study.sh"])


def render_markdown(runs: Sequence[Run], summary: Summary) -> str:
    """The whole RESULTS.md: set-up, definitions, finding, table and plots."""
    setup, differ = _setup(runs)
    targets = ", ".join(f"{_frac(f)} = {100 * t:.1f}%" for f, t in summary.targets.items())
    lines = [
        "# Convergence at equal wall-clock: FroSSL vs SimCLR, Barlow Twins, VICReg",
        "",
        f"Generated by `python -m benchmarks.convergence` from {len(runs)} runs "
        f"({', '.join(r.name for r in runs)}); rerun it instead of editing this file.",
        "",
        f"**Set-up.** {setup}.",
        "",
        f"**Reproduce.** `{_study_command(runs)}` trains the runs one after another (one "
        "`python -m train` each, then `python -m train.linear --random-baseline`) and writes this "
        "file; each run's full recipe is in `runs/<name>/config.json`.",
    ]
    if differ:
        lines += ["", f"**Caveat:** the runs differ in {', '.join(differ)}; they are not an "
                      "equal-budget comparison in those respects."]
    lines += [
        "",
        "**Definitions.** *Best final accuracy* = the maximum over runs of the final kNN top-1 "
        "(each run's last evaluation, on the fixed test subset) = "
        f"{100 * summary.best_final:.1f}% ({summary.best_run}); thresholds: {targets}. "
        "*Min / steps to X%* = wall-clock minutes (training plus evaluations, the clock "
        "`--max-minutes` stops on) and optimizer steps at the first evaluation whose kNN top-1 is "
        f"at or above the threshold, without interpolation; \"{NEVER}\" = not reached within the run. "
        "*Final / best kNN top-1*: last / highest value of that curve. *Linear top-1* and "
        "*kNN top-1 (full test)*: `python -m train.linear` on the final backbone (cached features, "
        "whole test split); *random-init*: the same probe on an untrained backbone of the same "
        "architecture. *images/s*: median training throughput over the logged intervals. "
        f"\"{DASH}\" = not recorded. Accuracies in %.",
        "",
        "## Finding",
        "",
        render_finding(runs, summary),
        "",
        "## Results",
        "",
        render_table(runs, summary),
        "",
        "## Plots",
        "",
    ]
    for name in PLOT_NAMES:
        lines.append(f"![{name[:-4].replace('_', ' ')}]({PLOT_DIR}/{name})")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# plots


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _style(run: Run) -> Dict[str, Any]:
    """Solid lines for FroSSL runs, dashed for baselines."""
    return {"ls": "-" if run.is_frossl else "--", "marker": "o", "ms": 2.5, "lw": 1.4}


def _accuracy_plot(runs: Sequence[Run], summary: Summary, path: Path, x_of: Callable[[Dict[str, Any]], float],
                   xlabel: str) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for run in runs:
        ax.plot([x_of(r) for r in run.evals], [100 * r["knn_top1"] for r in run.evals], label=run.label,
                **_style(run))
    for frac, target in summary.targets.items():
        ax.axhline(100 * target, color="grey", lw=0.8, ls=":")
        ax.annotate(f"{_frac(frac)} of best final", (0, 100 * target), xycoords=("axes fraction", "data"),
                    fontsize=7, color="grey", va="bottom")
    return finish_knn_plot(fig, ax, xlabel, path)


def finish_knn_plot(fig: Any, ax: Any, xlabel: str, path: Path) -> Path:
    """Axes, legend and title of a kNN-curve plot, saved as ``path`` (and freed)."""
    ax.set_xlim(left=0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("kNN top-1 on the test subset (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.suptitle("kNN top-1 during pretraining", fontsize=10)
    return save_png(fig, path)


def _rank_plot(runs: Sequence[Run], path: Path) -> Path:
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for ax, key in zip(axes, ("backbone", "projector")):
        for run in runs:
            points = [(r["step"], r[f"effective_rank_{key}"]) for r in run.evals
                      if r.get(f"effective_rank_{key}") is not None]
            if points:
                ax.plot(*zip(*points), label=run.label, **_style(run))
        ax.set_title(f"{key} embedding", fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylabel("effective rank")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("effective rank of the test-subset embeddings (projector widths differ by method)",
                 fontsize=10)
    return save_png(fig, path)


def _spectrum_plot(runs: Sequence[Run], path: Path) -> Path:
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for ax, key in zip(axes, ("backbone", "projector")):
        for run in runs:
            if not run.spectra or not run.spectra[-1].get(key):
                continue
            values = [max(float(v), 1e-12) for v in run.spectra[-1][key]]
            ax.plot(range(1, len(values) + 1), values, lw=1.2, ls=_style(run)["ls"],
                    label=f"{run.label}, step {run.spectra[-1]['step']}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"{key} embedding covariance", fontsize=9)
        ax.set_xlabel("eigenvalue index")
        ax.set_ylabel("normalised eigenvalue")
        ax.grid(alpha=0.3)
    if any(run.spectra for run in runs):
        axes[0].legend(fontsize=7)
    else:
        axes[0].text(0.5, 0.5, "no spectrum recorded", transform=axes[0].transAxes, ha="center")
    fig.suptitle("last recorded eigenvalue spectrum of each run", fontsize=10)
    return save_png(fig, path)


def write_plots(runs: Sequence[Run], summary: Summary, out_dir: Path) -> List[Path]:
    """The four PNGs of PLOT_NAMES in ``out_dir``."""
    out_dir = Path(out_dir)
    minutes, steps, rank, spectra = (out_dir / name for name in PLOT_NAMES)
    return [
        _accuracy_plot(runs, summary, minutes, lambda r: r["wall_time_s"] / 60,
                       "wall-clock minutes (training + evaluations)"),
        _accuracy_plot(runs, summary, steps, lambda r: r["step"], "step"),
        _rank_plot(runs, rank),
        _spectrum_plot(runs, spectra),
    ]


def write_report(paths: Sequence[Path], out_dir: Path,
                 thresholds: Sequence[float] = THRESHOLDS) -> List[Path]:
    """Read the runs under ``paths``; write RESULTS.md and the plots into ``out_dir``."""
    runs = find_runs(paths)
    summary = summarize(runs, thresholds)
    out_dir = Path(out_dir)
    written = write_plots(runs, summary, out_dir / PLOT_DIR)
    text = render_markdown(runs, summary)
    written.append(atomic_write(out_dir / RESULTS_NAME, lambda p: p.write_text(text, encoding="utf-8")))
    return written
