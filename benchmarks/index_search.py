"""Search speed of the default index (``frossl_hub.index``) against exact search, in one run.

Rows, each on the same data and the same held-out queries:

1. numpy: exact brute force, one matrix product (float32) and a partial sort;
2. faiss Flat: ``IndexFlatIP``, exact;
3. default: what ``index build`` picks for this size (``Flat`` up to FLAT_MAX vectors, else
   ``IVF{nlist},PQ{dim/8}x4fs`` whose top ``rerank * k`` candidates are re-scored exactly from
   the memory-mapped float16 embeddings, ``nprobe`` and ``rerank`` tuned as at build to the
   cheapest pair with recall@10 >= 0.95);
4. every ``--factory`` string (repeatable), built and tuned the same way (to choose the default).

Columns: queries/s at batch 1 and 64, recall@10 against numpy, build time (train + add +
tuning), bytes per vector of the FAISS index (serialised), and of what search also reads
(the float16 embeddings, memory-mapped, for the re-ranking; 0 for exact rows).

Data: ``--n`` synthetic 512-d unit vectors drawn around ``--clusters`` random centres (real
embeddings are clustered; uniform random points on a sphere have no near neighbours and
defeat every index), and queries drawn the same way but not stored. ``--cifar`` adds the
same rows on real CIFAR-10 train embeddings of the bundled CIFAR-10 model (test images as
queries), embedded here first (a few minutes). ``--crossover`` times Flat against the IVF
default at batch 1 for growing n up to 300k (the table at ``--n`` has both at 1M): where exact
search stops being the faster one.

Goal at 1M: default >= 20x numpy brute force queries/s at recall@10 >= 0.95, index <= 128
bytes per vector.

Examples::

    python benchmarks/index_search.py                      # 1M synthetic (the lead, idle machine)
    python benchmarks/index_search.py --n 1000000 --cifar --crossover
    python benchmarks/index_search.py --n 20000 --queries 200 --factory IVF128,PQ64x4fs  # smoke
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

try:  # `python benchmarks/NAME.py` puts this folder on sys.path; `python -m benchmarks.NAME` does not
    import _common
except ImportError:
    from benchmarks import _common
import numpy as np

from frossl_hub.index.factory import (FLAT_MAX, add_rows, default_factory, exact_topk, ivf_factory,
                                      make_index, rerank_options, train_index, tune)
from frossl_hub.index.layout import Manifest
from frossl_hub.index.store import SearchIndex

K = 10
GOAL_SPEEDUP, GOAL_RECALL, GOAL_BYTES = 20.0, 0.95, 128
Search = Callable[[np.ndarray, int], Tuple[np.ndarray, np.ndarray]]


def synthetic(n: int, dim: int, clusters: int, queries: int, seed: int = 0
              ) -> Tuple[np.ndarray, np.ndarray]:
    """(n x dim stored, queries x dim held-out) unit vectors around shared random centres."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim), dtype=np.float32)

    def draw(count: int) -> np.ndarray:
        out = np.empty((count, dim), np.float32)
        for start in range(0, count, 65_536):
            m = min(65_536, count - start)
            x = centres[rng.integers(0, clusters, m)] + rng.standard_normal((m, dim), dtype=np.float32)
            out[start:start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
        return out

    return draw(n), draw(queries)


def cifar_embeddings(folder: Path, queries: int) -> Tuple[np.ndarray, np.ndarray]:
    """Unit-norm CIFAR-10 train embeddings (stored) and test embeddings (queries)."""
    import frossl_hub
    from frossl_hub.embed_folder import embed_folder

    model = frossl_hub.load("frossl-resnet18-cifar10", num_classes=0)
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for split in ("train", "test"):
            path = Path(tmp) / f"{split}.npy"
            embed_folder(model, folder / split, path, normalize=True, progress=True)
            out.append(np.load(path))
    return out[0], out[1][:queries]


def qps(search: Search, queries: np.ndarray, batch: int, limit: int) -> float:
    """Queries per second of ``search`` at ``batch`` queries per call (``limit`` queries)."""
    count = max(batch, min(limit, len(queries)))
    q = np.resize(queries, (count, queries.shape[1]))  # repeats the queries when fewer than a batch
    search(q[:batch], K)  # warm-up
    started = time.perf_counter()
    for start in range(0, len(q) - batch + 1, batch):
        search(q[start:start + batch], K)
    done = (len(q) // batch) * batch
    return done / (time.perf_counter() - started)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f[f >= 0]) & set(t)) / K for f, t in zip(found, truth)]))


