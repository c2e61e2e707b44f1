"""The hub model a transfer starts from: resolved like ``frossl_hub.load``, at the asked
image size (within what its architecture takes), and the classifier published from it."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch

import frossl_hub
from frossl_hub._io import sha256_file
from frossl_hub.hub import resolve
from frossl_hub.stems import STEMS

from .data import TransferError

__all__ = ["Parent", "load_parent", "size_limits", "classifier", "RESNET_STAGE_STRIDE", "MAX_UPSCALE"]

RESNET_STAGE_STRIDE = 8  # layer2..layer4 halve the map three times after the stem
DEFAULT_STEM_REDUCTION = 4  # an architecture frossl_hub does not register: timm's resnet stem
MAX_UPSCALE = 8  # the largest --image-size: this many times the side the model was trained at


@dataclass
class Parent:
    """The frozen starting point: its identity (for the card) and its embedding model."""

    name: str
    sha256: str
    source: str  # path, env, bundled, hf-hub
    architecture: str
    trained_size: int
    model: torch.nn.Module  # num_classes=0, eval mode, pretrained_cfg at the transfer's size

    def record(self) -> Dict[str, Any]:
        return {"name": self.name, "sha256": self.sha256, "source": self.source,
                "architecture": self.architecture, "image_size": self.trained_size}


def size_limits(architecture: str, trained_size: int) -> Tuple[int, int]:
    """(smallest, largest) input side: the last stage must see at least 1x1; at most
    ``MAX_UPSCALE`` times the trained side."""
    stem = STEMS.get(architecture)
    reduction = stem.reduction if stem is not None else DEFAULT_STEM_REDUCTION
    return reduction * RESNET_STAGE_STRIDE, MAX_UPSCALE * trained_size


def _name_of(resolved: Any, text: str) -> str:
    if resolved.entry is not None:
        return resolved.entry.name
    return (resolved.config.get("frossl") or {}).get("name") or Path(text).name or text


def load_parent(name_or_path: str, image_size: Optional[int]) -> Parent:
    """Resolve and load the model (``frossl_hub.load``'s errors and messages), embedding-only,
    with its preprocessing at ``image_size`` (None: the size it was trained at).

    Raises:
        ModelNotFoundError, ChecksumError: as ``frossl_hub.load``.
        TransferError: ``image_size`` outside the architecture's limits.
    """
    resolved = resolve(name_or_path)
    config = resolved.config
    trained = int(config["pretrained_cfg"].get("input_size", (3, 224, 224))[-1])
    lo, hi = size_limits(config["architecture"], trained)
    if image_size is not None and not lo <= image_size <= hi:
        raise TransferError(f"--image-size {image_size} is outside what {resolved.folder} takes: "
                            f"{lo} to {hi} px (its {config['architecture']} was trained at {trained} px)")
    model = frossl_hub.load(name_or_path, num_classes=0)
    size = image_size or trained
    cfg = dict(model.pretrained_cfg)
    channels = cfg.get("input_size", (3, trained, trained))[0]
    cfg.update(input_size=(channels, size, size))
    cfg.pop("test_input_size", None)
    model.pretrained_cfg = cfg
    return Parent(_name_of(resolved, name_or_path), sha256_file(resolved.weights), resolved.source,
                  config["architecture"], trained, model)


def classifier(parent: Parent, classes: List[str], backbone: Mapping[str, torch.Tensor],
               head: Mapping[str, torch.Tensor]) -> torch.nn.Module:
    """The timm model to publish: ``backbone`` weights, the ``fc`` head, the parent's
    preprocessing at the transfer's size and the folder's class names."""
    import timm

    cfg = {k: v for k, v in parent.model.pretrained_cfg.items() if k not in ("file", "source")}
    cfg.update(num_classes=len(classes), label_names=list(classes))
    cfg.pop("label_descriptions", None)
    model = timm.create_model(parent.architecture, num_classes=len(classes),
                              in_chans=parent.model.in_chans, pretrained_cfg_overlay=cfg)
    state = {k: v.detach().cpu() for k, v in backbone.items() if not k.startswith("fc.")}
    state.update({k: v.detach().cpu().float() for k, v in head.items()})
    model.load_state_dict(state)
    return model.eval()
