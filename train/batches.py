"""What the trainer reads: a run's splits, and each epoch's batches in a resumable order."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import torch
from torch import Tensor

from frossl_hub.specs import FOLDER, DatasetSpec, get_dataset_spec

from . import data as data_mod
from .data import FolderOptions
from .recipes import Recipe

__all__ = ["TrainData", "load_train_data", "epoch_permutation", "epoch_batches"]


@dataclass
class TrainData:
    """The splits of a run: resident uint8 arrays, or image trees streamed as crops."""

    pretrain: Any  # ArrayDataset (in memory) or ImageCrops
    bank: Any  # labelled train split for kNN / probe (ArrayDataset or dataset)
    test: Any  # None: nothing to evaluate on (no labels, or no held-out split)
    classes: List[str]
    in_memory: bool
    spec: DatasetSpec
    notes: List[str] = field(default_factory=list)  # what the run says once, at the start
    facts: Dict[str, Any] = field(default_factory=dict)  # a folder's, for config.json and the card

    @property
    def evaluable(self) -> bool:
        """Labels and a held-out split: kNN, the online and the linear probe can be measured."""
        return bool(self.classes) and self.test is not None


def load_train_data(recipe: Recipe, data_dir: Optional[Path], cache_dir: Optional[Path],
                    device: torch.device, folder: Optional[FolderOptions] = None,
                    progress: bool = True) -> TrainData:
    """The pretraining, memory-bank and test splits of ``recipe.dataset``; small sets moved
    to ``device`` as uint8.

    Raises:
        DatasetError: the data is missing or not in its official layout.
    """
    if recipe.dataset == FOLDER:
        return _folder_data(recipe, data_dir, cache_dir, device, folder or FolderOptions(), progress)
    spec = get_dataset_spec(recipe.dataset)
    name = spec.name
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
        return TrainData(pretrain, bank, test, list(test.classes), True, spec)
    size = recipe.crop_size
    pretrain = data_mod.ImageFolderCrops(name, data_dir, "train", num_views=recipe.num_views,
                                         image_size=size, scale=tuple(recipe.augment.scale))
    bank = data_mod.ImageFolderCrops(name, data_dir, "train", image_size=size, eval_mode=True)
    test = data_mod.ImageFolderCrops(name, data_dir, "test", image_size=size, eval_mode=True)
    return TrainData(pretrain, bank, test, list(pretrain.classes), False, spec)


def _folder_data(recipe: Recipe, data_dir: Optional[Path], cache_dir: Optional[Path],
                 device: torch.device, opts: FolderOptions, progress: bool) -> TrainData:
    """A ``--dataset folder`` run's splits, and what it says about them once."""
    if data_dir is None:
        raise data_mod.DatasetError(f"{FOLDER}: --data-dir is required: the folder of your images.")
    found = data_mod.load_folder(Path(data_dir), opts, recipe.seed, recipe.num_views,
                                 tuple(recipe.augment.scale), cache_dir, progress)
    for ds in {id(d): d for d in (found.train, found.val) if d is not None and found.in_memory}.values():
        ds.images, ds.labels = ds.images.to(device), ds.labels.to(device)
    classes = list(found.spec.label_names or ())
    notes = []
    if found.skipped:
        path, reason = found.skipped[0]
        notes.append(f"skipped {len(found.skipped)} unreadable file(s) (--strict refuses them); "
                     f"the first: {path}: {reason}")
    if classes and found.val is not None and found.held_out:
        notes.append(f"held out {len(found.val)} images for the probe: {found.held_out}")
    if not classes:
        notes.append("no labels (no class folders): kNN, the online and the linear probe are skipped")
    elif found.val is None:
        notes.append("labels but no held-out split (--val-fraction 0): kNN, "
                     "the online and the linear probe are skipped")
    facts = {"folder": str(Path(data_dir).resolve()), "train_images": len(found.train),
             "val_images": len(found.val) if found.val is not None else 0,
             "held_out": found.held_out, "skipped": len(found.skipped), "in_memory": found.in_memory,
             "labelled": bool(classes)}
    test = found.val if classes else None
    return TrainData(found.pretrain, found.train, test, classes, found.in_memory, found.spec, notes, facts)


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
