"""A loaded timm model's linear-probe head: how many classes it has.

Below both ``backends`` (the runners) and ``onnx_export`` (the exported graph's outputs), which
each need it, so neither imports the other for it.
"""
from __future__ import annotations

import torch

__all__ = ["head_classes"]


def head_classes(model: torch.nn.Module) -> int:
    """Classes of a timm model's linear-probe head; 0 for an embedding-only model."""
    return int(getattr(model, "num_classes", 0) or 0)
