"""HTTP service throughput and latency against the raw batched forward of the same model.

In one run:

1. raw: the served model's forward exactly as the service runs it (pooled embeddings +
   probe logits, ``torch.inference_mode``, copied back to the CPU) on pre-made input
   tensors, at each batch size of ``--raw-batches`` (1..256); the best images/s counts.
   Same torch thread count as the server (``serve.registry.torch_threads_for``).
2. service: the real ``python -m serve`` in a subprocess on 127.0.0.1 (a free port), and
   1, 8, 32, 64 concurrent clients (asyncio + httpx, one keep-alive connection each) each
   posting one PNG of the model's input size per request to ``/v1/embeddings``, a bounded
   number of requests (``--requests``) within a bounded time (``--seconds``) per level.
   Images/s, p50 and p99 latency per level; from the server's /metrics: mean images per
   forward pass and the share of wall time spent in forward passes.

Printed with their goals: service / raw at saturation (the best level) >= 0.8, and
p99 / p50 at the most clients (64) <= 3. The clients run on the same machine and take
CPU from the server; on a small CPU that lowers the service's numbers (said in the output).

Without ``--model`` a randomly initialised model of ``--dataset``'s shape (default CIFAR-10,
``frossl_resnet18_cifar``, 32 px) is published into a temporary folder: speed does not
depend on the weights. The server is always stopped at the end.

Examples::

    python benchmarks/serve_throughput.py
    python benchmarks/serve_throughput.py --model runs/c10/published --server-args "--max-batch-size 64"
    python benchmarks/serve_throughput.py --clients 1,2 --requests 4 --raw-batches 1,2 --raw-seconds 0.1 \
        --server-args "--torch-threads 1"  # smoke
"""
from __future__ import annotations

import argparse
import asyncio
import io
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

try:  # `python benchmarks/NAME.py` puts this folder on sys.path; `python -m benchmarks.NAME` does not
    import _common
except ImportError:
    from benchmarks import _common
import numpy as np
import torch

SERVICE_GOAL = 0.8  # service / raw images/s at saturation
TAIL_GOAL = 3.0  # p99 / p50 latency at the most clients
HOST = "127.0.0.1"


# ---------------------------------------------------------------------------------------------
# raw forward


def forward_like_service(model: torch.nn.Module) -> Callable[[torch.Tensor], None]:
    """``serve.registry.ModelHandle.forward``: one backbone pass, embeddings + logits to the CPU."""
    param = next(model.parameters())
    has_head = int(getattr(model, "num_classes", 0) or 0) > 0

    def run(batch: torch.Tensor) -> None:
        with torch.inference_mode():
            x = batch.to(param.device, param.dtype, non_blocking=True)
            features = model.forward_head(model.forward_features(x), pre_logits=True)
            if has_head:
                model.get_classifier()(features).float().cpu()
            features.float().cpu()
    return run


def raw_throughput(model: torch.nn.Module, input_size: Sequence[int], batches: Sequence[int],
                   seconds: float) -> List[Tuple[int, float]]:
    """(batch size, images/s) of the service's forward, each timed for about ``seconds``."""
    forward = forward_like_service(model)
    device = next(model.parameters()).device
    out = []
    for bs in batches:
        print(f"  raw forward, batch {bs} ...", file=sys.stderr, flush=True)
        x = torch.randn(bs, *input_size)
        forward(x)  # warm-up
        _common.sync(device)
        count, start = 0, time.perf_counter()
        while count < 2 or time.perf_counter() - start < seconds:
            forward(x)
            count += 1
        _common.sync(device)
        out.append((bs, count * bs / (time.perf_counter() - start)))
    return out


# ---------------------------------------------------------------------------------------------
# server


def server_env() -> Dict[str, str]:
    """This environment without FROSSL_SERVE_* / the API key: only the flags given count."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FROSSL_SERVE_") and k != "FROSSL_API_KEY"}
    env["HF_HUB_OFFLINE"] = "1"
    return env


def start_server(model: Path, port: int, extra: Sequence[str], log_path: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "serve", "--model", str(model), "--port", str(port), "--host", HOST,
           "--log-level", "warning", *extra]
    print(f"server: python {' '.join(shlex.quote(c) for c in cmd[1:])}")
    with open(log_path, "wb") as log:
        return subprocess.Popen(cmd, cwd=_common.REPO, env=server_env(), stdout=log, stderr=subprocess.STDOUT)


# ---------------------------------------------------------------------------------------------
# clients


def png_blobs(count: int, size: Tuple[int, int], channels: int, seed: int = 0) -> List[bytes]:
    """Distinct PNGs of the model's input size (smooth gradients plus noise, like photos)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    blobs = []
    for _ in range(count):
        base = rng.uniform(0, 255, 3) + rng.uniform(-2, 2, 3) * xx[..., None] + rng.uniform(-2, 2, 3) * yy[..., None]
        pixels = np.clip(base + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)
        image = Image.fromarray(pixels)
        buf = io.BytesIO()
        (image.convert("L") if channels == 1 else image).save(buf, "PNG")
        blobs.append(buf.getvalue())
    return blobs


