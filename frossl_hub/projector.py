"""The MLP projector head the self-supervised objectives see, and FroSSL's widths for it.

Below both ``models`` (the backbones) and ``objectives`` (each objective's widths): torch only,
no timm, so the objective registry builds projectors without registering architectures.
"""
from __future__ import annotations

from typing import Sequence

from torch import nn

__all__ = ["EMBED_DIM", "PROJECTOR_DIMS", "Projector"]

EMBED_DIM = 512  # ResNet18's pooled feature width
PROJECTOR_DIMS = (2048, 2048, 1024)  # the paper's FroSSL projector: 512 -> 2048 -> 2048 -> 1024


class Projector(nn.Sequential):
    """MLP projector: (Linear, BN, ReLU) for each hidden layer, then a plain Linear."""

    def __init__(self, in_dim: int = EMBED_DIM, dims: Sequence[int] = PROJECTOR_DIMS) -> None:
        if not dims or any(int(d) < 1 for d in dims):
            raise ValueError(f"projector dims must be positive integers, got {list(dims)}")
        layers = []
        prev = in_dim
        for hidden in dims[:-1]:
            layers += [nn.Linear(prev, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True)]
            prev = hidden
        layers.append(nn.Linear(prev, dims[-1]))
        super().__init__(*layers)
        self.out_dim = int(dims[-1])
