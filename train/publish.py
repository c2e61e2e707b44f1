"""Publish a run as a timm-loadable folder: `python -m train.publish RUN_DIR`.

The folder holds ``model.safetensors`` (backbone + linear-probe ``fc``), ``config.json``
(timm's Hugging Face format), a generated ``README.md`` model card with plots, the run's
measured metrics, and ``SHA256SUMS``. With ``--push-to ORG/NAME`` it is also uploaded.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import string
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import torch
import yaml

from frossl_hub.catalog import CATALOG
from frossl_hub.gallery import save_gallery
from frossl_hub.hub import DTYPES, model_config, push_to_hub, save_pretrained
from frossl_hub.models import pretrained_cfg_for
from frossl_hub.stems import get_stem
from frossl_hub.specs import get_dataset_spec

from .checkpoint import CheckpointError
from .gallery import build_gallery
from .linear import HEAD_NAME, LINEAR_NAME, backbone_from_checkpoint, load_run
from .plot import plot_run, read_metrics
from .recipes import Recipe, get_recipe

__all__ = ["publish_run", "render_card", "recipe_command", "CARD_TEMPLATE", "main"]

CARD_TEMPLATE = Path(__file__).resolve().parents[1] / "model_cards" / "template.md"
PUBLISHED_DIR = "published"  # default folder inside the run directory


def recipe_command(recipe: Recipe, data_dir: str = "DATA", out: str = "RUN_DIR") -> str:
    """The `python -m train` command line that reproduces ``recipe``."""
    base = get_recipe(recipe.dataset)
    parts = ["python -m train", f"--dataset {recipe.dataset}", f"--data-dir {data_dir}", f"--out {out}"]
    if recipe.method != "frossl":
        parts.append(f"--method {recipe.method}")
    for f in dataclasses.fields(Recipe):
        if f.name in ("dataset", "method"):
            continue
        value, default = getattr(recipe, f.name), getattr(base, f.name)
        if value != default and value is not None:
            flag = "--" + f.name.replace("_", "-")
            shown = " ".join(str(v) for v in value) if isinstance(value, (tuple, list)) else str(value)
            parts.append(f"{flag} {shown}")
    return " \\\n  ".join(parts)


def _pct(x: Optional[float]) -> str:
    return "–" if x is None else f"{100 * x:.2f}"


def _data_note(recipe: Recipe, config: Dict[str, Any]) -> str:
    data_dir = str(config.get("options", {}).get("data_dir") or "")
    jpeg = recipe.dataset == "cifar10" and (
        "jpeg" in data_dir.lower() or (Path(data_dir) / "train").is_dir())
    if jpeg:
        return ("**Data note:** trained and evaluated on the CIFAR-10 JPEG re-encoding (quality ≈ 75, "
                "all 60,000 images), not the official lossless release; expect numbers a point or two "
                "below what the original files would give.")
    return ""


def render_card(name: str, recipe: Recipe, config: Dict[str, Any], linear: Dict[str, Any],
                metrics: Dict[str, List[Dict[str, Any]]], dtype: str, measured: Dict[str, float],
                hf_hub_id: Optional[str] = None) -> str:
    """The model card (YAML front matter + markdown) from a run's measured outputs."""
    spec = get_dataset_spec(recipe.dataset)
    evals = metrics.get("eval", [])
    last_eval = evals[-1] if evals else {}
    front = {
        "library_name": "timm",
        "license": "apache-2.0",
        "pipeline_tag": "image-classification",
        "tags": ["image-classification", "image-feature-extraction", "self-supervised-learning",
                 "frossl", "timm", "resnet18"],
        "datasets": [spec.hf_dataset] if spec.hf_dataset else [],
        "model-index": [{
            "name": name,
            "results": [{
                "task": {"type": "image-classification", "name": "Linear probe (frozen backbone)"},
                "dataset": {"type": spec.hf_dataset or spec.name, "name": spec.title,
                            "split": spec.eval_split},
                "metrics": [
                    {"type": "accuracy", "name": "Linear-probe top-1", "value": round(100 * measured["top1"], 2)},
                    {"type": "accuracy", "name": "Linear-probe top-5", "value": round(100 * measured["top5"], 2)},
                    {"type": "accuracy", "name": "kNN top-1 (k=20)", "value": round(100 * linear["knn_top1"], 2)},
                ],
            }],
        }],
    }
    paper = get_recipe(recipe.dataset)
    done = float(linear.get("epoch", 0.0))
    fraction = done / paper.epochs if paper.epochs else 0
    budget_note = (f"This run covers {done:.2f} of the paper's {paper.epochs:g} epochs "
                   f"({100 * fraction:.2f}% of its recipe)" + (
                       ": a small compute budget, so the numbers are far from the paper's."
                       if fraction < 0.5 else "."))
    random = linear.get("random_init")
    limitations = [
        f"- Pretrained on {spec.title} only; features transfer best to images like it "
        f"({spec.image_size}×{spec.image_size}, {'greyscale' if spec.in_chans == 1 else 'colour'})"
        + (f", trained and served at {recipe.crop_size}×{recipe.crop_size}." if recipe.crop_size != spec.image_size else "."),
        f"- {budget_note}",
        "- The linear-probe head is fitted on the official train split and reported on the "
        f"{spec.eval_split} split; hyper-parameters were chosen on a held-out tenth of train.",
        "- Not evaluated for robustness, fairness or out-of-distribution inputs.",
    ]
    input_cfg = pretrained_cfg_for(spec, recipe.architecture, recipe.crop_size)
    values = {
        "front_matter": yaml.safe_dump(front, sort_keys=False, allow_unicode=True).strip(),
        "name": name,
        "dataset_title": spec.title,
        "train_images": f"{config.get('num_pretrain_images', 0):,}",
        "num_classes": spec.num_classes,
        "data_note": _data_note(recipe, config),
        "eval_split": spec.eval_split,
        "weights_dtype": dtype,
        "probe_top1": _pct(measured["top1"]),
        "probe_top5": _pct(measured["top5"]),
        "knn_top1": _pct(linear["knn_top1"]),
        "random_top1": f"{_pct(random['top1'])} %" if random else "not measured",
        "probe_protocol": ("features cached once, linear classifier fitted for 100 epochs, weight decay "
                           f"{linear.get('weight_decay')} picked on a held-out tenth of train"
                           if linear.get("protocol") == "fast" else "the paper's 100-epoch protocol"),
        "online_top1": _pct(last_eval.get("online_top1")),
        "architecture": recipe.architecture,
        "stem": get_stem(recipe.architecture).description,
        "num_views": recipe.num_views,
        "invariance_weight": recipe.invariance_weight,
        "projector": " → ".join(str(d) for d in (recipe.projector_dims or (2048, 2048, 1024))),
        "lars_eta": recipe.lars_eta,
        "momentum": recipe.momentum,
        "lr": f"{recipe.lr():g}",
        "base_lr": recipe.base_lr,
        "batch_size": recipe.batch_size,
        "weight_decay": recipe.weight_decay,
        "warmup_epochs": f"{recipe.warmup_epochs:g}",
        "epochs_done": f"{done:.2f}",
        "steps": linear.get("step"),
        "epochs_planned": f"{recipe.epochs:g}",
        "train_minutes": f"{float(linear.get('train_time_s', 0)) / 60:.1f}",
        "wall_minutes": f"{float(linear.get('wall_time_s', linear.get('train_time_s', 0))) / 60:.1f}",
        "hardware": config.get("hardware", "unknown"),
        "torch_version": config.get("torch", torch.__version__),
        "command": recipe_command(recipe),
        "paper_command": recipe_command(paper),
        "paper_epochs": f"{paper.epochs:g}",
        "budget_note": budget_note,
        "input_size": tuple([spec.in_chans, recipe.crop_size, recipe.crop_size]),
        "mean": tuple(spec.mean),
        "std": tuple(spec.std),
        "interpolation": input_cfg["interpolation"],
        "crop_pct": input_cfg["crop_pct"],
        "limitations": "\n".join(limitations),
    }
    if not CARD_TEMPLATE.is_file():
        raise FileNotFoundError(f"model card template missing: {CARD_TEMPLATE}")
    return string.Template(CARD_TEMPLATE.read_text(encoding="utf-8")).substitute(values)


