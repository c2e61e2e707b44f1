"""One writer per index: an exclusive, non-blocking ``flock`` on a file beside the index folder.

The lock file sits next to ``INDEX/`` (``.INDEX.lock``) so it also guards the first build,
before the folder exists. The kernel drops the lock when the process dies: no stale locks.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Iterator

from .errors import IndexLockedError

__all__ = ["lock_path", "write_lock"]


def lock_path(index_dir: Path) -> Path:
    """``.NAME.lock`` in the index folder's parent."""
    index_dir = Path(index_dir).absolute()
    return index_dir.parent / f".{index_dir.name}.lock"


@contextlib.contextmanager
def write_lock(index_dir: Path) -> Iterator[Path]:
    """Hold the index's write lock for the block.

    Raises:
        IndexLockedError: another process holds it (names that process's pid).
    """
    path = lock_path(index_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
            raise IndexLockedError(
                f"another process (pid {holder}) is writing the index {index_dir}; wait for it "
                f"to finish (its lock: {path}).") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        yield path
    finally:
        os.close(fd)  # closing releases the flock
