"""`python -m benchmarks.convergence [RUNS_DIR ...] [--out DIR]`: the convergence report.

Reads run folders (or folders of run folders) and writes RESULTS.md and plots/*.png into
--out. Exit status 2 with a message naming the path when a folder is missing or holds no
usable run.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from .report import RESULTS_NAME, THRESHOLDS, ReportError, write_report

HERE = Path(__file__).resolve().parent
DEFAULT_RUNS = HERE / "runs"  # where run_study.sh copies each run's metrics, config and probe


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.convergence",
        description="Equal-budget convergence report: table, finding and plots from training runs.")
    parser.add_argument("runs", nargs="*", type=Path, default=None, metavar="RUNS_DIR",
                        help=f"run folders or folders of runs (default: {DEFAULT_RUNS})")
    parser.add_argument("--out", type=Path, default=HERE,
                        help=f"where {RESULTS_NAME} and plots/ go (default: {HERE})")
    parser.add_argument("--thresholds", type=_fraction, nargs="+", default=list(THRESHOLDS),
                        metavar="FRACTION",
                        help="fractions of the best final kNN top-1 to time each run to "
                             f"(default: {' '.join(f'{t:g}' for t in THRESHOLDS)})")
    return parser


def _fraction(text: str) -> float:
    """A threshold in (0, 1]; argparse turns the ValueError into a usage error naming it."""
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"threshold {text!r} must be a fraction in (0, 1]")
    return value


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        written = write_report(args.runs or [DEFAULT_RUNS], args.out, sorted(set(args.thresholds)))
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
