"""Open an index folder (checksums checked) and search it."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Tuple

import numpy as np

from .errors import IndexCorruptError, ItemNotFoundError, SearchArgumentError
from .factory import is_ivf
from .layout import (EMBEDDINGS, FAISS_FILE, PATHS, STATS, Manifest, check_sums,
                     current_generation, read_manifest)

__all__ = ["Hit", "SearchIndex", "open_index"]


@dataclass(frozen=True)
class Hit:
    """One search result: the item id (row), its path relative to the root, cosine similarity."""

    id: int
    path: str
    score: float


class SearchIndex:
    """One generation of an index, opened read-only: memory-mapped embeddings, FAISS index."""

    def __init__(self, folder: Path, generation: Path, manifest: Manifest, embeddings: np.ndarray,
                 paths: List[str], stats: np.ndarray, faiss_index) -> None:
        self.folder = folder
        self.generation = generation
        self.manifest = manifest
        self.embeddings = embeddings
        self.paths = paths
        self.stats = stats
        self.faiss_index = faiss_index
        self.root = Path(manifest.root)

    def __len__(self) -> int:
        return self.manifest.count

    def check_k(self, k: int) -> None:
        """Raise SearchArgumentError unless 1 <= k <= the index size."""
        if not 1 <= int(k) <= len(self):
            raise SearchArgumentError(f"k: must be in 1..{len(self)} (the size of the index "
                                      f"{self.folder.name}), got {k}.")

    def search_arrays(self, queries: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
        """(scores, ids), each B x k, of unit-norm float32 ``queries`` (B x dim)."""
        self.check_k(k)
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.manifest.dim:
            raise SearchArgumentError(f"queries must be B x {self.manifest.dim}, got "
                                      f"{'x'.join(map(str, queries.shape))}.")
        if not is_ivf(self.manifest.factory) or self.manifest.rerank <= 1:
            return self.faiss_index.search(queries, k)
        wide = min(len(self), k * self.manifest.rerank)
        _, cand = self.faiss_index.search(queries, wide)
        return self._rerank(queries, cand, k)

    def _rerank(self, queries: np.ndarray, cand: np.ndarray, k: int
                ) -> Tuple[np.ndarray, np.ndarray]:
        """Re-score candidates exactly from the stored embeddings; keep the best ``k``."""
        safe = np.where(cand >= 0, cand, 0)
        vectors = np.asarray(self.embeddings[safe.ravel()], dtype=np.float32)
        scores = np.matmul(vectors.reshape(*cand.shape, -1), queries[:, :, None])[..., 0]
        scores[cand < 0] = -np.inf
        top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        ids = np.take_along_axis(cand, top, 1)
        return np.take_along_axis(scores, top, 1).astype(np.float32), ids

    def search(self, queries: np.ndarray, k: int) -> List[List[Hit]]:
        """The ``k`` nearest items of each query, best first."""
        scores, ids = self.search_arrays(queries, k)
        return [[Hit(int(i), self.paths[i], float(s)) for s, i in zip(row_s, row_i) if i >= 0]
                for row_s, row_i in zip(scores, ids)]

    def item_file(self, item_id: int) -> Path:
        """The file of an item, resolved, only if it lies inside the indexed root.

        Raises:
            ItemNotFoundError: id out of range, the file is gone, or it resolves (through
                ``..`` or a symlink) outside the root.
        """
        if not 0 <= item_id < len(self):
            raise ItemNotFoundError(f"item {item_id} is not in index {self.folder.name} "
                                    f"(ids 0..{len(self) - 1}).")
        root = self.root.resolve()
        path = (root / self.paths[item_id]).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            raise ItemNotFoundError(f"item {item_id} has no file inside the indexed folder.")
        return path

    def describe(self) -> dict:
        return {"name": self.folder.name, "folder": str(self.folder),
                "generation": self.generation.name, **self.manifest.to_dict()}


def _read_paths(path: Path, count: int) -> List[str]:
    paths = path.read_text(encoding="utf-8").split("\n")
    if paths and paths[-1] == "":
        paths.pop()
    if len(paths) != count:
        raise IndexCorruptError(f"{path} lists {len(paths)} paths, the manifest {count}.")
    return paths


def open_index(folder: Path, check: bool = True) -> SearchIndex:
    """Open the live generation of an index folder.

    Args:
        check: verify every file against SHA256SUMS (reads the whole index once).

    Raises:
        IndexCorruptError: not an index, a missing, truncated or edited file.
    """
    import faiss

    folder = Path(folder)
    for attempt in range(3):  # a writer may replace the generation while we open it
        generation = current_generation(folder)
        try:
            if check:
                check_sums(generation)
            manifest = read_manifest(generation)
            embeddings = np.load(generation / EMBEDDINGS, mmap_mode="r")
            stats = np.load(generation / STATS)
            paths = _read_paths(generation / PATHS, manifest.count)
            index = faiss.read_index(str(generation / FAISS_FILE))
            break
        except FileNotFoundError:
            if attempt == 2 or current_generation(folder) == generation:
                raise IndexCorruptError(f"{generation} is incomplete; rebuild the index.") from None
        except (ValueError, RuntimeError, OSError) as exc:
            if isinstance(exc, IndexCorruptError):
                raise
            raise IndexCorruptError(f"cannot read {generation}: {exc}") from None
    if embeddings.shape != (manifest.count, manifest.dim) or index.ntotal != manifest.count:
        raise IndexCorruptError(f"{generation}: embeddings {embeddings.shape}, FAISS "
                                f"{index.ntotal} vectors, manifest {manifest.count} x "
                                f"{manifest.dim}: the files disagree. Rebuild the index.")
    if manifest.nprobe:
        faiss.extract_index_ivf(index).nprobe = manifest.nprobe
    return SearchIndex(folder, generation, manifest, embeddings, paths, stats, index)
