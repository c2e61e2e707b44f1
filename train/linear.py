"""Linear-probe evaluation of a run's frozen backbone: `python -m train.linear RUN_DIR`.

Fast path (default): extract 512-d features of the train and test splits once, cache them
in the run directory, fit a linear classifier on the cached features (seconds). The weight
decay is picked on a held-out tenth of the train split, never on the test split.
Paper protocol (``--protocol paper``): 100 epochs over augmented images with the paper's
optimiser per data set.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from frossl_hub._io import atomic_write, atomic_write_json
from frossl_hub.models import create_backbone
from frossl_hub.runtime import resolve_device
from frossl_hub.specs import FOLDER, DatasetSpec, get_dataset_spec, spec_from_dict

from . import data as data_mod
from .checkpoint import CKPT_NAME, CheckpointError, load_checkpoint
from .evaluation import fit_linear, fold_standardization, knn_top1, split_features, topk_accuracy
from .recipes import LINEAR_PROTOCOLS, Recipe

__all__ = ["run_linear_probe", "LINEAR_NAME", "HEAD_NAME", "load_run", "backbone_from_checkpoint",
           "fit_probe_head", "evaluate_head", "main"]

LINEAR_NAME = "linear.json"  # probe results of a run
HEAD_NAME = "linear_head.safetensors"  # fc.weight / fc.bias acting on raw 512-d features
WEIGHT_DECAYS = (0.0, 1e-5, 1e-4, 1e-3)  # candidates for the fast path, chosen on train only
FAST_EPOCHS = 100


def load_run(run_dir: Path) -> Tuple[Recipe, Dict[str, Any]]:
    """A run directory's recipe and config.json (clear error when it is not a run)."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{run_dir} is not a training run: no config.json "
                              "(made by `python -m train`).")
    config = json.loads(path.read_text())
    return Recipe.from_dict(config["recipe"]), config


def run_spec(recipe: Recipe, config: Dict[str, Any]) -> DatasetSpec:
    """What the run's data looks like: the catalog's spec, or the one measured on a folder."""
    if recipe.dataset == FOLDER:
        return spec_from_dict(config["dataset_spec"])
    return get_dataset_spec(recipe.dataset)


def why_no_probe(config: Dict[str, Any]) -> Optional[str]:
    """Why a run cannot be probed (a folder without labels or held-out split); None when it can."""
    data = config.get("data")
    if not data:
        return None
    if not data.get("labelled"):
        return "its images have no labels (no class folders)"
    if not data.get("val_images"):
        return "its images have no held-out split (DIR/train + DIR/val, or --val-fraction)"
    return None


def backbone_from_checkpoint(run_dir: Path, recipe: Recipe, device: torch.device) -> Tuple[nn.Module, Dict[str, Any]]:
    """The run's backbone (num_classes=0) with its latest weights, in eval mode."""
    state = load_checkpoint(Path(run_dir) / CKPT_NAME)
    weights = {k[len("backbone."):]: v for k, v in state["model"].items() if k.startswith("backbone.")}
    backbone = create_backbone(recipe.architecture, in_chans=weights["conv1.weight"].shape[1], num_classes=0)
    backbone.load_state_dict(weights)
    return backbone.to(device).eval(), state


def run_splits(recipe: Recipe, config: Dict[str, Any], data_dir: Optional[Path],
               cache_dir: Optional[Path], train: bool = True) -> Tuple[Any, Any]:
    """The run's labelled train and test splits, as the trainer read them (``train=False``:
    the train split is None unless it comes at no cost)."""
    if recipe.dataset == FOLDER:
        spec = run_spec(recipe, config)
        opts = data_mod.FolderOptions(**{**config["options"]["folder"], "image_size": spec.image_size,
                                         "mean": spec.mean, "std": spec.std})
        found = data_mod.load_folder(Path(data_dir or config["data"]["folder"]), opts, recipe.seed,
                                     cache_dir=cache_dir)
        return found.train, found.val
    return (_split_arrays(recipe, data_dir, "train", cache_dir) if train else None,
            _split_arrays(recipe, data_dir, "test", cache_dir))


