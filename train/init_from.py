"""``--init-from NAME_OR_PATH``: start a run's backbone from a published model.

The parent is found and checked exactly as ``frossl_hub.load`` does (catalog name, published
folder or ``hf-hub:``; sha256 against the catalog and the folder's SHA256SUMS). Only the
backbone is taken: the projector and the online classifier start fresh. A warm start needs
a stem with the parent's ``conv1`` kernel (the weights then fit; stride and max-pool may
differ, e.g. ``frossl_resnet18`` -> ``frossl_resnet18_nopool``); a different number of input
channels is adapted the way timm adapts pretrained weights (``adapt_input_conv``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

from torch import Tensor, nn

from frossl_hub._io import sha256_file
from frossl_hub.stems import get_stem

__all__ = ["InitError", "Parent", "chain_after", "chain_totals", "chain_history", "run_history", "resolve_parent",
           "parent_architecture", "load_parent"]


class InitError(RuntimeError):
    """The model to start from cannot be found, verified or used for this run."""


@dataclass(frozen=True)
class Parent:
    """A published model a run starts from."""

    name: str  # as given on the command line
    source: str  # where it was found: a folder, bundled (with frossl-hub) or hf-hub:ORG/NAME
    sha256: str  # of its weights file, checked when it was resolved
    architecture: str
    in_chans: int
    hf_hub_id: Optional[str]  # on the Hub, for the card's base_model
    chain: Optional[Dict[str, Any]] = None  # its training so far, from its metrics.json (chain_totals)

    def record(self) -> Dict[str, Any]:
        """What config.json and the card say about the parent."""
        return {"name": self.name, "source": self.source, "sha256": self.sha256,
                "architecture": self.architecture} | ({"chain": self.chain} if self.chain else {})


def chain_totals(published: Dict[str, Any]) -> Dict[str, Any]:
    """A published model's training in all: its runs, training minutes and epochs, its
    parents' included (a chain of ``--init-from`` runs is budgeted by its total)."""
    return {"runs": int(published.get("chained_runs", 1)),
            "train_minutes": float(published.get("total_train_minutes", published["train_minutes"])),
            "epochs": float(published.get("total_epochs", published["epochs"]))}


def chain_after(chain: Dict[str, Any], train_minutes: float, epochs: float) -> Dict[str, Any]:
    """The chain's totals once a run of ``train_minutes`` and ``epochs`` is added to ``chain``."""
    return {"runs": chain["runs"] + 1, "train_minutes": chain["train_minutes"] + train_minutes,
            "epochs": chain["epochs"] + epochs}


def chain_history(frossl: Dict[str, Any]) -> Optional[List[Dict[str, Any]]]:
    """Every run of a published model's chain, oldest first (architecture, epochs, training
    minutes), from the ``frossl`` block of its config.json; None when it cannot be told.

    Models published before the list was written (``metrics.runs``) get it from what their
    config.json does hold: the parent's record (its own history, or a single run) and the
    model's recipe and budget."""
    metrics = frossl.get("metrics") or {}
    if metrics.get("runs"):
        return [dict(run) for run in metrics["runs"]]
    try:
        own = {"architecture": frossl["recipe"]["architecture"], "epochs": float(metrics["epochs"]),
               "train_minutes": float(metrics["train_minutes"])}
    except (KeyError, TypeError, ValueError):
        return None
    parent = frossl.get("init_from")
    if not parent:
        return [own]
    chain = parent.get("chain") or {}
    if chain.get("history"):
        return [dict(run) for run in chain["history"]] + [own]
    if chain.get("runs") == 1:
        return [{"architecture": parent["architecture"], "epochs": float(chain["epochs"]),
                 "train_minutes": float(chain["train_minutes"])}, own]
    return None


def run_history(parent: Optional[Dict[str, Any]], architecture: str, epochs: float,
                train_minutes: float) -> Optional[List[Dict[str, Any]]]:
    """The chain's runs once this run (``architecture``, ``epochs``, ``train_minutes``) is
    added to its parent's record (``Parent.record()``, None for a run from scratch)."""
    own = {"architecture": architecture, "epochs": round(float(epochs), 3),
           "train_minutes": round(float(train_minutes), 1)}
    if not parent:
        return [own]
    history = (parent.get("chain") or {}).get("history") or _recorded_history(parent)
    return None if history is None else [dict(run) for run in history] + [own]


