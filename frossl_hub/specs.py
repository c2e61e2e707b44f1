"""What each supported data set looks like to a model: size, channels, statistics, labels.

The one source of truth for input specs; the trainer's recipes, the catalog and the
timm pretrained configs all read it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence, Tuple

__all__ = ["DatasetSpec", "DATASET_SPECS", "get_dataset_spec", "IMAGENET_MEAN", "IMAGENET_STD", "FOLDER",
           "folder_spec", "spec_from_dict"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # timm's IMAGENET_DEFAULT_MEAN
IMAGENET_STD = (0.229, 0.224, 0.225)  # timm's IMAGENET_DEFAULT_STD
FOLDER = "folder"  # your own images: no fixed spec, it is measured from the data (folder_spec)

CIFAR10_LABELS = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
CIFAR100_LABELS = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle",
    "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle",
    "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch", "crab", "crocodile", "cup",
    "dinosaur", "dolphin", "elephant", "flatfish", "forest", "fox", "girl", "hamster", "house",
    "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion", "lizard", "lobster", "man",
    "maple_tree", "motorcycle", "mountain", "mouse", "mushroom", "oak_tree", "orange", "orchid",
    "otter", "palm_tree", "pear", "pickup_truck", "pine_tree", "plain", "plate", "poppy",
    "porcupine", "possum", "rabbit", "raccoon", "ray", "road", "rocket", "rose", "sea", "seal",
    "shark", "shrew", "skunk", "skyscraper", "snail", "snake", "spider", "squirrel", "streetcar",
    "sunflower", "sweet_pepper", "table", "tank", "telephone", "television", "tiger", "tractor",
    "train", "trout", "tulip", "turtle", "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
)
STL10_LABELS = (
    "airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck",
)
FASHION_MNIST_LABELS = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
    "Ankle boot",
)


@dataclass(frozen=True)
class DatasetSpec:
    """Input and label spec of one data set."""

    name: str  # canonical name, as in `python -m train --dataset NAME`
    title: str  # human name for cards
    num_classes: int
    image_size: int  # side of the square training crop, px
    in_chans: int
    mean: Tuple[float, ...]
    std: Tuple[float, ...]
    small_images: bool  # 28-32 px data: the paper uses the 3x3 stride-1 stem
    label_names: Optional[Tuple[str, ...]] = None  # None: read from the data set's own files
    hf_dataset: Optional[str] = None  # Hugging Face Hub data set id for card metadata
    eval_split: str = "test"  # which official split the reported numbers use


DATASET_SPECS: Dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec("cifar10", "CIFAR-10", 10, 32, 3, (0.4914, 0.4822, 0.4465),
                    (0.2470, 0.2435, 0.2616), True, CIFAR10_LABELS, "cifar10"),
        DatasetSpec("cifar100", "CIFAR-100", 100, 32, 3, (0.5071, 0.4865, 0.4409),
                    (0.2673, 0.2564, 0.2762), True, CIFAR100_LABELS, "cifar100"),
        DatasetSpec("stl10", "STL-10", 10, 96, 3, (0.4467, 0.4398, 0.4066),
                    (0.2603, 0.2566, 0.2713), False, STL10_LABELS, "tanganke/stl10"),
        DatasetSpec("tiny-imagenet", "Tiny-ImageNet-200", 200, 64, 3, (0.4802, 0.4481, 0.3975),
                    (0.2770, 0.2691, 0.2821), False, None, "zh-plus/tiny-imagenet", "val"),
        DatasetSpec("imagenet100", "ImageNet-100", 100, 224, 3, IMAGENET_MEAN, IMAGENET_STD,
                    False, None, None, "val"),
        DatasetSpec("imagenet", "ImageNet-1k", 1000, 224, 3, IMAGENET_MEAN, IMAGENET_STD,
                    False, None, "imagenet-1k", "val"),
        DatasetSpec("fashion-mnist", "Fashion-MNIST", 10, 28, 1, (0.2860,), (0.3530,), True,
                    FASHION_MNIST_LABELS, "fashion_mnist"),
    )
}


def folder_spec(title: str, classes: Sequence[str], image_size: int, mean: Sequence[float],
                std: Sequence[float], eval_split: str = "val") -> DatasetSpec:
    """The spec of a folder of your own images, as measured from it: its classes (none when
    unlabelled), the image size it was trained at and its per-channel mean and std."""
    return DatasetSpec(FOLDER, title, len(classes), int(image_size), len(mean), tuple(mean),
                       tuple(std), image_size <= 32, tuple(classes) or None, None, eval_split)


def spec_from_dict(values: Dict[str, Any]) -> DatasetSpec:
    """A spec written with ``dataclasses.asdict`` (lists back to tuples)."""
    return DatasetSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def get_dataset_spec(name: str) -> DatasetSpec:
    """Spec of a data set by name (case and `_`/`-` insensitive)."""
    key = name.strip().lower().replace("_", "-")
    if key == FOLDER:
        raise ValueError("a folder of your own images has no fixed spec: it is measured from the "
                         "data (frossl_hub.specs.folder_spec) and recorded in the run's config.json")
    key = {"cifar-10": "cifar10", "cifar-100": "cifar100", "stl-10": "stl10",
           "fashionmnist": "fashion-mnist", "imagenet-100": "imagenet100",
           "imagenet-1k": "imagenet", "tinyimagenet": "tiny-imagenet"}.get(key, key)
    if key not in DATASET_SPECS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(DATASET_SPECS)}")
    return DATASET_SPECS[key]