def _split_arrays(recipe: Recipe, data_dir: Optional[Path], split: str, cache_dir: Optional[Path]):
    name = get_dataset_spec(recipe.dataset).name
    root = data_dir or data_mod.default_data_dir(name)
    if root is None:
        raise data_mod.DatasetError(f"{name}: --data-dir is required to evaluate this run.")
    if data_mod.is_in_memory(name):
        return data_mod.load_arrays(name, root, split, cache_dir)
    return data_mod.ImageFolderCrops(name, root, split, image_size=recipe.crop_size, eval_mode=True)


def _features(backbone: nn.Module, ds: Any, spec: DatasetSpec, recipe: Recipe, device: torch.device,
              workers: int = 8) -> Tuple[Tensor, Tensor]:
    amp = torch.bfloat16 if device.type == "cuda" else None
    feats, labels, _ = split_features(backbone, ds, spec.mean, spec.std, recipe.crop_size,
                                      amp_dtype=amp, workers=workers)
    return feats.cpu(), labels.cpu()


def cached_features(run_dir: Path, tag: str, backbone: nn.Module, ds: Any, spec: DatasetSpec,
                    recipe: Recipe, device: torch.device) -> Tuple[Tensor, Tensor]:
    """Features of a split, cached in RUN_DIR/features/<tag>.safetensors (atomic)."""
    from safetensors.torch import load_file, save_file

    path = Path(run_dir) / "features" / f"{tag}.safetensors"
    if path.is_file():
        cached = load_file(str(path))
        return cached["features"], cached["labels"]
    feats, labels = _features(backbone, ds, spec, recipe, device)
    atomic_write(path, lambda p: save_file({"features": feats.contiguous(),
                                            "labels": labels.contiguous()}, str(p)))
    return feats, labels


