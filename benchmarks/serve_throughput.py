"""``python -m serve`` against LitServe and a plain FastAPI endpoint, and the raw forward, in one run.

1. raw: the model's forward pass (pooled embeddings + probe logits, as the service runs it)
   on pre-made float batches, by eager PyTorch and by ONNX Runtime, at each batch size of
   ``--raw-batches``; each backend's best images/s counts. Same intra-op threads as the servers.
2. servers, one after the other, each warmed up, all given the same JSON body
   (``{"images": [base64 PNG, ...]}`` of the model's input size) and the same threads:
   ``ours`` (``python -m serve`` with its defaults: ONNX Runtime on the CPU, ``--workers auto``
   and ``--threads auto``), ``ours-torch`` (``--backend torch``), ``litserve`` (``LitAPI`` with
   batch/unbatch, ``max_batch_size=32``) and ``fastapi`` (one eager forward per request, no
   batching); ``--sweep WxT,...`` adds ``ours-Ww-Tt`` rows (``--workers W --threads T``); and
   ours on its other protocols, same image, same model: ``ours-embeddings`` (``/v1/embeddings``,
   our JSON body), ``ours-openai`` (the same route with OpenAI's body, ``encoding_format``
   float) and ``ours-v2`` (``/v2/models/{name}/infer``, V2's JSON tensor form: base64 BYTES in,
   the embedding out), printed as their overhead against ``ours-embeddings``. Load: ``wrk -t1`` with a Lua
   script POSTing the body (``benchmarks/wrk_post.lua``) when wrk is installed, else a Python
   client; at each of ``--connections`` with each of ``--images`` per request.
   Columns: requests/s, images/s, p50, p99. For ``ours`` also, from /metrics, the mean
   images per forward pass and the share of wall time spent in forward passes. For every
   server, the cores kept busy during the cell (``benchmarks/cpu_usage.py``): the server's
   whole process group, its main thread (where uvicorn's event loop runs) and the client.

``--sweep 1x2,2x1,...`` adds ``python -m serve --workers W --threads T`` for each WxT (rows
``ours-Ww-Tt``) and prints, per cell, which of them and ``ours`` served the most images/s:
the measurement behind the ``auto`` rule (``serve.workers.auto_workers``/``auto_threads``).

Printed against the goals of issues 22 and 34 (ours with its default settings): >= 2x LitServe
requests/s at 64 connections with one image per request; with 32 images per request >= 0.8
of the raw ONNX Runtime forward;
p99/p50 <= 3 at 64 connections; ONNX Runtime forward >= 2x eager PyTorch at batch 1 and 32.
A peer that is not installed (``pip install litserve``) is skipped with a line saying so.

Without ``--model`` a randomly initialised model of ``--dataset``'s shape (default CIFAR-10,
32 px) is published into a temporary folder: speed does not depend on the weights.

Examples::

    python benchmarks/serve_throughput.py                      # everything (about 5 minutes)
    python benchmarks/serve_throughput.py --servers ours --connections 1,2 --images 1 --seconds 1 \\
        --raw-batches 1,2 --raw-seconds 0.1 --threads 1       # smoke
"""
from __future__ import annotations

import argparse
import importlib.util
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

try:  # `python benchmarks/NAME.py` puts this folder on sys.path; `python -m benchmarks.NAME` does not
    import _common
    import cpu_usage
    import load_client
    import pyspy
except ImportError:
    from benchmarks import _common, cpu_usage, load_client, pyspy
import numpy as np
import torch

REQUEST_GOAL = 2.0  # ours / LitServe requests/s at 64 connections, 1 image per request
BULK_GOAL = 0.8  # (issue 34) ours images/s with 32 images per request / the raw ONNX Runtime forward
TAIL_GOAL = 3.0  # p99 / p50 at 64 connections
BACKEND_GOAL = 2.0  # ONNX Runtime / eager PyTorch forward at batch 1 and 32
HOST = "127.0.0.1"
PEERS = _common.REPO / "benchmarks" / "peers"


@dataclass(frozen=True)
class Server:
    """How to start one server and where it answers."""

    name: str
    command: Callable[[Path, int, int], List[str]]  # (model, port, threads) -> argv
    health: str
    predict: str  # may name ``{model}``: the served model's name
    needs: Optional[str] = None  # a module that must be importable
    body: str = "images"  # the request body's shape: a key of BODY_SHAPES


