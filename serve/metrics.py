"""A small thread-safe Prometheus client: counters, gauges, histograms, text exposition 0.0.4.

Enough for one process; with ``--workers N`` each worker reports its own numbers.
"""
from __future__ import annotations

import math
import threading
from typing import Dict, Iterable, List, Sequence, Tuple

__all__ = [
    "CONTENT_TYPE",
    "Counter",
    "Gauge",
    "Histogram",
    "MetricsRegistry",
    "ServiceMetrics",
]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # Prometheus text format
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)  # s
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)  # images per forward pass

LabelValues = Tuple[str, ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return str(int(value)) if float(value).is_integer() and abs(value) < 2 ** 53 else repr(value)


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    pairs = [f'{n}="{_escape(v)}"' for n, v in zip(names, values)]
    if extra:
        pairs.append(extra)
    return "{" + ",".join(pairs) + "}" if pairs else ""


class _Metric:
    kind = "untyped"

    def __init__(self, name: str, help: str, labelnames: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help
        self.labelnames = tuple(labelnames)
        self._lock = threading.Lock()

    def _key(self, labels: Dict[str, str]) -> LabelValues:
        if set(labels) != set(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, got {sorted(labels)}")
        return tuple(str(labels[n]) for n in self.labelnames)

    def header(self) -> List[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]

    def render(self) -> List[str]:
        raise NotImplementedError


class Counter(_Metric):
    """A value that only goes up."""

    kind = "counter"

    def __init__(self, name: str, help: str, labelnames: Sequence[str] = ()) -> None:
        super().__init__(name, help, labelnames)
        self._values: Dict[LabelValues, float] = {}

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        if amount < 0:
            raise ValueError(f"a counter only goes up; got {amount}")
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        with self._lock:
            return self._values.get(self._key(labels), 0.0)

    def render(self) -> List[str]:
        with self._lock:
            items = sorted(self._values.items())
        return self.header() + [f"{self.name}{_labels(self.labelnames, k)} {_number(v)}"
                                for k, v in items]


class Gauge(Counter):
    """A value that goes up and down."""

    kind = "gauge"

    def set(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = float(value)

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount


class Histogram(_Metric):
    """Counts of observations per cumulative bucket, plus their sum and count."""

    kind = "histogram"

    def __init__(self, name: str, help: str, labelnames: Sequence[str] = (),
                 buckets: Iterable[float] = LATENCY_BUCKETS) -> None:
        super().__init__(name, help, labelnames)
        self.buckets = tuple(sorted(float(b) for b in buckets)) + (math.inf,)
        self._counts: Dict[LabelValues, List[int]] = {}
        self._sums: Dict[LabelValues, float] = {}

    def observe(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            counts = self._counts.setdefault(key, [0] * len(self.buckets))
            for i, bound in enumerate(self.buckets):
                if value <= bound:
                    counts[i] += 1  # stored per bucket, summed cumulatively on render
                    break
            self._sums[key] = self._sums.get(key, 0.0) + value

    def snapshot(self, **labels: str) -> Dict[float, int]:
        """Cumulative {upper bound: count} for one label set (empty if never observed)."""
        key = self._key(labels)
        with self._lock:
            counts = list(self._counts.get(key, []))
        total, out = 0, {}
        for bound, count in zip(self.buckets, counts):
            total += count
            out[bound] = total
        return out

    def render(self) -> List[str]:
        with self._lock:
            items = sorted((k, list(v), self._sums[k]) for k, v in self._counts.items())
        lines = self.header()
        for key, counts, total_sum in items:
            cumulative = 0
            for bound, count in zip(self.buckets, counts):
                cumulative += count
                le = f'le="{_number(bound)}"'
                lines.append(f"{self.name}_bucket{_labels(self.labelnames, key, le)} {cumulative}")
            lines.append(f"{self.name}_sum{_labels(self.labelnames, key)} {_number(total_sum)}")
            lines.append(f"{self.name}_count{_labels(self.labelnames, key)} {cumulative}")
        return lines


class MetricsRegistry:
    """Metrics of one app, rendered together."""

    def __init__(self) -> None:
        self._metrics: Dict[str, _Metric] = {}

    def register(self, metric: _Metric) -> _Metric:
        if metric.name in self._metrics:
            raise ValueError(f"metric {metric.name} is already registered")
        self._metrics[metric.name] = metric
        return metric

    def render(self) -> str:
        lines: List[str] = []
        for metric in self._metrics.values():
            lines.extend(metric.render())
        return "\n".join(lines) + "\n"


class ServiceMetrics:
    """The service's metrics, one set per app."""

    def __init__(self) -> None:
        self.registry = MetricsRegistry()
        reg = self.registry.register
        self.requests: Counter = reg(Counter(  # type: ignore[assignment]
            "frossl_http_requests_total", "HTTP requests by route, method and status code.",
            ("route", "method", "status")))
        self.latency: Histogram = reg(Histogram(  # type: ignore[assignment]
            "frossl_http_request_duration_seconds", "HTTP request latency by route and method.",
            ("route", "method"), LATENCY_BUCKETS))
        self.batch_size: Histogram = reg(Histogram(  # type: ignore[assignment]
            "frossl_batch_size", "Images per forward pass of the micro-batcher.",
            ("model",), BATCH_BUCKETS))
        self.batch_seconds: Histogram = reg(Histogram(  # type: ignore[assignment]
            "frossl_batch_duration_seconds", "Duration of one batched forward pass.",
            ("model",), LATENCY_BUCKETS))
        self.queue_depth: Gauge = reg(Gauge(  # type: ignore[assignment]
            "frossl_queue_depth", "Images waiting in the micro-batcher's queue.", ("model",)))
        self.images: Counter = reg(Counter(  # type: ignore[assignment]
            "frossl_images_processed_total", "Images run through a model.", ("model",)))
        self.rejected: Counter = reg(Counter(  # type: ignore[assignment]
            "frossl_queue_rejections_total", "Requests refused because the queue was full.",
            ("model",)))

    def render(self) -> str:
        return self.registry.render()
