"""Frozen-feature evaluation: feature extraction, weighted kNN, spectra, linear classifiers."""
from __future__ import annotations

from typing import Any, Dict, Iterable, Iterator, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .augment import normalize_uint8

__all__ = [
    "extract_features",
    "split_features",
    "knn_top1",
    "topk_accuracy",
    "eigenspectrum",
    "effective_rank",
    "fit_linear",
]


@torch.no_grad()
def extract_features(
    backbone: nn.Module,
    images: Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    size: int,
    batch_size: int = 512,
    projector: Optional[nn.Module] = None,
    amp_dtype: Optional[torch.dtype] = None,
    progress: bool = False,
) -> Tuple[Tensor, Optional[Tensor]]:
    """Pooled backbone features (and projector outputs) of uint8 (N, C, H, W) images.

    The model runs in eval mode on the images' device; results are float32 on that device.
    """
    from tqdm.auto import tqdm

    was_training = backbone.training
    backbone.eval()
    if projector is not None:
        projector.eval()
    device = next(backbone.parameters()).device
    feats, projs = [], []
    starts = range(0, len(images), batch_size)
    for start in tqdm(starts, desc="features", disable=None if progress else True, leave=False):
        batch = images[start:start + batch_size].to(device, non_blocking=True)
        x = normalize_uint8(batch, mean, std, size=size)
        with torch.autocast(device.type, dtype=amp_dtype or torch.bfloat16, enabled=amp_dtype is not None):
            f = backbone(x)
            p = projector(f) if projector is not None else None
        feats.append(f.float())
        if p is not None:
            projs.append(p.float())
    backbone.train(was_training)
    if projector is not None:
        projector.train(was_training)
    return torch.cat(feats), (torch.cat(projs) if projs else None)


SPLIT_CHUNK = 1024  # in-memory images handed to extract_features at a time
LOADER_BATCH = 256  # streamed images per DataLoader batch


def _subset(n: int, limit: Optional[int], seed: int) -> Tensor:
    """Sorted indices of a fixed random subset of ``limit`` of ``n`` items (all without one)."""
    if limit is None or limit >= n:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:limit].sort().values


def _split_batches(ds: Any, limit: Optional[int], seed: int,
                   workers: int) -> Iterator[Tuple[Tensor, Tensor]]:
    """(uint8 images, labels) batches of a split or of its subset."""
    idx = _subset(len(ds), limit, seed)
    if hasattr(ds, "images"):  # an ArrayDataset, on any device
        dev_idx = idx.to(ds.images.device)
        for start in range(0, len(dev_idx), SPLIT_CHUNK):
            sel = dev_idx[start:start + SPLIT_CHUNK]
            yield ds.images[sel], ds.labels[sel]
        return
    subset = ds if len(idx) == len(ds) else torch.utils.data.Subset(ds, idx.tolist())
    loader = torch.utils.data.DataLoader(subset, batch_size=LOADER_BATCH, num_workers=workers,
                                         pin_memory=torch.cuda.is_available())
    for images, labels in loader:
        yield images[:, 0], labels  # eval mode: one (1, C, S, S) view per image


def split_features(backbone: nn.Module, ds: Any, mean: Sequence[float], std: Sequence[float],
                   size: int, limit: Optional[int] = None, seed: int = 0,
                   projector: Optional[nn.Module] = None, amp_dtype: Optional[torch.dtype] = None,
                   workers: int = 4) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
    """Features, labels (and projector outputs) of a whole split, or of a fixed subset of
    ``limit`` images drawn with ``seed``.

    ``ds`` is an in-memory ``ArrayDataset`` (on any device) or an eval-mode
    ``ImageFolderCrops`` streamed through ``workers`` DataLoader workers. The one feature
    extractor of the trainer's evaluations, the linear probe and publishing.
    """
    feats, labels, projs = [], [], []
    for images, lab in _split_batches(ds, limit, seed, workers):
        f, p = extract_features(backbone, images, mean, std, size, projector=projector,
                                amp_dtype=amp_dtype)
        feats.append(f)
        labels.append(lab.to(f.device))
        if p is not None:
            projs.append(p)
    return torch.cat(feats), torch.cat(labels), (torch.cat(projs) if projs else None)


