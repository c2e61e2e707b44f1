"""Atomic file and folder writes, and hashing: a crash never leaves half a file."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Dict, Iterator, Mapping, Union

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_json", "atomic_dir", "sha256_file",
           "SUMS_NAME", "read_sums_file", "write_sums_file", "hash_files"]

SUMS_NAME = "SHA256SUMS"  # `sha256sum -c` compatible; model folders and index generations

PathLike = Union[str, Path]


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets a folder be fsynced
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: PathLike, write: Callable[[Path], None]) -> Path:
    """Run ``write(tmp_path)``, fsync the file, then rename it over ``path``.

    The temporary file sits in the same folder so the rename is atomic; on any
    error it is removed and ``path`` keeps its previous content.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda p: p.write_bytes(data))


def atomic_write_json(path: PathLike, obj: Any) -> Path:
    text = json.dumps(obj, indent=2, sort_keys=False) + "\n"
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


@contextlib.contextmanager
def atomic_dir(path: PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary folder that replaces ``path`` only if the block succeeds.

    Raises:
        FileExistsError: ``path`` exists, is not empty and ``overwrite`` is False.
    """
    path = Path(path)
    if path.exists() and any(path.iterdir()) and not overwrite:
        raise FileExistsError(f"{path} already exists and is not empty; pass overwrite=True "
                              "(--overwrite) to replace it.")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        for f in tmp.iterdir():
            if f.is_file():
                with open(f, "rb+") as fh:
                    os.fsync(fh.fileno())
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def sha256_file(path: PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# SHA256SUMS: the one reader and writer of the checksum lists of model folders and indexes


def read_sums_file(path: PathLike) -> Dict[str, str]:
    """Parse a SHA256SUMS file into {relative name: digest}; {} when absent.

    Accepts both forms ``sha256sum`` writes: ``HASH  name`` (text mode) and ``HASH *name``
    (``-b``, binary mode).
    """
    path = Path(path)
    if not path.is_file():
        return {}
    sums = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            digest, _, rest = line.strip().partition(" ")
            sums[rest[1:] if rest[:1] in (" ", "*") else rest] = digest
    return sums


def write_sums_file(path: PathLike, sums: Mapping[str, str]) -> Path:
    """Write {relative posix name: digest} as a SHA256SUMS file, sorted by path parts, atomically."""
    names = sorted(sums, key=lambda name: PurePosixPath(name).parts)
    text = "".join(f"{sums[name]}  {name}\n" for name in names)
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def hash_files(folder: PathLike, recursive: bool = True) -> Dict[str, str]:
    """{relative posix name: sha256} of every file below ``folder`` but its SHA256SUMS."""
    folder = Path(folder)
    found = folder.rglob("*") if recursive else folder.iterdir()
    return {p.relative_to(folder).as_posix(): sha256_file(p)
            for p in found if p.is_file() and p.name != SUMS_NAME}
