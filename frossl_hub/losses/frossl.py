"""The FroSSL objective: Frobenius-norm regulariser plus multi-view invariance."""
from __future__ import annotations

import math
from typing import Dict, List, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._views import check_views

__all__ = [
    "frossl_loss",
    "FroSSLLoss",
    "normalize_columns",
    "frobenius_term",
    "invariance_term",
]

COLUMN_NORM_EPS = 1e-12  # clamp for a column's L2 norm over the batch, as F.normalize


def normalize_columns(z: Tensor, center: bool = False) -> Tensor:
    """Divide each of the D columns of an N×D batch by its L2 norm over the batch.

    With ``center=True`` the per-feature batch mean is removed first (the original
    two-view form of the paper).
    """
    if center:
        z = z - z.mean(dim=0, keepdim=True)
    return F.normalize(z, p=2, dim=0, eps=COLUMN_NORM_EPS)


def frobenius_term(u: Tensor) -> Tensor:
    """``2·log ||C/tr C||_F`` of a column-normalised N×D batch ``u``.

    C is UᵀU (D×D) when N > D, else UUᵀ (N×N): both share their non-zero
    eigenvalues, so the cheaper one is used. The trace is taken on-device and
    detached (it equals D for unit columns), so nothing syncs with the host.
    """
    n, d = u.shape
    cov = u.T @ u if n > d else u @ u.T
    cov = cov / torch.trace(cov).detach()
    return 2.0 * torch.log(torch.linalg.matrix_norm(cov, ord="fro"))


def invariance_term(u: Tensor, mean_view: Tensor, num_views: int) -> Tensor:
    """``V·D·mean((U_v − Ū)²)``: pulls one view towards the mean of all views."""
    return num_views * u.shape[1] * F.mse_loss(u, mean_view)


def frossl_loss(
    views: Sequence[Tensor],
    invariance_weight: float = 1.0,
    center: bool = False,
    return_parts: bool = False,
    check_finite: bool = True,
) -> Union[Tensor, Tuple[Tensor, Dict[str, Tensor]]]:
    """FroSSL loss of V ≥ 2 views, each (batch_size, dim), summed over views.

    Computed in float32 (float64 for float64 inputs) whatever the input dtype or
    autocast state.

    Args:
        views: V tensors of shape (N, D), projector outputs of the same N images.
        invariance_weight: weight w of the invariance term.
        center: subtract the per-feature batch mean before normalising.
        return_parts: also return detached per-view ``regularizer``,
            ``invariance`` and ``effective_rank`` (each a tensor of shape (V,)).
        check_finite: raise on NaN/Inf inputs. The check reads a value on the host, so
            training loops on a GPU turn it off and check the logged loss instead.

    Raises:
        ValueError: for fewer than 2 views, non-2-D or mismatched shapes,
            a batch of one, or non-finite inputs.
    """
    check_views(views, "FroSSL")
    dtype = torch.promote_types(views[0].dtype, torch.float32)  # fp32 at least; fp64 stays
    stacked = torch.stack([v.to(dtype) for v in views])  # (V, N, D)
    if check_finite and not torch.isfinite(stacked).all():
        raise ValueError("FroSSL views contain NaN or Inf values.")
    with torch.autocast(device_type=stacked.device.type, enabled=False):
        num_views = stacked.shape[0]
        normalized: List[Tensor] = [normalize_columns(z, center) for z in stacked.unbind(0)]
        mean_view = torch.stack(normalized).mean(dim=0)
        regs = torch.stack([frobenius_term(u) for u in normalized])
        invs = torch.stack([invariance_term(u, mean_view, num_views) for u in normalized])
        loss = regs.sum() + invariance_weight * invs.sum()
    if not return_parts:
        return loss
    parts = {
        "regularizer": regs.detach(),
        "invariance": invs.detach(),
        "effective_rank": torch.exp(-regs.detach()),
    }
    return loss, parts


class FroSSLLoss(nn.Module):
    """Implementation of the FroSSL loss [0].

    Each view's embeddings are column-normalised over the batch. The regulariser
    ``log ||C/tr C||_F²`` of each view's covariance (or Gram) matrix spreads its
    eigenvalues, which prevents collapse; the invariance term pulls every view
    to the mean of the views. The loss is summed, not averaged, over views.

    - [0] FroSSL: Frobenius Norm Minimization for Self-Supervised Learning, 2023,
      https://arxiv.org/abs/2310.02903

    Attributes:
        invariance_weight: weight w of the invariance term.
        center: subtract the batch mean first (the original two-view form).

    Raises:
        ValueError: if ``invariance_weight`` is negative or not finite.

    Examples:
        >>> import torch
        >>> loss_fn = FroSSLLoss(invariance_weight=1.0)
        >>> views = [torch.randn(8, 16) for _ in range(4)]  # any number of views >= 2
        >>> loss, parts = loss_fn(views, return_parts=True)
        >>> loss.shape, parts["effective_rank"].shape
        (torch.Size([]), torch.Size([4]))
    """

    def __init__(self, invariance_weight: float = 1.0, center: bool = False,
                 check_finite: bool = True) -> None:
        super().__init__()
        if not math.isfinite(invariance_weight) or invariance_weight < 0:
            raise ValueError(
                f"invariance_weight must be a finite number >= 0, got {invariance_weight}."
            )
        self.invariance_weight = invariance_weight
        self.center = center
        self.check_finite = check_finite

    def forward(self, views: Sequence[Tensor], return_parts: bool = False):
        """Loss of V views, each of shape (batch_size, dim)."""
        return frossl_loss(views, self.invariance_weight, self.center, return_parts,
                           self.check_finite)

    def extra_repr(self) -> str:
        return f"invariance_weight={self.invariance_weight}, center={self.center}"
