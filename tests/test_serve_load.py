"""End-to-end tests of a real ``python -m serve`` process (uvicorn on 127.0.0.1): concurrency,
dynamic batching, metrics, and staying up through bad input and dropped clients.

One server per module; 64 concurrent clients each send their own image.
"""
from __future__ import annotations

import asyncio
import io
import re
import socket
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List

import httpx
import numpy as np
import pytest
import timm
import torch
from PIL import Image

import frossl_hub
from frossl_hub.hub import model_config, save_pretrained
from frossl_hub.models import pretrained_cfg_for
from serve_helpers import sample, serving

pytestmark = pytest.mark.slow

CLIENTS = 64
MAX_BYTES = 256 * 1024
MAX_IMAGES = 8  # given to the server through FROSSL_SERVE_MAX_IMAGES, not a flag


def _png(seed: int, size=(32, 32)) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _files(*blobs: bytes) -> List[Any]:
    return [("file", (f"img{i}.png", b, "image/png")) for i, b in enumerate(blobs)]


def _reference(model: torch.nn.Module, blobs: List[bytes]) -> torch.Tensor:
    return frossl_hub.embed(model, [Image.open(io.BytesIO(b)) for b in blobs])


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    spec = frossl_hub.get_dataset_spec("cifar10")
    model = timm.create_model("frossl_resnet18_cifar", num_classes=10,
                              pretrained_cfg_overlay=pretrained_cfg_for(spec))
    return save_pretrained(model.state_dict(), tmp_path_factory.mktemp("load") / "tiny",
                           model_config(model))


@pytest.fixture(scope="module")
def model(model_dir: Path) -> torch.nn.Module:
    return frossl_hub.load(model_dir)


@pytest.fixture(scope="module")
def server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = dict(FROSSL_SERVE_MAX_IMAGES=str(MAX_IMAGES), FROSSL_SERVE_MAX_BYTES=str(MAX_BYTES))
    with serving(["--model", f"tiny={model_dir}", "--max-batch-size", "16"],
                 tmp_path_factory.mktemp("server") / "server.log", env) as url:
        yield url


async def _concurrent_embeddings(url: str, blobs: List[bytes]) -> List[httpx.Response]:
    limits = httpx.Limits(max_connections=len(blobs), max_keepalive_connections=len(blobs))
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        return await asyncio.gather(*[client.post("/v1/embeddings", files=_files(blob))
                                      for blob in blobs])


@pytest.fixture(scope="module")
def burst(server: str) -> Dict[str, Any]:
    """64 clients at once, each with its own image; metrics before and after."""
    blobs = [_png(1000 + i, (32 + i % 5, 32)) for i in range(CLIENTS)]
    before = httpx.get(server + "/metrics").text
    started = time.perf_counter()
    responses = asyncio.run(_concurrent_embeddings(server, blobs))
    elapsed = time.perf_counter() - started
    return dict(blobs=blobs, responses=responses, before=before, elapsed=elapsed,
                after=httpx.get(server + "/metrics").text)


def test_real_server_answers_healthz_with_a_request_id(server: str) -> None:
    response = httpx.get(server + "/healthz")
    assert response.status_code == 200 and response.json()["default"] == "tiny"
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-ID"])


def test_settings_from_the_environment_reach_the_server(server: str) -> None:
    body = httpx.get(server + "/v1/models").json()
    assert body["limits"] == {"max_images_per_request": MAX_IMAGES, "max_bytes": MAX_BYTES,
                              "max_pixels": 4096 * 4096}
    assert body["batching"]["max_batch_size"] == 16 and body["batching"]["max_wait_ms"] == 0


def test_concurrent_clients_each_get_their_own_single_request_result(
        burst: Dict[str, Any], model: torch.nn.Module) -> None:
    responses = burst["responses"]
    assert [r.status_code for r in responses] == [200] * CLIENTS
    got = torch.tensor([r.json()["data"][0]["embedding"] for r in responses])
    torch.testing.assert_close(got, _reference(model, burst["blobs"]), atol=1e-5, rtol=1e-5)


