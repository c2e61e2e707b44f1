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
from frossl_hub.catalog import CATALOG, CatalogEntry, clean_name
from frossl_hub.hub import ModelNotFoundError, resolve
from frossl_hub.models import pretrained_cfg_for
from frossl_hub.specs import FOLDER, DatasetSpec, get_dataset_spec
from frossl_hub.stems import get_stem

from .card_sections import chain_section, references_section
from .init_from import chain_after, run_history
from .recipes import Recipe, get_recipe

__all__ = ["CARD_TEMPLATE", "CARDS_DIR", "CARD_TAGS", "front_matter", "input_cfg", "render_card", "recipe_command",
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
    elif name is not None:  # a published model without a probe: an embedding model
        data["pipeline_tag"] = "image-feature-extraction"
    if base_model:
        data["base_model"] = base_model
    return ModelCardData(tags=tags, **data).to_yaml()


def recipe_command(recipe: Recipe, data_dir: str = "DATA", out: str = "RUN_DIR",
                   extra: Sequence[str] = ()) -> str:
    """The `python -m train` command line that reproduces ``recipe`` (plus ``extra`` flags)."""
    base = get_recipe(recipe.dataset, recipe.method).flat()
    parts = ["python -m train", f"--dataset {recipe.dataset}", f"--data-dir {data_dir}", f"--out {out}"]
    if recipe.method != "frossl":
        parts.append(f"--method {recipe.method}")
    for name, value in recipe.flat().items():
        if name in ("dataset", "method") or value == base[name] or value is None:
            continue
        if recipe.dataset == FOLDER and name == "crop_size":
            name = "image_size"  # a folder run trains at its --image-size
        shown = " ".join(str(v) for v in value) if isinstance(value, (tuple, list)) else str(value)
        parts.append(f"--{name.replace('_', '-')} {shown}")
    return " \\\n  ".join(parts + list(extra))


def _run_flags(config: Dict[str, Any]) -> List[str]:
    """The flags of a run that are not recipe settings: its parent model and how its folder was read."""
    options = config.get("options", {})
    flags = [f"--init-from {options['init_from']}"] if options.get("init_from") else []
    folder = options.get("folder") or {}
    if config.get("data"):
        defaults = {"labels": "auto", "val_fraction": None, "strict": False, "stream": False}
        for key, default in defaults.items():
            value = folder.get(key, default)
            if value != default:
                flag = f"--{key.replace('_', '-')}"
                flags.append(flag if value is True else f"{flag} {value:g}" if isinstance(value, float)
                             else f"{flag} {value}")
    return flags


def input_cfg(recipe: Recipe, spec: DatasetSpec, **overrides: Any) -> Dict[str, Any]:
    """The published model's timm pretrained cfg: the run's stem and training resolution;
    a folder run's images were decoded as short-side resize + center crop, bicubic."""
    if recipe.dataset == FOLDER:
        overrides = {"crop_pct": 1.0, "interpolation": "bicubic", **overrides}
    return pretrained_cfg_for(spec, recipe.architecture, recipe.crop_size, **overrides)


def _pct(x: Optional[float]) -> str:
    return "–" if x is None else f"{100 * x:.2f}"


def _data_note(recipe: Recipe, config: Dict[str, Any], spec: DatasetSpec) -> str:
    """What the reader must know about the data (and where the weights started from)."""
    notes = []
    data_dir = str(config.get("options", {}).get("data_dir") or "")
    jpeg = recipe.dataset == "cifar10" and (
        "jpeg" in data_dir.lower() or (Path(data_dir) / "train").is_dir())
    if jpeg:
        notes.append("**Data note:** trained and evaluated on the CIFAR-10 JPEG re-encoding (quality ≈ 75, "
                     "all 60,000 images), not the official lossless release; expect numbers a point or two "
                     "below what the original files would give.")
    data = config.get("data")
    if data:
        labels = (f"{spec.num_classes} class folders" if data["labelled"] else "no class folders: no labels")
        held = (f"; held out: {data['val_images']:,} images ({data['held_out']})" if data["val_images"] else "")
        notes.append(
            f"**Data:** {data['train_images']:,} training images in the folder `{Path(data['folder']).name}` "
            f"({labels}{held}), decoded at {spec.image_size}×{spec.image_size} px (short side resized, "
            f"center crop); {data['skipped']} unreadable file(s) left out. The mean {tuple(spec.mean)} and "
            f"std {tuple(spec.std)} were measured on a sample of the training images; they are the "
            "model's preprocessing.")
    parent = config.get("init_from")
    if parent:
        source = "bundled with frossl-hub" if parent["source"] == "bundled" else parent["source"]
        restem = ("" if parent.get("architecture", recipe.architecture) == recipe.architecture else
                  f" (a `{parent['architecture']}`, {get_stem(parent['architecture']).description}; "
                  f"this run's stem: {get_stem(recipe.architecture).description})")
        notes.append(f"**Initialised from** `{parent['name']}` ({source}, weights sha256 "
                     f"`{parent['sha256']}`): its backbone{restem}; the projector started fresh.")
    return "\n\n".join(notes)


def _chain(config: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """The parent's training in all, when this run was started ``--init-from`` a model that says."""
    return (config.get("init_from") or {}).get("chain")


def _chain_total(config: Dict[str, Any], done: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """The chain's totals with this run (``done``: its linear.json or progress) added; None
    for a run not started ``--init-from`` a model that says how long it trained."""
    chain = _chain(config)
    if not chain:
        return None
    return chain_after(chain, float(done.get("train_time_s", 0)) / 60, float(done.get("epoch", 0.0)))


def _chain_note(config: Dict[str, Any], done: Dict[str, Any]) -> str:
    """The training row's tail for a chained run: the parent's budget and the total."""
    total = _chain_total(config, done)
    if total is None:
        return ""
    chain = _chain(config)
    return (f"; after `{config['init_from']['name']}` ({chain['runs']} run(s), "
            f"{chain['train_minutes']:.1f} training minutes, {chain['epochs']:.2f} epochs): "
            f"**{total['train_minutes']:.1f} training minutes and {total['epochs']:.2f} "
            f"epochs in all**, over {total['runs']} chained runs")


def _budget_note(recipe: Recipe, linear: Dict[str, Any], config: Dict[str, Any]) -> str:
    done = float(linear.get("epoch", 0.0))
    if recipe.dataset == FOLDER:
        return f"This run covers {done:.2f} of its {recipe.epochs:g}-epoch schedule."
    paper = get_recipe(recipe.dataset)
    total = _chain_total(config, linear)
    who = "This run" if total is None else f"This run and its {total['runs'] - 1} parent run(s)"
    if total is not None:
        done = total["epochs"]
    fraction = done / paper.epochs if paper.epochs else 0
    return (f"{who} cover{'s' if total is None else ''} {done:.2f} of the paper's {paper.epochs:g} epochs "
            f"({100 * fraction:.2f}% of its recipe)" + (
                ": a small compute budget, so the numbers are far from the paper's."
                if fraction < 0.5 else "."))


def _limitations(spec: DatasetSpec, budget_note: str, probed: Optional[str], folder: bool,
                 crop_size: int) -> str:
    """``probed``: None when the run has a probe, else why it has none."""
    if probed is not None:
        probe = f"- Not measured: {probed}; there is no kNN, online-probe or linear-probe accuracy."
    elif folder:
        probe = ("- The linear-probe head is fitted on the training images and reported on the held-out "
                 "split; hyper-parameters were chosen on a held-out tenth of the training images.")
    else:
        probe = ("- The linear-probe head is fitted on the official train split and reported on the "
                 f"{spec.eval_split} split; hyper-parameters were chosen on a held-out tenth of train.")
    return "\n".join([
        f"- Pretrained on {spec.title} only; features transfer best to images like it "
        f"({spec.image_size}×{spec.image_size}, {'greyscale' if spec.in_chans == 1 else 'colour'})"
        + (f", trained and served at {crop_size}×{crop_size}." if crop_size != spec.image_size else "."),
        f"- {budget_note}",
        probe,
        "- Not evaluated for robustness, fairness or out-of-distribution inputs.",
    ])


def _results(spec: DatasetSpec, linear: Optional[Dict[str, Any]], measured: Optional[Dict[str, float]],
             last_eval: Dict[str, Any], dtype: str, reason: Optional[str]) -> str:
    """The card's Results section: the probe, kNN and online probe, or why they are missing."""
    if linear is None or measured is None:
        rank = last_eval.get("effective_rank_backbone")
        tail = (f" Measured instead: the effective rank of the backbone's features at the end of "
                f"pretraining, {rank:.1f} of 512 (spectra below)." if rank is not None else "")
        return f"## Results\n\nNot measured: {reason}, so this run has no accuracy to report.{tail}"
    random = linear.get("random_init")
    protocol = ("features cached once, linear classifier fitted for 100 epochs, weight decay "
                f"{linear.get('weight_decay')} picked on a held-out tenth of train"
                if linear.get("protocol") == "fast" else "the paper's 100-epoch protocol")
    random_top1 = f"{_pct(random['top1'])} %" if random else "not measured"
    return (f"## Results (measured, {spec.eval_split} split of {spec.title})\n\n"
            "| evaluation | top-1 | top-5 |\n|---|---|---|\n"
            f"| linear probe on frozen features ({dtype} weights as published) | {_pct(measured['top1'])} % "
            f"| {_pct(measured['top5'])} % |\n"
            f"| weighted kNN (k=20, cosine) | {_pct(linear['knn_top1'])} % | – |\n"
            f"| same probe on an untrained ResNet18 of the same architecture | {random_top1} | – |\n\n"
            f"Linear probe: {protocol}. Online linear probe at the end of pretraining: "
            f"{_pct(last_eval.get('online_top1'))} %.\n\n"
            "![accuracy during pretraining](plots/accuracy.png)")


def _training_values(recipe: Recipe, config: Dict[str, Any], done: Dict[str, Any]) -> Dict[str, Any]:
    """The card's Training section: architecture, objective, optimiser, budget, command."""
    paper_section = ""
    if recipe.dataset != FOLDER:
        paper = get_recipe(recipe.dataset)
        paper_section = (f"The paper's full recipe for this data set ({paper.epochs:g} epochs):\n\n"
                         f"```bash\n{recipe_command(paper)}\n```\n\n")
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
        "epochs_done": f"{float(done.get('epoch', 0.0)):.2f}",
        "steps": done.get("step"),
        "epochs_planned": f"{recipe.epochs:g}",
        "train_minutes": f"{float(done.get('train_time_s', 0)) / 60:.1f}",
        "wall_minutes": f"{float(done.get('wall_time_s', done.get('train_time_s', 0))) / 60:.1f}",
        "chain_note": _chain_note(config, done),
        "chain_section": chain_section(run_history(config.get("init_from"), recipe.architecture,
                                                   float(done.get("epoch", 0.0)),
                                                   float(done.get("train_time_s", 0)) / 60)),
        "hardware": config.get("hardware", "unknown"),
        "torch_version": config.get("torch", torch.__version__),
        "command": recipe_command(recipe, extra=_run_flags(config)),
        "paper_section": paper_section,
    }


def _head_values(spec: DatasetSpec, probed: bool) -> Dict[str, str]:
    """How the card talks about the model's head: a linear probe, or none (embeddings only)."""
    if probed:
        return {"head_note": f"plus a linear-probe head\n(`fc`, {spec.num_classes} classes) fitted on the "
                             "frozen features",
                "head_use": f"logits over the {spec.num_classes} classes", "route": "predictions"}
    return {"head_note": "with no classification head\n(it gives 512-d embeddings)",
            "head_use": "512-d embeddings: no classification head", "route": "embeddings"}


def render_card(name: str, recipe: Recipe, config: Dict[str, Any], linear: Optional[Dict[str, Any]],
                metrics: Dict[str, List[Dict[str, Any]]], dtype: str,
                measured: Optional[Dict[str, float]], spec: Optional[DatasetSpec] = None,
                progress: Optional[Dict[str, Any]] = None, no_probe: Optional[str] = None) -> str:
    """The model card (YAML front matter + markdown) from a run's measured outputs.

    ``linear``/``measured`` are None for a run without a probe (``no_probe`` says why);
    ``progress`` (epoch, step, times) then comes from the checkpoint. ``spec`` defaults to
    the catalog's spec of ``recipe.dataset`` (a folder run passes its measured one).
    """
    spec = spec or get_dataset_spec(recipe.dataset)
    evals = metrics.get("eval", [])
    cfg = input_cfg(recipe, spec)
    done = linear if linear is not None else (progress or {})
    budget_note = _budget_note(recipe, done, config)
    scores = None if linear is None or measured is None else {
        "Linear-probe top-1": round(100 * measured["top1"], 2),
        "Linear-probe top-5": round(100 * measured["top5"], 2),
        "kNN top-1 (k=20)": round(100 * linear["knn_top1"], 2)}
    parent = (config.get("init_from") or {}).get("name")
    values = {
        "front_matter": front_matter(name, spec, scores, base_model=base_model_of(name, parent)),
        "name": name,
        "dataset_title": spec.title,
        "train_images": f"{config.get('num_pretrain_images', 0):,}",
        "data_note": _data_note(recipe, config, spec),
        "results": _results(spec, linear, measured, evals[-1] if evals else {}, dtype, no_probe),
        **_head_values(spec, scores is not None),
        **_training_values(recipe, config, done),
        "budget_note": budget_note,
        "references": references_section(recipe.dataset),
        "input_size": tuple([spec.in_chans, recipe.crop_size, recipe.crop_size]),
        "mean": tuple(spec.mean),
        "std": tuple(spec.std),
        "interpolation": cfg["interpolation"],
        "crop_pct": cfg["crop_pct"],
        "limitations": _limitations(spec, budget_note, None if scores else no_probe,
                                    recipe.dataset == FOLDER, recipe.crop_size),
    }
    if not CARD_TEMPLATE.is_file():
        raise FileNotFoundError(f"model card template missing: {CARD_TEMPLATE}")
    return string.Template(CARD_TEMPLATE.read_text(encoding="utf-8")).substitute(values)


def base_model_of(name: str, parent: Optional[str]) -> Optional[str]:
    """The card's ``base_model``: the Hub id of the model ``name`` was trained from, or None
    when that is not on the Hub or is ``name``'s own earlier version (a chain published under
    one name): a model is not its own base model, and the card's text states the chain."""
    if not parent:
        return None
    if parent.startswith("hf-hub:"):
        parent_id = parent[len("hf-hub:"):]
    else:
        entry = CATALOG.get(clean_name(parent))
        parent_id = entry.hf_hub_id if entry is not None else None
    own = CATALOG.get(clean_name(name))
    return None if own is not None and parent_id == own.hf_hub_id else parent_id


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