def _measure_published(backbone: torch.nn.Module, head: Dict[str, torch.Tensor], recipe: Recipe,
                       data_dir: Optional[Path], cache_dir: Optional[Path], dtype: str,
                       device: torch.device) -> Dict[str, float]:
    """Probe top-1/top-5 with the weights rounded to the published dtype."""
    from .evaluation import extract_features, topk_accuracy
    from .linear import _split_arrays

    rounded = {k: v.to(DTYPES[dtype]).float() for k, v in backbone.state_dict().items()}
    backbone.load_state_dict(rounded)
    spec = get_dataset_spec(recipe.dataset)
    test = _split_arrays(recipe, data_dir, "test", cache_dir)
    if hasattr(test, "images"):
        feats, _ = extract_features(backbone, test.images, spec.mean, spec.std, recipe.crop_size)
        labels = test.labels
    else:
        loader = torch.utils.data.DataLoader(test, batch_size=256, num_workers=4)
        chunks, label_chunks = [], []
        for images, lab in loader:
            chunks.append(extract_features(backbone, images[:, 0], spec.mean, spec.std, recipe.crop_size)[0])
            label_chunks.append(lab)
        feats, labels = torch.cat(chunks), torch.cat(label_chunks)
    weight = head["fc.weight"].to(DTYPES[dtype]).float().to(feats.device)
    bias = head["fc.bias"].to(DTYPES[dtype]).float().to(feats.device)
    acc = topk_accuracy(feats @ weight.T + bias, labels.to(feats.device), ks=(1, 5))
    return {"top1": acc[1], "top5": acc[5]}


