"""What the trainer optimises: the SSL model, its loss, LARS and one optimisation step.

The public pieces the benchmarks call too, so they measure the code users run:
``build_training`` (model, loss, optimiser, scaler, DDP, compile), ``amp_dtype_for``,
``set_learning_rate`` and ``optimization_step``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from frossl_hub.losses import FroSSLLoss
from frossl_hub.models import create_backbone
from frossl_hub.objectives import get_objective
from frossl_hub.projector import Projector

from .optim import LARS, param_groups, warmup_cosine
from .recipes import Recipe

__all__ = ["SSLModel", "Training", "build_model", "build_training", "amp_dtype_for",
           "set_learning_rate", "optimization_step", "PRECISIONS"]

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}  # autocast dtypes


class SSLModel(nn.Module):
    """Backbone + projector + online classifier; each view is a separate forward pass."""

    def __init__(self, backbone: nn.Module, projector: nn.Module, classifier: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.projector = projector
        self.classifier = classifier

    def forward(self, views: List[Tensor]) -> Tuple[List[Tensor], List[Tensor], List[Tensor]]:
        feats, projs, logits = [], [], []
        for view in views:  # per-view BN statistics, as the official code
            f = self.backbone(view)
            feats.append(f)
            projs.append(self.projector(f))
            logits.append(self.classifier(f.detach()))
        return feats, projs, logits


def build_model(recipe: Recipe, in_chans: int, num_classes: int) -> Tuple[SSLModel, nn.Module]:
    """A freshly initialised SSL model (from torch's global RNG) and the recipe's loss."""
    backbone = create_backbone(recipe.architecture, in_chans=in_chans, num_classes=0)
    projector = Projector(backbone.num_features, recipe.projector)
    classifier = nn.Linear(backbone.num_features, num_classes)
    if recipe.method == "frossl":
        loss_fn: nn.Module = FroSSLLoss(recipe.invariance_weight, check_finite=False)
    else:
        loss_fn = get_objective(recipe.method).make_loss()
    return SSLModel(backbone, projector, classifier), loss_fn


def amp_dtype_for(precision: str, device: torch.device) -> Optional[torch.dtype]:
    """Autocast dtype of a ``--precision``: ``auto`` is bf16 on CUDA, fp32 (None) on CPU."""
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    if precision not in PRECISIONS:
        raise ValueError(f"unknown --precision {precision!r}: use auto, fp32, bf16 or fp16.")
    return PRECISIONS[precision]


@dataclass
class Training:
    """Everything one optimisation step touches."""

    model: SSLModel  # the bare model: checkpoints and evaluation use it
    module: nn.Module  # what the step runs: the model, wrapped in DDP and/or compiled
    loss_fn: nn.Module
    optimizer: LARS
    scaler: torch.amp.GradScaler
    amp_dtype: Optional[torch.dtype]
    device: torch.device
    with_parts: bool  # the loss returns its parts (FroSSL)


def build_training(recipe: Recipe, in_chans: int, num_classes: int, device: torch.device,
                   amp_dtype: Optional[torch.dtype], world: int = 1, channels_last: bool = True,
                   compile_model: bool = False) -> Training:
    """Model, loss, LARS, grad scaler; DDP across ``world`` processes; ``torch.compile``."""
    model, loss_fn = build_model(recipe, in_chans, num_classes)
    if world > 1 and device.type == "cuda":  # SyncBN is CUDA-only; CPU DDP keeps per-rank BN
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    groups = param_groups({"backbone": model.backbone, "projector": model.projector},
                          recipe.weight_decay, recipe.lr(), model.classifier, recipe.classifier_lr)
    optimizer = LARS(groups, lr=recipe.lr(), momentum=recipe.momentum,
                     weight_decay=recipe.weight_decay, eta=recipe.lars_eta)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    module: nn.Module = model
    if world > 1:
        module = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    if compile_model:
        module = torch.compile(module)
    return Training(model, module, loss_fn, optimizer, scaler, amp_dtype, device,
                    recipe.method == "frossl")


def set_learning_rate(optimizer: torch.optim.Optimizer, step: int, total_steps: int,
                      warmup_steps: int) -> None:
    """Each group's lr for ``step`` of the linear-warmup cosine schedule."""
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * warmup_cosine(step, total_steps, warmup_steps)


def optimization_step(training: Training, views: List[Tensor], labels: Tensor) -> Dict[str, Tensor]:
    """One training step (forward per view, SSL loss + online probe, backward, optimiser).

    Returns detached on-device scalars to log; nothing here reads a value on the host.
    The learning rate is set by the caller (:func:`set_learning_rate`).
    """
    t = training
    with torch.autocast(t.device.type, dtype=t.amp_dtype or torch.float32,
                        enabled=t.amp_dtype is not None):
        _, projs, logits = t.module(views)
    ssl_loss, parts = t.loss_fn(projs, return_parts=True) if t.with_parts else (t.loss_fn(projs), {})
    # online probe on labelled images only (STL-10's unlabeled split has label -1);
    # a sum over a clamped count stays finite when a batch has no labels at all
    labelled = (labels >= 0).sum().clamp_min(1)
    ce = sum(F.cross_entropy(lg.float(), labels, ignore_index=-1, reduction="sum")
             for lg in logits) / (labelled * len(logits))
    t.optimizer.zero_grad(set_to_none=True)
    t.scaler.scale(ssl_loss + ce).backward()
    t.scaler.step(t.optimizer)
    t.scaler.update()
    return {"loss": ssl_loss.detach().float(), "online_ce": ce.detach().float(),
            **{k: v.mean().float() for k, v in parts.items()}}
