"""The search indexes a service holds: opened in a background thread, each searched through
its own micro-batcher (``serve.batcher``), so concurrent searches share one FAISS call.

An index remembers the weights it was built with (sha256); it is served with the served
model that has those weights, and refused at start-up when there is none.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Dict, List, Mapping, Optional, Tuple

import numpy as np
import torch
from prometheus_client import Counter, Histogram

from .batcher import MicroBatcher
from .config import IndexSpec, ModelSpec, Settings
from .exceptions import InvalidInput, NotFound, Unavailable
from .metrics import LATENCY_BUCKETS, ServiceMetrics

__all__ = ["MAX_K", "IndexHandle", "IndexRegistry", "match_models"]

_logger = logging.getLogger("serve")

MAX_K = 1000  # most hits per query over HTTP (results are padded to this width in a batch)
SEARCH_BATCH = 256  # most queries in one FAISS call
LOADING, READY, FAILED = "loading", "ready", "failed"


class IndexesLoading(Unavailable):
    code = "indexes_loading"


class IndexLoadFailed(Unavailable):
    code = "index_load_failed"


class UnknownIndex(NotFound):
    code = "index_not_found"


def match_models(indexes: Tuple[IndexSpec, ...], models: Tuple[ModelSpec, ...]
                 ) -> Dict[str, str]:
    """{index name: the served model with its weights}; checks every index's files.

    Raises:
        frossl_hub.index errors: an index is corrupt, or no served model has its weights
        (ModelMismatchError).
    """
    from frossl_hub.index import ModelMismatchError, model_identity, open_index

    shas = {spec.name: model_identity(spec.source).weights_sha256 for spec in models} if indexes else {}
    out = {}
    for spec in indexes:
        manifest = open_index(spec.folder).manifest
        match = [name for name, sha in shas.items() if sha == manifest.weights_sha256]
        if not match:
            raise ModelMismatchError(
                f"index {spec.name} was built with {manifest.model} (weights sha256 "
                f"{manifest.weights_sha256[:12]}...), which this service does not serve; add "
                f"--model {manifest.model}.")
        out[spec.name] = match[0]
    return out


class _SearchMetrics:
    def __init__(self, metrics: ServiceMetrics) -> None:
        self.searches = Counter("frossl_searches_total", "Queries searched, by index.", ("index",),
                                registry=metrics.registry)
        self.latency = Histogram("frossl_search_duration_seconds", "Time of one request's "
                                 "search in its index (batched FAISS call and re-ranking).",
                                 ("index",), buckets=LATENCY_BUCKETS, registry=metrics.registry)


class IndexHandle:
    """One served index: the opened generation, its model's name, its search batcher."""

    def __init__(self, name: str, index, model_name: str, metrics: _SearchMetrics) -> None:
        self.name = name
        self.index = index
        self.model_name = model_name
        self.metrics = metrics
        self.batcher = MicroBatcher(self._forward, f"index-{name}", SEARCH_BATCH,
                                    max_queue=64 * SEARCH_BATCH)

    def check_k(self, k: int) -> None:
        top = min(len(self.index), MAX_K)
        if not 1 <= k <= top:
            raise InvalidInput(f"k: must be in 1..{top} (index {self.name} holds "
                               f"{len(self.index)} images; at most {MAX_K} hits), got {k}.")

    def _forward(self, batch: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Rows of [query..., k]; returns (scores, ids) padded to MAX_K columns."""
        queries = batch[:, :-1].numpy()
        k = int(batch[:, -1].max())
        scores, ids = self.index.search_arrays(queries, k)
        width = min(MAX_K, len(self.index))
        out_s = np.full((len(batch), width), -np.inf, np.float32)
        out_i = np.full((len(batch), width), -1, np.int64)
        out_s[:, :k], out_i[:, :k] = scores, ids
        return torch.from_numpy(out_s), torch.from_numpy(out_i)

    async def search(self, features: torch.Tensor, k: int) -> List[List[dict]]:
        """Hits ({id, path, score}) of each unit-norm query row, best first."""
        started = time.perf_counter()
        rows = torch.cat([features.float(), torch.full((len(features), 1), float(k))], 1)
        scores, ids = await self.batcher.submit(rows)
        self.metrics.searches.labels(index=self.name).inc(len(features))
        self.metrics.latency.labels(index=self.name).observe(time.perf_counter() - started)
        paths = self.index.paths
        return [[{"id": int(i), "path": paths[i], "score": float(s)}
                 for s, i in zip(s_row[:k].tolist(), i_row[:k].tolist()) if i >= 0]
                for s_row, i_row in zip(scores, ids)]

    def describe(self) -> dict:
        m = self.index.manifest
        return {"name": self.name, "model": self.model_name, "count": m.count, "dim": m.dim,
                "factory": m.factory, "recall_at_10": m.recall_at_10, "built_with": m.model,
                "generation": self.index.generation.name}


class IndexRegistry:
    """Opens ``settings.indexes`` in a thread; ``require_ready`` is what /healthz asks."""

    def __init__(self, settings: Settings, metrics: ServiceMetrics) -> None:
        self.settings = settings
        self.specs = settings.indexes
        self.metrics = _SearchMetrics(metrics)
        self.handles: Dict[str, IndexHandle] = {}
        self.state = READY if not self.specs else LOADING
        self.error: Optional[str] = None
        self._closed = False
        self._lock = threading.Lock()

    def start(self) -> None:
        if self.specs:
            threading.Thread(target=self._load_all, name="index-loader", daemon=True).start()

    def _load_all(self) -> None:
        from frossl_hub.index import open_index

        try:
            models = match_models(self.specs, self.settings.models)
            for spec in self.specs:
                started = time.perf_counter()
                handle = IndexHandle(spec.name, open_index(spec.folder), models[spec.name],
                                     self.metrics)
                with self._lock:
                    if self._closed:
                        return
                    self.handles[spec.name] = handle
                    handle.batcher.start()
                _logger.info("index %s ready in %.1f s (%d images, %s)", spec.name,
                             time.perf_counter() - started, len(handle.index),
                             handle.index.manifest.factory)
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            self.state = FAILED
            _logger.error("loading the search indexes failed: %s", exc, exc_info=exc)
            return
        self.state = READY

    def require_ready(self) -> None:
        if self.state == LOADING:
            raise IndexesLoading("search indexes are still loading; retry shortly (GET /healthz "
                                 "turns 200 when ready).")
        if self.state == FAILED:
            raise IndexLoadFailed("a search index failed to load; see the server log.")

    def get(self, name: Optional[str]) -> IndexHandle:
        self.require_ready()
        if not self.handles:
            raise UnknownIndex("this service has no search index; start it with --index FOLDER.")
        key = name if name else self.specs[0].name
        if key not in self.handles:
            raise UnknownIndex(f"unknown index {name!r}; this service has: "
                               f"{', '.join(sorted(self.handles))}.")
        return self.handles[key]

    def close(self) -> None:
        with self._lock:
            self._closed = True
            handles = list(self.handles.values())
        for handle in handles:
            handle.batcher.close()

    def describe(self) -> Mapping[str, object]:
        return {"state": self.state, "data": [h.describe() for h in self.handles.values()]}
