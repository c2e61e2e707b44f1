"""A run's metrics.jsonl: one JSON object per line (step logs, evaluations, spectra), written
by the trainer and read by plots, cards and the convergence report. Imports neither torch nor
timm."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List

from frossl_hub._io import atomic_write  # frossl_hub's import is light

__all__ = ["METRICS_NAME", "MetricsLog", "read_metrics"]

METRICS_NAME = "metrics.jsonl"


class MetricsLog:
    """Append-only JSON-lines log, flushed per line; rank 0 only."""

    def __init__(self, path: Path, enabled: bool) -> None:
        self.path = path
        self.enabled = enabled

    def truncate_after(self, step: int) -> None:
        """Drop lines logged after ``step`` (they belong to work lost in a crash)."""
        if not (self.enabled and self.path.is_file()):
            return
        kept = [line for line in self.path.read_text().splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= step]
        text = "".join(line + "\n" for line in kept)
        atomic_write(self.path, lambda p: p.write_text(text))

    def write(self, record: Dict[str, Any]) -> None:
        if self.enabled:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")


def read_metrics(run_dir: Path) -> Dict[str, List[Dict[str, Any]]]:
    """A run's metrics.jsonl grouped by kind (train, eval, spectrum).

    A truncated last line (a crash mid-write) is skipped; any other line that is not JSON
    raises a ValueError naming the file and line. Imports neither torch nor timm.
    """
    path = Path(run_dir) / METRICS_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} has no {METRICS_NAME} (is it a `python -m train` run?)")
    out: Dict[str, List[Dict[str, Any]]] = {"train": [], "eval": [], "spectrum": []}
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            if number == len(lines):
                break
            raise ValueError(f"{path}:{number}: not a JSON line ({exc})") from exc
        out.setdefault(record.get("kind", "train"), []).append(record)
    return out
