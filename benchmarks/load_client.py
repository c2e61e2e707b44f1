"""Load generators for the serve benchmark: ``wrk`` (C) when installed, else a Python client.

Both POST one fixed JSON body over ``connections`` keep-alive connections for ``seconds`` and
return a ``LoadResult``. A Python client on a small machine measures itself as much as the
server, so ``wrk`` is preferred (``apt-get install wrk``); the result says which ran.
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import numpy as np

__all__ = ["LoadResult", "has_wrk", "run_load"]

LUA = Path(__file__).resolve().parent / "wrk_post.lua"


@dataclass
class LoadResult:
    client: str  # wrk or python
    requests: int  # answered with 2xx
    errors: int  # non-2xx answers and transport errors
    seconds: float
    p50_s: float
    p99_s: float

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0


def has_wrk() -> bool:
    return shutil.which("wrk") is not None


def _run_wrk(url: str, body: Path, connections: int, seconds: float, threads: int) -> LoadResult:
    cmd = ["wrk", f"-t{min(threads, connections)}", f"-c{connections}", f"-d{max(1, round(seconds))}s",
           "--timeout", "30s", "-s", str(LUA), url]
    proc = subprocess.run(cmd, env=dict(os.environ, BODY_FILE=str(body)), capture_output=True,
                          text=True, timeout=seconds + 60)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("WRK_JSON ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stdout[-2000:]} {proc.stderr[-2000:]}")
    stats = json.loads(line[len("WRK_JSON "):])
    errors = stats["non_2xx"] + stats["connect"] + stats["read"] + stats["write"] + stats["timeout"]
    return LoadResult("wrk", stats["requests"] - stats["non_2xx"], errors, stats["duration_us"] / 1e6,
                      stats["p50_us"] / 1e6, stats["p99_us"] / 1e6)


async def _python_load(url: str, body: bytes, connections: int, seconds: float) -> LoadResult:
    import httpx

    latencies: List[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    headers = {"content-type": "application/json"}
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                try:
                    ok = (await client.post(url, content=body, headers=headers)).status_code < 300
                except httpx.HTTPError:
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - started)
                else:
                    errors += 1

        start = time.perf_counter()
        await asyncio.gather(*[worker() for _ in range(connections)])
        elapsed = time.perf_counter() - start
    p50, p99 = (np.percentile(latencies, [50, 99]) if latencies else (float("nan"),) * 2)
    return LoadResult("python", len(latencies), errors, elapsed, float(p50), float(p99))


def run_load(url: str, body: Path, connections: int, seconds: float, client: str = "auto",
             threads: Optional[int] = 1) -> LoadResult:
    """POST ``body`` (a file) to ``url`` for ``seconds`` over ``connections`` connections.

    Args:
        client: ``wrk``, ``python`` or ``auto`` (wrk when installed).
        threads: wrk threads (``-t``); the issue's reference numbers use one.
    """
    if client == "wrk" or (client == "auto" and has_wrk()):
        return _run_wrk(url, body, connections, seconds, threads or 1)
    return asyncio.run(_python_load(url, body.read_bytes(), connections, seconds))