def fit_probe_head(train_x: Tensor, train_y: Tensor, num_classes: int, device: torch.device,
              seed: int) -> Tuple[Dict[str, Tensor], float]:
    """Pick weight decay on a held-out tenth of train, refit on all of it; fc weights + wd."""
    x, y = train_x.to(device), train_y.to(device)
    labelled = (y >= 0).nonzero().squeeze(1)
    perm = labelled[torch.randperm(len(labelled), generator=torch.Generator().manual_seed(seed)).to(device)]
    n_val = max(1, len(perm) // 10)
    val_idx, fit_idx = perm[:n_val], perm[n_val:]
    best_wd, best_acc = WEIGHT_DECAYS[0], -1.0
    # too few images to hold any out (a 1-shot, 2-class fit): the first candidate
    for wd in WEIGHT_DECAYS if len(fit_idx) >= 2 else ():
        layer, mean, std = fit_linear(x[fit_idx], y[fit_idx], num_classes, epochs=FAST_EPOCHS // 2,
                                      weight_decay=wd, seed=seed)
        with torch.no_grad():
            acc = float((layer((x[val_idx] - mean) / std).argmax(1) == y[val_idx]).float().mean())
        if acc > best_acc:
            best_wd, best_acc = wd, acc
    layer, mean, std = fit_linear(x, y, num_classes, epochs=FAST_EPOCHS, weight_decay=best_wd, seed=seed)
    return fold_standardization(layer, mean, std), best_wd


def _fit_paper(backbone: nn.Module, train_ds: Any, spec: DatasetSpec, recipe: Recipe,
               device: torch.device, epochs: Optional[int] = None) -> Dict[str, Tensor]:
    """The paper's protocol: 100 epochs over crops + flips, per-dataset optimiser and steps."""
    from .augment import ViewConfig, augment_view

    if not isinstance(train_ds, data_mod.ArrayDataset):
        raise NotImplementedError("--protocol paper is implemented for in-memory data sets; use the "
                                  "default fast protocol for ImageFolder data sets.")
    if spec.name not in LINEAR_PROTOCOLS:
        raise NotImplementedError(f"the paper has no linear-probe protocol for {spec.title}; use the "
                                  "default fast protocol.")
    protocol = LINEAR_PROTOCOLS[spec.name]
    if epochs is not None:  # a shorter run keeps the milestones at the same fractions
        scale = epochs / protocol.epochs
        protocol = dataclasses.replace(protocol, epochs=epochs, milestones=tuple(
            max(1, round(m * scale)) for m in protocol.milestones))
    head = nn.Linear(backbone.num_features, spec.num_classes).to(device)
    lr = protocol.lr * (protocol.batch_size / 256 if protocol.scale_lr_by_batch else 1.0)
    if protocol.optimizer == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(head.parameters(), lr=lr, weight_decay=protocol.weight_decay)
    else:
        opt = torch.optim.SGD(head.parameters(), lr=lr, momentum=protocol.momentum,
                              weight_decay=protocol.weight_decay)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, list(protocol.milestones), gamma=0.1)
    cfg = ViewConfig(size=recipe.crop_size, jitter_prob=0.0, gray_prob=0.0, blur_prob=0.0,
                     solarize_prob=0.0, flip_prob=0.5)
    gen = torch.Generator(device=device).manual_seed(recipe.seed)
    keep = (train_ds.labels >= 0).nonzero().squeeze(1)
    images, labels = train_ds.images[keep].to(device), train_ds.labels[keep].to(device)
    from tqdm.auto import trange

    for _ in trange(protocol.epochs, desc="linear probe (paper)"):
        perm = torch.randperm(len(images), device=device, generator=gen)
        for start in range(0, len(perm), protocol.batch_size):
            idx = perm[start:start + protocol.batch_size]
            x = augment_view(images[idx], cfg, spec.mean, spec.std, generator=gen)
            with torch.no_grad():
                f = backbone(x)
            loss = F.cross_entropy(head(f), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sched.step()
    return {"fc.weight": head.weight.detach().clone(), "fc.bias": head.bias.detach().clone()}


def evaluate_head(head: Dict[str, Tensor], feats: Tensor, labels: Tensor) -> Dict[int, float]:
    logits = feats.to(head["fc.weight"].device) @ head["fc.weight"].T + head["fc.bias"]
    return topk_accuracy(logits, labels.to(logits.device), ks=(1, 5))


def probe_features(train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor,
                   num_classes: int, device: torch.device, recipe: Recipe) -> Dict[str, Any]:
    """Fast-path probe + kNN on cached features: the numbers a card reports."""
    head, wd = fit_probe_head(train_x, train_y, num_classes, device, recipe.seed)
    acc = evaluate_head(head, test_x, test_y)
    knn = knn_top1(train_x.to(device), train_y.to(device), test_x.to(device), test_y.to(device),
                   num_classes, recipe.knn_k, recipe.knn_temperature)
    return {"top1": acc[1], "top5": acc[5], "knn_top1": knn, "weight_decay": wd, "head": head}


def run_linear_probe(run_dir: Path, device: str = "auto", data_dir: Optional[Path] = None,
                     cache_dir: Optional[Path] = None, protocol: str = "fast",
                     random_baseline: Optional[bool] = None,
                     epochs: Optional[int] = None) -> Dict[str, Any]:
    """Probe a run's backbone; writes RUN_DIR/linear.json and RUN_DIR/linear_head.safetensors.

    Args:
        run_dir: a `python -m train` run directory.
        device: auto, cpu, cuda.
        data_dir: the data set's folder (default: the run's own --data-dir).
        protocol: "fast" (cached features) or "paper" (100 augmented epochs).
        random_baseline: also probe an untrained backbone of the same architecture
            (default: on for in-memory data sets).
        epochs: paper protocol only: epochs instead of the protocol's 100.
    """
    from safetensors.torch import save_file

    run_dir = Path(run_dir)
    recipe, config = load_run(run_dir)
    if protocol not in ("fast", "paper"):
        raise ValueError(f"protocol must be 'fast' or 'paper', got {protocol!r}")
    reason = why_no_probe(config)
    if reason is not None:
        raise CheckpointError(f"{run_dir} cannot be probed: {reason}.")
    dev = resolve_device(device)
    options = config["options"]
    data_dir = data_dir or (Path(options["data_dir"]) if options.get("data_dir") else None)
    cache_dir = cache_dir or (Path(options["cache_dir"]) if options.get("cache_dir") else None)
    spec = run_spec(recipe, config)
    backbone, state = backbone_from_checkpoint(run_dir, recipe, dev)
    step = int(state["step"])
    splits = run_splits(recipe, config, data_dir, cache_dir)
    t0 = time.monotonic()
    features = [cached_features(run_dir, f"{tag}-step{step}", backbone, ds, spec, recipe, dev)
                for tag, ds in zip(("train", "test"), splits)]
    head, result = _probe(protocol, backbone, splits[0], features, spec, recipe, dev, epochs)
    (_, train_y), (_, test_y) = features
    record: Dict[str, Any] = {
        "protocol": protocol, "dataset": spec.name, "split": spec.eval_split,
        "num_train": int((train_y >= 0).sum()), "num_test": len(test_y),
        "step": step, "epoch": float(state["epoch"]), "train_time_s": float(state["train_time_s"]),
        "wall_time_s": float(state.get("wall_time_s", state["train_time_s"])),
        **result, "probe_seconds": round(time.monotonic() - t0, 1),
    }
    if random_baseline is None:
        random_baseline = isinstance(splits[0], data_mod.ArrayDataset)
    if random_baseline:
        record["random_init"] = _untrained_baseline(run_dir, splits, spec, recipe, dev)
    atomic_write(run_dir / HEAD_NAME, lambda p: save_file({k: v.cpu().contiguous() for k, v in head.items()}, str(p)))
    atomic_write_json(run_dir / LINEAR_NAME, record)
    print(f"linear probe ({protocol}) on {spec.title} {spec.eval_split}: top-1 {record['top1']:.4f}, "
          f"top-5 {record['top5']:.4f}, kNN top-1 {record['knn_top1']:.4f}"
          + (f"; random init top-1 {record['random_init']['top1']:.4f}" if random_baseline else ""))
    return record


def _probe(protocol: str, backbone: nn.Module, train_ds: Any, features: Sequence[Tuple[Tensor, Tensor]],
           spec: DatasetSpec, recipe: Recipe, device: torch.device,
           epochs: Optional[int]) -> Tuple[Dict[str, Tensor], Dict[str, Any]]:
    """The probe head and its numbers, by the fast protocol or the paper's."""
    (train_x, train_y), (test_x, test_y) = features
    if protocol == "fast":
        result = probe_features(train_x, train_y, test_x, test_y, spec.num_classes, device, recipe)
        return result.pop("head"), result
    head = _fit_paper(backbone, train_ds, spec, recipe, device, epochs)
    acc = evaluate_head(head, test_x, test_y)
    return head, {"top1": acc[1], "top5": acc[5],
                  "knn_top1": knn_top1(train_x, train_y, test_x, test_y, spec.num_classes,
                                       recipe.knn_k, recipe.knn_temperature)}


def _untrained_baseline(run_dir: Path, splits: Sequence[Any], spec: DatasetSpec, recipe: Recipe,
                        device: torch.device) -> Dict[str, Any]:
    """The same fast probe on an untrained backbone of the same architecture."""
    torch.manual_seed(recipe.seed)
    untrained = create_backbone(recipe.architecture, in_chans=spec.in_chans).to(device).eval()
    (rx, ry), (tx, ty) = [cached_features(run_dir, f"{tag}-random", untrained, ds, spec, recipe, device)
                          for tag, ds in zip(("train", "test"), splits)]
    base = probe_features(rx, ry, tx, ty, spec.num_classes, device, recipe)
    base.pop("head")
    return base


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.linear",
                                     description="Linear-probe a run's frozen backbone.")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--protocol", default="fast", choices=["fast", "paper"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--random-baseline", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--epochs", type=int, default=None,
                        help="paper protocol: epochs instead of 100 (milestones scale with it)")
    args = parser.parse_args(argv)
    try:
        run_linear_probe(args.run_dir, args.device, args.data_dir, args.cache_dir, args.protocol,
                         args.random_baseline, args.epochs)
    except (CheckpointError, data_mod.DatasetError, ValueError, NotImplementedError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
