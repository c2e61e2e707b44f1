"""Unit-level tests of the service (serve/): FastAPI's TestClient, settings, batcher, CLI.

The end-to-end tests against a real ``python -m serve`` process are in test_serve_load.py.
"""
from __future__ import annotations

import asyncio
import base64
import io
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path
from typing import Any, Dict, List, Optional

import httpx
import numpy as np
import pytest
import timm
import torch
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image

import frossl_hub
from frossl_hub.hub import model_config, save_pretrained
from frossl_hub.models import pretrained_cfg_for
from serve.app import create_app
from serve.batcher import MicroBatcher, QueueFullError
from serve.config import ConfigError, ModelSpec, Settings, parse_settings
from serve.errors import install_exception_handlers
from serve.metrics import ServiceMetrics

REPO = Path(__file__).resolve().parents[1]
FOLDER_METRICS = {"linear_top1": 11.0, "knn_top1": 12.5}  # what the tiny model's config.json claims
LIMITS = dict(max_images=4, max_bytes=64 * 1024, max_pixels=256 * 256, max_queue=64,
              max_batch_size=8)
API_KEY = "s3cret-key-for-tests"


# ---------------------------------------------------------------------------------------------
# helpers


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
    import os

    full_env = dict(os.environ, HF_HUB_OFFLINE="1", **(env or {}))
    full_env.pop("FROSSL_HUB_DIR", None)
    return subprocess.run([sys.executable, "-m", "serve", *args], cwd=REPO, env=full_env,
                          capture_output=True, text=True, timeout=120)


# ---------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return publish_tiny(tmp_path_factory.mktemp("serve") / "tiny")


@pytest.fixture(scope="session")
def tiny_model(tiny_dir: Path) -> torch.nn.Module:
    return frossl_hub.load(tiny_dir)


@pytest.fixture(scope="module")
def client(tiny_dir: Path, tiny_model: torch.nn.Module):
    settings = Settings(models=(ModelSpec("tiny", str(tiny_dir)),), **LIMITS)
    with TestClient(create_app(settings, models={"tiny": tiny_model})) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def keyed_client(tiny_model: torch.nn.Module):
    settings = Settings(models=(ModelSpec("tiny", "tiny"),), api_key=API_KEY, **LIMITS)
    with TestClient(create_app(settings, models={"tiny": tiny_model})) as test_client:
        yield test_client


# ---------------------------------------------------------------------------------------------
# health and models


def test_healthz_is_200_once_models_are_loaded(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "models": ["tiny"], "default": "tiny"}


def test_healthz_is_503_while_models_load(tiny_dir: Path) -> None:
    settings = Settings(models=(ModelSpec("tiny", str(tiny_dir)),))
    with TestClient(create_app(settings)) as test_client:
        first = test_client.get("/healthz")  # loading takes ~1 s in the background thread
        assert_error(first, 503, "models_loading")
        assert first.headers["Retry-After"]
        assert wait_ready(test_client).status_code == 200


def test_inference_is_503_while_models_load(tiny_dir: Path) -> None:
    settings = Settings(models=(ModelSpec("tiny", str(tiny_dir)),))
    with TestClient(create_app(settings)) as test_client:
        response = test_client.post("/v1/embeddings", files=files(png(1)))
        assert_error(response, 503, "models_loading")
        assert wait_ready(test_client).status_code == 200


