"""Several uvicorn worker processes as one service: how many, how many threads each, and when
the whole service is ready.

``--workers auto`` and ``--threads auto`` (the defaults) follow ``auto_workers`` and
``auto_threads``. With more than one worker, ``python -m serve`` makes one temporary folder
(``state_folder``) before the workers start and removes it after they stop: ``metrics/`` is
prometheus_client's ``PROMETHEUS_MULTIPROC_DIR`` (one ``/metrics`` for all workers), and
``ready/`` holds one empty file per worker whose models are loaded (``WorkerReadiness``), so
each worker reports the service ready only once all of them are.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Dict, Iterator, Optional, Union

from .metrics import MULTIPROC_ENV

__all__ = ["MAX_AUTO_WORKERS", "READY_ENV", "WorkerReadiness", "auto_threads", "auto_workers",
           "state_folder", "threads_per_worker", "worker_count"]

MAX_AUTO_WORKERS = 8  # each worker holds its own copy of every model and ONNX session
READY_ENV = "FROSSL_WORKERS_READY_DIR"  # set by `python -m serve` for its worker processes
AUTO = "auto"


def auto_workers(cores: int) -> int:
    """Worker processes for ``--workers auto``: one per core, at most ``MAX_AUTO_WORKERS``.

    Why: one worker keeps only about 1.2 of 2 cores busy with one image per request (its
    event loop, JSON and hand-offs are serial), so separate processes, not intra-op threads,
    fill the cores for many small requests (benchmarks/RESULTS.md 3c: 513 req/s with one
    worker, 1,044 with two, at 64 connections). The sweep of 3d (1/8/64 connections, 1/32
    images per request, 1x1, 1x2, 2x1 workers x threads) confirms it: best at 8 and 64
    connections; a single client gives up about a quarter (one worker wins there). The cap
    keeps memory bounded on big machines (every worker loads every model), where the
    leftover cores go to intra-op threads.
    """
    return max(1, min(int(cores), MAX_AUTO_WORKERS))


def auto_threads(cores: int, workers: int) -> int:
    """ONNX Runtime / torch intra-op threads per worker for ``--threads auto``: the cores
    split evenly between the workers, at least one (``cores // workers``).

    With ``auto_workers`` this is 1 up to ``MAX_AUTO_WORKERS`` cores: each forward pass runs
    on one core and the workers' forward passes run side by side, which avoids the thread
    hand-offs that make a 2-thread forward of a small batch slower than two 1-thread ones.
    """
    return max(1, int(cores) // max(1, int(workers)))


def worker_count(workers: Union[int, str], cores: int) -> int:
    """``--workers`` as a number (``auto``: ``auto_workers(cores)``)."""
    return auto_workers(cores) if workers == AUTO else int(workers)


def threads_per_worker(threads: Union[int, str, None], workers: Union[int, str], cores: int
                       ) -> int:
    """``--threads`` as a number (``auto``: ``auto_threads`` for the resolved workers)."""
    if threads is None or threads == AUTO:
        return auto_threads(cores, worker_count(workers, cores))
    return int(threads)


class WorkerReadiness:
    """Ready files of the workers of one service in a shared folder: ``<folder>/<pid>``.

    A worker calls ``mark_ready()`` once its models are loaded and ``clear()`` as it stops;
    ``all_ready()`` is True once ``expected`` live workers have marked themselves (a file
    left by a worker that died is not counted). Once True it stays True in this process, so
    the probe costs one folder listing per call only while the service starts.
    """

    def __init__(self, folder: Path, expected: int) -> None:
        self.folder = Path(folder)
        self.expected = expected
        self._all = False

    @classmethod
    def from_env(cls, expected: int) -> Optional["WorkerReadiness"]:
        """The readiness of this worker's service, or None outside ``--workers N`` (N > 1)."""
        folder = os.environ.get(READY_ENV)
        return cls(Path(folder), expected) if folder and expected > 1 else None

    def mark_ready(self) -> None:
        (self.folder / str(os.getpid())).touch()

    def clear(self) -> None:
        with contextlib.suppress(OSError):
            (self.folder / str(os.getpid())).unlink()

    def ready_workers(self) -> int:
        """Live workers whose models are loaded."""
        try:
            names = [p.name for p in self.folder.iterdir()]
        except OSError:
            return 0
        return sum(1 for name in names if name.isdigit() and _alive(int(name)))

    def all_ready(self) -> bool:
        if not self._all:
            self._all = self.ready_workers() >= self.expected
        return self._all


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


@contextlib.contextmanager
def state_folder() -> Iterator[Dict[str, str]]:
    """A fresh folder for the workers' shared state, removed afterwards; yields the
    environment variables that point the workers at it. A ``PROMETHEUS_MULTIPROC_DIR``
    already set is kept (the caller's folder: not removed)."""
    root = Path(tempfile.mkdtemp(prefix="frossl-serve-"))
    env = {READY_ENV: str(root / "ready")}
    (root / "ready").mkdir()
    if not os.environ.get(MULTIPROC_ENV):
        env[MULTIPROC_ENV] = str(root / "metrics")
        (root / "metrics").mkdir()
    try:
        yield env
    finally:
        shutil.rmtree(root, ignore_errors=True)
