"""The few-shot table: each k of ``--shots`` drawn ``REPEATS`` times (seeded), fitted, and
evaluated on the full val split; mean ± std per k."""
from __future__ import annotations

import statistics
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch

from .data import ALL, REPEATS, shot_label, shot_subset

__all__ = ["FitFn", "run_shots", "format_table"]

# (indices of the training images to fit on, run tag) -> {"top1", "top5", ...: numbers, "head": ...}
FitFn = Callable[[torch.Tensor, str], Dict[str, Any]]


def _summary(shots: Optional[int], runs: List[Dict[str, Any]]) -> Dict[str, Any]:
    row: Dict[str, Any] = {"shots": shot_label(shots), "repeats": len(runs)}
    for key in ("top1", "top5"):
        values = [r[key] for r in runs if r.get(key) is not None]
        row[f"{key}_mean"] = round(statistics.fmean(values), 4) if values else None
        row[f"{key}_std"] = round(statistics.pstdev(values), 4) if len(values) > 1 else (0.0 if values else None)
    row["runs"] = [{k: v for k, v in r.items() if k != "head"} for r in runs]
    return row


def run_shots(train_labels: torch.Tensor, shots: Sequence[Optional[int]], seed: int,
              fit: FitFn) -> "tuple[List[Dict[str, Any]], Dict[str, Any]]":
    """Fit every (k, repeat) and summarise; returns (table rows, the published run).

    The published run is the largest k's first draw: every training image with ``all``.
    """
    rows, published = [], None
    for k in shots:
        repeats = 1 if k is ALL else REPEATS
        runs = []
        for repeat in range(repeats):
            run = fit(shot_subset(train_labels, k, seed, repeat), f"shots{shot_label(k)}-r{repeat}")
            run["repeat"] = repeat
            runs.append(run)
        rows.append(_summary(k, runs))
        published = dict(runs[0], shots=shot_label(k))
    assert published is not None, "parse_shots gives at least one k"
    return rows, published


def _pct(mean: Optional[float], std: Optional[float]) -> str:
    if mean is None:
        return "–"
    return f"{100 * mean:.2f} ± {100 * (std or 0.0):.2f}"


def format_table(rows: Sequence[Dict[str, Any]]) -> str:
    """A Markdown table of the shots rows (val top-1 / top-5 in %, mean ± std)."""
    lines = ["| shots per class | draws | val top-1 (%) | val top-5 (%) |", "|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['shots']} | {row['repeats']} | {_pct(row['top1_mean'], row['top1_std'])} | "
                     f"{_pct(row['top5_mean'], row['top5_std'])} |")
    return "\n".join(lines)