@dataclass
class Level:
    clients: int
    ok: int
    errors: int
    seconds: float
    latencies: List[float]
    mean_batch: Optional[float] = None
    forward_share: Optional[float] = None

    def images_per_s(self, per_request: int) -> float:
        return self.ok * per_request / self.seconds if self.seconds > 0 else 0.0

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies, q)) if self.latencies else float("nan")


async def _load(url: str, route: str, blobs: List[bytes], clients: int, requests: int, seconds: float,
                per_request: int) -> Tuple[int, int, float, List[float], str, str]:
    """(ok, errors, seconds, latencies, /metrics before, /metrics after) of one level."""
    import httpx

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    latencies: List[float] = []
    counts = {"issued": 0, "ok": 0, "errors": 0}
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        async def post(i: int) -> bool:
            files = [("file", (f"img{k}.png", blobs[(i + k) % len(blobs)], "image/png")) for k in range(per_request)]
            response = await client.post(route, files=files)
            return response.status_code == 200

        await asyncio.gather(*[post(i) for i in range(clients)])  # warm-up: open every connection
        before = (await client.get("/metrics")).text
        start = time.perf_counter()
        deadline = start + seconds

        async def worker() -> None:
            while counts["issued"] < requests and time.perf_counter() < deadline:
                i = counts["issued"]
                counts["issued"] += 1
                t0 = time.perf_counter()
                try:
                    ok = await post(i)
                except httpx.HTTPError:
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - t0)
                    counts["ok"] += 1
                else:
                    counts["errors"] += 1

        await asyncio.gather(*[worker() for _ in range(clients)])
        elapsed = time.perf_counter() - start
        after = (await client.get("/metrics")).text
    return counts["ok"], counts["errors"], elapsed, latencies, before, after


def _metric_sum(text: str, name: str) -> float:
    pattern = re.compile(rf"^{re.escape(name)}(\{{[^}}]*\}})? (\S+)$")
    return sum(float(m.group(2)) for line in text.splitlines() if (m := pattern.match(line)))


def run_level(url: str, args: argparse.Namespace, blobs: List[bytes], clients: int) -> Level:
    print(f"  {clients} clients ...", file=sys.stderr, flush=True)
    ok, errors, elapsed, latencies, before, after = asyncio.run(
        _load(url, args.route, blobs, clients, args.requests, args.seconds, args.images_per_request))
    level = Level(clients, ok, errors, elapsed, latencies)
    batches = _metric_sum(after, "frossl_batch_size_count") - _metric_sum(before, "frossl_batch_size_count")
    images = _metric_sum(after, "frossl_batch_size_sum") - _metric_sum(before, "frossl_batch_size_sum")
    busy = (_metric_sum(after, "frossl_batch_duration_seconds_sum")
            - _metric_sum(before, "frossl_batch_duration_seconds_sum"))
    if batches > 0:
        level.mean_batch = images / batches
        level.forward_share = busy / elapsed if elapsed > 0 else None
    return level


# ---------------------------------------------------------------------------------------------


