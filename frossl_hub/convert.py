"""Convert solo-learn / official FroSSL / torchvision ResNet18 checkpoints to the published layout."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import torch

from .catalog import SMALL_STEM_ARCH, STANDARD_STEM_ARCH
from .hub import model_config, save_pretrained
from .specs import get_dataset_spec

__all__ = ["ConversionError", "SOURCES", "extract_backbone", "convert_checkpoint"]

SOURCES = ("solo-learn", "official", "torchvision")  # the official code is built on solo-learn
_BACKBONE_PREFIXES = ("backbone.", "module.backbone.", "model.backbone.")
_HEAD_PREFIXES = ("classifier.", "module.classifier.")


class ConversionError(ValueError):
    """The checkpoint is not what its --from says, or does not fit the architecture."""


def _load(path: Path) -> Dict[str, torch.Tensor]:
    if not path.is_file():
        raise ConversionError(f"no checkpoint file at {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, foreign globals, truncated files
        raise ConversionError(
            f"cannot load {path} with torch.load(weights_only=True): {exc}. Only plain tensors and "
            "dicts are accepted; re-save the checkpoint's state_dict alone if it holds other objects."
        ) from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ConversionError(f"{path} does not hold a state dict of tensors")
    return obj


def extract_backbone(state: Dict[str, torch.Tensor], source: str) -> Tuple[Dict[str, torch.Tensor], Dict[str, torch.Tensor]]:
    """Split a checkpoint into (backbone tensors with timm keys, fc head tensors)."""
    if source not in SOURCES:
        raise ConversionError(f"--from must be one of {', '.join(SOURCES)}, got {source!r}")
    backbone: Dict[str, torch.Tensor] = {}
    head: Dict[str, torch.Tensor] = {}
    if source == "torchvision":
        for key, value in state.items():
            key = key[len("module."):] if key.startswith("module.") else key
            (head if key.startswith("fc.") else backbone)[key] = value
    else:
        for key, value in state.items():
            prefix = next((p for p in _BACKBONE_PREFIXES if key.startswith(p)), None)
            if prefix:
                sub = key[len(prefix):]
                if not sub.startswith("fc."):  # solo-learn replaces fc with Identity
                    backbone[sub] = value
                continue
            prefix = next((p for p in _HEAD_PREFIXES if key.startswith(p)), None)
            if prefix:
                head["fc." + key[len(prefix):]] = value
        if not backbone:
            sample = ", ".join(list(state)[:5])
            raise ConversionError(f"no 'backbone.*' keys in a {source} checkpoint (first keys: {sample})")
    return backbone, head


def _architecture(backbone: Dict[str, torch.Tensor], arch: Optional[str]) -> str:
    if arch:
        return arch
    conv1 = backbone.get("conv1.weight")
    if conv1 is None:
        raise ConversionError("the backbone has no conv1.weight: not a ResNet18")
    return SMALL_STEM_ARCH if conv1.shape[-1] == 3 else STANDARD_STEM_ARCH


def convert_checkpoint(path: Union[str, Path], source: str, out: Union[str, Path], dataset: str,
                       arch: Optional[str] = None, dtype: str = "float32", overwrite: bool = False) -> Path:
    """Convert a checkpoint into a published folder that `frossl_hub.load` and timm read.

    Args:
        path: the checkpoint (loaded with ``weights_only=True``).
        source: solo-learn, official (same layout) or torchvision.
        out: target folder.
        dataset: data set the weights belong to (input spec, labels).
        arch: timm architecture; default from the stem's kernel size.
        dtype: stored precision.
        overwrite: replace an existing folder.
    """
    import timm

    from . import models as _models  # noqa: F401  (registers the architectures)

    spec = get_dataset_spec(dataset)
    backbone, head = extract_backbone(_load(Path(path)), source)
    architecture = _architecture(backbone, arch)
    num_classes = head["fc.weight"].shape[0] if "fc.weight" in head else 0
    in_chans = backbone["conv1.weight"].shape[1] if "conv1.weight" in backbone else spec.in_chans
    if in_chans != spec.in_chans:
        raise ConversionError(f"{path}: conv1 takes {in_chans}-channel input but {spec.title} images "
                              f"have {spec.in_chans}; pick the --dataset the weights were trained on.")
    pretrained_cfg = _models.pretrained_cfg_for(spec, architecture)
    if num_classes != spec.num_classes:
        pretrained_cfg["label_names"] = None
    model = timm.create_model(architecture, num_classes=num_classes, in_chans=in_chans,
                              pretrained_cfg_overlay=pretrained_cfg)
    expected = model.state_dict()
    state = {**backbone, **head}
    unexpected = sorted(set(state) - set(expected))
    # BN batch counters are bookkeeping, absent from some checkpoints: keep the model's zeros
    missing = sorted(k for k in set(expected) - set(state) if not k.endswith("num_batches_tracked"))
    if unexpected or missing:
        raise ConversionError(f"{path} does not match {architecture}: unexpected keys {unexpected[:5]}, "
                              f"missing keys {missing[:5]}")
    wrong = [f"{k}: {tuple(v.shape)} vs {tuple(expected[k].shape)}" for k, v in state.items()
             if v.shape != expected[k].shape]
    if wrong:
        raise ConversionError(f"{path} has shapes that do not fit {architecture}: {wrong[:5]}")
    model.load_state_dict(state, strict=False)  # keys and shapes checked above
    card = (f"# Converted ResNet18 ({architecture})\n\nConverted from a {source} checkpoint "
            f"(`{Path(path).name}`) by `python -m frossl_hub convert`; input spec of {spec.title}.\n"
            "No metrics were measured on this copy.\n")
    return save_pretrained(model.state_dict(), out, model_config(model, frossl={"converted_from": source}),
                           dtype=dtype, extra_files={"README.md": card}, overwrite=overwrite)
