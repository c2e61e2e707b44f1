"""The service's Prometheus metrics, kept by ``prometheus_client``.

One process: each app has its own registry. With ``--workers N``, ``python -m serve`` points
``PROMETHEUS_MULTIPROC_DIR`` at a fresh folder before the workers start (prometheus_client's
multiprocess mode): every worker writes its samples there and ``/metrics``, whichever
worker answers, reports one set of numbers for the whole service (counters and histograms
summed over workers, the queue depth summed over live ones).
"""
from __future__ import annotations

import os

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import multiprocess

__all__ = ["CONTENT_TYPE", "MULTIPROC_ENV", "ServiceMetrics", "multiprocess_mode"]

CONTENT_TYPE = prometheus_client.CONTENT_TYPE_PLAIN_0_0_4  # the text format every scraper reads
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)  # s
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)  # images per forward pass

prometheus_client.disable_created_metrics()  # no *_created series: only what we measure


def multiprocess_mode() -> bool:
    """True when the samples of several worker processes are shared through files."""
    return bool(os.environ.get(MULTIPROC_ENV))


class ServiceMetrics:
    """The metrics of one app (names are the service's public contract; keep them)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.requests = Counter(
            "frossl_http_requests_total", "HTTP requests by route, method and status code.",
            ("route", "method", "status"), registry=registry)
        self.latency = Histogram(
            "frossl_http_request_duration_seconds", "HTTP request latency by route and method.",
            ("route", "method"), buckets=LATENCY_BUCKETS, registry=registry)
        self.batch_size = Histogram(
            "frossl_batch_size", "Images per forward pass of the micro-batcher.", ("model",),
            buckets=BATCH_BUCKETS, registry=registry)
        self.batch_seconds = Histogram(
            "frossl_batch_duration_seconds", "Duration of one batched forward pass.", ("model",),
            buckets=LATENCY_BUCKETS, registry=registry)
        self.queue_depth = Gauge(
            "frossl_queue_depth", "Images waiting in the micro-batcher's queue.", ("model",),
            multiprocess_mode="livesum", registry=registry)
        self.images = Counter(
            "frossl_images_processed_total", "Images run through a model.", ("model",),
            registry=registry)
        self.rejected = Counter(
            "frossl_queue_rejections_total", "Requests refused because the queue was full.",
            ("model",), registry=registry)
        self.model_info = Gauge(
            "frossl_model_info", "Served models (value 1): the backend running each forward "
            "pass (torch, onnxruntime) and its device.", ("model", "backend", "device"),
            multiprocess_mode="livemax", registry=registry)

    def render(self) -> bytes:
        """The Prometheus text exposition: this app's, or every worker's in multiprocess mode."""
        if multiprocess_mode():
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)
