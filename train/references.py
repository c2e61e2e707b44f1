"""Published accuracies of comparable self-supervised methods: data, shown on the model cards
beside our measured numbers and always named as someone else's."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple

__all__ = ["Reference", "REFERENCES", "references_for"]

SOLO_LEARN = ("solo-learn's published ResNet18 CIFAR-10 results, da Costa et al., JMLR 2022, "
              "github.com/vturrisi/solo-learn")


@dataclass(frozen=True)
class Reference:
    """One published linear-probe accuracy."""

    method: str
    top1: float  # percent, linear probe on the frozen backbone
    epochs: int  # of pretraining
    architecture: str
    source: str


REFERENCES: Dict[str, Tuple[Reference, ...]] = {  # dataset -> published numbers, best first
    "cifar10": (
        Reference("Barlow Twins", 92.10, 1000, "ResNet18", SOLO_LEARN),
        Reference("VICReg", 92.07, 1000, "ResNet18", SOLO_LEARN),
        Reference("SimCLR", 90.74, 1000, "ResNet18", SOLO_LEARN),
    ),
}


def references_for(dataset: str) -> Tuple[Reference, ...]:
    """The published numbers for ``dataset`` (a catalog data set name); () when there are none."""
    return REFERENCES.get(dataset, ())
