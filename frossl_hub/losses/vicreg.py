"""The VICReg objective: variance, invariance and covariance terms, a FroSSL baseline."""
from __future__ import annotations

import itertools
import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._views import check_views, compute_dtype

__all__ = [
    "vicreg_loss",
    "vicreg_multiview_loss",
    "VICRegLoss",
    "invariance_term",
    "variance_term",
    "covariance_term",
]

VARIANCE_EPS = 1e-4  # added to the variance before the square root, as lightly and the authors


def _check_hyperparameters(
    sim_weight: float, var_weight: float, cov_weight: float, eps: float
) -> None:
    weights = {"sim_weight": sim_weight, "var_weight": var_weight, "cov_weight": cov_weight}
    for name, value in weights.items():
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {value}.")
    if not math.isfinite(eps) or eps <= 0:
        raise ValueError(f"eps must be a finite number > 0, got {eps}.")


def invariance_term(z_a: Tensor, z_b: Tensor) -> Tensor:
    """Mean squared error between two N×D views."""
    return F.mse_loss(z_a, z_b)


def variance_term(z: Tensor, eps: float = VARIANCE_EPS) -> Tensor:
    """Hinge ``mean_d relu(1 − sqrt(Var_d + eps))`` on each feature's unbiased batch std."""
    std = torch.sqrt(z.var(dim=0) + eps)
    return F.relu(1.0 - std).mean()


def covariance_term(z: Tensor) -> Tensor:
    """``Σ_{i≠j} Cov_ij² / D`` of the unbiased D×D batch covariance of an N×D view."""
    n, d = z.shape
    centered = z - z.mean(dim=0)
    cov = (centered.T @ centered) / (n - 1)
    off_diagonal = cov.flatten()[:-1].view(d - 1, d + 1)[:, 1:]
    return off_diagonal.pow(2).sum() / d


def vicreg_multiview_loss(
    views: Sequence[Tensor],
    sim_weight: float = 25.0,
    var_weight: float = 25.0,
    cov_weight: float = 1.0,
    eps: float = VARIANCE_EPS,
) -> Tensor:
    """VICReg loss averaged over the V·(V−1)/2 unordered pairs of V ≥ 2 views.

    A pair (a, b) costs ``λ·MSE(a, b) + μ·(v(a) + v(b))/2 + ν·(c(a) + c(b))``, the
    variance terms averaged and the covariance terms summed over the two views as
    in the authors' code and lightly. The per-view terms are computed once. The
    pair loss is symmetric, so the average does not depend on the order of the
    views; for V = 2 it is :func:`vicreg_loss`.

    Args:
        views: V tensors of shape (N, D), projector outputs of the same N images.
        sim_weight: λ, weight of the invariance (MSE) term.
        var_weight: μ, weight of the variance hinge term.
        cov_weight: ν, weight of the covariance term.
        eps: added to each feature's variance before the square root.

    Raises:
        ValueError: for fewer than 2 views, non-2-D or mismatched shapes, a batch
            of one, a negative or non-finite weight, or ``eps`` not a finite number > 0.
    """
    check_views(views, "VICReg")
    _check_hyperparameters(sim_weight, var_weight, cov_weight, eps)
    dtype = compute_dtype(views)
    stacked = torch.stack([v.to(dtype) for v in views])  # (V, N, D)
    with torch.autocast(device_type=stacked.device.type, enabled=False):
        zs = stacked.unbind(0)
        var_terms = [variance_term(z, eps) for z in zs]
        cov_terms = [covariance_term(z) for z in zs]
        losses = [
            sim_weight * invariance_term(zs[i], zs[j])
            + var_weight * 0.5 * (var_terms[i] + var_terms[j])
            + cov_weight * (cov_terms[i] + cov_terms[j])
            for i, j in itertools.combinations(range(len(zs)), 2)
        ]
        loss = torch.stack(losses).mean()
    return loss


def vicreg_loss(
    z_a: Tensor,
    z_b: Tensor,
    sim_weight: float = 25.0,
    var_weight: float = 25.0,
    cov_weight: float = 1.0,
    eps: float = VARIANCE_EPS,
) -> Tensor:
    """VICReg loss of two views, each (batch_size, dim).

    Exactly lightly's ``VICRegLoss(lambda_param=sim_weight, mu_param=var_weight,
    nu_param=cov_weight, eps=eps)``. Computed in float32 (float64 for float64
    inputs) whatever the input dtype or autocast state.

    Raises:
        ValueError: as :func:`vicreg_multiview_loss`.
    """
    return vicreg_multiview_loss([z_a, z_b], sim_weight, var_weight, cov_weight, eps)


class VICRegLoss(nn.Module):
    """Implementation of the VICReg loss [0].

    Three terms on the raw projector outputs: invariance, the mean squared error
    between the views; variance, a hinge keeping each feature's batch standard
    deviation above 1 (averaged over the two views); covariance, the squared
    off-diagonal entries of each view's batch covariance divided by D (summed
    over the two views). With more than two views the loss is averaged over all
    pairs of views. For two views this equals lightly's
    ``VICRegLoss(lambda_param=25, mu_param=25, nu_param=1)``.

    - [0] VICReg: Variance-Invariance-Covariance Regularization for Self-Supervised
      Learning, 2022, https://arxiv.org/abs/2105.04906

    Attributes:
        sim_weight: λ, weight of the invariance (MSE) term.
        var_weight: μ, weight of the variance hinge term.
        cov_weight: ν, weight of the covariance term.
        eps: added to each feature's variance before the square root.

    Raises:
        ValueError: if a weight is negative or not finite, or ``eps`` is not a
            finite number > 0.

    Examples:
        >>> import torch
        >>> loss_fn = VICRegLoss(sim_weight=25.0, var_weight=25.0, cov_weight=1.0)
        >>> z1, z2 = torch.randn(8, 16), torch.randn(8, 16)
        >>> loss = loss_fn([z1, z2])
        >>> loss.shape
        torch.Size([])
    """

    def __init__(
        self,
        sim_weight: float = 25.0,
        var_weight: float = 25.0,
        cov_weight: float = 1.0,
        eps: float = VARIANCE_EPS,
    ) -> None:
        super().__init__()
        _check_hyperparameters(sim_weight, var_weight, cov_weight, eps)
        self.sim_weight = sim_weight
        self.var_weight = var_weight
        self.cov_weight = cov_weight
        self.eps = eps

    def forward(self, views: Sequence[Tensor]) -> Tensor:
        """Loss of V views, each of shape (batch_size, dim)."""
        return vicreg_multiview_loss(
            views, self.sim_weight, self.var_weight, self.cov_weight, self.eps
        )

    def extra_repr(self) -> str:
        return (
            f"sim_weight={self.sim_weight}, var_weight={self.var_weight}, "
            f"cov_weight={self.cov_weight}, eps={self.eps}"
        )