def parse_ints(text: str) -> List[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="python -m serve images/s and latency under concurrent clients vs the raw batched forward.")
    parser.add_argument("--model", type=Path, default=None,
                        help="published model folder (default: a random-init model of --dataset in a temp folder)")
    parser.add_argument("--dataset", default="cifar10", help="shape of the random-init model (default cifar10)")
    parser.add_argument("--clients", type=parse_ints, default=[1, 8, 32, 64], help="concurrency levels")
    parser.add_argument("--requests", type=int, default=2000, help="most timed requests per level")
    parser.add_argument("--seconds", type=float, default=60.0, help="most seconds per level")
    parser.add_argument("--images-per-request", type=int, default=1)
    parser.add_argument("--route", default="/v1/embeddings", choices=["/v1/embeddings", "/v1/predictions"])
    parser.add_argument("--server-args", default="", help='extra `python -m serve` flags, e.g. "--max-batch-size 64"')
    parser.add_argument("--raw-batches", type=parse_ints, default=[1, 2, 4, 8, 16, 32, 64, 128, 256])
    parser.add_argument("--raw-seconds", type=float, default=3.0, help="seconds per raw batch size")
    parser.add_argument("--startup-timeout", type=float, default=180.0)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    import frossl_hub
    from serve.config import parse_settings
    from serve.registry import resolve_device, torch_threads_for

    extra = shlex.split(args.server_args)
    if any(a.split("=")[0] in ("--host", "--port", "--model") for a in extra):
        print("error: --server-args may not set --host, --port or --model (127.0.0.1 only; use --model)",
              file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="serve-bench-") as tmp:
        model_path = args.model or _common.publish_tiny_model(Path(tmp) / "model", args.dataset)
        settings = parse_settings(["--model", str(model_path), *extra], environ={})
        torch.set_num_threads(torch_threads_for(settings))
        device = resolve_device(settings.device)
        _common.print_header("serve throughput", [Path(sys.executable).name] + sys.argv, device)
        model = frossl_hub.load(model_path, device=device)
        input_size = [int(x) for x in model.pretrained_cfg["input_size"]]
        print(f"model: {'random-init ' + args.dataset + ' shape, ' if args.model is None else ''}"
              f"{model.pretrained_cfg.get('architecture', type(model).__name__)}, input {input_size}, "
              f"{model.num_classes} classes, on {device}; torch threads {torch.get_num_threads()} (as the server)")
        print(f"clients: asyncio + httpx on this machine, {args.images_per_request} PNG per request to {args.route}, "
              f"up to {args.requests} requests or {args.seconds:.0f} s per level")

        raw = raw_throughput(model, input_size, args.raw_batches, args.raw_seconds)
        best_bs, best_raw = max(raw, key=lambda r: r[1])
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()  # leave the GPU's memory to the server

        blobs = png_blobs(64, (input_size[1], input_size[2]), input_size[0])
        port = _common.free_port()
        log_path = Path(tmp) / "server.log"
        url = f"http://{HOST}:{port}"
        proc = start_server(Path(model_path), port, extra, log_path)
        print()
        try:
            _common.wait_healthy(proc, url, args.startup_timeout, log_path)
            levels = [run_level(url, args, blobs, c) for c in args.clients]
        finally:
            _common.stop_server(proc)
        log = log_path.read_text(errors="replace")
        if "Traceback" in log:
            print(f"warning: the server logged a traceback:\n{log[-3000:]}")

    print(_common.table(["raw forward batch", "img/s"], [(bs, f"{ips:.1f}") for bs, ips in raw]))
    print(f"best raw: {best_raw:.1f} img/s at batch {best_bs}\n")
    rows = []
    for lv in levels:
        ips = lv.images_per_s(args.images_per_request)
        rows.append((lv.clients, lv.ok, lv.errors, f"{ips:.1f}", f"{1e3 * lv.percentile(50):.1f}",
                     f"{1e3 * lv.percentile(99):.1f}", f"{lv.percentile(99) / lv.percentile(50):.2f}",
                     f"{lv.mean_batch:.1f}" if lv.mean_batch else "-",
                     f"{100 * lv.forward_share:.0f}%" if lv.forward_share is not None else "-",
                     f"{ips / best_raw:.2f}"))
    print(_common.table(["clients", "ok", "errors", "img/s", "p50 ms", "p99 ms", "p99/p50", "img/forward",
                         "in forward", "service/raw"], rows))
    print()
    best = max(levels, key=lambda lv: lv.images_per_s(args.images_per_request))
    saturation = best.images_per_s(args.images_per_request) / best_raw
    print(_common.fmt_ratio(f"service / raw at saturation ({best.clients} clients)", saturation,
                            f">= {SERVICE_GOAL}", saturation >= SERVICE_GOAL))
    top = max(levels, key=lambda lv: lv.clients)
    tail = top.percentile(99) / top.percentile(50)
    print(_common.fmt_ratio(f"p99 / p50 latency at {top.clients} clients", tail,
                            f"<= {TAIL_GOAL} at 64 clients", tail <= TAIL_GOAL))
    print("note: the clients share this machine's CPU with the server")
    errors = sum(lv.errors for lv in levels)
    if errors:
        print(f"warning: {errors} requests failed (non-200 or transport errors)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