def test_healthz_is_503_when_loading_fails(tiny_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_bytes((tiny_dir / "config.json").read_bytes())
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    settings = Settings(models=(ModelSpec("broken", str(broken)),))
    with TestClient(create_app(settings)) as test_client:
        error = assert_error(wait_ready(test_client), 503, "model_load_failed")
        assert "model loading failed" in error["message"]


def test_models_lists_card_facts_limits_and_batching(client: TestClient) -> None:
    body = client.get("/v1/models").json()
    assert body["default"] == "tiny"
    (card,) = body["data"]
    assert card["name"] == "tiny" and card["default"] is True
    assert card["dataset"] == "cifar10"
    assert card["embedding_dim"] == 512 and card["num_classes"] == 10
    assert card["label_names"] == list(frossl_hub.get_dataset_spec("cifar10").label_names)
    assert card["input_size"] == [3, 32, 32]
    assert card["metrics"] == FOLDER_METRICS  # from config.json "frossl" -> "metrics"
    assert body["limits"] == {"max_images_per_request": 4, "max_bytes": 64 * 1024,
                              "max_pixels": 256 * 256}
    assert body["batching"] == {"max_batch_size": 8, "max_wait_ms": 0.0, "max_queue": 64}


def test_models_reads_catalog_metrics_for_catalog_names(
        tiny_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = "frossl-resnet18-cifar10"  # the bundled model
    monkeypatch.delenv("FROSSL_HUB_DIR", raising=False)
    with TestClient(create_app(Settings(models=(ModelSpec.parse(name),)))) as test_client:
        assert wait_ready(test_client).status_code == 200
        (card,) = test_client.get("/v1/models").json()["data"]
    assert card["name"] == name and card["dataset"] == "cifar10"
    assert card["metrics"] == frossl_hub.get_entry(name).metrics


def test_one_model_by_name(client: TestClient) -> None:
    assert client.get("/v1/models/tiny").json()["embedding_dim"] == 512


def test_openapi_documents_every_route_and_both_encodings(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert {"/healthz", "/v1/models", "/v1/embeddings", "/v1/predictions", "/metrics"} <= set(
        spec["paths"])
    body = spec["paths"]["/v1/embeddings"]["post"]["requestBody"]["content"]
    assert {"application/json", "multipart/form-data"} <= set(body)
    assert client.get("/docs").status_code == 200


# ---------------------------------------------------------------------------------------------
# embeddings and predictions


def test_embeddings_multipart_equal_frossl_hub_embed(client: TestClient,
                                                      tiny_model: torch.nn.Module) -> None:
    blobs = [png(1), png(2, (48, 40))]
    response = client.post("/v1/embeddings", files=files(*blobs))
    assert response.json()["model"] == "tiny" and response.json()["dim"] == 512
    torch.testing.assert_close(embeddings_of(response), reference(tiny_model, blobs),
                               atol=1e-5, rtol=1e-5)


def test_embeddings_json_base64_equal_frossl_hub_embed(client: TestClient,
                                                       tiny_model: torch.nn.Module) -> None:
    blobs = [png(3), encode(noise(4), "JPEG")]
    response = client.post("/v1/embeddings", json={"images": [b64(b) for b in blobs]})
    torch.testing.assert_close(embeddings_of(response), reference(tiny_model, blobs),
                               atol=1e-5, rtol=1e-5)


def test_embeddings_accept_data_urls(client: TestClient, tiny_model: torch.nn.Module) -> None:
    blob = png(5)
    response = client.post("/v1/embeddings",
                           json={"images": ["data:image/png;base64," + b64(blob)]})
    torch.testing.assert_close(embeddings_of(response), reference(tiny_model, [blob]),
                               atol=1e-5, rtol=1e-5)


def test_embeddings_normalize(client: TestClient, tiny_model: torch.nn.Module) -> None:
    blobs = [png(6)]
    response = client.post("/v1/embeddings", files=files(*blobs), data={"normalize": "true"})
    got = embeddings_of(response)
    torch.testing.assert_close(got.norm(dim=1), torch.ones(1))
    torch.testing.assert_close(got, reference(tiny_model, blobs, normalize=True),
                               atol=1e-5, rtol=1e-5)


def test_predictions_are_softmax_top_k_of_the_linear_probe(client: TestClient,
                                                           tiny_model: torch.nn.Module) -> None:
    blobs = [png(7), png(8)]
    response = client.post("/v1/predictions", json={"images": [b64(b) for b in blobs],
                                                    "top_k": 3})
    assert response.status_code == 200, response.text
    features = reference(tiny_model, blobs)
    with torch.inference_mode():
        probs = tiny_model.get_classifier()(features).softmax(dim=1)
    labels = tiny_model.pretrained_cfg["label_names"]
    for row, expected in zip(response.json()["data"], probs):
        scores, ids = expected.topk(3)
        assert [p["class_id"] for p in row["predictions"]] == ids.tolist()
        assert [p["label"] for p in row["predictions"]] == [labels[i] for i in ids.tolist()]
        torch.testing.assert_close(torch.tensor([p["score"] for p in row["predictions"]]),
                                   scores, atol=1e-5, rtol=1e-5)


def test_predictions_default_to_top_5_over_multipart(client: TestClient) -> None:
    response = client.post("/v1/predictions", files=files(png(9)))
    assert response.status_code == 200, response.text
    (row,) = response.json()["data"]
    scores = [p["score"] for p in row["predictions"]]
    assert len(scores) == 5 and scores == sorted(scores, reverse=True)


def test_requests_pick_a_model_by_name_and_default_to_the_first(tmp_path: Path) -> None:
    first = frossl_hub.load(publish_tiny(tmp_path / "a", seed=1))
    second = frossl_hub.load(publish_tiny(tmp_path / "b", seed=2))
    blobs = [png(10)]
    with TestClient(create_app(Settings(), models={"a": first, "b": second})) as test_client:
        default = test_client.post("/v1/embeddings", files=files(*blobs))
        named = test_client.post("/v1/embeddings", files=files(*blobs), data={"model": "b"})
    assert default.json()["model"] == "a" and named.json()["model"] == "b"
    torch.testing.assert_close(embeddings_of(default), reference(first, blobs), atol=1e-5,
                               rtol=1e-5)
    torch.testing.assert_close(embeddings_of(named), reference(second, blobs), atol=1e-5,
                               rtol=1e-5)


def test_predictions_need_a_linear_probe_head(tiny_dir: Path) -> None:
    headless = frossl_hub.load(tiny_dir, num_classes=0)
    with TestClient(create_app(Settings(), models={"headless": headless})) as test_client:
        assert_error(test_client.post("/v1/predictions", files=files(png(1))), 422,
                     "no_classifier")
        assert test_client.post("/v1/embeddings", files=files(png(1))).status_code == 200


def _sixteen_bit() -> Image.Image:
    rng = np.random.default_rng(11)
    return Image.fromarray(rng.integers(0, 65535, (32, 32)).astype(np.uint16))


VALID_ODD_IMAGES = {
    "cmyk-jpeg": lambda: encode(noise(12, mode="CMYK"), "JPEG"),
    "16-bit-png": lambda: encode(_sixteen_bit(), "PNG"),
    "16-bit-tiff": lambda: encode(_sixteen_bit(), "TIFF"),
    "rgba-png": lambda: encode(noise(13, mode="RGBA"), "PNG"),
    "la-png": lambda: encode(noise(14, mode="LA"), "PNG"),
    "palette-transparent-png": lambda: encode(noise(15, mode="P"), "PNG", transparency=0),
    "palette-gif": lambda: encode(noise(16, mode="P"), "GIF"),
    "grey-png": lambda: encode(noise(17, mode="L"), "PNG"),
    "bilevel-png": lambda: encode(noise(18, mode="1"), "PNG"),
    "bmp": lambda: encode(noise(19), "BMP"),
    "webp": lambda: encode(noise(20), "WEBP", lossless=True),
}


@pytest.mark.parametrize("kind", sorted(VALID_ODD_IMAGES))
def test_odd_image_modes_are_converted_like_frossl_hub(kind: str, client: TestClient,
                                                      tiny_model: torch.nn.Module) -> None:
    blob = VALID_ODD_IMAGES[kind]()
    response = client.post("/v1/embeddings", files=files(blob))
    torch.testing.assert_close(embeddings_of(response), reference(tiny_model, [blob]),
                               atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# bad input: a clear 4xx in the common JSON shape


def _animated_gif() -> bytes:
    frames = [noise(21, mode="P"), noise(22, mode="P")]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:])


def _multi_page_tiff() -> bytes:
    return encode(noise(23), "TIFF", save_all=True, append_images=[noise(24)])


def _truncated_png() -> bytes:
    blob = png(25)
    return blob[: len(blob) // 2]


def _corrupt_png() -> bytes:
    blob = png(26)
    return blob[:100] + bytes(b ^ 0xFF for b in blob[100:200]) + blob[200:]


BAD_REQUESTS = {  # id: (path, request kwargs, status, code)
    "not-an-image": ("/v1/embeddings", dict(files=files(b"just some text, not pixels")),
                     415, "unsupported_image"),
    "truncated-image": ("/v1/embeddings", dict(files=files(_truncated_png())), 422,
                        "corrupt_image"),
    "corrupt-image": ("/v1/embeddings", dict(files=files(_corrupt_png())), 422,
                      "corrupt_image"),
    "empty-file": ("/v1/embeddings", dict(files=files(b"")), 422, "empty_image"),
    "zero-size-image": ("/v1/embeddings", dict(files=files(png_header(0, 16))), 422,
                        "zero_size_image"),
    "decompression-bomb": ("/v1/embeddings", dict(files=files(png_header(100_000, 100_000))),
                           413, "image_too_large"),
    # header only: were it decoded before the pixel check, it would fail as corrupt (422)
    "over-max-pixels": ("/v1/embeddings", dict(files=files(png_header(1000, 1000))), 413,
                        "image_too_large"),
    "animated-gif": ("/v1/embeddings", dict(files=files(_animated_gif())), 422,
                     "animated_image"),
    "multi-page-tiff": ("/v1/predictions", dict(files=files(_multi_page_tiff())), 422,
                        "animated_image"),
    "too-many-files": ("/v1/embeddings", dict(files=files(*[png(i) for i in range(5)])), 413,
                       "too_many_images"),
    "too-many-base64": ("/v1/embeddings", dict(json={"images": [b64(png(1))] * 5}), 413,
                        "too_many_images"),
    "invalid-base64": ("/v1/embeddings", dict(json={"images": ["not base64 at all!"]}), 422,
                       "invalid_base64"),
    "unknown-model": ("/v1/embeddings", dict(json={"images": [b64(png(1))], "model": "nope"}),
                      404, "model_not_found"),
    "unknown-model-multipart": ("/v1/predictions", dict(files=files(png(1)),
                                                        data={"model": "nope"}),
                                404, "model_not_found"),
    "malformed-json": ("/v1/embeddings", dict(content=b'{"images": [',
                                              headers={"content-type": "application/json"}),
                       400, "malformed_json"),
    "json-not-an-object": ("/v1/embeddings", dict(json=["x"]), 422, "invalid_request"),
    "missing-images": ("/v1/embeddings", dict(json={"normalize": True}), 422,
                       "invalid_request"),
    "empty-image-list": ("/v1/embeddings", dict(json={"images": []}), 422, "invalid_request"),
    "unknown-field": ("/v1/embeddings", dict(json={"images": [b64(png(1))], "colour": "red"}),
                      422, "invalid_request"),
    "no-file-parts": ("/v1/embeddings", dict(files=[("model", (None, "tiny"))]), 422,
                      "invalid_request"),
    "top-k-zero": ("/v1/predictions", dict(json={"images": [b64(png(1))], "top_k": 0}), 422,
                   "invalid_request"),
    "top-k-over-classes": ("/v1/predictions", dict(files=files(png(1)), data={"top_k": "11"}),
                           422, "invalid_request"),
    "top-k-not-a-number": ("/v1/predictions", dict(files=files(png(1)), data={"top_k": "x"}),
                           422, "invalid_request"),
    "wrong-content-type": ("/v1/embeddings", dict(content=b"images=1",
                                                  headers={"content-type": "text/plain"}),
                           415, "unsupported_media_type"),
    "no-content-type": ("/v1/embeddings", dict(content=b"x"), 415, "unsupported_media_type"),
    "malformed-multipart": ("/v1/embeddings", dict(
        content=b"--xyz\r\nno headers here", headers={
            "content-type": "multipart/form-data; boundary=xyz"}), 400, "malformed_multipart"),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_input_gets_a_clear_4xx(case: str, client: TestClient) -> None:
    path, kwargs, status, code = BAD_REQUESTS[case]
    error = assert_error(client.post(path, **kwargs), status, code)
    assert "Traceback" not in error["message"]


def test_multi_frame_error_asks_for_a_single_frame(client: TestClient) -> None:
    error = assert_error(client.post("/v1/embeddings", files=files(_animated_gif())), 422,
                         "animated_image")
    assert "send a single frame" in error["message"]


def test_image_errors_name_the_image(client: TestClient) -> None:
    response = client.post("/v1/embeddings", files=files(png(1), b""))
    assert "image 1 ('img1.png')" in assert_error(response, 422, "empty_image")["message"]


def test_body_over_max_bytes_is_refused_from_content_length(client: TestClient) -> None:
    response = client.post("/v1/embeddings", content=b"{}", headers={
        "content-type": "application/json", "content-length": str(10 ** 9)})
    assert "limit of 65536 bytes" in assert_error(response, 413, "payload_too_large")["message"]


def test_streamed_body_over_max_bytes_is_cut_off(client: TestClient) -> None:
    def chunks():  # no Content-Length: chunked transfer
        for _ in range(100):
            yield b"x" * 4096
    response = client.post("/v1/embeddings", content=chunks(),
                           headers={"content-type": "application/json"})
    assert_error(response, 413, "payload_too_large")


def test_validation_errors_use_the_common_shape() -> None:
    app = FastAPI()
    install_exception_handlers(app)

    @app.get("/probe")
    def probe(n: int) -> int:
        return n

    with TestClient(app) as test_client:
        error = assert_error(test_client.get("/probe", params={"n": "abc"}), 422,
                             "invalid_request")
    assert error["message"].startswith("n: ")


def test_unknown_route_and_wrong_method_use_the_common_shape(client: TestClient) -> None:
    assert_error(client.get("/v2/nothing"), 404, "not_found")
    assert_error(client.get("/v1/embeddings"), 405, "method_not_allowed")


def test_internal_error_is_a_500_with_request_id_and_no_traceback() -> None:
    # a 1-channel network behind a config that feeds it RGB: every forward pass fails
    spec = frossl_hub.get_dataset_spec("cifar10")
    broken = timm.create_model("frossl_resnet18_cifar", num_classes=10, in_chans=1,
                               pretrained_cfg_overlay=pretrained_cfg_for(spec)).eval()
    assert broken.pretrained_cfg["input_size"][0] == 3
    with TestClient(create_app(Settings(), models={"broken": broken}),
                    raise_server_exceptions=False) as test_client:
        response = test_client.post("/v1/embeddings", files=files(png(1)))
        error = assert_error(response, 500, "internal_error")
        assert error["request_id"] == response.headers["X-Request-ID"]
        assert "channels" not in error["message"] and "Traceback" not in response.text
        assert test_client.get("/healthz").status_code == 200


def test_responses_carry_the_clients_request_id(client: TestClient) -> None:
    response = client.get("/healthz", headers={"X-Request-ID": "trace-1234abcd"})
    assert response.headers["X-Request-ID"] == "trace-1234abcd"


def test_full_queue_refuses_with_503_instead_of_waiting(tiny_model: torch.nn.Module) -> None:
    settings = Settings(max_queue=1, max_images=1, max_batch_size=1)
    app = create_app(settings, models={"tiny": tiny_model})

    async def burst():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://serve") as http:
                return await asyncio.gather(*[
                    http.post("/v1/embeddings", files=files(png(i, (64, 64))))
                    for i in range(8)])

    responses = asyncio.run(burst())
    statuses = sorted(r.status_code for r in responses)
    assert set(statuses) == {200, 503}, statuses  # one image admitted at a time
    for response in responses:
        if response.status_code == 503:
            assert_error(response, 503, "queue_full")
            assert response.headers["Retry-After"] == "1"


# ---------------------------------------------------------------------------------------------
# API key


def test_api_key_missing_is_401(keyed_client: TestClient) -> None:
    response = keyed_client.get("/v1/models")
    assert_error(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_api_key_wrong_is_401(keyed_client: TestClient) -> None:
    assert_error(keyed_client.get("/v1/models", headers={"Authorization": "Bearer wrong"}),
                 401, "unauthorized")


def test_api_key_right_is_200(keyed_client: TestClient) -> None:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    assert keyed_client.get("/v1/models", headers=headers).status_code == 200
    assert keyed_client.post("/v1/embeddings", files=files(png(1)),
                             headers=headers).status_code == 200


def test_api_key_guards_inference_and_metrics(keyed_client: TestClient) -> None:
    assert_error(keyed_client.post("/v1/predictions", files=files(png(1))), 401, "unauthorized")
    assert_error(keyed_client.get("/metrics"), 401, "unauthorized")


def test_healthz_stays_open_with_an_api_key(keyed_client: TestClient) -> None:
    assert keyed_client.get("/healthz").status_code == 200


# ---------------------------------------------------------------------------------------------
# metrics


def _sample(text: str, prefix: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(prefix))


def test_metrics_count_requests_by_route_and_status(client: TestClient) -> None:
    ok = 'frossl_http_requests_total{route="/v1/embeddings",method="POST",status="200"}'
    bad = 'frossl_http_requests_total{route="/v1/embeddings",method="POST",status="415"}'
    before = client.get("/metrics").text
    client.post("/v1/embeddings", files=files(png(1)))
    client.post("/v1/embeddings", content=b"x", headers={"content-type": "text/plain"})
    after = client.get("/metrics")
    assert after.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert _sample(after.text, ok) == _sample(before, ok) + 1
    assert _sample(after.text, bad) == _sample(before, bad) + 1


def test_metrics_expose_latency_batches_queue_and_images(client: TestClient) -> None:
    client.post("/v1/embeddings", files=files(png(1), png(2)))
    text = client.get("/metrics").text
    assert ('frossl_http_request_duration_seconds_bucket'
            '{route="/v1/embeddings",method="POST",le="+Inf"}') in text
    assert 'frossl_batch_size_bucket{model="tiny",le="+Inf"}' in text
    assert 'frossl_queue_depth{model="tiny"} 0' in text
    assert _sample(text, 'frossl_images_processed_total{model="tiny"}') >= 2


# ---------------------------------------------------------------------------------------------
# the micro-batcher on its own


def test_batcher_splits_a_large_request_and_keeps_row_order() -> None:
    metrics = ServiceMetrics()
    batcher = MicroBatcher(lambda x: (x * 2,), "m", max_batch_size=4, metrics=metrics).start()
    try:
        rows = torch.arange(10.0).reshape(10, 1)
        (out,) = asyncio.run(batcher.submit(rows))
    finally:
        batcher.close()
    assert torch.equal(out, rows * 2)
    sizes = metrics.batch_size.snapshot(model="m")
    assert sizes[2.0] == 1 and sizes[4.0] == 3  # batches of 4, 4 and 2


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
        with pytest.raises(QueueFullError, match="max_queue 2"):
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

    def forward(batch: torch.Tensor):
        seen.append(batch.shape[0])
        return (batch,)

    batcher = MicroBatcher(forward, "m", max_batch_size=2, max_wait_ms=2000).start()

    async def scenario():
        first = asyncio.ensure_future(batcher.submit(torch.zeros(1, 1)))
        await asyncio.sleep(0.05)
        second = asyncio.ensure_future(batcher.submit(torch.zeros(1, 1)))
        await asyncio.gather(first, second)

    try:
        started = time.monotonic()
        asyncio.run(scenario())
        elapsed = time.monotonic() - started
    finally:
        batcher.close()
    assert seen == [2] and elapsed < 1.5  # filled, so it did not wait the full 2 s


# ---------------------------------------------------------------------------------------------
# settings and the command line


def test_settings_come_from_the_environment() -> None:
    settings = parse_settings([], {
        "FROSSL_SERVE_MODEL": "a=/x/a,b=/x/b", "FROSSL_SERVE_PORT": "9001",
        "FROSSL_SERVE_MAX_BYTES": "2MiB", "FROSSL_API_KEY": "k",
        "FROSSL_SERVE_MAX_PIXELS": "1024x1024"})
    assert [m.name for m in settings.models] == ["a", "b"] and settings.default_model == "a"
    assert settings.port == 9001 and settings.api_key == "k"
    assert settings.max_bytes == 2 * 1024 * 1024 and settings.max_pixels == 1024 * 1024


def test_flags_win_over_the_environment() -> None:
    settings = parse_settings(["--port", "9002", "--model", "/x/c", "--model", "d=/x/e"],
                              {"FROSSL_SERVE_PORT": "9001", "FROSSL_SERVE_MODEL": "a=/x/a"})
    assert settings.port == 9002
    assert settings.models == (ModelSpec("c", "/x/c"), ModelSpec("d", "/x/e"))


def test_settings_round_trip_through_the_environment() -> None:
    settings = parse_settings(["--model", "a=/x/a", "--max-wait-ms", "2.5", "--workers", "3"], {})
    assert parse_settings([], settings.to_env()) == settings


@pytest.mark.parametrize("argv, env, needle", [
    (["--port", "eighty"], {}, "--port: invalid value 'eighty'"),
    ([], {"FROSSL_SERVE_MAX_BATCH_SIZE": "lots"}, "$FROSSL_SERVE_MAX_BATCH_SIZE"),
    (["--max-batch-size", "0"], {}, "--max-batch-size must be >= 1"),
    (["--max-images", "100", "--max-queue", "10"], {}, "--max-queue (10) must hold"),
    (["--max-bytes", "lots"], {}, "--max-bytes"),
    (["--model", "a=/x", "--model", "a=/y"], {}, "two models share the name 'a'"),
    (["--no-such-flag"], {}, "unrecognized arguments"),
])
def test_bad_settings_name_the_culprit(argv: List[str], env: Dict[str, str],
                                       needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_settings(argv, env)
    assert needle in str(info.value)


def test_cli_unknown_model_exits_2_with_a_clear_message() -> None:
    result = run_cli("--model", "frossl-resnet18-nonsense", "--port", "0")
    assert result.returncode == 2
    assert "Unknown FroSSL model 'frossl-resnet18-nonsense'" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_default_model_not_bundled_exits_2() -> None:
    try:
        frossl_hub.resolve("frossl-resnet18-cifar10", check=False)
        pytest.skip("the default model is available now; `python -m serve` would start")
    except frossl_hub.ModelNotFoundError:
        pass
    result = run_cli(env={"FROSSL_SERVE_PORT": "0"})
    assert result.returncode == 2
    assert "Could not find weights for 'frossl-resnet18-cifar10'" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_bad_argument_exits_2() -> None:
    result = run_cli("--max-wait-ms", "-1")
    assert result.returncode == 2
    assert "--max-wait-ms must be in 0..60000" in result.stderr
