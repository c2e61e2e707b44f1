"""Sample a running server with py-spy and say where its CPU time goes, by stage.

``record(pid, seconds, out)`` starts ``py-spy record --format raw`` (collapsed stacks) on a
process and its children; ``summary(out)`` counts each sample once, in the first stage (from
the innermost frame outwards) whose pattern one of its frames matches. Used by
``serve_throughput.py --profile`` to explain a missed goal from a profile rather than a guess.
"""
from __future__ import annotations

import collections
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

__all__ = ["STAGES", "available", "record", "summary"]

STAGES: Tuple[Tuple[str, Tuple[str, ...]], ...] = (  # (stage, frame substrings), innermost wins
    ("forward pass (ONNX Runtime / torch)", ("onnxruntime", "forward_features", "forward_head",
                                              "torch/nn/modules")),
    ("image decode + checks (PIL)", ("decode_image", "PIL/")),
    ("preprocess (uint8, normalise)", ("frossl_hub/inference.py", "torchvision/transforms",
                                       "timm/data")),
    ("JSON + base64 + validation", ("orjson", "b64decode", "json_image_request", "pydantic")),
    ("response (top-k, orjson)", ("serve/responses.py", "serve/routers/predictions.py")),
    ("batcher hand-offs", ("serve/batcher.py",)),
    ("HTTP server (uvicorn, httptools)", ("uvicorn/", "httptools")),
    ("framework (starlette, fastapi, middleware)", ("starlette/", "fastapi/", "serve/middleware")),
    ("event loop, threads", ("asyncio/", "uvloop", "threading.py", "concurrent/futures")),
)


def _executable() -> Optional[str]:
    """py-spy next to this Python (a venv's bin/, often not on PATH), else on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.is_file() else shutil.which("py-spy")


def available() -> bool:
    return _executable() is not None


def record(pid: int, seconds: float, out: Path, rate: int = 100) -> subprocess.Popen:
    """Start sampling ``pid`` (and its subprocesses) for ``seconds``; wait on the returned process."""
    cmd = [str(_executable()), "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))),
           "--rate", str(rate), "--format", "raw", "--subprocesses", "--nonblocking",
           "--output", str(out)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _stage_of(frames: List[str]) -> str:
    for frame in reversed(frames):  # innermost first
        for stage, patterns in STAGES:
            if any(p in frame for p in patterns):
                return stage
    return "other"


def summary(path: Path) -> Optional[List[Tuple[str, int, float]]]:
    """(stage, samples, share) sorted by samples; None when the profile is empty or missing."""
    counts: Dict[str, int] = collections.Counter()
    if not path.is_file():
        return None
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            counts[_stage_of(stack.split(";"))] += int(count)
    total = sum(counts.values())
    if not total:
        return None
    return [(stage, n, n / total) for stage, n in counts.most_common()]
