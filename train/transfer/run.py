"""One transfer, end to end: check every input, fit (linear or finetune) for each k of
``--shots``, publish OUT. Nothing is written to OUT unless all of it can be."""
from __future__ import annotations

import copy
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch

from frossl_hub.hub import DTYPES
from frossl_hub.runtime import resolve_device

from ..linear import evaluate_head, fit_probe_head
from .data import TransferData, TransferError, check_readable, check_shots, parse_shots, scan_labelled
from .features import folder_features
from .output import check_out, publish
from .parent import Parent, classifier, load_parent
from .shots import run_shots

__all__ = ["MODES", "TransferOptions", "run_transfer"]

MODES = ("linear", "finetune")


@dataclass(frozen=True)
class TransferOptions:
    """What ``python -m train.transfer`` was asked (its flags)."""

    model: str
    data_dir: Path
    out: Path
    mode: str = "linear"
    shots: str = "all"
    image_size: Optional[int] = None
    val_fraction: Optional[float] = None  # None: DIR/val, else 10% of each class
    dtype: str = "float32"
    overwrite: bool = False
    seed: int = 0
    device: str = "auto"
    workers: int = 4
    progress: bool = True
    name: Optional[str] = None
    # finetune only
    epochs: int = 10
    batch_size: int = 64
    lr: float = 0.01
    backbone_lr_scale: float = 0.1
    warmup_epochs: int = 1
    resume: bool = False
    max_steps: Optional[int] = None  # per run; the schedule still spans `epochs`


def _default_name(parent: Parent, data: TransferData) -> str:
    folder = "".join(c if c.isalnum() else "-" for c in data.root.resolve().name.lower()).strip("-")
    return f"{parent.name}-{folder or 'folder'}"


def _prepare(opts: TransferOptions) -> Tuple[List[Optional[int]], Parent, TransferData]:
    """Every check that needs no decoding, cheapest first."""
    if opts.mode not in MODES:
        raise TransferError(f"--mode must be one of {', '.join(MODES)}, got {opts.mode!r}")
    if opts.dtype not in DTYPES:
        raise TransferError(f"--dtype must be one of {', '.join(DTYPES)}, got {opts.dtype!r}")
    check_out(Path(opts.out), opts.overwrite)
    shots = parse_shots(opts.shots)
    data = scan_labelled(opts.data_dir, opts.val_fraction, opts.seed)
    check_shots(shots, data)
    parent = load_parent(opts.model, opts.image_size)
    return shots, parent, data


def _linear(opts: TransferOptions, shots: List[Optional[int]], parent: Parent, data: TransferData,
            device: torch.device) -> Tuple[List[Dict[str, Any]], Dict[str, Any], Dict[str, torch.Tensor],
                                           Dict[str, int]]:
    """Cached frozen features, a probe head per (k, draw); the published run's head."""
    (train, val), missing = folder_features(parent.model, data.root, [data.train, data.val],
                                            opts.workers, opts.progress)
    (train_x, train_y), (val_x, val_y) = train, val
    check_readable(data, train_y)
    check_shots(shots, data, train_y)
    classes = len(data.classes)

    def fit(index: torch.Tensor, tag: str) -> Dict[str, Any]:
        head, wd = fit_probe_head(train_x[index], train_y[index], classes, device, opts.seed)
        head = {k: v.cpu() for k, v in head.items()}
        acc = evaluate_head(head, val_x, val_y) if len(val_y) else {1: None, 5: None}
        return {"top1": acc[1], "top5": acc[5], "weight_decay": wd, "train_images": len(index), "head": head}

    rows, published = run_shots(train_y, shots, opts.seed, fit)
    head = published.pop("head")
    if opts.dtype != "float32" and len(val_y):  # the numbers of the weights as stored
        rounded = copy.deepcopy(parent.model)
        rounded.load_state_dict({k: v.to(DTYPES[opts.dtype]).to(v.dtype) for k, v in rounded.state_dict().items()})
        (_, (vx, vy)), _ = folder_features(rounded, data.root, [[], data.val], opts.workers, opts.progress)
        acc = evaluate_head({k: v.to(DTYPES[opts.dtype]).float() for k, v in head.items()}, vx, vy)
        published.update(top1=acc[1], top5=acc[5])
    return rows, published, head, {"train": len(train_y), "val": len(val_y), "unreadable": len(missing)}


def run_transfer(opts: TransferOptions) -> Dict[str, Any]:
    """Transfer ``opts.model`` to the labelled folder ``opts.data_dir``; publish ``opts.out``.

    Returns the record written to OUT/transfer.json.

    Raises:
        DatasetError: the folder (one class, a class without a readable image...).
        TransferError: --shots, --image-size, --mode or --dtype out of range.
        ModelNotFoundError, ChecksumError: --model, as ``frossl_hub.load``.
        FileExistsError: OUT is not empty and ``overwrite`` is False.
    """
    t0 = time.monotonic()
    shots, parent, data = _prepare(opts)
    device = resolve_device(opts.device)
    if opts.mode == "linear":
        rows, published, head, images = _linear(opts, shots, parent, data, device)
        backbone = parent.model.state_dict()
    else:
        from .finetune import finetune

        rows, published, state, images = finetune(opts, shots, parent, data, device)
        head = {k: v for k, v in state.items() if k.startswith("fc.")}
        backbone = {k: v for k, v in state.items() if not k.startswith("fc.")}
    size = int(parent.model.pretrained_cfg["input_size"][-1])
    record: Dict[str, Any] = {
        "name": opts.name or _default_name(parent, data), "mode": opts.mode, "parent": parent.record(),
        "data_folder": data.root.resolve().name, "classes": list(data.classes),
        "images": images,
        "held_out": data.held_out, "image_size": size, "dtype": opts.dtype, "seed": opts.seed,
        "shots": rows, "published": published, "seconds": None,
    }
    model = classifier(parent, data.classes, backbone, head)
    record["seconds"] = round(time.monotonic() - t0, 1)
    publish(Path(opts.out), model, record, opts.dtype, opts.overwrite)
    if opts.mode == "finetune" and not published.get("stopped_at_max_steps"):  # done with the checkpoints
        from .finetune import work_dir

        shutil.rmtree(work_dir(Path(opts.out)), ignore_errors=True)
    return record
