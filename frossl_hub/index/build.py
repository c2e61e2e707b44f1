"""``index build`` and ``index add``: embed a folder, write a new generation, swap it in."""
from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

from .._io import _fsync_dir, atomic_write
from .embedding import embed_files, model_identity
from .errors import EmptyFolderError, SearchIndexError, UnreadableImagesError
from .factory import default_factory, make_index, recall_probe, rerank_options, sample_queries, tune
from .layout import (EMBEDDINGS, FAISS_FILE, PATHS, STATS, Manifest, new_generation_dir,
                     publish_generation)
from .lock import write_lock
from .shards import barrier, fill_index, gather
from .store import SearchIndex

__all__ = ["DTYPES", "BuildOptions", "build_index", "update_index"]

DTYPES = ("float16", "float32")


@dataclass
class BuildOptions:
    """How to build: FAISS factory (None: by size), stored dtype, and the embedding loop's."""

    factory: Optional[str] = None
    dtype: str = "float16"
    strict: bool = False  # refuse unreadable files instead of skipping them
    overwrite: bool = False
    batch_size: int = 256
    workers: int = 4
    progress: bool = True


def _images(folder: Path) -> List[Path]:
    from ..embed_folder import list_images

    files = [p for p in list_images(folder) if "\n" not in p.name]
    if not files:
        raise EmptyFolderError(f"{folder} holds no image files to index "
                               "(.jpg, .png, ... searched recursively).")
    return files


def _stats(root: Path, rel: Sequence[str]) -> np.ndarray:
    out = np.zeros((len(rel), 2), np.int64)
    for i, name in enumerate(rel):
        st = os.stat(root / name)
        out[i] = (st.st_size, st.st_mtime_ns)
    return out


def _check_skipped(skipped: List[Tuple[str, str]], total: int, strict: bool) -> None:
    if skipped and strict:
        first = "; ".join(f"{p}: {why}" for p, why in skipped[:3])
        raise UnreadableImagesError(f"{len(skipped)} of {total} files cannot be read (--strict): "
                                    f"{first}{' ...' if len(skipped) > 3 else ''}")
    if len(skipped) == total:
        raise EmptyFolderError(f"none of the {total} image files could be read; e.g. "
                               f"{skipped[0][0]}: {skipped[0][1]}")


def _write_arrays(staged: Path, emb: np.ndarray, rel: Sequence[str], stats: np.ndarray,
                  dtype: str) -> None:
    def save(name: str, array: np.ndarray) -> None:
        def write(tmp: Path) -> None:
            with open(tmp, "wb") as f:
                np.save(f, array)
        atomic_write(staged / name, write)

    save(EMBEDDINGS, emb.astype(dtype, copy=False))
    save(STATS, stats)
    text = "".join(f"{p}\n" for p in rel)
    atomic_write(staged / PATHS, lambda p: p.write_text(text, encoding="utf-8"))


def _finish(staged: Path, base: Manifest, factory: str, rank: int, world: int, trained,
            progress: bool, started: float) -> Optional[Manifest]:
    """Fill and tune the FAISS index in ``staged``; the manifest on rank 0 (else None)."""
    import faiss

    index = fill_index(staged, staged / EMBEDDINGS, factory, base.dim, rank, world, trained,
                       progress)
    if rank != 0:
        return None
    emb = np.load(staged / EMBEDDINGS, mmap_mode="r")
    base.factory = factory
    probe = SearchIndex(staged, staged, base, emb, [], np.zeros((0, 2)), index)
    queries = sample_queries(len(emb))
    recall_of = recall_probe(emb, queries)

    def recall_with(rerank: int) -> float:
        base.rerank = rerank
        return recall_of(probe.search_arrays)

    nprobe, base.rerank, recall = tune(index, recall_with, rerank_options(factory), base.dim)
    faiss.write_index(index, str(staged / FAISS_FILE))
    base.nprobe, base.recall_at_10, base.recall_queries = nprobe, round(recall, 4), len(queries)
    base.build_minutes = round((time.perf_counter() - started) / 60, 3)
    base.shards = world
    return base