def _grew(burst: Dict[str, Any], name: str, **labels: str) -> float:
    return sample(burst["after"], name, **labels) - sample(burst["before"], name, **labels)


def test_concurrent_clients_share_batches(burst: Dict[str, Any]) -> None:
    batches = _grew(burst, "frossl_batch_size_count", model="tiny")
    single_batches = _grew(burst, "frossl_batch_size_bucket", model="tiny", le="1.0")
    assert 0 < batches < CLIENTS  # 64 images in fewer forward passes
    assert single_batches < batches  # some batches held more than one image


def test_metrics_count_the_burst(burst: Dict[str, Any]) -> None:
    assert _grew(burst, "frossl_http_requests_total", route="/v1/embeddings", method="POST",
                 status="200") == CLIENTS
    assert _grew(burst, "frossl_images_processed_total", model="tiny") == CLIENTS
    assert sample(burst["after"], "frossl_queue_depth", model="tiny") == 0


def test_bad_inputs_leave_the_server_serving(server: str, model: torch.nn.Module) -> None:
    header = b"\x89PNG\r\n\x1a\n"
    bad = [
        dict(files=_files(b"not an image")),
        dict(files=_files(_png(1)[:60])),
        dict(files=_files(b"")),
        dict(files=_files(*[_png(i) for i in range(MAX_IMAGES + 1)])),
        dict(json={"images": ["%%%"]}),
        dict(content=b"{", headers={"content-type": "application/json"}),
        dict(content=b"[" * 100_000, headers={"content-type": "application/json"}),
        dict(content=header, headers={"content-type": "image/png"}),
    ]
    with httpx.Client(base_url=server, timeout=30) as client:
        statuses = [client.post("/v1/embeddings", **kwargs).status_code for kwargs in bad]
        assert all(400 <= s < 500 for s in statuses), statuses
        assert client.get("/healthz").status_code == 200
        blob = _png(77)
        response = client.post("/v1/embeddings", files=_files(blob))
    got = torch.tensor([response.json()["data"][0]["embedding"]])
    torch.testing.assert_close(got, _reference(model, [blob]), atol=1e-5, rtol=1e-5)


def test_streamed_body_over_max_bytes_is_refused_over_http(server: str) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(2 * MAX_BYTES // 8192):
            yield b"x" * 8192
    response = httpx.post(server + "/v1/embeddings", content=chunks(), timeout=30,
                          headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_client_dropping_mid_upload_leaves_the_server_serving(server: str) -> None:
    host, port = server.rsplit("//", 1)[1].split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
                     b'{"images": ["')
    time.sleep(0.2)
    assert httpx.get(server + "/healthz").status_code == 200


def _wait_all_workers_ready(url: str, in_a_row: int = 12, timeout: float = 300) -> None:
    """/healthz on new connections until ``in_a_row`` answers are 200 (each worker is ready)."""
    deadline, good = time.monotonic() + timeout, 0
    while good < in_a_row:
        assert time.monotonic() < deadline, "the workers did not all become ready"
        ok = httpx.get(url + "/healthz", headers={"Connection": "close"}).status_code == 200
        good = good + 1 if ok else 0
        if not ok:
            time.sleep(0.2)


def test_workers_report_one_set_of_metrics(model_dir: Path, tmp_path: Path) -> None:
    """--workers 2: whichever worker answers /metrics counts the requests both served."""
    blobs = [_png(2000 + i) for i in range(16)]
    with serving(["--model", f"tiny={model_dir}", "--workers", "2"], tmp_path / "log") as url:
        _wait_all_workers_ready(url)
        responses = asyncio.run(_concurrent_embeddings(url, blobs))  # 16 connections, both workers
        texts = [httpx.get(url + "/metrics", headers={"Connection": "close"}).text
                 for _ in range(4)]
    assert [r.status_code for r in responses] == [200] * len(blobs)
    for text in texts:
        assert sample(text, "frossl_http_requests_total", route="/v1/embeddings",
                      status="200") == len(blobs)
        assert sample(text, "frossl_images_processed_total", model="tiny") == len(blobs)
        assert sample(text, "frossl_model_info", model="tiny", backend="onnxruntime") == 1
