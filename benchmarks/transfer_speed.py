"""How long a linear transfer takes beside embedding the same folder: the ratio of
``python -m train.transfer --mode linear`` to ``python -m frossl_hub embed`` wall time.

Both run as the user runs them (subprocesses, their default flags), on the same ImageFolder
tree (default: the 50,000 CIFAR-10 training JPEGs at 32 px, as ``DIR/<class>``, so the
transfer holds out its default 10% per class), each with an empty cache of its own (the ONNX
export is in both). The transfer embeds the folder once through the same path, then fits.

Examples::

    python benchmarks/transfer_speed.py                                   # 50,000 images
    python benchmarks/transfer_speed.py --limit 20 --threads 1            # smoke
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Optional, Sequence

try:  # `python benchmarks/NAME.py` puts this folder on sys.path; `python -m benchmarks.NAME` does not
    import _common
    import transfer_folders
except ImportError:
    from benchmarks import _common, transfer_folders


def _timed(command: List[str], cache: Path, threads: Optional[int]) -> float:
    """Wall seconds of ``command`` with an empty frossl_hub cache (a kept --work-dir's too)."""
    shutil.rmtree(cache, ignore_errors=True)
    env = dict(os.environ, FROSSL_HUB_CACHE=str(cache), HF_HUB_OFFLINE="1", PYTHONPATH=str(_common.REPO))
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    t0 = time.perf_counter()
    done = subprocess.run(command, cwd=_common.REPO, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return seconds


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="frossl-resnet18-cifar10")
    parser.add_argument("--limit", type=int, default=None, help="images per class (smoke runs)")
    parser.add_argument("--work-dir", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS for both commands")
    args = parser.parse_args(argv)
    _common.print_header("Linear transfer vs embedding the same folder", [sys.executable, *sys.argv])
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work_dir or Path(tmp)
        folder = transfer_folders.build_folder("cifar10", work / "data", args.limit) / "train"
        images = sum(1 for _ in folder.rglob("*.jpg"))
        py = sys.executable
        embed = _timed([py, "-m", "frossl_hub", "embed", str(folder), "--model", args.model,
                        "--out", str(work / "emb.npy"), "--no-progress"], work / "cache-embed", args.threads)
        transfer = _timed([py, "-m", "train.transfer", "--model", args.model, "--data-dir", str(folder),
                           "--out", str(work / "out"), "--overwrite", "--no-progress"]
                          + (["--threads", str(args.threads)] if args.threads else []),
                          work / "cache-transfer", args.threads)
    print(f"folder: {images:,} CIFAR-10 training JPEGs, model {args.model}")
    print(f"python -m frossl_hub embed: {embed:.1f} s")
    print(f"python -m train.transfer --mode linear: {transfer:.1f} s")
    print(f"ratio transfer / embed: {transfer / embed:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
