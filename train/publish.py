"""Publish a run as a timm-loadable folder: `python -m train.publish RUN_DIR`.

The folder holds ``model.safetensors`` (backbone + linear-probe ``fc``), ``config.json``
(timm's Hugging Face format), a generated ``README.md`` model card with plots, the run's
measured metrics, and ``SHA256SUMS``. With ``--push-to ORG/NAME`` it is also uploaded.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import torch

from frossl_hub.gallery import save_gallery
from frossl_hub.hub import DTYPES, model_config, push_to_hub, save_pretrained
from frossl_hub.specs import FOLDER, DatasetSpec

from .cards import CARD_TEMPLATE, input_cfg, recipe_command, render_card
from .checkpoint import CheckpointError
from .evaluation import split_features, topk_accuracy
from .gallery import build_gallery
from .init_from import chain_after, run_history
from .linear import HEAD_NAME, LINEAR_NAME, backbone_from_checkpoint, load_run, run_spec, run_splits, why_no_probe
from .metrics_log import read_metrics
from .plot import plot_run
from .recipes import Recipe

__all__ = ["publish_run", "render_card", "recipe_command", "CARD_TEMPLATE", "main"]

PUBLISHED_DIR = "published"  # default folder inside the run directory


def _measure_published(backbone: torch.nn.Module, head: Dict[str, torch.Tensor], recipe: Recipe,
                       spec: DatasetSpec, test: Any, dtype: str) -> Dict[str, float]:
    """Probe top-1/top-5 with the weights rounded to the published dtype."""
    rounded = {k: v.to(DTYPES[dtype]).float() for k, v in backbone.state_dict().items()}
    backbone.load_state_dict(rounded)
    feats, labels, _ = split_features(backbone, test, spec.mean, spec.std, recipe.crop_size)
    weight = head["fc.weight"].to(DTYPES[dtype]).float().to(feats.device)
    bias = head["fc.bias"].to(DTYPES[dtype]).float().to(feats.device)
    acc = topk_accuracy(feats @ weight.T + bias, labels, ks=(1, 5))
    return {"top1": acc[1], "top5": acc[5]}


def _published_model(recipe: Recipe, spec: DatasetSpec, config: Dict[str, Any], backbone: torch.nn.Module,
                     head: Optional[Dict[str, torch.Tensor]]) -> torch.nn.Module:
    """The timm model to publish: the backbone, the probe's ``fc`` (none without a probe) and
    the preprocessing of the run's data."""
    import timm

    classes = config.get("classes") or list(spec.label_names or [])
    model = timm.create_model(recipe.architecture, num_classes=spec.num_classes if head else 0,
                              in_chans=spec.in_chans,
                              pretrained_cfg_overlay=input_cfg(recipe, spec, label_names=classes))
    state = {k: v.cpu() for k, v in backbone.state_dict().items()}
    state.update({k: v.cpu() for k, v in (head or {}).items()})
    model.load_state_dict(state)
    return model


