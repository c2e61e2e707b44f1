"""frossl-hub's cache folder: where it is, what it holds, and freeing it.

One root for every cache (``cache_root``): ``$FROSSL_HUB_CACHE``, else ``frossl_hub`` in the
user cache folder (``$XDG_CACHE_HOME``, else ``~/.cache``). It holds the training decode
caches (``datasets/``: a folder's images decoded once into a uint8 safetensors file) and the
ONNX exports (``onnx/``: one graph and its sidecar JSON per set of weights) and the frozen
features ``python -m train.transfer`` extracts from a labelled folder (``transfer-features/``:
KEY.npy and the image of each row, KEY.paths.txt). Nothing is ever written into a data folder. ``python -m frossl_hub cache list|clear`` shows and frees them.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

__all__ = ["CACHE_ENV", "DATASETS", "ONNX", "FEATURES", "KINDS", "CacheEntry", "cache_root", "scan_cache",
           "delete_entries", "human_size", "age"]

CACHE_ENV = "FROSSL_HUB_CACHE"
DATASETS = "datasets"  # decode caches of image folders (train.data.cache)
ONNX = "onnx"  # ONNX exports (frossl_hub.onnx_export.cached_onnx)
FEATURES = "transfer-features"  # frozen features of labelled folders (train.transfer)
KINDS = (DATASETS, ONNX, FEATURES)
_SIDECAR = ".json"  # FILE.onnx.json beside FILE.onnx
_LOCK = ".lock"  # FILE.onnx.lock: held while one process exports FILE.onnx
_PATHS = ".paths.txt"  # KEY.paths.txt beside KEY.npy: the image each row of features is


def cache_root() -> Path:
    """``$FROSSL_HUB_CACHE``, else ``$XDG_CACHE_HOME/frossl_hub``, else ``~/.cache/frossl_hub``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "frossl_hub"


@dataclass(frozen=True)
class CacheEntry:
    """One cached item: its files (a graph has a sidecar), their total size and what it is."""

    kind: str  # DATASETS or ONNX
    name: str  # the main file's name: what ``cache clear NAME`` takes
    files: Tuple[Path, ...]
    size: int  # bytes
    modified: float  # newest mtime of its files (seconds since the epoch)
    source: str  # the data folder decoded, or the weights exported ("" when unknown)
    detail: str  # data set and split, or architecture and opset; "unfinished write" for a temp file


def _stat(files: Sequence[Path]) -> Tuple[int, float]:
    stats = [f.stat() for f in files]
    return sum(s.st_size for s in stats), max(s.st_mtime for s in stats)


def _dataset_entry(path: Path) -> CacheEntry:
    meta: Dict[str, str] = {}
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
    except Exception:  # a damaged file is still listed, and can be cleared
        pass
    detail = " ".join(x for x in (meta.get("dataset", ""), meta.get("split", "")) if x) or "unreadable"
    size, mtime = _stat([path])
    return CacheEntry(DATASETS, path.name, (path,), size, mtime, meta.get("source", ""), detail)


def _onnx_entry(path: Path) -> CacheEntry:
    sidecar = path.with_name(path.name + _SIDECAR)
    files = (path,) + tuple(p for p in (sidecar, path.with_name(path.name + _LOCK)) if p.is_file())
    meta: Dict[str, object] = {}
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    detail = f"{meta.get('architecture') or '?'} opset {meta.get('opset') or '?'}"
    size, mtime = _stat(files)
    return CacheEntry(ONNX, path.name, files, size, mtime, str(meta.get("source_weights") or ""), detail)


def _features_entry(path: Path) -> CacheEntry:
    paths = path.with_name(path.stem + _PATHS)
    files = (path, paths) if paths.is_file() else (path,)
    try:
        count = len(paths.read_text(encoding="utf-8").splitlines())
    except OSError:
        count = 0
    size, mtime = _stat(files)
    return CacheEntry(FEATURES, path.name, files, size, mtime, "", f"{count} images" if count else "unreadable")


def _stray_entry(kind: str, path: Path) -> CacheEntry:
    size, mtime = _stat([path])
    return CacheEntry(kind, path.name, (path,), size, mtime, "",
                      "unfinished write" if path.name.endswith(".tmp") else "unknown file")


def _kind_entries(kind: str, folder: Path) -> List[CacheEntry]:
    if not folder.is_dir():
        return []
    entries, claimed = [], set()
    main_suffix, read = _READERS[kind]
    for path in sorted(folder.glob(f"[!.]*{main_suffix}")):
        entry = read(path)
        entries.append(entry)
        claimed.update(entry.files)
    for path in sorted(folder.iterdir()):  # temp files of a killed run, anything else
        if path.is_file() and path not in claimed:
            entries.append(_stray_entry(kind, path))
    return entries


_READERS = {DATASETS: (".safetensors", _dataset_entry), ONNX: (".onnx", _onnx_entry),
            FEATURES: (".npy", _features_entry)}  # kind -> (its main files' suffix, their entry)


def scan_cache(root: Optional[Path] = None) -> List[CacheEntry]:
    """Every entry of the cache folders, decode caches first, each kind sorted by name."""
    root = cache_root() if root is None else Path(root)
    return [e for kind in KINDS for e in _kind_entries(kind, root / kind)]


def delete_entries(entries: Iterable[CacheEntry]) -> Tuple[int, int]:
    """Delete the entries' files; returns (entries deleted, bytes freed). A file already gone
    (another process cleared it) counts as freed by that process, not this one."""
    count = freed = 0
    for entry in entries:
        gone = 0
        for path in entry.files:
            try:
                size = path.stat().st_size
                path.unlink()
            except FileNotFoundError:
                continue
            gone += size
        count += gone > 0
        freed += gone
    return count, freed


def human_size(n: float) -> str:
    """Bytes as a short human size: 512 B, 1.5 KiB, 2.3 MiB."""
    value = float(n)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def age(mtime: float, now: Optional[float] = None) -> str:
    """How long ago ``mtime`` was: 5 seconds ago, 3 hours ago, 2 days ago."""
    seconds = max(0.0, (time.time() if now is None else now) - mtime)
    for unit, span in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= span:
            n = int(seconds // span)
            return f"{n} {unit}{'s' if n > 1 else ''} ago"
    return f"{int(seconds)} seconds ago"