def build_row(factory: str, emb16: np.ndarray, emb32: np.ndarray, tune_q: np.ndarray
              ) -> Tuple[Search, float, int, str, int]:
    """(search, build seconds, index bytes, note, rerank) of a factory, built and tuned like
    index build (but on held-out queries)."""
    import faiss

    started = time.perf_counter()
    index = make_index(factory, emb32.shape[1])
    train_index(index, emb32, progress=False)
    add_rows(index, emb32, progress=False)
    manifest = Manifest(model="", weights_sha256="", dim=emb32.shape[1], count=len(emb32),
                        factory=factory, dtype="float16", root="")
    store = SearchIndex(Path("."), Path("."), manifest, emb16, [], np.zeros((0, 2)), index)
    _, tune_truth = exact_topk(emb32, tune_q, K)

    def recall_with(rerank: int) -> float:
        manifest.rerank = rerank
        return recall(store.search_arrays(tune_q, K)[1], tune_truth)

    nprobe, manifest.rerank, _ = tune(index, recall_with, rerank_options(factory), emb32.shape[1])
    seconds = time.perf_counter() - started
    size = int(faiss.serialize_index(index).size)
    note = f"nprobe {nprobe}" if nprobe else "exact"
    return store.search_arrays, seconds, size, note, manifest.rerank


