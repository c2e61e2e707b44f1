"""Where a process runs: its torchrun rank and its device. One place for the trainer,
the embedding command and the service."""
from __future__ import annotations

import os
from typing import NamedTuple

import torch

__all__ = ["DistEnv", "dist_env", "resolve_device", "DeviceError"]


class DeviceError(ValueError):
    """A device name that is unknown or not available on this machine."""


class DistEnv(NamedTuple):
    """This process's place in a ``torchrun`` job (rank 0 of 1 without one)."""

    rank: int
    world: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def dist_env() -> DistEnv:
    """Rank, world size and local rank from torchrun's environment variables."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return DistEnv(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]),
                       int(os.environ.get("LOCAL_RANK", 0)))
    return DistEnv(0, 1, 0)


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> ``cuda`` when available, else ``cpu``; bare ``cuda`` -> ``cuda:<local_rank>``.

    Raises:
        DeviceError: an unknown name, or CUDA asked for on a machine without it.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(f"--device {name} asked for, but CUDA is not available here; "
                              "use --device cpu.")
        try:
            return torch.device(f"cuda:{local_rank}" if name == "cuda" else name)
        except RuntimeError:  # "cuda:x"
            raise DeviceError(f"unknown --device {name!r}: use auto, cpu, cuda or cuda:N.") from None
    if name != "cpu":
        raise DeviceError(f"unknown --device {name!r}: use auto, cpu, cuda or cuda:N.")
    return torch.device(name)
