"""What one augmented view is: ``ViewConfig``, the random augmentation a recipe declares.

Below ``train.augment`` (which makes the views) and ``train.view_ops`` (the tensor ops that
read a config's jitter settings), so neither imports the other for it; ``train.augment``
re-exports it.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Tuple, Union

__all__ = ["INTERPOLATIONS", "PerView", "ViewConfig"]

INTERPOLATIONS = ("bilinear", "bicubic")
PerView = Union[float, Tuple[float, ...]]  # one probability, or one per view (cycling)


@dataclass(frozen=True)
class ViewConfig:
    """Random augmentation of the views; probabilities are per sample.

    The one declaration of a view's augmentation: a training recipe holds one
    (``Recipe.augment``) and the trainer hands it to ``train.augment.augment_views`` once per view.
    ``blur_prob`` and ``solarize_prob`` may be tuples, one value per view, that cycle over
    the views (solo-learn's BYOL-style asymmetric views: ``blur_prob=(1.0, 0.1)``);
    :meth:`for_view` picks view ``v``'s values.

    Defaults: solo-learn's base view (crop scale 0.08-1, jitter 0.4/0.4/0.2/0.1 with
    p=0.8, grayscale p=0.2, flip p=0.5), no blur or solarization. ``crop=False``: the
    images already are ``size`` x ``size`` crops (ImageFolder workers crop on CPU);
    flip and the colour ops still apply. Solarization uses threshold 0.5 on [0, 1]
    values (PIL's ``ImageOps.solarize(img, 128)``, as solo-learn).
    """

    size: int
    scale: Tuple[float, float] = (0.08, 1.0)
    ratio: Tuple[float, float] = (3 / 4, 4 / 3)
    jitter_prob: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.2
    hue: float = 0.1
    gray_prob: float = 0.2
    blur_prob: PerView = 0.0
    solarize_prob: PerView = 0.0
    flip_prob: float = 0.5
    crop: bool = True
    blur_sigma: Tuple[float, float] = (0.1, 2.0)
    blur_kernel: Optional[int] = None  # None: odd ~0.1 * size, at least 3 (23 at 224 px)
    interpolation: str = "bilinear"  # crop resampling: "bilinear" or "bicubic"

    def __post_init__(self) -> None:
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size <= 0:
            raise ValueError(f"ViewConfig.size must be a positive int, got {self.size!r}")
        for name in ("jitter_prob", "gray_prob", "flip_prob"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"ViewConfig.{name} must be in [0, 1], got {value!r}")
        for name in ("blur_prob", "solarize_prob"):
            values = _per_view(getattr(self, name))
            if not values or not all(0.0 <= p <= 1.0 for p in values):
                raise ValueError(f"ViewConfig.{name} values must be in [0, 1], got "
                                 f"{getattr(self, name)!r}")
        for name in ("brightness", "contrast", "saturation"):
            value = getattr(self, name)
            if not value >= 0.0:
                raise ValueError(f"ViewConfig.{name} must be >= 0, got {value!r}")
        if not 0.0 <= self.hue <= 0.5:
            raise ValueError(f"ViewConfig.hue must be in [0, 0.5], got {self.hue!r}")
        lo, hi = _pair("scale", self.scale)
        if not 0.0 < lo <= hi <= 1.0:
            raise ValueError(
                f"ViewConfig.scale must satisfy 0 < min <= max <= 1, got {self.scale!r}"
            )
        lo, hi = _pair("ratio", self.ratio)
        if not 0.0 < lo <= hi:
            raise ValueError(f"ViewConfig.ratio must satisfy 0 < min <= max, got {self.ratio!r}")
        lo, hi = _pair("blur_sigma", self.blur_sigma)
        if not 0.0 < lo <= hi:
            raise ValueError(
                f"ViewConfig.blur_sigma must satisfy 0 < min <= max, got {self.blur_sigma!r}"
            )
        k = self.blur_kernel
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1 or k % 2 == 0):
            raise ValueError(f"ViewConfig.blur_kernel must be None or an odd int >= 1, got {k!r}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(
                f"ViewConfig.interpolation must be one of {INTERPOLATIONS}, "
                f"got {self.interpolation!r}"
            )


    def for_view(self, view: int) -> "ViewConfig":
        """This config with view ``view``'s ``blur_prob`` and ``solarize_prob`` (cycling)."""
        blur, solarize = _per_view(self.blur_prob), _per_view(self.solarize_prob)
        return dataclasses.replace(self, blur_prob=blur[view % len(blur)],
                                   solarize_prob=solarize[view % len(solarize)])

    def replace(self, **changes: Any) -> "ViewConfig":
        return dataclasses.replace(self, **changes)


def _per_view(value: PerView) -> Tuple[float, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


def _pair(name: str, value: Sequence[float]) -> Tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"ViewConfig.{name} must be a pair of numbers, got {value!r}") from None
    return lo, hi