def _summary(linear: Optional[Dict[str, Any]], measured: Optional[Dict[str, float]],
             progress: Dict[str, Any], architecture: str,
             parent: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """The numbers published with the weights (config.json, metrics.json): the probe, this
    run's budget and every run of its chain (``runs``, oldest first); a run started
    ``--init-from`` a model also gives the chain's totals (its parents' training included)."""
    probed = linear is not None and measured is not None
    done = linear if probed else progress
    summary: Dict[str, Any] = {"epochs": round(float(done["epoch"]), 3),
                               "train_minutes": round(float(done["train_time_s"]) / 60, 1)}
    if probed:
        summary = {
            "linear_top1": round(measured["top1"], 4), "linear_top5": round(measured["top5"], 4),
            "knn_top1": round(linear["knn_top1"], 4),
            "random_init_linear_top1": round(linear["random_init"]["top1"], 4) if linear.get("random_init") else None,
        } | summary
    chain = (parent or {}).get("chain")
    if chain:
        total = chain_after(chain, summary["train_minutes"], summary["epochs"])
        summary.update(chained_runs=total["runs"], total_train_minutes=round(total["train_minutes"], 1),
                       total_epochs=round(total["epochs"], 3))
    runs = run_history(parent, architecture, summary["epochs"], summary["train_minutes"])
    return summary | ({"runs": runs} if runs else {})


def _default_name(recipe: Recipe, config: Dict[str, Any], spec: DatasetSpec) -> str:
    if recipe.dataset == FOLDER:
        folder = Path(config["data"]["folder"]).name.lower()
        return "frossl-resnet18-" + ("".join(c if c.isalnum() else "-" for c in folder).strip("-") or "folder")
    return f"frossl-resnet18-{spec.name}"


def publish_run(run_dir: Path, out: Optional[Path] = None, dtype: str = "float32",
                overwrite: bool = False, name: Optional[str] = None,
                push_to: Optional[str] = None, device: str = "cpu", gallery: int = 0) -> Path:
    """Write RUN_DIR's published folder (default RUN_DIR/published); returns its path.

    A run that cannot be probed (a folder without labels or held-out split) is published
    without a head: a 512-d embedding model. ``gallery`` > 0 also saves that many
    class-balanced test images of a catalog data set (``train.gallery``).

    Raises:
        CheckpointError: the run lacks its checkpoint or linear-probe results.
        FileExistsError: the target exists and ``overwrite`` is False.
    """
    from safetensors.torch import load_file

    run_dir = Path(run_dir)
    recipe, config = load_run(run_dir)
    no_probe = why_no_probe(config)
    for needed in (LINEAR_NAME, HEAD_NAME) if no_probe is None else ():
        if not (run_dir / needed).is_file():
            raise CheckpointError(f"{run_dir} has no {needed}: run `python -m train.linear {run_dir}` first.")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    if gallery and recipe.dataset == FOLDER:
        raise ValueError("--gallery takes test images of a catalog data set; a folder run has none.")
    out = Path(out) if out else run_dir / PUBLISHED_DIR
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} already exists and is not empty; pass --overwrite to replace it.")
    spec = run_spec(recipe, config)
    name = name or _default_name(recipe, config, spec)
    linear = json.loads((run_dir / LINEAR_NAME).read_text()) if no_probe is None else None
    head = load_file(str(run_dir / HEAD_NAME)) if no_probe is None else None
    dev = torch.device(device)
    backbone, state = backbone_from_checkpoint(run_dir, recipe, dev)
    model = _published_model(recipe, spec, config, backbone, head)
    measured = None if linear is None else {"top1": linear["top1"], "top5": linear["top5"]}
    options = config["options"]
    data_dir = Path(options["data_dir"]) if options.get("data_dir") else None
    cache_dir = Path(options["cache_dir"]) if options.get("cache_dir") else None
    if head is not None and dtype != "float32":
        test = run_splits(recipe, config, data_dir, cache_dir, train=False)[1]
        measured = _measure_published(backbone, head, recipe, spec, test, dtype)
    summary = _summary(linear, measured, state, recipe.architecture, config.get("init_from"))
    meta = {"name": name, "dataset": spec.name, "recipe": recipe.to_dict(), "metrics": summary,
            "weights_dtype": dtype, "hardware": config.get("hardware")}
    meta.update({key: config[key] for key in ("data", "init_from") if config.get(key)})
    cfg = model_config(model, frossl=meta)
    card = render_card(name, recipe, config, linear, read_metrics(run_dir), dtype, measured, spec,
                       progress=state, no_probe=no_probe)
    images = build_gallery(recipe.dataset, gallery, data_dir, cache_dir) if gallery else None
    with tempfile.TemporaryDirectory() as tmp:
        plots = plot_run(run_dir, Path(tmp) / "plots", title=name)
        extras: Dict[str, Any] = {"README.md": card, "metrics.json": json.dumps(
            ({"linear": dict(linear)} if linear else {}) | {"published": summary}, indent=2) + "\n"}
        extras.update({f"plots/{p.name}": p for p in plots})
        save_pretrained(model.state_dict(), out, cfg, dtype=dtype, extra_files=extras, overwrite=overwrite)
    if images is not None:
        save_gallery(images, out)
    if push_to:
        print(push_to_hub(out, push_to))
    return out


def catalog_line(folder: Path) -> str:
    """What to paste into frossl_hub/catalog.py for a published folder."""
    from frossl_hub._io import sha256_file

    cfg = json.loads((folder / "config.json").read_text())
    meta = cfg["frossl"]
    return (f'_entry("{meta["dataset"]}", architecture="{cfg["architecture"]}", status=PUBLISHED, '
            f'sha256="{sha256_file(folder / "model.safetensors")}", '
            f'metrics={json.dumps({k: v for k, v in meta["metrics"].items() if v is not None and k != "runs"})})')


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.publish", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--out", type=Path, default=None, help="target folder (default RUN_DIR/published)")
    parser.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    parser.add_argument("--name", default=None, help="model name (default frossl-resnet18-<dataset>)")
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--push-to", default=None, metavar="ORG/NAME", help="also upload to the HF Hub")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--gallery", type=int, default=0, metavar="N",
                        help="also ship N class-balanced test images for nearest neighbours (0: none)")
    args = parser.parse_args(argv)
    try:
        folder = publish_run(args.run_dir, args.out, args.dtype, args.overwrite, args.name, args.push_to,
                             args.device, args.gallery)
    except (CheckpointError, FileExistsError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"published {folder}")
    print("catalog entry:", catalog_line(folder))
    return 0


if __name__ == "__main__":
    sys.exit(main())
