"""Pretraining recipes: the paper's settings per data set and each method's defaults.

The one source of truth for how a run trains, for the command line and Python callers
alike. Shared defaults live in ``Recipe``; each data set overrides only what differs
(``RECIPES``); each baseline method brings its own learning rate and weight decay
(``METHOD_DEFAULTS``); every field can be overridden again (``Recipe.replace``, or its
flag on the command line). A ``Recipe`` validates itself when it is made.
"""
from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

from frossl_hub.objectives import get_objective, list_objectives
from frossl_hub.specs import FOLDER, get_dataset_spec
from frossl_hub.stems import SMALL_STEM_ARCH, STANDARD_STEM_ARCH, STEMS

from .augment import ViewConfig

__all__ = ["Recipe", "RecipeError", "RECIPES", "METHOD_DEFAULTS", "AUGMENT_FIELDS", "get_recipe",
           "method_defaults", "setting_types",
           "LinearProtocol", "LINEAR_PROTOCOLS"]

# recipe name (and --flag) of each augmentation setting -> its ViewConfig field, in the order
# they are listed in config.json
AUGMENT_FIELDS: Mapping[str, str] = {
    "crop_size": "size", "crop_scale": "scale", "brightness": "brightness", "contrast": "contrast",
    "saturation": "saturation", "hue": "hue", "jitter_prob": "jitter_prob", "gray_prob": "gray_prob",
    "blur_prob": "blur_prob", "solarize_prob": "solarize_prob", "flip_prob": "flip_prob",
}
# solo-learn's CIFAR recipe (scripts/pretrain/cifar/*.yaml): 2 views, the second blurred less
CIFAR_VIEWS = ViewConfig(size=32, brightness=0.8, contrast=0.8, saturation=0.8, hue=0.2,
                         blur_prob=(0.5,), solarize_prob=(0.0,))
# LARS learning rate (for batch 256) and weight decay of each baseline's solo-learn CIFAR yaml
# (scripts/pretrain/cifar/<method>.yaml); FroSSL's are the data set's recipe
METHOD_DEFAULTS: Mapping[str, Mapping[str, float]] = {
    "simclr": {"base_lr": 0.4, "weight_decay": 1e-4},  # the yaml's wd, not 1e-5
    "barlow": {"base_lr": 0.3, "weight_decay": 1e-4},
    "vicreg": {"base_lr": 0.3, "weight_decay": 1e-4},
}
_METHOD_FIELDS = ("base_lr", "weight_decay")  # what a change of method resets


class RecipeError(ValueError):
    """A recipe setting out of range; the message names its --flag (= the field name)."""


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


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
    # augmentation of every view (flat names in AUGMENT_FIELDS: crop_size, brightness, ...)
    augment: ViewConfig = CIFAR_VIEWS
    # evaluation and logging
    eval_every_epochs: float = 1.0  # online probe + kNN on the test split
    knn_k: int = 20
    knn_temperature: float = 0.07
    knn_train_limit: Optional[int] = None  # memory bank size (None: the whole train split)
    eval_test_limit: Optional[int] = None  # test images evaluated (None: all)
    spectrum_every_epochs: float = 5.0
    log_every_steps: int = 50
    seed: int = 0

    def __post_init__(self) -> None:
        problems = _problems(self)
        if problems:
            raise RecipeError("; ".join(problems))

    @property
    def architecture(self) -> str:
        """``arch``, else the paper's stem for the data: small-image stem for 28-32 px."""
        if self.arch:
            return self.arch
        small = self.crop_size <= 32 if self.dataset == FOLDER else get_dataset_spec(self.dataset).small_images
        return SMALL_STEM_ARCH if small else STANDARD_STEM_ARCH

    @property
    def projector(self) -> Tuple[int, ...]:
        """Output widths of the projector's layers: ``projector_dims`` or the method's."""
        return tuple(self.projector_dims or get_objective(self.method).projector_dims)

    @property
    def crop_size(self) -> int:
        """Side of the square training views, px."""
        return self.augment.size

    def lr(self) -> float:
        return self.base_lr * self.batch_size / 256

    def views(self, crop: bool = True) -> List[ViewConfig]:
        """One augmentation config per view (per-view tuples resolved); ``crop=False`` for
        images that already are ``crop_size`` crops (ImageFolder workers crop them)."""
        augment = self.augment if crop else self.augment.replace(crop=False)
        return [augment.for_view(v) for v in range(self.num_views)]

    def replace(self, **changes: Any) -> "Recipe":
        """A copy with ``changes``; augmentation settings go by their flat names
        (``crop_size=64``, ``blur_prob=(1.0, 0.1)``). A new ``method`` brings its own
        learning rate and weight decay unless they are given too."""
        augment = {AUGMENT_FIELDS[k]: changes.pop(k) for k in list(changes) if k in AUGMENT_FIELDS}
        if augment:
            try:
                changes["augment"] = self.augment.replace(**augment)
            except ValueError as exc:  # name the recipe's flag, not ViewConfig's field
                raise RecipeError(_augment_message(str(exc))) from None
        method = changes.get("method", self.method)
        if method != self.method:
            changes = {**method_defaults(self.dataset, method), **changes}
        return dataclasses.replace(self, **changes)

    def flat(self) -> Dict[str, Any]:
        """Every setting by its flat name (the command line's flags), in declaration order."""
        nested = dataclasses.asdict(self)
        out: Dict[str, Any] = {}
        for name, value in nested.items():
            if name == "augment":
                out.update({flat: value[attr] for flat, attr in AUGMENT_FIELDS.items()})
            else:
                out[name] = value
        return out

    def to_dict(self) -> Dict[str, Any]:
        """The flat settings plus the derived architecture and lr (config.json, checkpoints)."""
        out = self.flat()
        out["architecture"] = self.architecture
        out["lr"] = self.lr()
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "Recipe":
        """The recipe ``to_dict`` wrote (lists back to tuples, derived keys ignored)."""
        names = set(setting_types())
        known = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in names}
        dataset = known.pop("dataset")
        method = known.pop("method", "frossl")
        return cls(dataset, method=method).replace(**known)