def publish_run(run_dir: Path, out: Optional[Path] = None, dtype: str = "float32",
                overwrite: bool = False, name: Optional[str] = None,
                push_to: Optional[str] = None, device: str = "cpu", gallery: int = 0) -> Path:
    """Write RUN_DIR's published folder (default RUN_DIR/published); returns its path.

    ``gallery`` > 0 also saves that many class-balanced test images (``train.gallery``).

    Raises:
        CheckpointError: the run lacks its checkpoint or linear-probe results.
        FileExistsError: the target exists and ``overwrite`` is False.
    """
    from safetensors.torch import load_file

    run_dir = Path(run_dir)
    recipe, config = load_run(run_dir)
    for needed in (LINEAR_NAME, HEAD_NAME):
        if not (run_dir / needed).is_file():
            raise CheckpointError(f"{run_dir} has no {needed}: run `python -m train.linear {run_dir}` first.")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    out = Path(out) if out else run_dir / PUBLISHED_DIR
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} already exists and is not empty; pass --overwrite to replace it.")
    spec = get_dataset_spec(recipe.dataset)
    name = name or f"frossl-resnet18-{spec.name}"
    linear = json.loads((run_dir / LINEAR_NAME).read_text())
    head = load_file(str(run_dir / HEAD_NAME))
    dev = torch.device(device)
    backbone, _ = backbone_from_checkpoint(run_dir, recipe, dev)
    data_dir = Path(config["options"]["data_dir"]) if config["options"].get("data_dir") else None
    cache_dir = Path(config["options"]["cache_dir"]) if config["options"].get("cache_dir") else None

    import timm

    classes = config.get("classes") or list(spec.label_names or [])
    model = timm.create_model(recipe.architecture, num_classes=spec.num_classes, in_chans=spec.in_chans,
                              pretrained_cfg_overlay=pretrained_cfg_for(spec, recipe.architecture, recipe.crop_size,
                                                                        label_names=classes))
    state = {k: v.cpu() for k, v in backbone.state_dict().items()}
    state.update({k: v.cpu() for k, v in head.items()})
    model.load_state_dict(state)
    measured = (_measure_published(backbone, head, recipe, data_dir, cache_dir, dtype, dev)
                if dtype != "float32" else {"top1": linear["top1"], "top5": linear["top5"]})
    metrics = read_metrics(run_dir)
    entry = CATALOG.get(name)
    summary = {
        "linear_top1": round(measured["top1"], 4), "linear_top5": round(measured["top5"], 4),
        "knn_top1": round(linear["knn_top1"], 4),
        "random_init_linear_top1": round(linear["random_init"]["top1"], 4) if linear.get("random_init") else None,
        "epochs": round(float(linear["epoch"]), 3), "train_minutes": round(float(linear["train_time_s"]) / 60, 1),
    }
    cfg = model_config(model, frossl={"name": name, "dataset": spec.name, "recipe": recipe.to_dict(),
                                      "metrics": summary, "weights_dtype": dtype,
                                      "hardware": config.get("hardware")})
    card = render_card(name, recipe, config, linear, metrics, dtype, measured,
                       entry.hf_hub_id if entry else None)
    images = build_gallery(recipe.dataset, gallery, data_dir, cache_dir) if gallery else None
    with tempfile.TemporaryDirectory() as tmp:
        plots = plot_run(run_dir, Path(tmp) / "plots", title=name)
        extras: Dict[str, Any] = {"README.md": card, "metrics.json": json.dumps(
            {"linear": {k: v for k, v in linear.items()}, "published": summary}, indent=2) + "\n"}
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
    return (f'_entry("{meta["dataset"]}", status=PUBLISHED, sha256="{sha256_file(folder / "model.safetensors")}", '
            f'metrics={json.dumps({k: v for k, v in meta["metrics"].items() if v is not None})})')


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
