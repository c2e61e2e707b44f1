"""Dynamic micro-batching: concurrent requests share forward passes, like Triton's dynamic batcher.

Requests put preprocessed image tensors on a bounded queue and await a future. One
worker thread per model takes up to ``max_batch_size`` queued images (waiting at most
``max_wait_ms`` for the batch to fill; 0 takes what is queued now), runs ONE forward pass
off the event loop and hands each request back its rows. A request larger than the
batch is split over several passes; a full queue refuses new work at once.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Deque, List, Optional, Sequence, Tuple

import torch

from .exceptions import QueueFull, ShuttingDown
from .metrics import ServiceMetrics

__all__ = ["MicroBatcher"]

_logger = logging.getLogger("serve")

Forward = Callable[[torch.Tensor], Tuple[torch.Tensor, ...]]  # (N, ...) -> outputs with N rows
Collate = Callable[[List[torch.Tensor]], torch.Tensor]  # the requests' rows -> one batch


@dataclass(eq=False)
class _Job:
    inputs: torch.Tensor  # (N, C, H, W)
    future: "asyncio.Future[Tuple[torch.Tensor, ...]]"
    loop: asyncio.AbstractEventLoop
    taken: int = 0  # rows handed to a forward pass so far
    done: int = 0  # rows with results
    parts: List[Tuple[torch.Tensor, ...]] = field(default_factory=list)

    @property
    def size(self) -> int:
        return int(self.inputs.shape[0])


def _resolve(future: "asyncio.Future[Tuple[torch.Tensor, ...]]",
             result: Optional[Tuple[torch.Tensor, ...]], error: Optional[BaseException]) -> None:
    if future.done():  # the request was cancelled (client gone)
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)  # type: ignore[arg-type]


class MicroBatcher:
    """Gathers image tensors from concurrent requests into batched forward passes.

    Args:
        forward: batch (N, C, H, W) -> tuple of tensors with N rows; runs on the worker thread.
        name: model name, for metrics and logs.
        max_batch_size: most images per forward pass.
        max_wait_ms: how long a batch may wait to fill once it has one image.
        max_queue: most images waiting; ``submit`` raises QueueFull beyond it.
        metrics: where to record batch sizes, queue depth and images processed.
        collate: joins the rows taken from each request into the forward's batch
            (default ``torch.cat``).
    """

    def __init__(self, forward: Forward, name: str, max_batch_size: int, max_wait_ms: float = 0.0,
                 max_queue: int = 1024, metrics: Optional[ServiceMetrics] = None,
                 collate: Collate = torch.cat) -> None:
        if max_batch_size < 1 or max_queue < 1 or max_wait_ms < 0:
            raise ValueError(f"need max_batch_size >= 1, max_queue >= 1, max_wait_ms >= 0; got "
                             f"{max_batch_size}, {max_queue}, {max_wait_ms}")
        self.forward = forward
        self.collate = collate
        self.name = name
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000.0
        self.max_queue = max_queue
        self.metrics = metrics
        self._jobs: Deque[_Job] = collections.deque()
        self._queued = 0  # images waiting (not yet handed to a forward pass)
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"batcher-{name}", daemon=True)

    # ------------------------------------------------------------------ event-loop side

    def start(self) -> "MicroBatcher":
        self._thread.start()
        return self

    @property
    def queued(self) -> int:
        """Images waiting for a forward pass."""
        return self._queued

    async def submit(self, inputs: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """Queue a (N, C, H, W) batch of one request; returns the forward's N rows of each output.

        Raises:
            QueueFull: ``max_queue`` images are already waiting.
            ShuttingDown: the batcher is closed.
        """
        if inputs.ndim < 1 or inputs.shape[0] < 1:
            raise ValueError(f"submit needs at least one row, got shape {tuple(inputs.shape)}")
        loop = asyncio.get_running_loop()
        job = _Job(inputs, loop.create_future(), loop)
        with self._cond:
            if self._closed:
                raise ShuttingDown(f"model {self.name} is shutting down")
            if self._queued + job.size > self.max_queue:
                if self.metrics:
                    self.metrics.rejected.labels(model=self.name).inc()
                raise QueueFull(
                    f"model {self.name} has {self._queued} images queued (max_queue "
                    f"{self.max_queue}); cannot take {job.size} more now, retry shortly.")
            self._jobs.append(job)
            self._queued += job.size
            self._record_depth()
            self._cond.notify()
        try:
            return await job.future
        except asyncio.CancelledError:
            self._withdraw(job)
            raise

    def _withdraw(self, job: _Job) -> None:
        with self._cond:
            try:
                self._jobs.remove(job)
            except ValueError:
                return  # already handed to the worker in full
            self._queued -= job.size - job.taken
            self._record_depth()

    def close(self, timeout: float = 10.0) -> None:
        """Stop taking work, fail what is still queued, wait for the running pass to end."""
        with self._cond:
            self._closed = True
            jobs = list(self._jobs)
            self._jobs.clear()
            self._queued = 0
            self._record_depth()
            self._cond.notify_all()
        for job in jobs:
            self._deliver(job, None, ShuttingDown(f"model {self.name} is shutting down"))
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    # ------------------------------------------------------------------ worker side

    def _record_depth(self) -> None:
        if self.metrics:
            self.metrics.queue_depth.labels(model=self.name).set(self._queued)

    def _next_batch(self) -> Optional[List[Tuple[_Job, int, int]]]:
        """Wait for work; take up to max_batch_size rows from the head of the queue."""
        with self._cond:
            while not self._jobs and not self._closed:
                self._cond.wait()
            if self._closed:
                return None
            if self.max_wait > 0:
                deadline = time.monotonic() + self.max_wait
                while self._queued < self.max_batch_size and not self._closed:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                if self._closed or not self._jobs:
                    return None if self._closed else []
            parts: List[Tuple[_Job, int, int]] = []
            size = 0
            while self._jobs and size < self.max_batch_size:
                job = self._jobs[0]
                take = min(job.size - job.taken, self.max_batch_size - size)
                parts.append((job, job.taken, job.taken + take))
                job.taken += take
                size += take
                if job.taken == job.size:
                    self._jobs.popleft()
            self._queued -= size
            self._record_depth()
            return parts

    def _run(self) -> None:
        while True:
            parts = self._next_batch()
            if parts is None:
                return
            if not parts:
                continue
            try:
                self._execute(parts)
            except Exception as exc:  # one bad batch fails its requests, never the worker
                _logger.exception("forward pass of model %s failed on a batch of %d images",
                                  self.name, sum(end - start for _, start, end in parts))
                for job in {id(j): j for j, _, _ in parts}.values():
                    self._withdraw(job)  # drop rows of it still queued
                    self._deliver(job, None, exc)

    def _execute(self, parts: Sequence[Tuple[_Job, int, int]]) -> None:
        batch = self.collate([job.inputs[start:end] for job, start, end in parts])
        started = time.perf_counter()
        outputs = self.forward(batch)
        if self.metrics:
            seconds = time.perf_counter() - started
            self.metrics.batch_seconds.labels(model=self.name).observe(seconds)
            self.metrics.batch_size.labels(model=self.name).observe(batch.shape[0])
            self.metrics.images.labels(model=self.name).inc(batch.shape[0])
        offset = 0
        for job, start, end in parts:
            rows = end - start
            job.parts.append(tuple(out[offset:offset + rows] for out in outputs))
            job.done += rows
            offset += rows
            if job.done == job.size:
                result = job.parts[0] if len(job.parts) == 1 else tuple(
                    torch.cat(chunks) for chunks in zip(*job.parts))
                job.parts = []
                self._deliver(job, result, None)

    @staticmethod
    def _deliver(job: _Job, result: Optional[Tuple[torch.Tensor, ...]],
                 error: Optional[BaseException]) -> None:
        try:
            job.loop.call_soon_threadsafe(_resolve, job.future, result, error)
        except RuntimeError:  # the event loop is closed: nobody is waiting any more
            pass
