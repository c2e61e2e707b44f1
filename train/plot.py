"""`python -m train.plot RUN_DIR`: loss parts, accuracy curves and eigenvalue spectra as PNGs."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, List, Optional, Sequence

from .metrics_log import read_metrics

__all__ = ["save_png", "plot_run", "PLOT_NAMES", "main"]

PLOT_NAMES = ("loss.png", "accuracy.png", "spectrum.png")  # what plot_run writes


def save_png(fig: Any, path: Path) -> Path:
    """Save a matplotlib figure as PNG via temp file + rename (a crash never leaves half an image),
    then free it, whether or not the save worked."""
    import matplotlib.pyplot as plt

    from frossl_hub._io import atomic_write

    try:
        atomic_write(path, lambda p: fig.savefig(p, dpi=110, bbox_inches="tight", format="png"))
    finally:
        plt.close(fig)
    return path


def _finish(fig: Any, title: str, path: Path) -> Path:
    """Title the figure, save it as PNG and free it."""
    fig.suptitle(title, fontsize=10)
    return save_png(fig, path)


def plot_run(run_dir: Path, out_dir: Optional[Path] = None, title: Optional[str] = None) -> List[Path]:
    """Render the run's curves into ``out_dir`` (default RUN_DIR/plots); returns the files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = read_metrics(run_dir)
    out_dir = Path(out_dir or Path(run_dir) / "plots")
    title = title or Path(run_dir).name
    written: List[Path] = []

    train = metrics["train"]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    steps = [r["step"] for r in train]
    for ax, key, label in zip(axes, ("loss", "regularizer", "invariance"),
                              ("total SSL loss", "regulariser 2·log‖C/trC‖_F (per view)", "invariance (per view)")):
        ys = [r.get(key) for r in train]
        if any(y is not None for y in ys):
            ax.plot(steps, ys, lw=1.2)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    written.append(_finish(fig, f"{title}: training loss", out_dir / PLOT_NAMES[0]))

    evals = metrics["eval"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    for ax, xkey, xlabel in ((axes[0], "epoch", "epoch"), (axes[1], "train_time_s", "training minutes")):
        xs = [r[xkey] / (60 if xkey == "train_time_s" else 1) for r in evals]
        for key, label in (("online_top1", "online linear top-1"), ("knn_top1", "kNN top-1 (k=20)")):
            if evals and all(key in r for r in evals):  # a run without labels measures no accuracy
                ax.plot(xs, [100 * r[key] for r in evals], marker="o", ms=3, label=label)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    written.append(_finish(fig, f"{title}: accuracy during pretraining", out_dir / PLOT_NAMES[1]))

    spectra = metrics["spectrum"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    cmap = plt.get_cmap("viridis")
    for ax, key in zip(axes, ("backbone", "projector")):
        for i, record in enumerate(spectra):
            values = [max(v, 1e-12) for v in record.get(key, [])]
            color = cmap(i / max(1, len(spectra) - 1))
            ax.plot(range(1, len(values) + 1), values, color=color, lw=1,
                    label=f"epoch {record['epoch']:.2f}" if i in (0, len(spectra) - 1) else None)
        ax.set_yscale("log")
        ax.set_xscale("log")
        ax.set_xlabel("eigenvalue index")
        ax.set_ylabel("normalised eigenvalue")
        ax.set_title(f"{key} embedding covariance", fontsize=9)
        ax.grid(alpha=0.3)
        if spectra:
            ax.legend(fontsize=8)
    written.append(_finish(fig, f"{title}: eigenvalue spectrum over training", out_dir / PLOT_NAMES[2]))
    return written


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.plot", description=__doc__)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--out", type=Path, default=None, help="folder for the PNGs (default RUN_DIR/plots)")
    args = parser.parse_args(argv)
    try:
        for path in plot_run(args.run_dir, args.out):
            print(path)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