def _recorded_history(parent: Dict[str, Any]) -> Optional[List[Dict[str, Any]]]:
    """The history of a parent recorded before runs kept it: read again from the parent,
    when the model found under its name still has the recorded sha256."""
    try:
        found = resolve_parent(parent["name"])
    except (InitError, KeyError):
        return None
    return (found.chain or {}).get("history") if found.sha256 == parent.get("sha256") else None


def _parent_chain(folder: Path) -> Optional[Dict[str, Any]]:
    """The parent's chain totals and history, when its folder says how long it trained."""
    try:
        published = json.loads((folder / "metrics.json").read_text())["published"]
        chain = chain_totals(published)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        history = chain_history(json.loads((folder / "config.json").read_text())["frossl"])
    except (OSError, ValueError, KeyError, TypeError):
        history = None
    return chain | ({"history": history} if history else {})


def resolve_parent(name_or_path: str) -> Parent:
    """Find and verify a published model (no weights are read yet)."""
    from frossl_hub.hub import HF_PREFIX, ChecksumError, ModelNotFoundError, resolve

    try:
        resolved = resolve(name_or_path, check=True)
    except (ModelNotFoundError, ChecksumError, ValueError) as exc:
        raise InitError(f"--init-from {name_or_path}: {exc}") from None
    config = resolved.config
    in_chans = int(config.get("model_args", {}).get("in_chans")
                   or config["pretrained_cfg"].get("input_size", [3])[0])
    sha = resolved.entry.sha256 if resolved.entry is not None and resolved.entry.sha256 else \
        sha256_file(resolved.weights)
    hf_id = (resolved.entry.hf_hub_id if resolved.entry is not None else
             (name_or_path[len(HF_PREFIX):] if name_or_path.startswith(HF_PREFIX) else None))
    source = (f"{HF_PREFIX}{hf_id}" if resolved.source == "hf-hub" and hf_id else
              "bundled" if resolved.source == "bundled" else str(resolved.folder))
    return Parent(name_or_path, source, sha, config["architecture"], in_chans, hf_id,
                  _parent_chain(resolved.folder))


def parent_architecture(parent: Parent, arch: Optional[str]) -> str:
    """The architecture a warm-started run uses: the parent's, or an ``--arch`` whose ``conv1``
    has the parent's kernel (every weight then fits; only the downsampling differs)."""
    if arch is None or arch == parent.architecture:
        return parent.architecture
    if get_stem(arch).kernel != get_stem(parent.architecture).kernel:
        raise InitError(
            f"--init-from {parent.name} is a {parent.architecture} "
            f"({get_stem(parent.architecture).description}) but --arch asks for {arch} "
            f"({get_stem(arch).description}); a warm start needs the same conv1 kernel: "
            "drop --arch to use the parent's, or start from a model with that stem.")
    return arch


def _parent_state(parent: Parent) -> Dict[str, Tensor]:
    from safetensors.torch import load_file

    from frossl_hub.hub import resolve

    weights = resolve(parent.name, check=False).weights  # verified by resolve_parent
    return {k: v.float() for k, v in load_file(str(weights)).items() if not k.startswith("fc.")}


def load_parent(backbone: nn.Module, parent: Parent) -> None:
    """Copy the parent's backbone weights into ``backbone`` (``num_classes=0``)."""
    from timm.models import adapt_input_conv

    state = _parent_state(parent)
    in_chans = backbone.conv1.weight.shape[1]
    if in_chans != parent.in_chans:
        state["conv1.weight"] = adapt_input_conv(in_chans, state["conv1.weight"], parent.in_chans)
    missing, unexpected = backbone.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise InitError(f"--init-from {parent.name}: its weights do not fit {parent.architecture}: "
                        f"missing {missing[:5]}, unexpected {unexpected[:5]}")
