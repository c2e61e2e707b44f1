"""The published folder of a transfer: timm-loadable weights with the folder's class names,
``transfer.json`` and a model card stating the parent, the data, the mode and the results."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Optional

import torch

from frossl_hub.hub import model_config, save_pretrained

from .shots import format_table

__all__ = ["TRANSFER_NAME", "check_out", "render_card", "publish"]

TRANSFER_NAME = "transfer.json"  # the run's record: parent, data, mode, the shots table


def check_out(out: Path, overwrite: bool) -> None:
    """Refuse an existing non-empty OUT unless ``overwrite`` (before any work is done)."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder; choose another --out.")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} already exists and is not empty; pass --overwrite to replace it.")


def _pct(x: Optional[float]) -> str:
    return "not measured (no val split)" if x is None else f"{100 * x:.2f}%"


def _front_matter(record: Dict[str, Any]) -> str:
    from huggingface_hub import ModelCardData

    from ..cards import CARD_TAGS, base_model_of

    data: Dict[str, Any] = dict(library_name="timm", license="apache-2.0",
                                pipeline_tag="image-classification")
    base = base_model_of(record["name"], record["parent"]["name"])
    if base:
        data["base_model"] = base
    return ModelCardData(tags=["image-classification", "transfer-learning", *CARD_TAGS], **data).to_yaml()


def render_card(record: Dict[str, Any]) -> str:
    """The model card of a transfer (Markdown with Hub front matter)."""
    parent, images, published = record["parent"], record["images"], record["published"]
    classes = record["classes"]
    shown = ", ".join(f"`{c}`" for c in classes[:20]) + (f" … ({len(classes) - 20} more)" if len(classes) > 20 else "")
    mode = ("linear: a linear head on the frozen backbone's features" if record["mode"] == "linear"
            else "finetune: the whole backbone and a new head trained together")
    held = record["held_out"] or "no val split (--val-fraction 0)"
    lines = [
        "---", _front_matter(record).strip(), "---", "",
        f"# {record['name']}", "",
        f"An image classifier for {len(classes)} classes, transferred with `python -m train.transfer` "
        f"from `{parent['name']}` (weights sha256 `{parent['sha256']}`, {parent['source']}).", "",
        f"- **Mode:** {mode}.",
        f"- **Data:** the folder `{record['data_folder']}`: {len(classes)} classes ({shown}); "
        f"{images['train']:,} training images, {images['val']:,} val images ({held}); "
        f"{images['unreadable']} unreadable file(s) left out.",
        f"- **Input:** {record['image_size']}×{record['image_size']} px, the parent's preprocessing "
        f"(it was trained at {parent['image_size']} px); weights stored as {record['dtype']}.",
        "- **Trained on:** " + ("every training image" if published["shots"] == "all" else
                                f"{published['shots']} image(s) per class (the first seeded draw)") + ".",
        f"- **Val top-1:** {_pct(published.get('top1'))}; **val top-5:** {_pct(published.get('top5'))}"
        + (" (with the weights as stored)" if record["dtype"] != "float32" else "") + ".", "",
        "## Few-shot results", "",
        "Each k images per class drawn with seeds, fitted, and evaluated on the full val split "
        "(mean ± std over the draws):", "",
        format_table(record["shots"]), "",
        "## Use", "",
        "```python", "import frossl_hub", "",
        "model = frossl_hub.load(\"PATH\")  # this folder; model.pretrained_cfg[\"label_names\"]",
        "```", "",
        "Serve it with `python -m serve --model PATH`: `/v1/predictions` answers with these class names.", "",
    ]
    return "\n".join(lines)


def publish(out: Path, model: torch.nn.Module, record: Dict[str, Any], dtype: str,
            overwrite: bool) -> Path:
    """Write OUT atomically (``save_pretrained``): weights, config.json with ``label_names``,
    the card and transfer.json."""
    published = record["published"]
    metrics = {"val_top1": published.get("top1"), "val_top5": published.get("top5")}
    meta = {"name": record["name"], "dataset": "folder", "weights_dtype": dtype,
            "metrics": {k: round(v, 4) for k, v in metrics.items() if v is not None},
            "transfer": {k: record[k] for k in ("mode", "parent", "images", "image_size", "held_out")}}
    config = model_config(model, frossl=meta)
    extras: Dict[str, Any] = {"README.md": render_card(record),
                              TRANSFER_NAME: json.dumps(record, indent=2, ensure_ascii=False) + "\n"}
    return save_pretrained(model.state_dict(), out, config, dtype=dtype, extra_files=extras,
                           overwrite=overwrite)

