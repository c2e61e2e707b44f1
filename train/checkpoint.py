"""Training checkpoints: plain tensors and dicts, written atomically, loaded weights-only;
``Checkpointer`` knows what a run saves and restores."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch
import torch.distributed as dist

from frossl_hub._io import atomic_write

__all__ = ["CKPT_NAME", "save_checkpoint", "load_checkpoint", "CheckpointError", "Checkpointer", "Progress"]

CKPT_NAME = "last.ckpt"  # the resumable state of a run directory


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable or from another kind of run."""


def save_checkpoint(state: Dict[str, Any], path: Path) -> Path:
    """Write ``state`` with torch.save to a temp file, fsync, rename over ``path``.

    A crash mid-write leaves the previous checkpoint intact.
    """
    return atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: Path, map_location: Any = "cpu") -> Dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` (no pickle code execution)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or foreign files
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from None
    if not isinstance(state, dict) or "model" not in state or "step" not in state:
        raise CheckpointError(f"{path} is not a frossl-hub training checkpoint")
    return state



@dataclass
class Progress:
    """How far a run is: steps done and seconds spent, across resumed sessions."""

    step: int = 0
    train_time_s: float = 0.0  # in optimisation steps
    wall_before_s: float = 0.0  # wall-clock of earlier sessions, evaluations included


class Checkpointer:
    """Owns a run's ``last.ckpt``: what goes in (model, optimiser, scaler, progress, the
    augmentation and torch RNG states of every rank), atomic saves, and restoring it all.

    Every rank calls :meth:`save` (the augmentation RNG states are gathered); rank 0 writes.
    """

    def __init__(self, path: Path, training: Any, aug_gen: torch.Generator, recipe: Dict[str, Any],
                 rank: int = 0, world: int = 1, extra: Optional[Dict[str, Any]] = None) -> None:
        self.path = Path(path)
        self.training = training
        self.aug_gen = aug_gen
        self.recipe = recipe  # Recipe.to_dict(), stored with every save
        self.rank, self.world = rank, world
        self.extra = dict(extra or {})  # more plain data to keep (the parent model of a warm start)

    def restore(self, state: Dict[str, Any]) -> Progress:
        """Load a checkpoint's states into the model, optimiser, scaler and RNGs."""
        t = self.training
        t.model.load_state_dict(state["model"])
        t.optimizer.load_state_dict(state["optimizer"])
        t.scaler.load_state_dict(state["scaler"])
        aug = state["rng"]["aug"]
        self.aug_gen.set_state(aug[self.rank].cpu() if self.rank < len(aug) else self.aug_gen.get_state())
        torch.set_rng_state(state["rng"]["torch"])
        train_time = float(state["train_time_s"])
        return Progress(int(state["step"]), train_time, float(state.get("wall_time_s", train_time)))

    def save(self, reason: str, step: int, epoch: float, train_time_s: float, wall_time_s: float) -> None:
        aug_states = [self.aug_gen.get_state()]
        if self.world > 1:
            gathered: List[Any] = [None] * self.world
            dist.all_gather_object(gathered, self.aug_gen.get_state())
            aug_states = gathered
        if self.rank != 0:
            return
        t = self.training
        save_checkpoint({
            "model": t.model.state_dict(), "optimizer": t.optimizer.state_dict(),
            "scaler": t.scaler.state_dict(), "step": step, "epoch": epoch,
            "train_time_s": train_time_s, "wall_time_s": wall_time_s, "recipe": self.recipe,
            "reason": reason,
            "rng": {"aug": aug_states, "torch": torch.get_rng_state()},
            **self.extra,
        }, self.path)
