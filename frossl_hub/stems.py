"""The ResNet18 stems frossl-hub registers with timm: plain data, no torch import.

A stem is ``conv1`` (kernel, stride) and whether timm's 3x3 stride-2 max-pool follows it.
Its total downsampling decides the feature-map size the residual stages see: at 32 px the
standard stem leaves an 8x8 map for ``layer1`` and 1x1 before pooling, the small-image stem
32x32 and 4x4, at about 9x the compute per image. The intermediate stems sit between.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict

__all__ = ["Stem", "STEMS", "STANDARD_STEM_ARCH", "SMALL_STEM_ARCH", "get_stem"]

STANDARD_STEM_ARCH = "frossl_resnet18"  # timm's resnet18 stem (7x7 stride 2 + max-pool)
SMALL_STEM_ARCH = "frossl_resnet18_cifar"  # 3x3 stride-1 stem, no max-pool (28-32 px)


@dataclass(frozen=True)
class Stem:
    """``conv1`` of a ResNet and whether a max-pool follows it."""

    kernel: int
    stride: int
    max_pool: bool
    description: str  # for cards and help texts

    @property
    def reduction(self) -> int:
        """Downsampling from the input to ``layer1`` (standard: 4)."""
        return self.stride * (2 if self.max_pool else 1)


STEMS: Dict[str, Stem] = {  # timm architecture -> stem, from the most to the least downsampling
    STANDARD_STEM_ARCH: Stem(7, 2, True, "timm resnet18 stem: 7×7 stride-2 conv1 + max-pool"),
    # the standard conv1 without the max-pool: warm-starts from a standard-stem model (same
    # weights) and keeps a 2x2 final map at 28-32 px
    "frossl_resnet18_nopool": Stem(7, 2, False, "timm resnet18 conv1 (7×7 stride 2), no max-pool"),
    "frossl_resnet18_s2": Stem(3, 2, False, "3×3 stride-2 conv1, no max-pool"),
    "frossl_resnet18_s1pool": Stem(3, 1, True, "3×3 stride-1 conv1 + max-pool"),
    SMALL_STEM_ARCH: Stem(3, 1, False, "3×3 stride-1 conv1, no max-pool"),
}


def get_stem(architecture: str) -> Stem:
    """The stem of a registered architecture; a ValueError lists the known ones."""
    if architecture not in STEMS:
        raise ValueError(f"unknown architecture {architecture!r}; choose one of {list(STEMS)}")
    return STEMS[architecture]