def _ours(backend: str = "auto", workers: Optional[int] = None, threads: Optional[int] = None
          ) -> Callable[[Path, int, int], List[str]]:
    """``python -m serve``: its defaults (``--workers auto``, ``--threads auto``) unless
    ``workers`` / ``threads`` are given."""
    def command(model: Path, port: int, _threads: int) -> List[str]:
        argv = [sys.executable, "-m", "serve", "--model", str(model), "--port", str(port),
                "--host", HOST, "--log-level", "warning", "--backend", backend]
        for flag, value in (("--workers", workers), ("--threads", threads)):
            if value is not None:
                argv += [flag, str(value)]
        return argv
    return command


def sweep_servers(text: str) -> List[Server]:
    """``1x2,2x1``: ``python -m serve --workers W --threads T`` for each WxT, named
    ``ours-Ww-Tt`` (``auto`` for either number: the default)."""
    servers = []
    for item in (x.strip().lower() for x in text.split(",") if x.strip()):
        workers, sep, threads = item.partition("x")
        if not sep or not all(v == "auto" or v.isdigit() for v in (workers, threads)):
            raise ValueError(f"--sweep: {item!r} is not WORKERSxTHREADS (1x2, 2x1, autox1)")
        number = {v: None if v == "auto" else int(v) for v in (workers, threads)}
        servers.append(Server(f"ours-{workers}w-{threads}t", _ours("auto", number[workers],
                                                                 number[threads]),
                              "/healthz", "/v1/predictions"))
    return servers


def _peer(script: str) -> Callable[[Path, int, int], List[str]]:
    return lambda model, port, threads: [
        sys.executable, str(PEERS / script), "--model", str(model), "--port", str(port),
        "--threads", str(threads)]


SERVERS = {server.name: server for server in (
    Server("ours", _ours("auto"), "/healthz", "/v1/predictions"),
    Server("ours-torch", _ours("torch"), "/healthz", "/v1/predictions"),
    Server("litserve", _peer("litserve_server.py"), "/health", "/predict", needs="litserve"),
    Server("fastapi", _peer("fastapi_server.py"), "/healthz", "/predict"),
    Server("ours-embeddings", _ours("auto"), "/healthz", "/v1/embeddings"),
    Server("ours-openai", _ours("auto"), "/healthz", "/v1/embeddings", body="openai"),
    Server("ours-v2", _ours("auto"), "/healthz", "/v2/models/{model}/infer", body="v2"),
)}
PROTOCOL_ROWS = ("ours-openai", "ours-v2")  # compared with ours-embeddings: same route work


@dataclass
class Cell:
    server: str
    images: int  # per request
    connections: int
    load: load_client.LoadResult
    mean_batch: Optional[float] = None
    forward_share: Optional[float] = None
    profile: Optional[List[Tuple[str, int, float]]] = None  # py-spy: (stage, samples, share)
    cpu: Optional[cpu_usage.CpuShare] = None  # cores busy: server, its main thread, the client

    @property
    def images_per_s(self) -> float:
        return self.load.requests_per_s * self.images


# ---------------------------------------------------------------------------------------------
# raw forward


def raw_throughput(model: torch.nn.Module, backend: str, threads: int, batches: Sequence[int],
                   seconds: float) -> List[Tuple[int, float]]:
    """(batch size, images/s) of ``backend``'s forward pass, each timed for about ``seconds``."""
    from frossl_hub.backends import make_runner

    runner = make_runner(model, backend, threads)
    out = []
    for bs in batches:
        print(f"  raw {backend} forward, batch {bs} ...", file=sys.stderr, flush=True)
        x = torch.randn(bs, *model.pretrained_cfg["input_size"])
        runner(x)  # warm-up
        count, start = 0, time.perf_counter()
        while count < 2 or time.perf_counter() - start < seconds:
            runner(x)
            count += 1
        out.append((bs, count * bs / (time.perf_counter() - start)))
    return out


# ---------------------------------------------------------------------------------------------
# servers


BODY_SHAPES: Dict[str, Callable[[List[str]], Dict[str, object]]] = {  # base64 images -> body
    "images": lambda images: {"images": images},
    "openai": lambda images: {"input": images, "encoding_format": "float"},
    "v2": lambda images: {"inputs": [{"name": "images", "datatype": "BYTES", "shape": [len(images)],
                                      "data": images}], "outputs": [{"name": "embedding"}]},
}


