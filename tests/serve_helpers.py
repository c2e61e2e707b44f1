"""Shared helpers of the service tests: tiny published models, image files, error checks.

Import from tests as ``from serve_helpers import ...`` (pytest puts ``tests/`` on ``sys.path``).
"""
from __future__ import annotations

import base64
import contextlib
import io
import os
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence

import numpy as np
import timm
import torch
from fastapi.testclient import TestClient
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

import frossl_hub
from frossl_hub.hub import model_config, save_pretrained
from frossl_hub.models import pretrained_cfg_for

REPO = Path(__file__).resolve().parents[1]
FOLDER_METRICS = {"linear_top1": 11.0, "knn_top1": 12.5}  # what the tiny model's config.json claims
LIMITS = dict(max_images=4, max_bytes=64 * 1024, max_pixels=256 * 256, max_queue=64,
              max_batch_size=8)
API_KEY = "s3cret-key-for-tests"


def publish_tiny(folder: Path, seed: int = 0) -> Path:
    """A random-init published CIFAR-10 model folder (ResNet18, 32 px)."""
    torch.manual_seed(seed)
    spec = frossl_hub.get_dataset_spec("cifar10")
    model = timm.create_model("frossl_resnet18_cifar", num_classes=10,
                              pretrained_cfg_overlay=pretrained_cfg_for(spec))
    config = model_config(model, frossl={"dataset": "cifar10", "metrics": FOLDER_METRICS})
    return save_pretrained(model.state_dict(), folder, config)


def noise(seed: int, size=(32, 32), mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    return image if mode == "RGB" else image.convert(mode)


def encode(image: Image.Image, fmt: str = "PNG", **kwargs: Any) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kwargs)
    return buf.getvalue()


def png(seed: int, size=(32, 32)) -> bytes:
    return encode(noise(seed, size))


def png_header(width: int, height: int) -> bytes:
    """A PNG that is only a (valid) header: decoding its pixels would fail."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def files(*blobs: bytes) -> List[Any]:
    return [("file", (f"img{i}.png", blob, "application/octet-stream"))
            for i, blob in enumerate(blobs)]


def b64(blob: bytes) -> str:
    return base64.b64encode(blob).decode("ascii")


def reference(model: torch.nn.Module, blobs: List[bytes], normalize: bool = False) -> torch.Tensor:
    """What frossl_hub.embed gives for the same image files."""
    return frossl_hub.embed(model, [Image.open(io.BytesIO(b)) for b in blobs], normalize=normalize)


def embeddings_of(response: Any) -> torch.Tensor:
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert [d["index"] for d in data] == list(range(len(data)))
    return torch.tensor([d["embedding"] for d in data])


def assert_error(response: Any, status: int, code: str) -> Dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    assert body["error"]["code"] == code, body
    assert body["error"]["message"], body
    return body["error"]


def wait_ready(client: TestClient, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        response = client.get("/healthz")
        if response.status_code == 200 or time.monotonic() > deadline:
            return response
        if response.json()["error"]["code"] == "model_load_failed":
            return response
        time.sleep(0.05)


def run_cli(*args: str, env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
    full_env = dict(os.environ, HF_HUB_OFFLINE="1", **(env or {}))
    full_env.pop("FROSSL_HUB_DIR", None)
    return subprocess.run([sys.executable, "-m", "serve", *args], cwd=REPO, env=full_env,
                          capture_output=True, text=True, timeout=120)


def sample(text: str, name: str, **labels: str) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels``, in Prometheus text."""
    return sum(s.value for family in text_string_to_metric_families(text) for s in family.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


@contextlib.contextmanager
def serving(args: Sequence[str], log_path: Path, env: Optional[Dict[str, str]] = None,
            timeout: float = 300, log_level: str = "warning") -> Iterator[str]:
    """``benchmarks._common.running_server`` with this environment minus FROSSL_SERVE_* (plus
    ``env``), one worker unless ``args`` say otherwise, quiet logs (``log_level``), and a check that the server logged no traceback."""
    from benchmarks import _common

    if "--workers" not in args:  # one worker unless asked (--workers auto varies with the machine)
        args = [*args, "--workers", "1"]
    with _common.running_server([*args, "--log-level", log_level],
                                dict(_common.server_env(), **(env or {})), log_path,
                                timeout=timeout, poll_s=0.1) as url:
        yield url
    assert "Traceback" not in log_path.read_text(), log_path.read_text()
