"""What does a trained standard-stem backbone give without its max-pool, before any training?

At 28-32 px timm's resnet18 stem (7x7 stride 2 + 3x3 stride-2 max-pool) leaves a 1x1 map
before global pooling. Dropping the max-pool (``frossl_resnet18_nopool``) keeps every weight
and doubles the map side (2x2 at 28 px). The script probes the frozen features of one
published model both ways with the cards' fast linear probe and kNN, on the whole official
train and test splits: if the weights alone already do as well without the max-pool, a warm
start of ``frossl_resnet18_nopool`` from them (``--init-from``) starts from a good point.

    python benchmarks/drop_maxpool.py frossl-resnet18-fashion-mnist
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import Optional, Sequence

import torch
from torch import nn

try:  # run as a script (python benchmarks/drop_maxpool.py) or as a module
    import _common
except ImportError:
    from benchmarks import _common

import frossl_hub
from frossl_hub.hub import ChecksumError, ModelNotFoundError
from frossl_hub.specs import get_dataset_spec
from train.data import ArrayDataset, DatasetError, load_arrays
from train.evaluation import split_features
from train.linear import probe_features
from train.recipes import get_recipe


def probe(model: nn.Module, dataset: str, splits: Sequence[ArrayDataset]) -> str:
    """One row: the fast probe's linear and kNN top-1 on the model's frozen features."""
    spec = get_dataset_spec(dataset)
    side = model.pretrained_cfg["input_size"][-1]
    start = time.perf_counter()
    (train_x, train_y, _), (test_x, test_y, _) = (split_features(model, split, spec.mean, spec.std, side)
                                                  for split in splits)
    result = probe_features(train_x, train_y, test_x, test_y, spec.num_classes, torch.device("cpu"),
                            get_recipe(dataset))
    stem = "as trained" if isinstance(model.maxpool, nn.MaxPool2d) else "max-pool dropped"
    return (f"{stem:<16}  linear top-1 {100 * result['top1']:.2f}%  kNN top-1 {100 * result['knn_top1']:.2f}%  "
            f"({len(train_y)} train / {len(test_y)} test images, {time.perf_counter() - start:.0f} s)")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a standard-stem model: catalog name or published folder")
    parser.add_argument("--data-dir", default=None, help="the data set's folder (default: its usual place)")
    args = parser.parse_args(argv)
    _common.print_header("drop the max-pool", sys.argv)
    try:
        model = frossl_hub.load(args.model, num_classes=0).eval()
        if not isinstance(model.maxpool, nn.MaxPool2d):
            raise ValueError(f"{args.model} has no max-pool to drop")
        dataset = _common.dataset_of(args.model)
        splits = [load_arrays(dataset, args.data_dir, split) for split in ("train", "test")]
        print(probe(model, dataset, splits), flush=True)
        model.maxpool = nn.Identity()  # every weight stays; the map side doubles
        print(probe(model, dataset, splits), flush=True)
    except (ModelNotFoundError, ChecksumError, DatasetError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
