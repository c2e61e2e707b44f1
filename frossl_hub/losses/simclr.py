"""The SimCLR objective: NT-Xent contrastive loss over V >= 2 views, a FroSSL baseline."""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._views import check_views, compute_dtype

__all__ = [
    "simclr_loss",
    "SimCLRLoss",
    "similarity_logits",
    "positive_mask",
]

MIN_TEMPERATURE = 1e-8  # as lightly's NTXentLoss: guards the division by the temperature


def _check_temperature(temperature: float) -> None:
    if not math.isfinite(temperature) or temperature <= MIN_TEMPERATURE:
        raise ValueError(
            f"temperature must be a finite number > {MIN_TEMPERATURE}, got {temperature}."
        )


def similarity_logits(z: Tensor, temperature: float) -> Tensor:
    """Cosine similarities / temperature of the rows of ``z`` (M×D), self-pairs set to -inf."""
    z = F.normalize(z, p=2, dim=1)
    logits = (z @ z.T) / temperature
    self_mask = torch.eye(z.shape[0], dtype=torch.bool, device=z.device)
    return logits.masked_fill(self_mask, float("-inf"))


def positive_mask(num_views: int, batch_size: int, device: Optional[torch.device] = None) -> Tensor:
    """(V·N)×(V·N) boolean mask of positive pairs for views stacked view-major.

    Row ``v·N + i`` is view v of image i; its positives are the other V−1 views of
    image i (never the row itself).
    """
    image = torch.arange(batch_size, device=device).repeat(num_views)
    same_image = image[:, None] == image[None, :]
    return same_image & ~torch.eye(num_views * batch_size, dtype=torch.bool, device=device)


def simclr_loss(views: Sequence[Tensor], temperature: float = 0.2) -> Tensor:
    """NT-Xent loss of V ≥ 2 views, each (batch_size, dim), averaged over all V·N anchors.

    Each anchor's loss is ``−log(Σ_pos exp(s/τ) / Σ_{all but itself} exp(s/τ))`` with
    cosine similarities s, positives being the other V−1 views of the same image
    and negatives every view of every other image (solo-learn's
    ``simclr_loss_func``). For V = 2 there is one positive per anchor and this is
    exactly lightly's ``NTXentLoss(temperature, memory_bank_size=0)``.

    Computed in float32 (float64 for float64 inputs) whatever the input dtype or
    autocast state, with log-sum-exp so no exponential overflows.

    Args:
        views: V tensors of shape (N, D), projector outputs of the same N images.
        temperature: τ, the logits are cosine similarities divided by it.

    Raises:
        ValueError: for fewer than 2 views, non-2-D or mismatched shapes, a batch
            of one, or a temperature that is not a finite number > 1e-8.
    """
    check_views(views, "SimCLR")
    _check_temperature(temperature)
    dtype = compute_dtype(views)
    stacked = torch.stack([v.to(dtype) for v in views])  # (V, N, D)
    with torch.autocast(device_type=stacked.device.type, enabled=False):
        num_views, batch_size, _ = stacked.shape
        logits = similarity_logits(stacked.flatten(0, 1), temperature)  # (V·N, V·N)
        positives = positive_mask(num_views, batch_size, device=stacked.device)
        log_denominator = torch.logsumexp(logits, dim=1)
        log_numerator = torch.logsumexp(logits.masked_fill(~positives, float("-inf")), dim=1)
        loss = (log_denominator - log_numerator).mean()
    return loss


class SimCLRLoss(nn.Module):
    """Implementation of the SimCLR (NT-Xent) loss [0].

    All V·N embeddings are L2-normalised and compared by cosine similarity scaled
    by 1/temperature. Each embedding is an anchor whose positives are the other
    views of the same image and whose negatives are all views of the other N−1
    images; the loss is the cross-entropy of picking the positives, averaged over
    the V·N anchors. For V > 2 the positives' probabilities are summed inside the
    log (solo-learn's ``simclr_loss_func``); for V = 2 this equals lightly's
    ``NTXentLoss(temperature, memory_bank_size=0)``.

    - [0] A Simple Framework for Contrastive Learning of Visual Representations, 2020,
      https://arxiv.org/abs/2002.05709

    Attributes:
        temperature: τ, the logits are cosine similarities divided by it.

    Raises:
        ValueError: if ``temperature`` is not a finite number > 1e-8.

    Examples:
        >>> import torch
        >>> loss_fn = SimCLRLoss(temperature=0.2)
        >>> z = torch.randn(8, 16)
        >>> same, other = loss_fn([z, z.clone()]), loss_fn([z, torch.randn(8, 16)])
        >>> bool(same < other)  # matching views score better
        True
    """

    def __init__(self, temperature: float = 0.2) -> None:
        super().__init__()
        _check_temperature(temperature)
        self.temperature = temperature

    def forward(self, views: Sequence[Tensor]) -> Tensor:
        """Loss of V views, each of shape (batch_size, dim)."""
        return simclr_loss(views, self.temperature)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"
