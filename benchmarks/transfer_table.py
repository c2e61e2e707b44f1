"""Linear transfer of every bundled model to every real labelled data set here.

For each data set (CIFAR-10 JPEGs, Fashion-MNIST, the Tiny-ImageNet-200 sample: train and
val folders from ``benchmarks/transfer_folders.py``) and each bundled model, ``python -m
train.transfer --mode linear`` (called in-process) at the model's own image size, for 1-,
10-, 100-shot and all (k-shot: 5 seeded draws, mean ± std on the full val split; a k larger
than the smallest class is left out). Beside each row: the data set's in-domain bundled
model (at its own size) and an untrained backbone of the row model's architecture at the
row's image size. Printed as one Markdown table; ``--json`` also writes every number.

Examples::

    python benchmarks/transfer_table.py --json benchmarks/transfer_table.json       # full
    python benchmarks/transfer_table.py --limit 12 --shots 1,10,all --threads 1      # smoke
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

try:  # `python benchmarks/NAME.py` puts this folder on sys.path; `python -m benchmarks.NAME` does not
    import _common
    import transfer_folders
except ImportError:
    from benchmarks import _common, transfer_folders

import torch

from frossl_hub.catalog import CATALOG
from train.transfer import TransferOptions, run_transfer
from train.transfer.data import parse_shots, scan_labelled, shot_label

BUNDLED = [name for name, entry in sorted(CATALOG.items()) if entry.bundled]
UNTRAINED = "untrained"


def _untrained(model: str, work: Path) -> Path:
    """A random-init backbone published with ``model``'s architecture and preprocessing."""
    entry = CATALOG[model]
    folder = work / f"untrained-{entry.name}"
    if not (folder / "config.json").is_file():
        _common.publish_tiny_model(folder, entry.dataset, entry.architecture, seed=0, num_classes=0)
    return folder


def _shots_for(data: Path, wanted: Sequence[Optional[int]]) -> str:
    smallest = min(scan_labelled(data, None, 0).train_counts().values())
    return ",".join(shot_label(k) for k in wanted if k is None or k <= smallest)


def _transfer(model: str, data: Path, shots: str, out: Path, args: argparse.Namespace) -> Dict[str, Dict[str, Any]]:
    """{shots: row} of one linear transfer."""
    record = run_transfer(TransferOptions(model=model, data_dir=data, out=out, shots=shots,
                                          overwrite=True, workers=args.workers, progress=False,
                                          device=args.device))
    return {row["shots"]: row for row in record["shots"]}


def measure(args: argparse.Namespace, work: Path) -> List[Dict[str, Any]]:
    """Every (data set, model, shots) row with its in-domain and untrained neighbours."""
    wanted = parse_shots(args.shots)
    rows, runs = [], {}
    for dataset in args.datasets:
        data = transfer_folders.build_folder(dataset, work / "data", args.limit)
        shots = _shots_for(data, wanted)
        in_domain = transfer_folders.IN_DOMAIN[dataset]

        def run(key: str, model: str) -> Dict[str, Dict[str, Any]]:
            if (dataset, key) not in runs:
                print(f"transfer {key} -> {dataset} (shots {shots})", file=sys.stderr, flush=True)
                runs[dataset, key] = _transfer(model, data, shots, work / "out", args)
            return runs[dataset, key]

        for model in args.models:
            mine = run(model, model)
            domain = run(in_domain, in_domain) if in_domain in BUNDLED else {}
            untrained = run(f"{UNTRAINED}-{model}", str(_untrained(model, work)))
            for k in shots.split(","):
                rows.append({"dataset": dataset, "model": model, "image_size": CATALOG[model].input_side,
                             "shots": k, "transfer": mine[k], "in_domain_model": in_domain,
                             "in_domain": domain.get(k), "untrained": untrained[k]})
    return rows


def _cell(row: Optional[Dict[str, Any]]) -> str:
    if not row or row.get("top1_mean") is None:
        return "–"
    return f"{100 * row['top1_mean']:.2f} ± {100 * row['top1_std']:.2f}"


def table(rows: Sequence[Dict[str, Any]]) -> str:
    lines = ["| data set | model | px | shots/class | transfer top-1 (%) | in-domain model top-1 (%) | "
             "untrained top-1 (%) |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['dataset']} | {r['model']} | {r['image_size']} | {r['shots']} | "
                     f"{_cell(r['transfer'])} | {_cell(r['in_domain'])} ({r['in_domain_model']}) | "
                     f"{_cell(r['untrained'])} |")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=list(transfer_folders.DATASETS),
                        choices=list(transfer_folders.DATASETS))
    parser.add_argument("--models", nargs="+", default=BUNDLED, choices=BUNDLED)
    parser.add_argument("--shots", default="1,10,100,all")
    parser.add_argument("--limit", type=int, default=None, help="images per class and split (smoke runs)")
    parser.add_argument("--work-dir", type=Path, default=None, help="keeps the folders (default: a temp dir)")
    parser.add_argument("--json", type=Path, default=None, help="also write every number here")
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1))
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    _common.print_header("Linear transfer of the bundled models (python -m train.transfer)",
                         [sys.executable, *sys.argv])
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work_dir or Path(tmp)
        os.environ["FROSSL_HUB_CACHE"] = str(work / "cache")  # features and ONNX graphs go with the work
        rows = measure(args, work)
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
