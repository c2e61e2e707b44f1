"""What the trainer reads: a run's splits, and each epoch's batches in a resumable order."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, List, Optional, Tuple

import torch
from torch import Tensor

from frossl_hub.specs import get_dataset_spec

from . import data as data_mod
from .recipes import Recipe

__all__ = ["TrainData", "load_train_data", "epoch_permutation", "epoch_batches"]


@dataclass
class TrainData:
    """The splits of a run: resident uint8 arrays, or ImageFolder trees streamed as crops."""

    pretrain: Any  # ArrayDataset (in memory) or ImageFolderCrops
    bank: Any  # labelled train split for kNN / probe (ArrayDataset or dataset)
    test: Any
    classes: List[str]
    in_memory: bool


def load_train_data(recipe: Recipe, data_dir: Optional[Path], cache_dir: Optional[Path],
                    device: torch.device) -> TrainData:
    """The pretraining, memory-bank and test splits of ``recipe.dataset``; small sets moved
    to ``device`` as uint8.

    Raises:
        DatasetError: the data is missing or not in its official layout.
    """
    name = get_dataset_spec(recipe.dataset).name
    data_dir = data_dir or data_mod.default_data_dir(name)
    if data_dir is None:
        raise data_mod.DatasetError(f"--data-dir is required for {name}: point it at the folder "
                                    "holding the data set in its official layout.")
    if data_mod.is_in_memory(name):
        pretrain = data_mod.load_arrays(name, data_dir, "pretrain", cache_dir)
        bank = data_mod.load_arrays(name, data_dir, "train", cache_dir) if name == "stl10" else pretrain
        test = data_mod.load_arrays(name, data_dir, "test", cache_dir)
        for ds in {id(pretrain): pretrain, id(bank): bank, id(test): test}.values():
            ds.images = ds.images.to(device)
            ds.labels = ds.labels.to(device)
        return TrainData(pretrain, bank, test, list(test.classes), True)
    size = recipe.crop_size
    pretrain = data_mod.ImageFolderCrops(name, data_dir, "train", num_views=recipe.num_views,
                                         image_size=size, scale=tuple(recipe.augment.scale))
    bank = data_mod.ImageFolderCrops(name, data_dir, "train", image_size=size, eval_mode=True)
    test = data_mod.ImageFolderCrops(name, data_dir, "test", image_size=size, eval_mode=True)
    return TrainData(pretrain, bank, test, list(pretrain.classes), False)


def epoch_permutation(n: int, seed: int, epoch: int) -> Tensor:
    """Deterministic shuffle of an epoch: depends only on (seed, epoch), so resume is exact."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=gen)


def epoch_batches(data: TrainData, recipe: Recipe, epoch: int, start_batch: int,
                  steps_per_epoch: int, local_batch: int, rank: int, workers: int,
                  device: torch.device) -> Iterator[Tuple[Tensor, Tensor]]:
    """This process's (uint8 images, labels) batches of an epoch, from ``start_batch`` on.

    In-memory data yields (B, C, H, W) images indexed on the device; streamed data yields
    the (B, V, C, S, S) crops the DataLoader workers cut (colour, blur and flip happen on
    the device).
    """
    perm = epoch_permutation(len(data.pretrain), recipe.seed, epoch)
    perm = perm[: steps_per_epoch * recipe.batch_size].view(steps_per_epoch, recipe.batch_size)
    perm = perm[start_batch:, rank * local_batch:(rank + 1) * local_batch]
    if data.in_memory:
        perm = perm.to(data.pretrain.images.device)
        for idx in perm:
            yield data.pretrain.images[idx], data.pretrain.labels[idx]
        return
    loader = torch.utils.data.DataLoader(
        data.pretrain, batch_sampler=perm.tolist(), num_workers=workers,
        pin_memory=device.type == "cuda", persistent_workers=False,
        prefetch_factor=4 if workers else None)
    for views, labels in loader:
        yield views.to(device, non_blocking=True), labels.to(device, non_blocking=True)