def write_bodies(folder: Path, counts: Sequence[int], input_size: Sequence[int], shape: str = "images"
                 ) -> Dict[int, Path]:
    """One JSON body file per image count: the same 32 px PNGs, base64, for every server, in
    the ``shape`` of ``BODY_SHAPES``."""
    import json

    import base64
    import io

    from PIL import Image

    rng = np.random.default_rng(0)
    channels, h, w = input_size
    yy, xx = np.mgrid[0:h, 0:w]
    blobs = []
    for _ in range(max(counts)):  # smooth gradients plus noise, like photos
        base = rng.uniform(0, 255, 3) + rng.uniform(-2, 2, 3) * xx[..., None] + rng.uniform(-2, 2, 3) * yy[..., None]
        image = Image.fromarray(np.clip(base + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8))
        buf = io.BytesIO()
        (image.convert("L") if channels == 1 else image).save(buf, "PNG")
        blobs.append(base64.b64encode(buf.getvalue()).decode("ascii"))
    paths = {}
    for count in counts:
        paths[count] = folder / f"body-{shape}-{count}.json"
        paths[count].write_text(json.dumps(BODY_SHAPES[shape](blobs[:count])))
    return paths


def _metric_sum(text: str, name: str) -> float:
    pattern = re.compile(rf"^{re.escape(name)}(\{{[^}}]*\}})? (\S+)$")
    return sum(float(m.group(2)) for line in text.splitlines() if (m := pattern.match(line)))


def _forward_stats(url: str, before: str, seconds: float) -> Tuple[Optional[float], Optional[float]]:
    import httpx

    after = httpx.get(url + "/metrics", timeout=30).text
    grew = {name: _metric_sum(after, name) - _metric_sum(before, name) for name in (
        "frossl_batch_size_count", "frossl_batch_size_sum", "frossl_batch_duration_seconds_sum")}
    if grew["frossl_batch_size_count"] <= 0:
        return None, None
    return (grew["frossl_batch_size_sum"] / grew["frossl_batch_size_count"],
            grew["frossl_batch_duration_seconds_sum"] / seconds if seconds > 0 else None)


def measure_server(server: Server, model: Path, args: argparse.Namespace, bodies: Dict[int, Path],
                   log_path: Path) -> List[Cell]:
    """Start ``server``, warm it up, run every (images, connections) cell, stop it."""
    import httpx

    port = _common.free_port()
    url = f"http://{HOST}:{port}"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(server.command(model, port, args.threads), cwd=_common.REPO,
                                env=_common.server_env(), stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)  # its own process group: stopped whole
    cells = []
    try:
        _common.wait_healthy(proc, url, args.startup_timeout, log_path, path=server.health)
        from serve.config import ModelSpec

        target = url + server.predict.format(model=ModelSpec.parse(str(model)).name)
        print(f"  {server.name}: warm-up ...", file=sys.stderr, flush=True)
        load_client.run_load(target, bodies[min(bodies)], 8, args.warmup_seconds, args.client)
        for images in args.images:
            for connections in args.connections:
                print(f"  {server.name}: {images} images/request, {connections} connections ...",
                      file=sys.stderr, flush=True)
                before = httpx.get(url + "/metrics", timeout=30).text if server.name.startswith("ours") else ""
                spy = None
                if args.profile and server.name == "ours" and images == 1 and connections == max(args.connections):
                    spy = pyspy.record(proc.pid, args.seconds - 1, log_path.with_suffix(".pyspy"))
                cpu_before = cpu_usage.snapshot(proc.pid)
                result = load_client.run_load(target, bodies[images], connections, args.seconds, args.client)
                cell = Cell(server.name, images, connections, result,
                            cpu=cpu_usage.share(cpu_before, cpu_usage.snapshot(proc.pid)))
                if spy is not None:
                    spy.wait(timeout=args.seconds + 60)
                    cell.profile = pyspy.summary(log_path.with_suffix(".pyspy"))
                if before:
                    cell.mean_batch, cell.forward_share = _forward_stats(url, before, result.seconds)
                cells.append(cell)
    finally:
        _common.stop_server(proc, group=True)
    if "Traceback" in log_path.read_text(errors="replace"):
        print(f"warning: {server.name} logged a traceback:\n{log_path.read_text(errors='replace')[-3000:]}")
    return cells


# ---------------------------------------------------------------------------------------------
# report


def _find(cells: Sequence[Cell], server: str, images: int, connections: Optional[int] = None
          ) -> Optional[Cell]:
    chosen = [c for c in cells if c.server == server and c.images == images
              and (connections is None or c.connections == connections)]
    return max(chosen, key=lambda c: c.images_per_s) if chosen else None


