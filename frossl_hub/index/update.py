"""``index add``: embed only new or changed files (size and mtime), drop removed ones, and
publish the result as a new generation, so a running service always reads a complete index."""
from __future__ import annotations

import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

from .build import BuildOptions, _check_skipped, _finish, _images, _stats, _write_arrays
from .embedding import check_model, embed_files, model_identity
from .factory import default_factory, is_ivf
from .layout import new_generation_dir, publish_generation
from .lock import write_lock
from .store import open_index

__all__ = ["UpdateReport", "update_index"]


def _plan(index, root: Path, files: List[Path]) -> Tuple[List[Tuple[str, int]], List[Path], int]:
    """(kept (path, old row) pairs, files to embed, old files now gone) for the folder now."""
    old: Dict[str, int] = {p: i for i, p in enumerate(index.paths)}
    same_root = Path(index.manifest.root) == root
    rel = [f.relative_to(root).as_posix() for f in files]
    now = _stats(root, rel)
    kept, todo = [], []
    for name, path, stat in zip(rel, files, now):
        row = old.get(name) if same_root else None
        if row is not None and tuple(index.stats[row]) == tuple(stat):
            kept.append((name, row))
        else:
            todo.append(path)
    return kept, todo, len(set(index.paths) - set(rel) if same_root else index.paths)


class UpdateReport(dict):
    """{"kept", "embedded" (new or changed), "removed", "skipped", "count"} of one ``index add``."""


def update_index(index_dir: Path, folder: Path, options: BuildOptions = BuildOptions()
                 ) -> UpdateReport:
    """Bring ``index_dir`` up to date with ``folder`` (one process).

    Raises:
        IndexCorruptError, IndexLockedError, EmptyFolderError, UnreadableImagesError (--strict),
        ModelMismatchError (the model's weights changed since the build).
    """
    from ..hub import load

    started = time.perf_counter()
    index_dir, folder = Path(index_dir).absolute(), Path(folder).resolve()
    with write_lock(index_dir):
        index = open_index(index_dir)
        m = index.manifest
        identity = model_identity(m.model)
        check_model(m.weights_sha256, index_dir.name, identity)
        files = _images(folder)
        kept, todo, removed = _plan(index, folder, files)
        staged = new_generation_dir(index_dir)
        try:
            new_emb, new_rel, skipped = np.zeros((0, m.dim), np.float32), [], []
            if todo:
                new_emb, new_rel, skipped = embed_files(load(m.model, num_classes=0), folder,
                                                        todo, staged, progress=options.progress,
                                                        batch_size=options.batch_size,
                                                        workers=options.workers)
                _check_skipped(skipped, len(files), options.strict)
            rel = [name for name, _ in kept] + list(new_rel)
            rows = np.asarray([row for _, row in kept], np.int64)
            emb = np.concatenate([np.asarray(index.embeddings[rows], np.float32), new_emb])
            order = np.argsort(np.asarray(rel, dtype=object), kind="stable")
            rel = [rel[i] for i in order]
            _write_arrays(staged, emb[order], rel, _stats(folder, rel), m.dtype)
            auto = bool(m.extra.get("auto_factory"))
            factory = default_factory(len(rel), m.dim) if auto else m.factory
            trained = _reusable(index, factory)
            base = replace(m, count=len(rel), root=str(folder), skipped=len(skipped),
                           factory=factory)
            manifest = _finish(staged, base, factory, 0, 1, trained, options.progress, started)
            for tmp in staged.glob("embeddings.f32*"):
                tmp.unlink()
            publish_generation(index_dir, staged, manifest)
        except BaseException:
            shutil.rmtree(staged, ignore_errors=True)
            raise
    return UpdateReport(kept=len(kept), embedded=len(new_rel), skipped=len(skipped),
                        removed=removed, count=len(rel))


def _reusable(index, factory: str):
    """The old FAISS index emptied but still trained, when its factory is kept (IVF only)."""
    import faiss

    if factory != index.manifest.factory or not is_ivf(factory):
        return None
    trained = faiss.clone_index(index.faiss_index)
    trained.reset()
    return trained
