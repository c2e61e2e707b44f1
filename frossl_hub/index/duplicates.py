"""Groups of near-duplicate images: items whose cosine similarity reaches a threshold.

Each item's ``NEIGHBOURS`` nearest items are looked up in the index itself; pairs at or above
the threshold are joined (union-find), so a group can be larger than the neighbour count.
"""
from __future__ import annotations

from typing import Dict, List

import numpy as np

from .errors import SearchArgumentError
from .factory import CHUNK
from .store import SearchIndex

__all__ = ["DEFAULT_THRESHOLD", "NEIGHBOURS", "find_duplicates"]

# Where to start (benchmarks/RESULTS.md section 6): with planted re-encoded, resized, cropped
# and mirrored copies, precision 0.976 / recall 0.952 on CIFAR-10 test JPEGs (bundled CIFAR-10
# model), 0.926 / 1.0 on Fashion-MNIST (tests/test_index_duplicates.py); higher thresholds
# lose the cropped copies first.
DEFAULT_THRESHOLD = 0.925
NEIGHBOURS = 10


def _root(parent: np.ndarray, i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def find_duplicates(index: SearchIndex, threshold: float = DEFAULT_THRESHOLD,
                    neighbours: int = NEIGHBOURS) -> List[Dict]:
    """Groups (largest first) as ``{"items": [{"id", "path"}...], "min_score": s}``.

    Raises:
        SearchArgumentError: threshold outside (0, 1].
    """
    if not 0 < threshold <= 1:
        raise SearchArgumentError(f"threshold: must be in (0, 1] (a cosine similarity), got "
                                  f"{threshold}.")
    n = len(index)
    k = min(n, neighbours + 1)
    parent = np.arange(n)
    edge_min: Dict[tuple, float] = {}
    for start in range(0, n, CHUNK):
        queries = np.asarray(index.embeddings[start:start + CHUNK], np.float32)
        scores, ids = index.search_arrays(queries, k)
        for row, (s_row, i_row) in enumerate(zip(scores, ids)):
            i = start + row
            for s, j in zip(s_row, i_row):
                if j < 0 or j == i or s < threshold:
                    continue
                a, b = _root(parent, i), _root(parent, int(j))
                if a != b:
                    parent[max(a, b)] = min(a, b)
                edge_min[(min(i, int(j)), max(i, int(j)))] = float(s)
    groups: Dict[int, List[int]] = {}
    for i in range(n):
        groups.setdefault(_root(parent, i), []).append(i)
    worst: Dict[int, float] = {}
    for (a, _), s in edge_min.items():
        r = _root(parent, a)
        worst[r] = min(worst.get(r, 1.0), s)
    out = [{"items": [{"id": i, "path": index.paths[i]} for i in members],
            "min_score": round(worst.get(r, 1.0), 4)}
           for r, members in groups.items() if len(members) > 1]
    return sorted(out, key=lambda g: (-len(g["items"]), g["items"][0]["id"]))
