"""Training checkpoints: plain tensors and dicts, written atomically, loaded weights-only."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional

import torch

from frossl_hub._io import atomic_write

__all__ = ["CKPT_NAME", "save_checkpoint", "load_checkpoint", "latest_checkpoint", "CheckpointError"]

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


def latest_checkpoint(run_dir: Path) -> Optional[Path]:
    path = Path(run_dir) / CKPT_NAME
    return path if path.is_file() else None
