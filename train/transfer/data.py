"""The labelled folder of a transfer: its classes and splits, checked before any work, and
the seeded k-shot subsets of its training split."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch

from ..data.base import DatasetError
from ..data.user_folder import Sample, class_dirs, images_under, scan_folder

__all__ = ["ALL", "REPEATS", "TransferError", "TransferData", "scan_labelled", "parse_shots",
           "check_shots", "shot_label", "shot_subset", "check_readable"]

ALL = None  # the --shots value "all": every training image
REPEATS = 5  # seeded draws of a k-shot subset; the table gives their mean ± std


class TransferError(ValueError):
    """A transfer cannot run as asked (its message names the flag, folder or file)."""


@dataclass
class TransferData:
    """The image files of a labelled folder, split into train and val, with their labels."""

    root: Path
    classes: List[str]
    train: List[Sample]
    val: List[Sample]
    held_out: str  # how the val split was made, for the card ("" when there is none)

    def class_dir(self, label: int) -> Path:
        top = self.root / "train" if (self.root / "train").is_dir() else self.root
        return top / self.classes[label]

    def train_counts(self) -> Dict[int, int]:
        counts = {label: 0 for label in range(len(self.classes))}
        for _, label in self.train:
            counts[label] += 1
        return counts


def scan_labelled(root: Path, val_fraction: Optional[float], seed: int) -> TransferData:
    """The class folders of ``root`` (``DIR/<class>`` or ``DIR/train`` + ``DIR/val``).

    Raises:
        DatasetError: the folder is missing, has fewer than two class folders, or a class
            folder holds no image file (each message names the folder).
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"{root}: the data folder does not exist")
    top = root / "train" if (root / "train").is_dir() else root
    dirs = class_dirs(top)
    if len(dirs) < 2:
        found = f" ({', '.join(repr(d.name) for d in dirs)})" if dirs else ""
        raise DatasetError(f"{top}: a classifier needs two or more class folders of images; "
                           f"found {len(dirs)}{found}")
    for folder in dirs:
        if not images_under(folder):
            raise DatasetError(f"{folder}: the class folder {folder.name!r} holds no image file")
    scan = scan_folder(root, labels="folders", val_fraction=val_fraction, seed=seed)
    return TransferData(root, scan.classes, scan.train, scan.val, scan.held_out)


def parse_shots(text: str) -> List[Optional[int]]:
    """``1,5,10,all`` -> [1, 5, 10, None], sorted, "all" last; a TransferError names a bad value."""
    shots: List[Optional[int]] = []
    for part in (p.strip() for p in text.split(",")):
        if part.lower() == "all":
            shots.append(ALL)
            continue
        if not part.isdigit() or int(part) < 1:
            raise TransferError(f"--shots takes positive whole numbers and 'all', separated by "
                                f"commas; got {part!r} in {text!r}")
        shots.append(int(part))
    unique = sorted({s for s in shots if s is not None})
    return unique + ([ALL] if ALL in shots else [])


def shot_label(shots: Optional[int]) -> str:
    return "all" if shots is None else str(shots)


def check_shots(shots: Sequence[Optional[int]], data: TransferData,
                labels: Optional[torch.Tensor] = None) -> None:
    """Refuse a k larger than the smallest class's training images, naming that class
    (``labels``: of the readable images, once decoded)."""
    counts = data.train_counts()
    if labels is not None:
        counts = {label: int((labels == label).sum()) for label in counts}
    label = min(counts, key=lambda lab: (counts[lab], lab))
    largest = max((s for s in shots if s is not None), default=0)
    if largest > counts[label]:
        readable = " readable" if labels is not None else ""
        raise TransferError(f"--shots {largest} is larger than the smallest class: "
                            f"{data.class_dir(label)} has {counts[label]}{readable} training image(s)")


def check_readable(data: TransferData, labels: torch.Tensor, where: str = "training") -> None:
    """Every class keeps at least one readable training image (``labels``: those decoded)."""
    present = set(labels.tolist())
    for label in range(len(data.classes)):
        if label not in present:
            raise DatasetError(f"{data.class_dir(label)}: the class {data.classes[label]!r} has no "
                               f"readable {where} image")


def shot_subset(labels: torch.Tensor, shots: Optional[int], seed: int, repeat: int) -> torch.Tensor:
    """Indices of ``shots`` images of each class (all of them for None), seeded by (seed,
    shots, repeat), in ascending order."""
    if shots is None:
        return torch.arange(len(labels))
    gen = torch.Generator().manual_seed(seed * 1_000_003 + shots * 101 + repeat)
    picked = []
    for label in sorted(set(labels.tolist())):
        members = (labels == label).nonzero().squeeze(1)
        picked.append(members[torch.randperm(len(members), generator=gen)[:shots]])
    return torch.cat(picked).sort().values