def print_servers(cells: Sequence[Cell]) -> None:
    rows = []
    for c in cells:
        load = c.load
        timed = load.requests > 0 and load.p50_s > 0  # no answer within the cell: no latency
        rows.append((c.server, c.images, c.connections, f"{load.requests_per_s:.1f}", f"{c.images_per_s:.1f}",
                     f"{1e3 * load.p50_s:.1f}" if timed else "-", f"{1e3 * load.p99_s:.1f}" if timed else "-",
                     f"{load.p99_s / load.p50_s:.2f}" if timed else "-", load.errors,
                     f"{c.mean_batch:.1f}" if c.mean_batch else "-",
                     f"{100 * c.forward_share:.0f}%" if c.forward_share is not None else "-",
                     *_cores(c.cpu)))
    print(_common.table(["server", "img/req", "conns", "req/s", "img/s", "p50 ms", "p99 ms", "p99/p50",
                         "errors", "img/forward", "in forward", "server cores", "main thread",
                         "client cores"], rows))


def _cores(cpu: Optional[cpu_usage.CpuShare]) -> Tuple[str, str, str]:
    if cpu is None:
        return "-", "-", "-"
    return tuple("-" if v is None else f"{v:.2f}" for v in (cpu.server, cpu.main_thread, cpu.client))


def print_sweep(cells: Sequence[Cell]) -> None:
    """Per (images, connections): the configuration of ours with the most images/s."""
    ours = [c for c in cells if c.server.startswith("ours") and c.server != "ours-torch"]
    if len({c.server for c in ours}) < 2:
        return
    rows = []
    for images, connections in sorted({(c.images, c.connections) for c in ours}):
        cell = [c for c in ours if (c.images, c.connections) == (images, connections)]
        best = max(cell, key=lambda c: c.images_per_s)
        default = next((c for c in cell if c.server == "ours"), None)
        rows.append((images, connections, best.server, f"{best.images_per_s:.1f}",
                     f"{default.images_per_s / best.images_per_s:.2f}" if default else "-"))
    print(_common.table(["img/req", "conns", "best config", "img/s", "default / best"], rows))
    print()


def print_ratios(cells: Sequence[Cell], raw: Dict[str, List[Tuple[int, float]]], top: int) -> None:
    def ratio(name: str, a: Optional[float], b: Optional[float], goal: Optional[float],
              at_most: bool = False) -> None:
        value = a / b if a is not None and b else None
        if goal is None:
            print(f"{name} = " + (f"{value:.2f}" if value is not None else "n/a") + "  (no goal)")
            return
        ok = None if value is None else (value <= goal if at_most else value >= goal)
        print(_common.fmt_ratio(name, value, f"{'<=' if at_most else '>='} {goal:g}", ok))

    ours, lit = _find(cells, "ours", 1, top), _find(cells, "litserve", 1, top)
    ratio(f"ours / LitServe requests/s, {top} connections, 1 image", ours and ours.load.requests_per_s,
          lit and lit.load.requests_per_s, REQUEST_GOAL)
    plain = _find(cells, "fastapi", 1, top)
    ratio(f"ours / plain FastAPI requests/s, {top} connections, 1 image",
          ours and ours.load.requests_per_s, plain and plain.load.requests_per_s, None)
    ours_torch = _find(cells, "ours-torch", 1, top)
    ratio(f"ours with the torch backend / LitServe requests/s, {top} connections, 1 image",
          ours_torch and ours_torch.load.requests_per_s, lit and lit.load.requests_per_s, None)
    for name in sorted({c.server for c in cells if c.server.startswith("ours-") and
                        c.server != "ours-torch"}):
        swept = _find(cells, name, 1, top)
        ratio(f"{name} / LitServe requests/s, {top} connections, 1 image",
              swept and swept.load.requests_per_s, lit and lit.load.requests_per_s, None)
    bulk = _find(cells, "ours", 32)
    best_ort = max((ips for _, ips in raw.get("onnxruntime", [])), default=None)
    ratio("ours images/s with 32 images per request / raw ONNX Runtime forward",
          bulk and bulk.images_per_s, best_ort, BULK_GOAL)
    ratio(f"ours p99 / p50, {top} connections, 1 image", ours and ours.load.p99_s,
          ours and ours.load.p50_s, TAIL_GOAL, at_most=True)
    for name in PROTOCOL_ROWS:
        for images in (1, 32):
            row, base = _find(cells, name, images, top), _find(cells, "ours-embeddings", images, top)
            ratio(f"{name} / ours-embeddings requests/s, {top} connections, {images} image(s)",
                  row and row.load.requests_per_s, base and base.load.requests_per_s, None)
    for bs in (1, 32):
        speeds = {name: dict(rows).get(bs) for name, rows in raw.items()}
        ratio(f"ONNX Runtime / PyTorch forward at batch {bs}", speeds.get("onnxruntime"), speeds.get("torch"),
              BACKEND_GOAL)


# ---------------------------------------------------------------------------------------------


