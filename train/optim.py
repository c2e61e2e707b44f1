"""LARS with solo-learn's semantics, parameter groups, and the warmup-cosine schedule."""
from __future__ import annotations

import math
from typing import Any, Callable, Dict, Iterable, List, Optional

import torch
from torch import nn

__all__ = ["LARS", "param_groups", "warmup_cosine"]


class LARS(torch.optim.Optimizer):
    """Layer-wise adaptive rate scaling on top of SGD with momentum [0].

    For parameters with ``lars=True`` the update is ``(g + wd·p)·min(η‖p‖/(‖g‖ + wd‖p‖), lr)/lr``
    (the trust ratio clipped so the effective rate never exceeds ``lr``), as solo-learn's
    LARS with ``clip_lr=True``. Groups with ``lars=False`` (biases, norm layers, the online
    classifier) get plain SGD with momentum and their own weight decay (0 by default).
    Computed without host synchronisation.

    - [0] Large Batch Training of Convolutional Networks, 2017, https://arxiv.org/abs/1708.03888
    """

    def __init__(self, params: Iterable[Any], lr: float, momentum: float = 0.9,
                 weight_decay: float = 0.0, eta: float = 0.02, eps: float = 1e-8) -> None:
        if lr < 0 or momentum < 0 or weight_decay < 0 or eta <= 0:
            raise ValueError(f"invalid LARS settings: lr={lr}, momentum={momentum}, "
                             f"weight_decay={weight_decay}, eta={eta}")
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta, eps=eps,
                        lars=True)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], float]] = None) -> Optional[float]:
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            lr, wd = group["lr"], group["weight_decay"]
            if group["lars"]:
                p_norms = torch._foreach_norm(params)
                g_norms = torch._foreach_norm(grads)
                updates = list(torch._foreach_add(grads, params, alpha=wd)) if wd else list(grads)
                for i, (pn, gn) in enumerate(zip(p_norms, g_norms)):
                    trust = group["eta"] * pn / (gn + wd * pn + group["eps"])
                    if lr > 0:
                        trust = torch.clamp(trust / lr, max=1.0)
                    ok = (pn > 0) & (gn > 0)
                    scale = torch.where(ok, trust, torch.ones_like(trust))
                    # where the norms are zero solo-learn skips both LARS and weight decay
                    base = torch.where(ok, updates[i], grads[i]) if wd else updates[i]
                    updates[i] = base * scale
            else:
                updates = torch._foreach_add(grads, params, alpha=wd) if wd else list(grads)
            if group["momentum"]:
                bufs = []
                for p, u in zip(params, updates):
                    state = self.state[p]
                    if "momentum_buffer" not in state:
                        state["momentum_buffer"] = u.clone()
                    else:
                        state["momentum_buffer"].mul_(group["momentum"]).add_(u)
                    bufs.append(state["momentum_buffer"])
                updates = bufs
            torch._foreach_add_(params, updates, alpha=-lr)
        return loss


def _is_excluded(name: str, param: nn.Parameter) -> bool:
    """Biases and normalisation parameters: no LARS adaptation, no weight decay."""
    return param.ndim <= 1 or name.endswith(".bias")


def param_groups(modules: Dict[str, nn.Module], weight_decay: float, lr: float,
                 classifier: Optional[nn.Module] = None, classifier_lr: float = 0.1) -> List[Dict[str, Any]]:
    """LARS groups: weights (LARS + wd), biases/norms (neither), online classifier (SGD)."""
    decay, no_decay = [], []
    for prefix, module in modules.items():
        for name, param in module.named_parameters():
            if param.requires_grad:
                (no_decay if _is_excluded(f"{prefix}.{name}", param) else decay).append(param)
    groups = [
        dict(params=decay, weight_decay=weight_decay, lars=True, lr=lr, base_lr=lr),
        dict(params=no_decay, weight_decay=0.0, lars=False, lr=lr, base_lr=lr),
    ]
    if classifier is not None:
        groups.append(dict(params=list(classifier.parameters()), weight_decay=0.0, lars=False,
                           lr=classifier_lr, base_lr=classifier_lr))
    return groups


def warmup_cosine(step: int, total_steps: int, warmup_steps: int, start_factor: float = 0.0) -> float:
    """LR factor: per-step linear warmup from ``start_factor`` to 1, then cosine to 0."""
    if total_steps <= 0:
        return 1.0
    if step < warmup_steps:
        return start_factor + (1.0 - start_factor) * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
