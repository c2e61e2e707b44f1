"""Shared helpers of the benchmark scripts: the machine header, timing, tables, a tiny model,
the data set a published model was trained on.

Imported by the scripts in this folder as ``import _common`` (Python puts a script's own
folder first on ``sys.path``); it also puts the repository root on ``sys.path``, so the
scripts run from a plain checkout as well as from an installed one.
"""
from __future__ import annotations

import contextlib
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Union

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402  (after the sys.path fix above)

from frossl_hub.backends import available_cores  # noqa: E402

__all__ = ["REPO", "available_cores", "machine_lines", "print_header", "sync", "timed",
           "table", "fmt_ratio", "free_port", "server_env", "wait_healthy", "stop_server",
           "running_server",
           "publish_tiny_model", "dataset_of"]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine_lines(device: Optional[torch.device] = None) -> List[str]:
    """What a result depends on: CPU, cores, torch threads, versions, GPU."""
    import torchvision

    lines = [
        f"cpu: {_cpu_model()} ({os.cpu_count()} logical cores, {available_cores()} available)",
        f"torch threads: {torch.get_num_threads()} intra-op, {torch.get_num_interop_threads()} inter-op",
        f"python {platform.python_version()}, torch {torch.__version__}, "
        f"torchvision {torchvision.__version__}",
    ]
    if torch.cuda.is_available():
        index = device.index if device is not None and device.type == "cuda" and device.index is not None else 0
        lines.append(f"gpu: {torch.cuda.get_device_name(index)} (CUDA {torch.version.cuda}, "
                     f"{torch.cuda.device_count()} visible)")
    else:
        lines.append("gpu: none")
    return lines


def print_header(title: str, command: Sequence[str], device: Optional[torch.device] = None) -> None:
    """The title, the exact command line and the machine, before any number."""
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[attr-defined]  # interleave with stderr
    print(f"# {title}")
    print(f"command: {' '.join(command)}")
    for line in machine_lines(device):
        print(line)
    print()


def sync(device: Union[torch.device, str, None]) -> None:
    """Wait for queued GPU work, so a clock read after it covers it."""
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], steps: int, warmup: int,
          device: Union[torch.device, str, None] = None) -> float:
    """Seconds per call of ``fn`` over ``steps`` calls, after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    sync(device)
    return (time.perf_counter() - start) / max(1, steps)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A compact fixed-width table, first column left-aligned, the others right-aligned."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))

    return "\n".join([line(cells[0]), line(["-" * w for w in widths])] + [line(r) for r in cells[1:]])


def fmt_ratio(name: str, value: Optional[float], goal: str, ok: Optional[bool]) -> str:
    """``name = 1.23  (goal >= 0.9: met)``; ``n/a`` where a side was not measured."""
    if value is None:
        return f"{name} = n/a  (goal {goal})"
    verdict = "met" if ok else "NOT met"
    return f"{name} = {value:.2f}  (goal {goal}: {verdict})"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env() -> Dict[str, str]:
    """This environment without FROSSL_SERVE_* / the API key (only the flags given count), offline."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FROSSL_SERVE_") and k != "FROSSL_API_KEY"}
    env["HF_HUB_OFFLINE"] = "1"
    return env


def wait_healthy(proc: subprocess.Popen, url: str, timeout: float, log_path: Path,
                 poll_s: float = 0.2, path: str = "/healthz") -> None:
    """Poll ``url + path`` until it answers 200. RuntimeError with the end of the server's log
    when the process exits first or ``timeout`` seconds pass."""
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            if httpx.get(url + path, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"the server was not healthy after {timeout:.0f} s:\n{log_path.read_text()[-3000:]}")
        time.sleep(poll_s)


def stop_server(proc: subprocess.Popen, grace_s: float = 20, group: bool = False) -> None:
    """SIGTERM (uvicorn's graceful shutdown), then SIGKILL after ``grace_s`` seconds.

    ``group``: the server was started with ``start_new_session=True`` and may have children
    (LitServe's workers, uvicorn's): signal its whole process group, leaving nothing behind.
    """
    def signal_it(sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig) if group else proc.send_signal(sig)

    if proc.poll() is None:
        signal_it(signal.SIGTERM)
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            signal_it(signal.SIGKILL)
            proc.wait()
    if group:  # children outlive a leader that exited first
        signal_it(signal.SIGKILL)


@contextlib.contextmanager
def running_server(args: Sequence[str], env: Mapping[str, str], log_path: Path,
                   timeout: float = 90, poll_s: float = 0.2) -> Iterator[str]:
    """``python -m serve ARGS --port FREE`` on 127.0.0.1: yields its URL once /healthz is 200,
    stops it (and any worker processes) on exit. RuntimeError with the end of its log if it
    never gets healthy."""
    port = free_port()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "serve", *args, "--port", str(port)],
                                cwd=REPO, env=dict(env), stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(proc, url, timeout, log_path, poll_s)
        yield url
    finally:
        stop_server(proc, grace_s=15, group=True)


def publish_tiny_model(folder: Path, dataset: str = "cifar10", arch: Optional[str] = None,
                       dtype: str = "float32", seed: int = 0, num_classes: Optional[int] = None) -> Path:
    """A random-init FroSSL ResNet18 published into ``folder`` (must be missing or empty):
    exactly what ``python -m train.publish`` writes, minus plots. Benchmarks and tests use it,
    since speed and the hub's plumbing do not depend on trained weights.

    Args:
        dataset: data set whose input spec, labels and class count the model gets.
        arch: timm architecture; default the catalog entry's (the served model's stem).
        dtype: stored precision: float32, float16 or bfloat16.
        seed: torch seed for the weights, so two calls with one seed publish equal weights.
        num_classes: head size; default the data set's class count (0: no head).
    """
    import timm

    import frossl_hub
    from frossl_hub.catalog import get_entry
    from frossl_hub.hub import model_config, save_pretrained
    from frossl_hub.models import pretrained_cfg_for

    spec = frossl_hub.get_dataset_spec(dataset)
    arch = arch or get_entry(spec.name).architecture
    torch.manual_seed(seed)
    model = timm.create_model(arch, num_classes=spec.num_classes if num_classes is None else num_classes,
                              in_chans=spec.in_chans, pretrained_cfg_overlay=pretrained_cfg_for(spec))
    with torch.no_grad():  # non-trivial BN statistics, so eval outputs depend on them
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    card = f"# Tiny test model ({arch}, {spec.title})\n\nRandom weights, for tests and benchmarks only.\n"
    return save_pretrained(model.state_dict(), folder, model_config(model), dtype=dtype,
                           extra_files={"README.md": card})


def dataset_of(name_or_path: str) -> str:
    """The catalog data set a published model (catalog name or folder) was trained on."""
    import frossl_hub
    from frossl_hub.hub import load_config

    return load_config(frossl_hub.resolve(name_or_path).folder)["frossl"]["dataset"]
