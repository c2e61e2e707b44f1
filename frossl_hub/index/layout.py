"""An index folder on disk: generations, the manifest (index.json) and checksums.

``INDEX/CURRENT`` names the live generation, a sub-folder ``gNNNNNN/`` holding::

    embeddings.npy   N x dim L2-normalised embeddings (float16 or float32, memory-mapped)
    paths.txt        one path per line, relative to the indexed folder (row i = item id i)
    stats.npy        N x 2 int64: each file's size in bytes and mtime in ns
    faiss.index      the FAISS index (ids are row numbers)
    index.json       the manifest (model, sha256, dim, count, factory, recall, ...)
    SHA256SUMS       sha256 of every file above, checked at open

A writer fills a temporary folder, renames it to the next generation and then replaces
``CURRENT`` atomically, so a reader always opens a complete generation; the previous one is
kept (a service may still be opening it), older ones are removed.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from .._io import (SUMS_NAME, _fsync_dir, atomic_write, atomic_write_json, hash_files,
                   read_sums_file, sha256_file, write_sums_file)
from .errors import IndexCorruptError

__all__ = ["CURRENT", "EMBEDDINGS", "FAISS_FILE", "FORMAT", "MANIFEST", "Manifest", "PATHS",
           "STATS", "SUMS", "check_sums", "current_generation", "new_generation_dir",
           "publish_generation", "read_manifest", "write_sums"]

FORMAT = "frossl-hub-index/1"
CURRENT = "CURRENT"
EMBEDDINGS = "embeddings.npy"
PATHS = "paths.txt"
STATS = "stats.npy"
FAISS_FILE = "faiss.index"
MANIFEST = "index.json"
SUMS = SUMS_NAME
_PREFIX = "g"


@dataclass
class Manifest:
    """What index.json records about one generation."""

    model: str  # the name or folder the index was built with
    weights_sha256: str  # sha256 of the model's weights: queries must come from the same
    dim: int
    count: int
    factory: str  # the FAISS index_factory string
    dtype: str  # of embeddings.npy
    root: str  # the indexed folder (absolute)
    build_minutes: float = 0.0
    recall_at_10: Optional[float] = None  # vs exact search, on held-out sample queries
    recall_queries: int = 0
    nprobe: Optional[int] = None  # IVF lists visited per query
    rerank: int = 1  # candidates per hit re-scored exactly from embeddings.npy
    skipped: int = 0  # unreadable files left out
    shards: int = 1  # processes that built parts of the FAISS index
    format: str = FORMAT
    extra: Dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def read_manifest(generation: Path) -> Manifest:
    path = generation / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Manifest(**data)
    except (OSError, ValueError, TypeError) as exc:
        raise IndexCorruptError(f"{path} is missing or not a valid manifest ({exc}); rebuild the "
                                "index with `python -m frossl_hub index build`.") from None


def current_generation(index_dir: Path) -> Path:
    """The live generation folder of an index.

    Raises:
        IndexCorruptError: not an index folder, or CURRENT names a missing generation.
    """
    index_dir = Path(index_dir)
    pointer = index_dir / CURRENT
    try:
        name = pointer.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        raise IndexCorruptError(f"{index_dir} is not a search index (no readable {CURRENT}); "
                                "build one with `python -m frossl_hub index build DIR --out "
                                f"{index_dir}`.") from None
    generation = index_dir / name
    if not name.startswith(_PREFIX) or "/" in name or not generation.is_dir():
        raise IndexCorruptError(f"{pointer} names {name!r}, which is not a generation of this "
                                "index; the folder was edited by hand. Rebuild it.")
    return generation


def write_sums(generation: Path) -> None:
    """SHA256SUMS of every other file of a generation."""
    write_sums_file(generation / SUMS, hash_files(generation, recursive=False))


def check_sums(generation: Path) -> None:
    """Raise IndexCorruptError unless every file matches SHA256SUMS and none is missing."""
    sums_path = generation / SUMS
    listed = read_sums_file(sums_path)
    if not listed:
        raise IndexCorruptError(f"{sums_path} is missing or empty; the index is incomplete. "
                                "Rebuild it.")
    for name in (EMBEDDINGS, PATHS, STATS, FAISS_FILE, MANIFEST):
        if name not in listed:
            raise IndexCorruptError(f"{sums_path} does not list {name}; the index was edited "
                                    "by hand. Rebuild it.")
    for name, digest in listed.items():
        path = generation / name
        if not path.is_file():
            raise IndexCorruptError(f"{path} is missing; the index is incomplete. Rebuild it.")
        if sha256_file(path) != digest:
            raise IndexCorruptError(f"{path} does not match its checksum in {SUMS}: the file is "
                                    "truncated or was edited. Rebuild the index (or `index add` "
                                    "from a good copy).")


def new_generation_dir(index_dir: Path) -> Path:
    """A fresh temporary folder inside ``index_dir`` for the next generation's files."""
    index_dir.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=".g-", suffix=".tmp", dir=index_dir))


def _generations(index_dir: Path) -> List[Path]:
    return sorted(p for p in index_dir.iterdir()
                  if p.is_dir() and p.name.startswith(_PREFIX) and p.name[1:].isdigit())


def publish_generation(index_dir: Path, staged: Path, manifest: Manifest) -> Path:
    """Write the manifest and checksums into ``staged``, make it the live generation, prune.

    The caller holds the write lock. Returns the new generation folder.
    """
    atomic_write_json(staged / MANIFEST, manifest.to_dict())
    write_sums(staged)
    existing = _generations(index_dir)
    number = int(existing[-1].name[1:]) + 1 if existing else 1
    generation = index_dir / f"{_PREFIX}{number:06d}"
    os.replace(staged, generation)
    _fsync_dir(index_dir)
    atomic_write(index_dir / CURRENT, lambda p: p.write_text(generation.name + "\n",
                                                             encoding="ascii"))
    for old in existing[:-1]:  # keep the one a reader may be opening right now
        shutil.rmtree(old, ignore_errors=True)
    for stale in index_dir.glob(".g-*.tmp"):  # left by a writer that died (we hold the lock)
        if stale != staged:
            shutil.rmtree(stale, ignore_errors=True)
    return generation
