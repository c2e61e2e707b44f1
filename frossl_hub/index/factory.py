"""Which FAISS index for how many vectors, how to train and fill it, and its measured recall.

Small collections get ``Flat`` (exact inner product: cosine on unit vectors). Beyond
``FLAT_MAX`` vectors an IVF index with 4-bit fast-scan product quantisation (``PQ{dim/8}x4fs``:
dim/16 bytes a vector plus its 8-byte id) finds ``rerank * k`` candidates, which are re-scored
exactly from the memory-mapped embeddings; ``nprobe`` is raised until recall@10 against exact
search on held-out sample queries reaches ``TARGET_RECALL``.
"""
from __future__ import annotations

import math
from typing import Callable, Iterable, Optional, Tuple

import numpy as np

__all__ = ["CHUNK", "FLAT_MAX", "RERANK", "TARGET_RECALL", "add_rows", "default_factory",
           "exact_topk", "is_ivf", "rerank_for", "make_index", "recall_at", "sample_queries", "train_index",
           "tune_nprobe"]

# Below this many vectors exact search is fast enough (a few ms per query on one core) and
# needs no training; benchmarks/index_search.py --crossover measures where IVF overtakes it.
FLAT_MAX = 100_000
RERANK = 10  # candidates per requested hit, re-scored exactly
TARGET_RECALL = 0.95
RECALL_QUERIES = 500
CHUNK = 65_536  # rows per add / exact-search step (bounded memory at any collection size)
TRAIN_PER_LIST = 64  # training vectors per inverted list (FAISS warns below 39)
NPROBES = (8, 16, 32, 64, 128, 256, 512)


def default_factory(count: int, dim: int) -> str:
    """``Flat`` up to FLAT_MAX vectors, else ``IVF{nlist},PQ{dim/8}x4fs``."""
    if count <= FLAT_MAX:
        return "Flat"
    nlist = 2 ** round(math.log2(4 * math.sqrt(count)))
    return f"IVF{nlist},PQ{max(1, dim // 8)}x4fs"


def is_ivf(factory: str) -> bool:
    return "IVF" in factory


def rerank_for(factory: str) -> int:
    """Candidates per hit to re-score exactly: RERANK for compressed IVF codes (PQ, SQ...),
    1 where the index already scores exactly (Flat, IVF...,Flat)."""
    return RERANK if is_ivf(factory) and not factory.replace(" ", "").endswith(",Flat") else 1


def make_index(factory: str, dim: int):
    """An empty FAISS index for inner-product search.

    Raises:
        ValueError: FAISS cannot parse the factory string.
    """
    import faiss

    try:
        return faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        raise ValueError(f"--factory {factory!r} is not a FAISS index_factory string for {dim}-d "
                         f"vectors: {str(exc).splitlines()[-1] if str(exc) else exc}") from None


def _rows(emb: np.ndarray, ids: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(emb[np.sort(ids)], dtype=np.float32)


def train_index(index, emb: np.ndarray, seed: int = 0, progress: bool = True) -> None:
    """Train ``index`` (no-op for Flat) on a random sample of ``emb``'s rows."""
    from tqdm.auto import tqdm

    if index.is_trained:
        return
    nlist = getattr(_ivf(index), "nlist", 256)
    n = min(len(emb), max(TRAIN_PER_LIST * nlist, 16_384))
    sample = _rows(emb, np.random.default_rng(seed).choice(len(emb), n, replace=False))
    with tqdm(total=1, desc=f"train ({n} vectors)", disable=not progress, unit="index") as bar:
        index.train(sample)
        bar.update(1)


def _ivf(index):
    import faiss

    try:
        return faiss.extract_index_ivf(index)
    except RuntimeError:
        return None


def add_rows(index, emb: np.ndarray, ids: Optional[np.ndarray] = None, progress: bool = True,
             desc: str = "add") -> None:
    """Add rows of ``emb`` (all, or ``ids``) in chunks, with their row numbers as FAISS ids."""
    from tqdm.auto import tqdm

    ids = np.arange(len(emb), dtype=np.int64) if ids is None else np.asarray(ids, np.int64)
    for start in tqdm(range(0, len(ids), CHUNK), desc=desc, disable=not progress, unit="chunk"):
        part = ids[start:start + CHUNK]
        x = np.ascontiguousarray(emb[part], dtype=np.float32)
        if _ivf(index) is not None:
            index.add_with_ids(x, part)
        else:  # Flat keeps insertion order: ids are positions
            index.add(x)


def exact_topk(emb: np.ndarray, queries: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` (scores, ids) by inner product, over ``emb`` in chunks."""
    best_s = np.full((len(queries), 0), -np.inf, np.float32)
    best_i = np.zeros((len(queries), 0), np.int64)
    for start in range(0, len(emb), CHUNK):
        s = queries @ np.asarray(emb[start:start + CHUNK], dtype=np.float32).T
        kk = min(k, s.shape[1])
        top = np.argpartition(-s, kk - 1, axis=1)[:, :kk]
        best_s = np.concatenate([best_s, np.take_along_axis(s, top, 1)], 1)
        best_i = np.concatenate([best_i, top + start], 1)
        keep = np.argsort(-best_s, axis=1, kind="stable")[:, :k]
        best_s, best_i = np.take_along_axis(best_s, keep, 1), np.take_along_axis(best_i, keep, 1)
    return best_s, best_i


def sample_queries(count: int, seed: int = 1) -> np.ndarray:
    """Row ids of the held-out sample queries (RECALL_QUERIES of them, or all rows)."""
    n = min(count, RECALL_QUERIES)
    return np.sort(np.random.default_rng(seed).choice(count, n, replace=False))


def recall_at(search: Callable[[np.ndarray, int], Tuple[np.ndarray, np.ndarray]],
              emb: np.ndarray, query_ids: np.ndarray, k: int = 10) -> float:
    """recall@k of ``search`` vs exact search; each query is a stored row, and that row itself
    is left out of both answers (it would be a free hit)."""
    if len(emb) < 2:
        return 1.0
    k = min(k, len(emb) - 1)
    queries = np.asarray(emb[query_ids], dtype=np.float32)
    _, truth = exact_topk(emb, queries, k + 1)
    _, found = search(queries, k + 1)
    hits = 0
    for q, t, f in zip(query_ids, truth, found):
        t_set = [i for i in t if i != q][:k]
        f_set = {i for i in f if i != q and i >= 0}
        hits += len(f_set.intersection(t_set))
    return hits / (k * len(query_ids))


def tune_nprobe(index, recall_of: Callable[[], float], nprobes: Iterable[int] = NPROBES
                ) -> Tuple[Optional[int], float]:
    """The smallest nprobe whose recall@10 reaches TARGET_RECALL (else the largest tried);
    (None, recall) for an index without inverted lists."""
    ivf = _ivf(index)
    if ivf is None:
        return None, recall_of()
    recall, chosen = 0.0, None
    for nprobe in sorted({min(p, ivf.nlist) for p in nprobes}):
        ivf.nprobe = chosen = nprobe
        recall = recall_of()
        if recall >= TARGET_RECALL:
            break
    return chosen, recall
