"""What a run ran on, for config.json, cards and benchmark records."""
from __future__ import annotations

from pathlib import Path

import torch

__all__ = ["describe_hardware", "peak_memory_mb"]


def describe_hardware(device: torch.device, world: int = 1) -> str:
    """One line naming the processor(s) a run used."""
    if device.type == "cuda":
        return f"{world} x {torch.cuda.get_device_name(device)}"
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {torch.get_num_threads()} threads" + (f", {world} processes" if world > 1 else "")


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory so far: the GPU's allocator peak, else this process's peak resident set."""
    if device.type == "cuda":
        return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux
