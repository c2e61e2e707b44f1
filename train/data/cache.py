"""The decode cache: folders of encoded images decoded once into a uint8 safetensors file,
so no later run decodes them again.

The files live in the user cache (``frossl_hub.caches.cache_root() / "datasets"``), or in
``--cache-dir``, never in the data folder: that may be a synced photo library or a read-only
mount, and other tools listing it must not find anything new. An entry is keyed by the data
set, the split, the folder's absolute path and a fingerprint of its file list, so two folders
never share one and a changed folder gets a new one; writes are atomic (temp file, fsync,
rename), so two runs building the same entry at once both end with a whole file."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torchvision.io import ImageReadMode, decode_jpeg, read_file

from frossl_hub._io import atomic_write
from frossl_hub.caches import DATASETS, cache_root

from .base import ArrayDataset, DatasetSpec, _error
from .folders import _decode_rgb, _FileList

_logger = logging.getLogger(__name__)

_CACHE_FORMAT = "frossl_hub.data.v1"
_DECODE_CHUNK = 1024  # images per decode task


def _fingerprint(root: Path, files: _FileList, extras: Sequence[Path]) -> str:
    """Hash of every file's relative path, size and mtime, labels and class names: any
    added, removed, replaced or relabelled file changes it."""
    cut = len(str(root)) + 1  # relative paths: the entry's key holds the absolute one
    h = hashlib.sha256(f"{_CACHE_FORMAT}\n{len(files.paths)}\n".encode())
    h.update(json.dumps(files.classes).encode())
    h.update("".join(f"{path[cut:]}\0{size}\0{mtime}\0{label}\n" for path, (size, mtime), label
                     in zip(files.paths, files.stats, files.labels)).encode())
    for path in extras:
        st = path.stat()
        h.update(f"{str(path)[cut:]}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:20]


def user_cache_dir() -> Path:
    """Where decode caches go by default: the ``datasets`` folder of the frossl-hub cache."""
    return cache_root() / DATASETS


def _dir_writable(path: Path) -> bool:
    """Whether a cache file may be written into ``path`` (created if missing)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(path, os.W_OK | os.X_OK)


def _cache_dir(cache_dir: Optional[Path]) -> Path:
    """``cache_dir`` when given, else the user cache: never the data folder."""
    return Path(cache_dir).expanduser() if cache_dir is not None else user_cache_dir()


def entry_prefix(name: str, split: str, root: Path, tag: str = "") -> str:
    """The start of an entry's file name: data set, split, decode tag and the folder's
    absolute path (hashed); the fingerprint of its files follows."""
    root_key = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]
    return f"{name}-{split}-{tag}{root_key}-"


def _cached_decode(spec: DatasetSpec, root: Path, split: str, files: _FileList,
                   extras: Sequence[Path], cache_dir: Optional[Path]) -> ArrayDataset:
    """Decoded arrays of a built-in data set's ``files`` (exactly ``spec.image_size`` px)."""
    return cached_arrays(spec.name, root, split, files, extras, cache_dir, lambda: ArrayDataset(
        _decode_files(spec, files.paths), torch.tensor(files.labels, dtype=torch.int64),
        list(files.classes)))


def cached_arrays(name: str, root: Path, split: str, files: _FileList, extras: Sequence[Path],
                  cache_dir: Optional[Path], decode: Callable[[], ArrayDataset],
                  tag: str = "") -> ArrayDataset:
    """``decode()``'s arrays of ``files``, from the cache when its fingerprint matches, else
    decoded now and cached atomically for every later run. ``tag`` keeps apart caches of the
    same files decoded differently (another image size)."""
    prefix = entry_prefix(name, split, root, tag)
    filename = f"{prefix}{_fingerprint(root, files, extras)}.safetensors"
    folder = _cache_dir(cache_dir)
    ds = _read_cache(folder / filename, files.classes, len(files.paths))
    if ds is not None:
        return ds
    t0 = time.perf_counter()
    ds = decode()
    _logger.info("%s: decoded %d %s images in %.1f s", name, len(files.paths), split,
                 time.perf_counter() - t0)
    _write_cache(folder, filename, prefix, ds, {"dataset": name, "split": split,
                                                "source": str(root.resolve())})
    return ds


def _read_cache(path: Path, classes: List[str], n: int) -> Optional[ArrayDataset]:
    """The cached arrays, or None when absent or unusable (then they are decoded again)."""
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        tensors = load_file(str(path))
        if meta.get("format") != _CACHE_FORMAT or json.loads(meta["classes"]) != classes:
            raise ValueError("stale metadata")
        skipped = [tuple(x) for x in json.loads(meta.get("skipped", "[]"))]
        ds = ArrayDataset(tensors["images"], tensors["labels"], list(classes), skipped)
        if len(ds) + len(skipped) != n:
            raise ValueError(f"{len(ds)} images, {n - len(skipped)} expected")
        return ds
    except Exception as exc:  # a damaged cache is never fatal: decode again
        warnings.warn(f"ignoring unusable dataset cache {path}: {exc}", stacklevel=3)
        return None


def _write_cache(folder: Path, filename: str, prefix: str, ds: ArrayDataset,
                 meta: Dict[str, str]) -> Optional[Path]:
    """Atomically write the cache into ``folder`` and drop stale entries of the same data
    set, split and source folder there. An unwritable folder only costs a decode next run."""
    meta = {**meta, "format": _CACHE_FORMAT, "classes": json.dumps(ds.classes)}
    if ds.skipped:
        meta["skipped"] = json.dumps(ds.skipped)
    tensors = {"images": ds.images.contiguous(), "labels": ds.labels.contiguous()}
    problem = "not writable"
    if _dir_writable(folder):
        try:
            path = atomic_write(folder / filename, lambda p: _save_readable(tensors, p, meta))
        except OSError as exc:
            problem = str(exc)
        else:
            for old in folder.glob(f"{prefix}*.safetensors"):
                if old.name != filename:
                    old.unlink(missing_ok=True)
            return path
    warnings.warn(f"cannot write the decoded-image cache in {folder} ({problem}); images will be "
                  "decoded again next run (choose another place with --cache-dir)", stacklevel=3)
    return None


def _save_readable(tensors: Dict[str, torch.Tensor], path: Path, meta: Dict[str, str]) -> None:
    save_file(tensors, str(path), metadata=meta)
    os.chmod(path, 0o644)  # mkstemp makes 0600; others sharing a --cache-dir may read it


def _decode_files(spec: DatasetSpec, paths: Sequence[str]) -> torch.Tensor:
    """Decode ``paths`` into one (N, 3, S, S) uint8 tensor: batched libjpeg decodes on a
    thread pool (torchvision releases the GIL), with a per-image fallback."""
    size = spec.image_size
    out = torch.empty((len(paths), 3, size, size), dtype=torch.uint8)

    def work(start: int) -> None:
        chunk = paths[start:start + _DECODE_CHUNK]
        try:
            images = decode_jpeg([read_file(p) for p in chunk], mode=ImageReadMode.RGB)
        except RuntimeError:  # a PNG or a broken file in the batch: find it image by image
            images = [_decode_rgb(spec.name, Path(p)) for p in chunk]
        for i, (path, img) in enumerate(zip(chunk, images)):
            if tuple(img.shape) != (3, size, size):
                raise _error(spec.name, path, f"image is {tuple(img.shape[1:])} px, not "
                                              f"{size}x{size}")
            out[start + i] = img

    workers = max(1, min(8, os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool:
        for future in [pool.submit(work, s) for s in range(0, len(paths), _DECODE_CHUNK)]:
            future.result()
    return out
