"""Where the cores go during a benchmark cell: CPU seconds of a server's process group, of its
main thread (uvicorn's event loop) and of the load generator, read from ``/proc`` and
``getrusage`` before and after the cell.

Wall-clock samplers such as py-spy cannot tell a thread that waits for a core from one that
waits for work; CPU seconds per second of wall time (cores busy) can. Linux only: elsewhere
every reading is ``None`` and the report prints "-".
"""
from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

__all__ = ["CpuSnapshot", "CpuShare", "snapshot", "share"]

PROC = Path("/proc")
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class CpuSnapshot:
    wall: float
    group: Optional[float]  # CPU seconds of every process in the server's process group
    main_thread: Optional[float]  # CPU seconds of the server's main thread
    client: float  # CPU seconds of this process and its waited-for children (the load generator)


@dataclass(frozen=True)
class CpuShare:
    """Cores kept busy on average during a cell (1.0 = one core the whole time)."""

    server: Optional[float]
    main_thread: Optional[float]
    client: float


def _stat_fields(path: Path) -> Optional[List[str]]:
    """The fields of a /proc .../stat file after the command name; None when it is gone."""
    try:
        return path.read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _cpu_seconds(fields: List[str]) -> float:
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime + stime: fields 14, 15 of proc(5)


def _stat_seconds(path: Path) -> Optional[float]:
    fields = _stat_fields(path)
    return None if fields is None else _cpu_seconds(fields)


def _group_seconds(pgid: int) -> Optional[float]:
    """CPU seconds of every live process whose process group (field 5 of proc(5)) is ``pgid``."""
    if not PROC.is_dir():
        return None
    stats = (_stat_fields(entry / "stat") for entry in PROC.iterdir() if entry.name.isdigit())
    return sum(_cpu_seconds(f) for f in stats if f is not None and int(f[2]) == pgid)


def snapshot(server_pid: int) -> CpuSnapshot:
    """CPU seconds so far of the server started as ``server_pid`` (leading its own process
    group) and of this process with its children."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return CpuSnapshot(time.monotonic(), _group_seconds(server_pid),
                       _stat_seconds(PROC / str(server_pid) / "task" / str(server_pid) / "stat"),
                       me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime)


def share(before: CpuSnapshot, after: CpuSnapshot) -> CpuShare:
    """Average cores busy between two snapshots."""
    wall = max(after.wall - before.wall, 1e-9)

    def rate(a: Optional[float], b: Optional[float]) -> Optional[float]:
        return None if a is None or b is None else (b - a) / wall

    return CpuShare(rate(before.group, after.group), rate(before.main_thread, after.main_thread),
                    (after.client - before.client) / wall)
