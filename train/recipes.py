"""Pretraining recipes: the paper's settings per data set, one source of truth.

Shared defaults live in ``Recipe``; each data set overrides only what differs
(``RECIPES``), and every field can be overridden again on the command line.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from frossl_hub.catalog import SMALL_STEM_ARCH, STANDARD_STEM_ARCH
from frossl_hub.specs import get_dataset_spec

__all__ = ["Recipe", "RECIPES", "get_recipe", "view_configs", "LinearProtocol", "LINEAR_PROTOCOLS"]


@dataclass(frozen=True)
class Recipe:
    """Everything that defines a pretraining run except paths and the device."""

    dataset: str
    # objective
    method: str = "frossl"
    invariance_weight: float = 1.0
    num_views: int = 2
    projector_dims: Optional[Tuple[int, ...]] = None  # None: the method's own
    # backbone
    arch: Optional[str] = None  # None: small-image stem for 28-32 px data, else resnet18's
    # optimisation (LARS, as the official code via solo-learn)
    batch_size: int = 256  # global, across all processes
    base_lr: float = 0.3  # scaled by batch_size / 256
    epochs: float = 1000.0
    warmup_epochs: float = 10.0
    weight_decay: float = 1e-4
    momentum: float = 0.9
    lars_eta: float = 0.02
    classifier_lr: float = 0.1  # online linear probe, no weight decay, no LARS
    # augmentation, per view (solo-learn's asymmetric tuples cycle over views)
    crop_size: int = 32
    crop_scale: Tuple[float, float] = (0.08, 1.0)
    brightness: float = 0.8
    contrast: float = 0.8
    saturation: float = 0.8
    hue: float = 0.2
    jitter_prob: float = 0.8
    gray_prob: float = 0.2
    blur_prob: Tuple[float, ...] = (0.5,)
    solarize_prob: Tuple[float, ...] = (0.0,)
    flip_prob: float = 0.5
    # evaluation and logging
    eval_every_epochs: float = 1.0  # online probe + kNN on the test split
    knn_k: int = 20
    knn_temperature: float = 0.07
    knn_train_limit: Optional[int] = None  # memory bank size (None: the whole train split)
    eval_test_limit: Optional[int] = None  # test images evaluated (None: all)
    spectrum_every_epochs: float = 5.0
    log_every_steps: int = 50
    seed: int = 0

    @property
    def architecture(self) -> str:
        if self.arch:
            return self.arch
        return SMALL_STEM_ARCH if get_dataset_spec(self.dataset).small_images else STANDARD_STEM_ARCH

    def lr(self) -> float:
        return self.base_lr * self.batch_size / 256

    def replace(self, **changes: Any) -> "Recipe":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> Dict[str, Any]:
        out = dataclasses.asdict(self)
        out["architecture"] = self.architecture
        out["lr"] = self.lr()
        return out


RECIPES: Dict[str, Recipe] = {
    # CIFAR: the paper's Table (solo-learn cifar/frossl.yaml)
    "cifar10": Recipe("cifar10"),
    "cifar100": Recipe("cifar100"),
    "stl10": Recipe("stl10", base_lr=0.1, epochs=500, invariance_weight=1.4, crop_size=96,
                    brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1),
    "tiny-imagenet": Recipe("tiny-imagenet", batch_size=512, epochs=800, crop_size=64,
                            brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1,
                            blur_prob=(1.0, 0.1), solarize_prob=(0.0, 0.2)),
    "imagenet100": Recipe("imagenet100", batch_size=512, epochs=400, crop_size=224,
                          eval_every_epochs=5.0, knn_train_limit=50_000),
    "imagenet": Recipe("imagenet", batch_size=512, epochs=100, invariance_weight=2.0,
                       crop_size=224, crop_scale=(0.2, 1.0), brightness=0.4, contrast=0.4,
                       saturation=0.2, hue=0.1, solarize_prob=(0.1,), eval_every_epochs=5.0,
                       knn_train_limit=100_000, eval_test_limit=10_000),
    # ours, not in the paper: tuned on the train split only (brightness/contrast only)
    "fashion-mnist": Recipe("fashion-mnist", epochs=200, crop_size=28, crop_scale=(0.2, 1.0),
                            brightness=0.4, contrast=0.4, saturation=0.0, hue=0.0,
                            gray_prob=0.0),
}


def get_recipe(dataset: str) -> Recipe:
    """The paper's recipe for a data set."""
    return RECIPES[get_dataset_spec(dataset).name]


def view_configs(recipe: Recipe, crop: bool = True) -> List[Any]:
    """One augmentation config per view; asymmetric settings cycle over the views."""
    from .augment import ViewConfig

    configs = []
    for v in range(recipe.num_views):
        configs.append(ViewConfig(
            size=recipe.crop_size,
            scale=tuple(recipe.crop_scale),
            jitter_prob=recipe.jitter_prob,
            brightness=recipe.brightness,
            contrast=recipe.contrast,
            saturation=recipe.saturation,
            hue=recipe.hue,
            gray_prob=recipe.gray_prob,
            blur_prob=recipe.blur_prob[v % len(recipe.blur_prob)],
            solarize_prob=recipe.solarize_prob[v % len(recipe.solarize_prob)],
            flip_prob=recipe.flip_prob,
            crop=crop,
        ))
    return configs


@dataclass(frozen=True)
class LinearProtocol:
    """The paper's supervised linear-probe protocol for a data-set family."""

    optimizer: str  # adam or sgd
    lr: float
    milestones: Tuple[int, ...]
    epochs: int = 100
    momentum: float = 0.9
    scale_lr_by_batch: bool = False  # ImageNet family: lr x batch/256
    batch_size: int = 256
    weight_decay: float = 0.0
    extra: Dict[str, Any] = field(default_factory=dict)


LINEAR_PROTOCOLS: Dict[str, LinearProtocol] = {
    "cifar10": LinearProtocol("adam", 1e-3, (40, 80)),
    "cifar100": LinearProtocol("adam", 1e-3, (40, 80)),
    "fashion-mnist": LinearProtocol("adam", 1e-3, (40, 80)),
    "stl10": LinearProtocol("sgd", 0.01, (40, 80)),
    "tiny-imagenet": LinearProtocol("sgd", 0.1, (60, 80)),
    "imagenet100": LinearProtocol("sgd", 0.1, (60, 80), scale_lr_by_batch=True),
    "imagenet": LinearProtocol("sgd", 0.1, (60, 80), scale_lr_by_batch=True),
}
