"""Model cards: the measured card of a published run, and `python -m train.cards`, which
regenerates model_cards/<name>.md for every catalog model.

Front matter goes through ``huggingface_hub.ModelCardData`` / ``EvalResult``, so it is
the metadata the Hub expects. Published models get the card that ships with their
weights (bundled folder or $FROSSL_HUB_DIR); models not trained yet get a card that says
so and gives the exact command that produces them. Tests check the committed cards equal
what this generates.
"""
from __future__ import annotations

import argparse
import os
import string
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import torch

from frossl_hub._io import atomic_write
from frossl_hub.catalog import CATALOG, CatalogEntry
from frossl_hub.hub import ModelNotFoundError, resolve
from frossl_hub.models import pretrained_cfg_for
from frossl_hub.specs import DatasetSpec, get_dataset_spec
from frossl_hub.stems import get_stem

from .recipes import Recipe, get_recipe

__all__ = ["CARD_TEMPLATE", "CARDS_DIR", "CARD_TAGS", "front_matter", "render_card", "recipe_command",
           "card_for", "generate_cards", "main"]

CARD_TEMPLATE = Path(__file__).resolve().parents[1] / "model_cards" / "template.md"
CARDS_DIR = CARD_TEMPLATE.parent
CARD_TAGS = ("image-feature-extraction", "self-supervised-learning", "frossl", "timm", "resnet18")
PROBE_TASK = "Linear probe (frozen backbone)"


def front_matter(name: Optional[str] = None, spec: Optional[DatasetSpec] = None,
                 metrics: Optional[Dict[str, float]] = None, base_model: Optional[str] = None) -> str:
    """The card's YAML front matter (without the ``---`` lines), via ``ModelCardData``.

    Args:
        name: model name, for the model-index (with ``metrics``).
        spec: the data set the metrics were measured on.
        metrics: metric name -> accuracy in percent; None for a card without results.
        base_model: the model this one was trained from (``--init-from``).
    """
    from huggingface_hub import EvalResult, ModelCardData

    tags = list(CARD_TAGS)
    data: Dict[str, Any] = dict(library_name="timm", license="apache-2.0")
    if metrics is not None and spec is not None:
        tags = ["image-classification", *tags]
        data.update(pipeline_tag="image-classification", model_name=name, eval_results=[
            EvalResult(task_type="image-classification", task_name=PROBE_TASK,
                       dataset_type=spec.hf_dataset or spec.name, dataset_name=spec.title,
                       dataset_split=spec.eval_split, metric_type="accuracy", metric_name=metric,
                       metric_value=value)
            for metric, value in metrics.items()])
        data["datasets"] = [spec.hf_dataset] if spec.hf_dataset else []
    if base_model:
        data["base_model"] = base_model
    return ModelCardData(tags=tags, **data).to_yaml()


def recipe_command(recipe: Recipe, data_dir: str = "DATA", out: str = "RUN_DIR") -> str:
    """The `python -m train` command line that reproduces ``recipe``."""
    base = get_recipe(recipe.dataset, recipe.method).flat()
    parts = ["python -m train", f"--dataset {recipe.dataset}", f"--data-dir {data_dir}", f"--out {out}"]
    if recipe.method != "frossl":
        parts.append(f"--method {recipe.method}")
    for name, value in recipe.flat().items():
        if name in ("dataset", "method") or value == base[name] or value is None:
            continue
        shown = " ".join(str(v) for v in value) if isinstance(value, (tuple, list)) else str(value)
        parts.append(f"--{name.replace('_', '-')} {shown}")
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


def _budget_note(recipe: Recipe, linear: Dict[str, Any]) -> str:
    paper = get_recipe(recipe.dataset)
    done = float(linear.get("epoch", 0.0))
    fraction = done / paper.epochs if paper.epochs else 0
    return (f"This run covers {done:.2f} of the paper's {paper.epochs:g} epochs "
            f"({100 * fraction:.2f}% of its recipe)" + (
                ": a small compute budget, so the numbers are far from the paper's."
                if fraction < 0.5 else "."))