def numpy_search(emb: np.ndarray) -> Search:
    def search(q: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
        s = q @ emb.T
        top = np.argpartition(-s, k - 1, axis=1)[:, :k]
        return np.take_along_axis(s, top, 1), top
    return search


def measure(name: str, emb32: np.ndarray, queries: np.ndarray, factories: Sequence[str],
            limit: int) -> Dict[str, float]:
    """Print the table of one data set; returns the default row's ratios."""
    n, dim = emb32.shape
    print(f"## {name}: {n} stored, {len(queries)} held-out queries, {dim}-d")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "emb16.npy"
        np.save(path, emb32.astype(np.float16))
        emb16 = np.load(path, mmap_mode="r")
        _, truth = exact_topk(emb32, queries, K)
        tune_q, eval_q, eval_truth = queries[: len(queries) // 2], queries[len(queries) // 2:], truth[len(queries) // 2:]
        rows, out = [], {}
        exact = numpy_search(emb32)
        base1, base64 = qps(exact, eval_q, 1, limit), qps(exact, eval_q, 64, limit)
        rows.append(["numpy brute force", f"{base1:.1f}", f"{base64:.1f}", "1.000", "-", 4 * dim, 0, "exact"])
        default = default_factory(n, dim)
        plan = [("faiss Flat", "Flat"), (f"default ({default})", default)]
        plan += [(f, f) for f in factories if f != default]
        for label, factory in plan:
            search, seconds, size, note, rerank = build_row(factory, emb16, emb32, tune_q)
            r = recall(search(eval_q, K)[1], eval_truth)
            q1, q64 = qps(search, eval_q, 1, limit), qps(search, eval_q, 64, limit)
            extra = 2 * dim if rerank > 1 else 0
            rows.append([label, f"{q1:.1f}", f"{q64:.1f}", f"{r:.3f}", f"{seconds:.1f}",
                         f"{size / n:.1f}", extra, note + (f", rerank {rerank}x" if rerank > 1 else "")])
            if label.startswith("default"):
                out = {"speedup1": q1 / base1, "speedup64": q64 / base64, "recall": r, "bytes": size / n}
    print(_common.table(["row", "q/s batch 1", "q/s batch 64", "recall@10", "build s",
                         "index B/vec", "+mmap B/vec", "notes"], rows))
    print(_common.fmt_ratio("default / numpy q/s, batch 1", out["speedup1"], f">= {GOAL_SPEEDUP:g}",
                            out["speedup1"] >= GOAL_SPEEDUP))
    print(_common.fmt_ratio("default / numpy q/s, batch 64", out["speedup64"], f">= {GOAL_SPEEDUP:g}",
                            out["speedup64"] >= GOAL_SPEEDUP))
    print(_common.fmt_ratio("default recall@10", out["recall"], f">= {GOAL_RECALL}", out["recall"] >= GOAL_RECALL))
    print(_common.fmt_ratio("default index bytes per vector", out["bytes"], f"<= {GOAL_BYTES}",
                            out["bytes"] <= GOAL_BYTES))
    print()
    return out


def crossover(dim: int, clusters: int, sizes: Sequence[int], limit: int) -> None:
    """Flat vs the IVF default at batch 1, for growing n."""
    print(f"## crossover: Flat vs IVF at batch 1 (FLAT_MAX is {FLAT_MAX})")
    rows = []
    for n in sizes:
        emb, queries = synthetic(n, dim, clusters, 200, seed=n)
        with tempfile.TemporaryDirectory() as tmp:
            np.save(Path(tmp) / "e.npy", emb.astype(np.float16))
            emb16 = np.load(Path(tmp) / "e.npy", mmap_mode="r")
            ivf = ivf_factory(n, dim)
            flat_s, *_ = build_row("Flat", emb16, emb, queries[:100])
            ivf_s, *_ = build_row(ivf, emb16, emb, queries[:100])
            f1, i1 = qps(flat_s, queries[100:], 1, limit), qps(ivf_s, queries[100:], 1, limit)
            rows.append([n, f"{f1:.1f}", f"{i1:.1f}", ivf, "IVF" if i1 > f1 else "Flat"])
    print(_common.table(["n", "Flat q/s", "IVF q/s", "IVF factory", "faster"], rows))
    print()


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="synthetic stored vectors")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=1000, help="held-out queries (half tune nprobe)")
    parser.add_argument("--limit", type=int, default=500, help="most queries timed per row")
    parser.add_argument("--factory", action="append", default=[], help="an extra FAISS factory row "
                        "(repeatable), e.g. IVF4096,PQ32x4fs")
    parser.add_argument("--cifar", nargs="?", const=str(_common.REPO / ".data" / "cifar-10-jpeg"),
                        default=None, help="also on CIFAR-10 train embeddings (folder with train/ test/)")
    parser.add_argument("--crossover", action="store_true", help="Flat vs IVF for growing n")
    parser.add_argument("--threads", type=int, default=None, help="FAISS / BLAS threads")
    args = parser.parse_args(argv)
    import faiss
    import torch

    if args.threads:
        faiss.omp_set_num_threads(args.threads)
        torch.set_num_threads(args.threads)
    _common.print_header("Search: the default index vs exact search", [sys.executable, *sys.argv])
    print(f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads\n")
    factories = [f.strip() for f in args.factory if f.strip()]
    emb, queries = synthetic(args.n, args.dim, args.clusters, args.queries)
    measure(f"synthetic (clustered, {args.clusters} centres)", emb, queries, factories, args.limit)
    del emb
    if args.cifar:
        train, test = cifar_embeddings(Path(args.cifar), args.queries)
        measure("CIFAR-10 train embeddings (bundled CIFAR-10 model)", train, test, factories, args.limit)
    if args.crossover:
        # up to 300k: the table above already has Flat against the default at --n
        sizes = [s for s in (3_000, 10_000, 30_000, 100_000, 300_000) if s <= max(args.n, 30_000)]
        crossover(args.dim, args.clusters, sizes, min(args.limit, 100))
    return 0


if __name__ == "__main__":
    sys.exit(main())
