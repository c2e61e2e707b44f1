"""The Barlow Twins objective: cross-correlation towards identity, a FroSSL baseline."""
from __future__ import annotations

import itertools
import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._views import check_views, compute_dtype

__all__ = [
    "barlow_twins_loss",
    "barlow_twins_multiview_loss",
    "BarlowTwinsLoss",
    "batch_standardize",
    "cross_correlation",
    "on_diagonal_term",
    "off_diagonal_term",
]

BATCH_NORM_EPS = 1e-5  # F.batch_norm's default, as lightly (and BatchNorm1d in solo-learn)


def _check_hyperparameters(lambda_offdiag: float, scale_loss: float) -> None:
    if not math.isfinite(lambda_offdiag) or lambda_offdiag < 0:
        raise ValueError(f"lambda_offdiag must be a finite number >= 0, got {lambda_offdiag}.")
    if not math.isfinite(scale_loss) or scale_loss <= 0:
        raise ValueError(f"scale_loss must be a finite number > 0, got {scale_loss}.")


def batch_standardize(z: Tensor) -> Tensor:
    """Per-feature zero mean and unit (biased) variance over the batch: affine-free batch norm."""
    return F.batch_norm(z, None, None, weight=None, bias=None, training=True, eps=BATCH_NORM_EPS)


def cross_correlation(a: Tensor, b: Tensor) -> Tensor:
    """D×D cross-correlation ``aᵀb / N`` of two batch-standardised N×D batches."""
    return (a.T @ b) / a.shape[0]


def on_diagonal_term(c: Tensor) -> Tensor:
    """``Σ_i (C_ii − 1)²``: invariance, pulls the diagonal to 1."""
    return (torch.diagonal(c) - 1.0).pow(2).sum()


def off_diagonal_term(c: Tensor) -> Tensor:
    """``Σ_{i≠j} C_ij²``: redundancy reduction, pushes the off-diagonal to 0."""
    d = c.shape[0]
    return c.flatten()[:-1].view(d - 1, d + 1)[:, 1:].pow(2).sum()


def _pair_loss(a: Tensor, b: Tensor, lambda_offdiag: float, scale_loss: float) -> Tensor:
    c = cross_correlation(a, b)
    return scale_loss * (on_diagonal_term(c) + lambda_offdiag * off_diagonal_term(c))


def barlow_twins_multiview_loss(
    views: Sequence[Tensor], lambda_offdiag: float = 0.0051, scale_loss: float = 1.0
) -> Tensor:
    """Barlow Twins loss averaged over the V·(V−1)/2 unordered pairs of V ≥ 2 views.

    Each view is batch-standardised once. The two-view loss is symmetric in its
    arguments, so the average does not depend on the order of the views. For V = 2
    it is :func:`barlow_twins_loss`.

    Args:
        views: V tensors of shape (N, D), projector outputs of the same N images.
        lambda_offdiag: weight λ of the off-diagonal (redundancy reduction) term.
        scale_loss: factor on the whole loss (solo-learn's CIFAR recipe uses 0.1).

    Raises:
        ValueError: for fewer than 2 views, non-2-D or mismatched shapes, a batch
            of one, a negative or non-finite ``lambda_offdiag``, or a ``scale_loss``
            that is not a finite number > 0.
    """
    check_views(views, "Barlow Twins")
    _check_hyperparameters(lambda_offdiag, scale_loss)
    dtype = compute_dtype(views)
    stacked = torch.stack([v.to(dtype) for v in views])  # (V, N, D)
    with torch.autocast(device_type=stacked.device.type, enabled=False):
        standardized = [batch_standardize(z) for z in stacked.unbind(0)]
        pairs = itertools.combinations(range(len(standardized)), 2)
        losses = [
            _pair_loss(standardized[i], standardized[j], lambda_offdiag, scale_loss)
            for i, j in pairs
        ]
        loss = torch.stack(losses).mean()
    return loss


def barlow_twins_loss(
    z_a: Tensor, z_b: Tensor, lambda_offdiag: float = 0.0051, scale_loss: float = 1.0
) -> Tensor:
    """Barlow Twins loss of two views, each (batch_size, dim).

    ``scale_loss · (Σ_i (C_ii − 1)² + λ Σ_{i≠j} C_ij²)`` with C the cross-correlation
    of the batch-standardised views. With ``scale_loss=1`` this is exactly lightly's
    ``BarlowTwinsLoss(lambda_param=lambda_offdiag)``. Computed in float32 (float64
    for float64 inputs) whatever the input dtype or autocast state.

    Raises:
        ValueError: as :func:`barlow_twins_multiview_loss`.
    """
    return barlow_twins_multiview_loss([z_a, z_b], lambda_offdiag, scale_loss)


class BarlowTwinsLoss(nn.Module):
    """Implementation of the Barlow Twins loss [0].

    Each view is standardised per feature over the batch (affine-free batch norm)
    and the D×D cross-correlation C between two views is driven towards the
    identity: the diagonal to 1 (invariance) and, weighted by λ, the off-diagonal
    to 0 (redundancy reduction). With more than two views the loss is averaged
    over all pairs of views. The whole loss is multiplied by ``scale_loss``:
    1.0 gives lightly's ``BarlowTwinsLoss(lambda_param=0.0051)`` exactly; the
    solo-learn CIFAR recipe uses 0.1.

    - [0] Barlow Twins: Self-Supervised Learning via Redundancy Reduction, 2021,
      https://arxiv.org/abs/2103.03230

    Attributes:
        lambda_offdiag: weight λ of the off-diagonal (redundancy reduction) term.
        scale_loss: factor on the whole loss.

    Raises:
        ValueError: if ``lambda_offdiag`` is negative or not finite, or
            ``scale_loss`` is not a finite number > 0.

    Examples:
        >>> import torch
        >>> loss_fn = BarlowTwinsLoss(lambda_offdiag=0.0051)
        >>> z1, z2 = torch.randn(8, 16), torch.randn(8, 16)
        >>> loss = loss_fn([z1, z2])
        >>> loss.shape
        torch.Size([])
    """

    def __init__(self, lambda_offdiag: float = 0.0051, scale_loss: float = 1.0) -> None:
        super().__init__()
        _check_hyperparameters(lambda_offdiag, scale_loss)
        self.lambda_offdiag = lambda_offdiag
        self.scale_loss = scale_loss

    def forward(self, views: Sequence[Tensor]) -> Tensor:
        """Loss of V views, each of shape (batch_size, dim)."""
        return barlow_twins_multiview_loss(views, self.lambda_offdiag, self.scale_loss)

    def extra_repr(self) -> str:
        return f"lambda_offdiag={self.lambda_offdiag}, scale_loss={self.scale_loss}"