def _limitations(spec: DatasetSpec, budget_note: str) -> str:
    return "\n".join([
        f"- Pretrained on {spec.title} only; features transfer best to images like it "
        f"({spec.image_size}×{spec.image_size}, {'greyscale' if spec.in_chans == 1 else 'colour'}).",
        f"- {budget_note}",
        "- The linear-probe head is fitted on the official train split and reported on the "
        f"{spec.eval_split} split; hyper-parameters were chosen on a held-out tenth of train.",
        "- Not evaluated for robustness, fairness or out-of-distribution inputs.",
    ])


def _result_values(linear: Dict[str, Any], measured: Dict[str, float], last_eval: Dict[str, Any],
                   dtype: str) -> Dict[str, Any]:
    """The card's Results section: what the probe, kNN and online probe measured."""
    random = linear.get("random_init")
    return {
        "weights_dtype": dtype,
        "probe_top1": _pct(measured["top1"]),
        "probe_top5": _pct(measured["top5"]),
        "knn_top1": _pct(linear["knn_top1"]),
        "random_top1": f"{_pct(random['top1'])} %" if random else "not measured",
        "probe_protocol": ("features cached once, linear classifier fitted for 100 epochs, weight decay "
                           f"{linear.get('weight_decay')} picked on a held-out tenth of train"
                           if linear.get("protocol") == "fast" else "the paper's 100-epoch protocol"),
        "online_top1": _pct(last_eval.get("online_top1")),
    }


def _training_values(recipe: Recipe, config: Dict[str, Any], linear: Dict[str, Any]) -> Dict[str, Any]:
    """The card's Training section: architecture, objective, optimiser, budget, command."""
    paper = get_recipe(recipe.dataset)
    return {
        "architecture": recipe.architecture,
        "stem": get_stem(recipe.architecture).description,
        "num_views": recipe.num_views,
        "invariance_weight": recipe.invariance_weight,
        "projector": " → ".join(str(d) for d in recipe.projector),
        "lars_eta": recipe.lars_eta,
        "momentum": recipe.momentum,
        "lr": f"{recipe.lr():g}",
        "base_lr": recipe.base_lr,
        "batch_size": recipe.batch_size,
        "weight_decay": recipe.weight_decay,
        "warmup_epochs": f"{recipe.warmup_epochs:g}",
        "epochs_done": f"{float(linear.get('epoch', 0.0)):.2f}",
        "steps": linear.get("step"),
        "epochs_planned": f"{recipe.epochs:g}",
        "train_minutes": f"{float(linear.get('train_time_s', 0)) / 60:.1f}",
        "wall_minutes": f"{float(linear.get('wall_time_s', linear.get('train_time_s', 0))) / 60:.1f}",
        "hardware": config.get("hardware", "unknown"),
        "torch_version": config.get("torch", torch.__version__),
        "command": recipe_command(recipe),
        "paper_command": recipe_command(paper),
        "paper_epochs": f"{paper.epochs:g}",
    }