def parse_ints(text: str) -> List[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None,
                        help="published model folder (default: a random-init model of --dataset in a temp folder)")
    parser.add_argument("--dataset", default="cifar10", help="shape of the random-init model (default cifar10)")
    parser.add_argument("--servers", default=",".join(SERVERS), help=f"some of {','.join(SERVERS)}")
    parser.add_argument("--sweep", default="", help="also python -m serve --workers W --threads T "
                        "for each WxT of a comma-separated list, e.g. 1x2,2x1 (auto for either)")
    parser.add_argument("--connections", type=parse_ints, default=[1, 8, 64])
    parser.add_argument("--images", type=parse_ints, default=[1, 32], help="images per request")
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per cell")
    parser.add_argument("--warmup-seconds", type=float, default=3.0)
    parser.add_argument("--client", default="auto", choices=["auto", "wrk", "python"],
                        help="load generator (auto: wrk when installed)")
    parser.add_argument("--threads", type=int, default=_common.available_cores(),
                        help="intra-op threads of every server and of the raw forward (default: all cores)")
    parser.add_argument("--raw-batches", type=parse_ints, default=[1, 8, 32, 64, 128, 256])
    parser.add_argument("--raw-seconds", type=float, default=2.0, help="seconds per raw batch size")
    parser.add_argument("--startup-timeout", type=float, default=300.0)
    parser.add_argument("--profile", action="store_true",
                        help="sample ours with py-spy during its 1-image, most-connections cell")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    import frossl_hub

    names = [n.strip() for n in args.servers.split(",") if n.strip()]
    unknown = [n for n in names if n not in SERVERS]
    if unknown:
        print(f"error: unknown server(s) {unknown}; choose from {', '.join(SERVERS)}", file=sys.stderr)
        return 2
    try:
        servers = {**{n: SERVERS[n] for n in names}, **{s.name: s for s in sweep_servers(args.sweep)}}
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.profile and not pyspy.available():
        print("error: --profile needs py-spy (pip install py-spy)", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    _common.print_header("serve throughput: ours vs LitServe vs plain FastAPI", [Path(sys.executable).name] + sys.argv)
    client = "wrk -t1 (C)" if args.client != "python" and load_client.has_wrk() else "python (httpx, asyncio)"
    print(f"load generator: {client}; {args.seconds:g} s per cell after a {args.warmup_seconds:g} s warm-up; "
          f"{args.threads} intra-op threads in every peer and the raw forward; ours: its defaults "
          "(--workers auto, --threads auto) or the --sweep settings")
    with tempfile.TemporaryDirectory(prefix="serve-bench-") as tmp:
        model_path = args.model or _common.publish_tiny_model(Path(tmp) / "model", args.dataset)
        model = frossl_hub.load(model_path)
        input_size = [int(x) for x in model.pretrained_cfg["input_size"]]
        print(f"model: {'random-init ' + args.dataset + ' shape, ' if args.model is None else ''}"
              f"{model.pretrained_cfg.get('architecture')}, input {input_size}, {model.num_classes} classes")
        raw = {backend: raw_throughput(model, backend, args.threads, args.raw_batches, args.raw_seconds)
               for backend in ("torch", "onnxruntime")}
        del model
        bodies = {shape: write_bodies(Path(tmp), args.images, input_size, shape) for shape in BODY_SHAPES}
        cells: List[Cell] = []
        for name, server in servers.items():
            if server.needs and importlib.util.find_spec(server.needs) is None:
                print(f"{name}: skipped ({server.needs} is not installed: pip install {server.needs})")
                continue
            cells += measure_server(server, Path(model_path), args, bodies[server.body],
                                    Path(tmp) / f"{name}.log")
    print()
    print(_common.table(["backend", "batch", "img/s"], [(b, bs, f"{ips:.1f}") for b, rows in raw.items()
                                                        for bs, ips in rows]))
    for backend, rows in raw.items():
        bs, ips = max(rows, key=lambda r: r[1])
        print(f"best raw {backend}: {ips:.1f} img/s at batch {bs}")
    print()
    print_servers(cells)
    print()
    for cell in cells:
        if cell.profile:
            print(f"py-spy profile of {cell.server} ({cell.images} image/request, {cell.connections} "
                  "connections), share of the server's sampled CPU by stage:")
            print(_common.table(["stage", "samples", "share"],
                                [(s, n, f"{100 * share:.0f}%") for s, n, share in cell.profile]))
            print()
    print_sweep(cells)
    print_ratios(cells, raw, max(args.connections))
    errors = sum(c.load.errors for c in cells)
    if errors:
        print(f"warning: {errors} requests failed (non-2xx or transport errors)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