@torch.no_grad()
def knn_top1(
    train_feats: Tensor,
    train_labels: Tensor,
    test_feats: Tensor,
    test_labels: Tensor,
    num_classes: int,
    k: int = 20,
    temperature: float = 0.07,
    chunk: int = 1024,
) -> float:
    """Weighted kNN top-1 (cosine similarity, weights exp(sim/T)), as solo-learn / InstDisc."""
    keep = train_labels >= 0
    bank = F.normalize(train_feats[keep], dim=1)
    bank_labels = train_labels[keep]
    k = min(k, len(bank))
    correct = torch.zeros((), device=test_feats.device)
    for start in range(0, len(test_feats), chunk):
        q = F.normalize(test_feats[start:start + chunk], dim=1)
        sims, idx = (q @ bank.T).topk(k, dim=1)
        weights = (sims / temperature).exp()
        votes = torch.zeros(len(q), num_classes, device=q.device)
        votes.scatter_add_(1, bank_labels[idx], weights)
        correct += (votes.argmax(1) == test_labels[start:start + chunk]).sum()
    return float(correct) / max(1, len(test_feats))


def topk_accuracy(logits: Tensor, labels: Tensor, ks: Iterable[int] = (1, 5)) -> Dict[int, float]:
    """Top-k accuracies (fractions) for each k (capped at the number of classes)."""
    out = {}
    for k in ks:
        top = logits.topk(min(k, logits.shape[1]), dim=1).indices
        out[k] = float((top == labels[:, None]).any(dim=1).float().mean())
    return out


@torch.no_grad()
def eigenspectrum(feats: Tensor) -> Tensor:
    """Eigenvalues of the features' covariance, descending, normalised to sum 1."""
    x = feats.double()
    x = x - x.mean(0, keepdim=True)
    eig = torch.linalg.eigvalsh(x.T @ x / max(1, len(x) - 1)).flip(0).clamp_min(0)
    return (eig / eig.sum().clamp_min(1e-12)).float()


def effective_rank(spectrum: Tensor) -> float:
    """exp(entropy) of a normalised spectrum (Roy & Vetterli), in [1, D]."""
    p = spectrum[spectrum > 0].double()
    return float(torch.exp(-(p * p.log()).sum()))


def fit_linear(
    train_x: Tensor,
    train_y: Tensor,
    num_classes: int,
    epochs: int = 100,
    batch_size: int = 1024,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    seed: int = 0,
) -> Tuple[nn.Linear, Tensor, Tensor]:
    """Train a linear classifier on cached features (Adam, cosine LR, standardised inputs).

    Returns the layer and the (mean, std) used to standardise, so that the head can be
    folded into a plain ``Linear`` over raw features.
    """
    gen = torch.Generator(device="cpu").manual_seed(seed)
    keep = train_y >= 0
    x, y = train_x[keep], train_y[keep]
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    xs = (x - mean) / std
    with torch.random.fork_rng(devices=[]):  # same seed, same head: probes are reproducible
        torch.manual_seed(seed)
        layer = nn.Linear(x.shape[1], num_classes).to(x.device)
    opt = torch.optim.AdamW(layer.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = max(1, (len(xs) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * steps_per_epoch)
    for _ in range(epochs):
        perm = torch.randperm(len(xs), generator=gen).to(xs.device)
        for start in range(0, len(xs), batch_size):
            idx = perm[start:start + batch_size]
            loss = F.cross_entropy(layer(xs[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return layer, mean, std


def fold_standardization(layer: nn.Linear, mean: Tensor, std: Tensor) -> Dict[str, Tensor]:
    """``fc`` weights acting on raw features: W' = W/std, b' = b − W'·mean."""
    with torch.no_grad():
        weight = layer.weight / std[None, :]
        bias = layer.bias - weight @ mean
    return {"fc.weight": weight.detach().clone(), "fc.bias": bias.detach().clone()}