def render_card(name: str, recipe: Recipe, config: Dict[str, Any], linear: Dict[str, Any],
                metrics: Dict[str, List[Dict[str, Any]]], dtype: str,
                measured: Dict[str, float]) -> str:
    """The model card (YAML front matter + markdown) from a run's measured outputs."""
    spec = get_dataset_spec(recipe.dataset)
    evals = metrics.get("eval", [])
    cfg = pretrained_cfg_for(spec)
    budget_note = _budget_note(recipe, linear)
    values = {
        "front_matter": front_matter(name, spec, {
            "Linear-probe top-1": round(100 * measured["top1"], 2),
            "Linear-probe top-5": round(100 * measured["top5"], 2),
            "kNN top-1 (k=20)": round(100 * linear["knn_top1"], 2)}),
        "name": name,
        "dataset_title": spec.title,
        "train_images": f"{config.get('num_pretrain_images', 0):,}",
        "num_classes": spec.num_classes,
        "data_note": _data_note(recipe, config),
        "eval_split": spec.eval_split,
        **_result_values(linear, measured, evals[-1] if evals else {}, dtype),
        **_training_values(recipe, config, linear),
        "budget_note": budget_note,
        "input_size": tuple([spec.in_chans, spec.image_size, spec.image_size]),
        "mean": tuple(spec.mean),
        "std": tuple(spec.std),
        "interpolation": cfg["interpolation"],
        "crop_pct": cfg["crop_pct"],
        "limitations": _limitations(spec, budget_note),
    }
    if not CARD_TEMPLATE.is_file():
        raise FileNotFoundError(f"model card template missing: {CARD_TEMPLATE}")
    return string.Template(CARD_TEMPLATE.read_text(encoding="utf-8")).substitute(values)


# ---------------------------------------------------------------------------------------------
# the catalog's cards


def _unpublished_card(entry: CatalogEntry) -> str:
    spec = entry.spec
    recipe = get_recipe(entry.dataset)
    command = recipe_command(recipe, data_dir=f"/data/{spec.name}", out=f"runs/{spec.name}")
    return f"""---
{front_matter()}
---

# {entry.name}

**Status: {entry.status}.** No weights have been published for this model yet, so this card
has no measured numbers.

A ResNet18 (`{entry.architecture}`, timm name `{entry.timm_name}`) pretrained with FroSSL
([arXiv:2310.02903](https://arxiv.org/abs/2310.02903)) on {spec.title}
({spec.in_chans}×{spec.image_size}×{spec.image_size} inputs, {spec.num_classes} classes,
evaluated on the {spec.eval_split} split).

## How to produce it

The paper's recipe ({recipe.epochs:g} epochs, batch {recipe.batch_size}, LARS lr
{recipe.base_lr} × batch/256, invariance weight {recipe.invariance_weight}):

```bash
{command}
```

`python -m train` runs pretraining, the linear probe and publishing; the published folder
(`runs/{spec.name}/published`) then loads with
`frossl_hub.load("runs/{spec.name}/published")` and gets its own measured card.
"""


def _link_plots(card: str, folder: Path, card_dir: Path) -> str:
    """Point the card's ``plots/...`` images at the weights folder, as seen from ``card_dir``."""
    rel = Path(os.path.relpath(folder / "plots", card_dir)).as_posix()
    return card.replace("](plots/", f"]({rel}/")


def card_for(entry: CatalogEntry, card_dir: Optional[Path] = None) -> str:
    """The card of one catalog model: its shipped card when published, else how to make it.
    With ``card_dir``, the shipped card's plot links are rewritten to work from there."""
    if entry.has_weights:
        try:
            folder = resolve(entry.name, check=False).folder
        except ModelNotFoundError:
            folder = None
        if folder is not None and (folder / "README.md").is_file():
            card = (folder / "README.md").read_text(encoding="utf-8")
            return card if card_dir is None else _link_plots(card, folder, Path(card_dir))
    return _unpublished_card(entry)


def generate_cards(out_dir: Path = CARDS_DIR) -> Dict[str, Path]:
    """Write one card per catalog model into ``out_dir``; returns {name: path}."""
    written = {}
    for name, entry in sorted(CATALOG.items()):
        text = card_for(entry, card_dir=Path(out_dir).resolve())
        path = Path(out_dir) / f"{name}.md"
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            atomic_write(path, lambda p, t=text: p.write_text(t, encoding="utf-8"))
        written[name] = path
    return written


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.cards", description=__doc__)
    parser.add_argument("--out", type=Path, default=CARDS_DIR)
    args = parser.parse_args(argv)
    for name, path in generate_cards(args.out).items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