def setting_types() -> Dict[str, Any]:
    """Each flat setting's type hint, in ``flat()`` order (the command line's flags)."""
    recipe_hints, view_hints = typing.get_type_hints(Recipe), typing.get_type_hints(ViewConfig)
    return {name: view_hints[AUGMENT_FIELDS[name]] if name in AUGMENT_FIELDS else recipe_hints[name]
            for name in Recipe("cifar10").flat()}


def _augment_message(message: str) -> str:
    inverse = {attr: flat for flat, attr in AUGMENT_FIELDS.items()}
    return re.sub(r"ViewConfig\.(\w+)", lambda m: _flag(inverse.get(m.group(1), m.group(1))), message)


def _problems(recipe: Recipe) -> List[str]:
    """What is out of range in a recipe, one message per setting."""
    problems: List[str] = []
    if recipe.method not in list_objectives():
        problems.append(f"--method must be one of {', '.join(list_objectives())}, got {recipe.method!r}")
    for name in ["batch_size", "epochs", "base_lr", "num_views", "knn_k", "log_every_steps",
                 "eval_every_epochs", "spectrum_every_epochs", "lars_eta"]:
        if getattr(recipe, name) <= 0:
            problems.append(f"{_flag(name)} must be > 0, got {getattr(recipe, name)}")
    for name in ["weight_decay", "warmup_epochs", "invariance_weight", "momentum", "classifier_lr"]:
        if getattr(recipe, name) < 0:
            problems.append(f"{_flag(name)} must be >= 0, got {getattr(recipe, name)}")
    if recipe.num_views < 2:
        problems.append(f"--num-views must be at least 2, got {recipe.num_views}")
    if recipe.batch_size < 2:
        problems.append(f"--batch-size must be at least 2, got {recipe.batch_size}")
    if recipe.projector_dims is not None and (not recipe.projector_dims
                                              or any(d < 1 for d in recipe.projector_dims)):
        problems.append(f"--projector-dims must be positive integers, got {list(recipe.projector_dims)}")
    if recipe.arch is not None and recipe.arch not in STEMS:
        problems.append(f"--arch must be one of {', '.join(STEMS)}, got {recipe.arch!r}")
    return problems


def method_defaults(dataset: str, method: str) -> Dict[str, Any]:
    """The settings a method brings to a data set's recipe (its lr and weight decay)."""
    if method == "frossl":
        base = RECIPES[_recipe_key(dataset)]
        return {name: getattr(base, name) for name in _METHOD_FIELDS}
    if method not in METHOD_DEFAULTS:
        raise RecipeError(f"--method must be one of {', '.join(list_objectives())}, got {method!r}")
    return dict(METHOD_DEFAULTS[method])


def _recipe(dataset: str, **changes: Any) -> Recipe:
    return Recipe(dataset).replace(**changes)


def _recipe_key(dataset: str) -> str:
    return FOLDER if dataset == FOLDER else get_dataset_spec(dataset).name


RECIPES: Dict[str, Recipe] = {
    # CIFAR: the paper's Table (solo-learn cifar/frossl.yaml)
    "cifar10": _recipe("cifar10"),
    "cifar100": _recipe("cifar100"),
    "stl10": _recipe("stl10", base_lr=0.1, epochs=500, invariance_weight=1.4, crop_size=96,
                     brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1),
    "tiny-imagenet": _recipe("tiny-imagenet", batch_size=512, epochs=800, crop_size=64,
                             brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1,
                             blur_prob=(1.0, 0.1), solarize_prob=(0.0, 0.2)),
    "imagenet100": _recipe("imagenet100", batch_size=512, epochs=400, crop_size=224,
                           eval_every_epochs=5.0, knn_train_limit=50_000),
    "imagenet": _recipe("imagenet", batch_size=512, epochs=100, invariance_weight=2.0,
                        crop_size=224, crop_scale=(0.2, 1.0), brightness=0.4, contrast=0.4,
                        saturation=0.2, hue=0.1, solarize_prob=(0.1,), eval_every_epochs=5.0,
                        knn_train_limit=100_000, eval_test_limit=10_000),
    # ours, not in the paper: tuned on the train split only (brightness/contrast only)
    "fashion-mnist": _recipe("fashion-mnist", epochs=200, crop_size=28, crop_scale=(0.2, 1.0),
                             brightness=0.4, contrast=0.4, saturation=0.0, hue=0.0,
                             gray_prob=0.0),
    # your own images: the ImageNet-100 recipe's views (solo-learn); crop_size is a placeholder,
    # the trainer sets it to the folder's image size (--image-size, or the data's median)
    FOLDER: _recipe(FOLDER, epochs=100, crop_size=224, brightness=0.4, contrast=0.4,
                    saturation=0.2, hue=0.1, blur_prob=(1.0, 0.1), solarize_prob=(0.0, 0.2),
                    knn_train_limit=50_000),
}


def get_recipe(dataset: str, method: str = "frossl") -> Recipe:
    """The paper's recipe for a data set, with ``method``'s own lr and weight decay."""
    recipe = RECIPES[_recipe_key(dataset)]
    return recipe if method == recipe.method else recipe.replace(method=method)


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
