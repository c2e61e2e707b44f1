"""Which FAISS index for how many vectors, how to train and fill it, and its measured recall.

Small collections get ``Flat`` (exact inner product: cosine on unit vectors). Beyond
``FLAT_MAX`` vectors an IVF index with 4-bit fast-scan product quantisation (``PQ{dim/8}x4fs``:
dim/16 bytes a vector plus its 8-byte id) finds ``rerank * k`` candidates, which are re-scored
exactly from the memory-mapped embeddings; at build, the cheapest (``nprobe``, ``rerank``)
whose recall@10 against exact search on sample queries reaches ``TARGET_RECALL`` is kept.
"""
from __future__ import annotations

import math
from typing import Callable, Optional, Sequence, Tuple

import numpy as np

__all__ = ["CHUNK", "FLAT_MAX", "RERANKS", "TARGET_RECALL", "add_rows", "default_factory",
           "exact_topk", "is_ivf", "ivf_factory", "make_index", "recall_probe", "rerank_options",
           "sample_queries", "train_index", "tune"]

# Up to this many vectors: exact search. It reads n x 2 KiB per query (10,000: 20 MB, 2.3 ms
# on the idle 2-core machine), needs no training, and IVF lists of so few vectors train poorly
# (FAISS asks for 39 a list). benchmarks/index_search.py --crossover has IVF faster from
# somewhere between 3,000 and 10,000 vectors (benchmarks/RESULTS.md 6a).
FLAT_MAX = 10_000
# candidates per requested hit re-scored exactly (tuned at build); 64 is what clustered 1M
# synthetic vectors need for recall@10 0.95 (16 gave 0.62 whatever nprobe: RESULTS.md 6a)
RERANKS = (2, 4, 8, 16, 32, 64)
TARGET_RECALL = 0.95
RECALL_QUERIES = 500
CHUNK = 65_536  # rows per add / exact-search step (bounded memory at any collection size)
TRAIN_PER_LIST = 64  # training vectors per inverted list (FAISS warns below 39)
NPROBES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
Search = Callable[[np.ndarray, int], Tuple[np.ndarray, np.ndarray]]


def ivf_factory(count: int, dim: int) -> str:
    """``IVF{nlist},PQ{dim/8}x4fs``, nlist the power of two nearest 4 sqrt(count)."""
    nlist = 2 ** round(math.log2(4 * math.sqrt(max(count, 1))))
    return f"IVF{nlist},PQ{max(1, dim // 8)}x4fs"


def default_factory(count: int, dim: int) -> str:
    """``Flat`` up to FLAT_MAX vectors, else ``ivf_factory``."""
    return "Flat" if count <= FLAT_MAX else ivf_factory(count, dim)


def is_ivf(factory: str) -> bool:
    return "IVF" in factory


def rerank_options(factory: str) -> Tuple[int, ...]:
    """Candidates per hit that may be re-scored exactly: RERANKS for compressed IVF codes
    (PQ, SQ...), (1,) where the index already scores exactly (Flat, IVF...,Flat)."""
    exact = not is_ivf(factory) or factory.replace(" ", "").endswith(",Flat")
    return (1,) if exact else RERANKS


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


def recall_probe(emb: np.ndarray, query_ids: np.ndarray, k: int = 10
                 ) -> Callable[[Search], float]:
    """A function giving recall@k of a search function against exact search (computed once)
    on the stored rows ``query_ids``; each query's own row is left out of both answers (it
    would be a free hit)."""
    if len(emb) < 2:
        return lambda search: 1.0
    k = min(k, len(emb) - 1)
    queries = np.asarray(emb[query_ids], dtype=np.float32)
    _, truth = exact_topk(emb, queries, k + 1)
    wanted = [[i for i in t if i != q][:k] for q, t in zip(query_ids, truth)]

    def recall(search: Search) -> float:
        _, found = search(queries, k + 1)
        hits = sum(len({i for i in f if i != q and i >= 0}.intersection(t))
                   for q, f, t in zip(query_ids, found, wanted))
        return hits / (k * len(query_ids))

    return recall


def tune(index, recall_with: Callable[[int], float], reranks: Sequence[int], dim: int,
         k: int = 10) -> Tuple[Optional[int], int, float]:
    """(nprobe, rerank, recall@10): the cheapest pair reaching TARGET_RECALL, else the best.

    Pairs are tried in order of the bytes a query reads: ``nprobe`` lists of codes plus
    ``rerank * k`` float16 rows to re-score. (None, 1, recall) without inverted lists.
    """
    ivf = _ivf(index)
    if ivf is None:
        return None, 1, recall_with(1)
    list_bytes = max(1.0, ivf.ntotal / ivf.nlist) * getattr(ivf, "code_size", 32)
    nprobes = sorted({min(p, ivf.nlist) for p in NPROBES})
    pairs = sorted(((p, r) for p in nprobes for r in reranks),
                   key=lambda pr: pr[0] * list_bytes + pr[1] * k * dim * 2)
    best: Tuple[Optional[int], int, float] = (None, 1, -1.0)
    for nprobe, rerank in pairs:
        ivf.nprobe = nprobe
        recall = recall_with(rerank)
        if recall > best[2]:
            best = (nprobe, rerank, recall)
        if recall >= TARGET_RECALL:
            return nprobe, rerank, recall
    ivf.nprobe = best[0]
    return best
