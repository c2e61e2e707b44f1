"""Checks shared by the multi-view objectives: a list of V >= 2 equal (batch, dim) tensors."""
from __future__ import annotations

import functools
from typing import Sequence

import torch
from torch import Tensor

__all__ = ["check_views", "compute_dtype"]


def check_views(views: Sequence[Tensor], method: str) -> None:
    """Raise a ValueError naming ``method`` unless ``views`` is V >= 2 equal (N >= 2, D) tensors."""
    if not isinstance(views, (list, tuple)) or len(views) < 2:
        count = len(views) if isinstance(views, (list, tuple)) else type(views).__name__
        raise ValueError(f"{method} needs a list of at least 2 views, got {count}.")
    shapes = [tuple(v.shape) for v in views]
    for shape in shapes:
        if len(shape) != 2:
            raise ValueError(f"each view must be 2-D (batch_size, dim), got shapes {shapes}.")
    if len(set(shapes)) != 1:
        raise ValueError(f"all views must have the same shape, got {shapes}.")
    if shapes[0][0] < 2:
        raise ValueError(f"{method} needs a batch size of at least 2, got {shapes[0][0]}.")


def compute_dtype(views: Sequence[Tensor]) -> torch.dtype:
    """float32 at least (bf16/fp16 inputs are upcast); float64 inputs stay float64."""
    return functools.reduce(torch.promote_types, [v.dtype for v in views], torch.float32)