def _prepare_out(out: Path, overwrite: bool) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise SearchIndexError(f"{out} already exists; grow it with `python -m frossl_hub index "
                               f"add {out} DIR`, or pass --overwrite to rebuild it.")


def build_index(folder: Path, model_name: str, out: Path, options: BuildOptions = BuildOptions(),
                rank: int = 0, world: int = 1) -> Optional[Manifest]:
    """Embed every image below ``folder`` with ``model_name`` and write the index ``out``.

    Raises:
        EmptyFolderError, UnreadableImagesError (--strict), IndexLockedError, SearchIndexError
        (``out`` exists), ValueError (bad factory or dtype). Nothing is left half-written.
    """
    from ..hub import load

    started = time.perf_counter()
    folder, out = Path(folder).resolve(), Path(out).absolute()
    if options.dtype not in DTYPES:
        raise ValueError(f"--dtype must be one of {', '.join(DTYPES)}, got {options.dtype!r}.")
    files = _images(folder)
    _prepare_out(out, options.overwrite)
    if options.factory:
        make_index(options.factory, 8 * 64)  # a typo fails before minutes of embedding
    identity = model_identity(model_name)
    model = load(model_name, num_classes=0)
    with _maybe_lock(out, rank):
        staging = _staging(out, rank)
        fresh = not (out / "CURRENT").exists()
        try:
            emb, rel, skipped = embed_files(model, folder, files, staging, rank, world,
                                            options.batch_size, options.workers, options.progress)
            skipped = [s for part in gather(skipped, world) for s in part]
            _check_skipped(skipped, len(files), options.strict)
            if rank == 0:
                _write_arrays(staging, emb, rel, _stats(folder, rel), options.dtype)
            barrier()
            count, dim = _shape_of(staging)
            base = Manifest(model=identity.name, weights_sha256=identity.weights_sha256, dim=dim,
                            count=count, factory="", dtype=options.dtype, root=str(folder),
                            skipped=len(skipped), extra={"auto_factory": not options.factory})
            factory = options.factory or default_factory(count, dim)
            manifest = _finish(staging, base, factory, rank, world, None, options.progress,
                               started)
            if rank == 0:
                _publish(out, staging, manifest, fresh)
            barrier()
            return manifest
        finally:
            if rank == 0:
                shutil.rmtree(staging, ignore_errors=True)


def _shape_of(staging: Path) -> Tuple[int, int]:
    count, dim = np.load(staging / EMBEDDINGS, mmap_mode="r").shape
    return int(count), int(dim)


def _staging(out: Path, rank: int) -> Path:
    """A folder every rank can name: ``.OUT.staging`` beside the index (cleared by rank 0)."""
    staging = out.parent / f".{out.name}.staging"
    if rank == 0:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    barrier()
    return staging


def _publish(out: Path, staging: Path, manifest: Manifest, fresh: bool) -> None:
    """A first build: the whole folder appears at once (temp folder + rename); else a new
    generation inside the existing index."""
    if not fresh:
        staged = new_generation_dir(out)
        _move_files(staging, staged)
        publish_generation(out, staged, manifest)
        return
    tmp = out.parent / f".{out.name}.new"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    staged = new_generation_dir(tmp)
    _move_files(staging, staged)
    publish_generation(tmp, staged, manifest)
    if out.exists():  # an empty folder (or --overwrite of a non-index)
        shutil.rmtree(out)
    os.replace(tmp, out)
    _fsync_dir(out.parent)


def _move_files(src: Path, dst: Path) -> None:
    for name in (EMBEDDINGS, STATS, PATHS, FAISS_FILE):
        os.replace(src / name, dst / name)


class _NoLock:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _maybe_lock(out: Path, rank: int):
    return write_lock(out) if rank == 0 else _NoLock()
