"""The micro-batcher (serve/batcher.py) on its own: plain forward functions, no HTTP.

No wall-clock assertions: each test checks which batches were formed, not how fast.
"""
from __future__ import annotations

import asyncio
import threading
from typing import Any, Awaitable, Callable, List, Tuple

import pytest
import torch

from serve.batcher import MicroBatcher
from serve.exceptions import QueueFull
from serve.metrics import ServiceMetrics


def _recording_forward(seen: List[int]) -> Callable[[torch.Tensor], Tuple[torch.Tensor]]:
    """An identity forward pass that records the size of every batch it is given."""
    def forward(batch: torch.Tensor) -> Tuple[torch.Tensor]:
        seen.append(batch.shape[0])
        return (batch,)
    return forward


def _run_then_close(batcher: MicroBatcher, scenario: Callable[[], Awaitable[Any]]) -> Any:
    try:
        return asyncio.run(scenario())
    finally:
        batcher.close()


def test_batcher_splits_a_large_request_and_keeps_row_order() -> None:
    metrics = ServiceMetrics()
    batcher = MicroBatcher(lambda x: (x * 2,), "m", max_batch_size=4, metrics=metrics).start()
    try:
        rows = torch.arange(10.0).reshape(10, 1)
        (out,) = asyncio.run(batcher.submit(rows))
    finally:
        batcher.close()
    assert torch.equal(out, rows * 2)

    def batches_up_to(size: str) -> float:
        return metrics.registry.get_sample_value("frossl_batch_size_bucket",
                                                 {"model": "m", "le": size})

    assert batches_up_to("2.0") == 1 and batches_up_to("4.0") == 3  # batches of 4, 4 and 2


def test_batcher_merges_concurrent_requests_into_one_forward() -> None:
    release = threading.Event()
    seen: List[int] = []

    def forward(batch: torch.Tensor):
        seen.append(batch.shape[0])
        release.wait(10)
        return (batch + 1,)

    batcher = MicroBatcher(forward, "m", max_batch_size=8).start()

    async def scenario():
        first = asyncio.ensure_future(batcher.submit(torch.zeros(1, 1)))
        while not seen:  # the worker is now blocked inside the first forward
            await asyncio.sleep(0.005)
        rest = [asyncio.ensure_future(batcher.submit(torch.full((1, 1), float(i))))
                for i in range(1, 4)]
        while batcher.queued < 3:
            await asyncio.sleep(0.005)
        release.set()
        return await asyncio.gather(first, *rest)

    try:
        results = asyncio.run(scenario())
    finally:
        release.set()
        batcher.close()
    assert seen == [1, 3]
    assert [r[0].item() for r in results] == [1.0, 2.0, 3.0, 4.0]


def test_batcher_refuses_work_when_the_queue_is_full() -> None:
    release = threading.Event()
    started = threading.Event()

    def forward(batch: torch.Tensor):
        started.set()
        release.wait(10)
        return (batch,)

    batcher = MicroBatcher(forward, "m", max_batch_size=1, max_queue=2).start()

    async def scenario():
        running = asyncio.ensure_future(batcher.submit(torch.zeros(1, 1)))
        while not started.is_set():
            await asyncio.sleep(0.005)
        waiting = asyncio.ensure_future(batcher.submit(torch.zeros(2, 1)))
        while batcher.queued < 2:
            await asyncio.sleep(0.005)
        with pytest.raises(QueueFull, match="max_queue 2"):
            await batcher.submit(torch.zeros(1, 1))
        release.set()
        await asyncio.gather(running, waiting)

    try:
        asyncio.run(scenario())
    finally:
        release.set()
        batcher.close()


def test_batcher_waits_up_to_max_wait_ms_to_fill_a_batch() -> None:
    seen: List[int] = []
    batcher = MicroBatcher(_recording_forward(seen), "m", max_batch_size=2, max_wait_ms=2000).start()

    async def scenario():
        first = asyncio.ensure_future(batcher.submit(torch.zeros(1, 1)))
        await asyncio.sleep(0.05)
        second = asyncio.ensure_future(batcher.submit(torch.zeros(1, 1)))
        await asyncio.gather(first, second)

    _run_then_close(batcher, scenario)
    assert seen == [2]  # the first image waited for the second: one forward pass of both


def test_batcher_takes_what_is_queued_at_once_without_a_wait() -> None:
    seen: List[int] = []
    batcher = MicroBatcher(_recording_forward(seen), "m", max_batch_size=8, max_wait_ms=0).start()

    async def scenario():
        await batcher.submit(torch.zeros(1, 1))
        await batcher.submit(torch.zeros(2, 1))

    _run_then_close(batcher, scenario)
    assert seen == [1, 2]  # nothing else was queued: each ran as it came
