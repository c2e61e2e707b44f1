"""The HTTP API of the service (serve/): routes, inputs, errors, API key and metrics, through
FastAPI's TestClient on the real app with real (tiny) models.

The micro-batcher alone is in test_serve_batcher.py, settings and the command line in
test_serve_settings.py, a real ``python -m serve`` process under load in test_serve_load.py.
"""
from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import numpy as np
import pytest
import timm
import torch
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image

import frossl_hub
import serve.exceptions
from frossl_hub.models import pretrained_cfg_for
from serve.app import create_app
from serve.config import ModelSpec, Settings
from serve.errors import install_exception_handlers, status_of
from serve_helpers import (API_KEY, FOLDER_METRICS, LIMITS, assert_error, b64, embeddings_of,
                           encode, files, noise, png, png_header, publish_tiny, reference,
                           sample, wait_ready)


# ---------------------------------------------------------------------------------------------
# fixtures


# tiny_dir and tiny_model: conftest.py

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


def test_livez_is_200_while_models_load_and_after(tiny_dir: Path) -> None:
    settings = Settings(models=(ModelSpec("tiny", str(tiny_dir)),))
    with TestClient(create_app(settings)) as test_client:
        loading = test_client.get("/livez")
        assert loading.status_code == 200 and loading.json() == {"status": "alive",
                                                                 "models": "loading"}
        wait_ready(test_client)
        assert test_client.get("/livez").json()["models"] == "ready"


def test_livez_stays_200_when_loading_fails(tmp_path: Path, tiny_dir: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_bytes((tiny_dir / "config.json").read_bytes())
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    with TestClient(create_app(Settings(models=(ModelSpec("b", str(broken)),)))) as test_client:
        wait_ready(test_client)
        assert test_client.get("/livez").json() == {"status": "alive", "models": "failed"}


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
    assert card["backend"] == "onnxruntime" and card["device"] == "cpu"  # auto on the CPU
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


def test_backend_torch_is_served_and_reported(tiny_model: torch.nn.Module) -> None:
    blobs = [png(31)]
    with TestClient(create_app(Settings(backend="torch"), models={"t": tiny_model})) as test_client:
        (card,) = test_client.get("/v1/models").json()["data"]
        response = test_client.post("/v1/embeddings", files=files(*blobs))
        text = test_client.get("/metrics").text
    assert card["backend"] == "torch"
    assert sample(text, "frossl_model_info", model="t", backend="torch", device="cpu") == 1
    torch.testing.assert_close(embeddings_of(response), reference(tiny_model, blobs),
                               atol=1e-4, rtol=0)


def test_one_model_by_name(client: TestClient) -> None:
    assert client.get("/v1/models/tiny").json()["embedding_dim"] == 512


def test_openapi_documents_every_route_and_both_encodings(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert {"/livez", "/healthz", "/v1/models", "/v1/embeddings", "/v1/predictions",
            "/metrics"} <= set(
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


def test_embeddings_accept_wrapped_and_url_safe_base64(client: TestClient,
                                                       tiny_model: torch.nn.Module) -> None:
    import base64

    blob = png(32)
    plain = base64.b64encode(blob).decode()
    wrapped = "\n".join(plain[i:i + 76] for i in range(0, len(plain), 76))
    url_safe = base64.urlsafe_b64encode(blob).decode()
    response = client.post("/v1/embeddings", json={"images": [wrapped, url_safe]})
    torch.testing.assert_close(embeddings_of(response), reference(tiny_model, [blob, blob]),
                               atol=1e-5, rtol=1e-5)


def test_embeddings_normalize(client: TestClient, tiny_model: torch.nn.Module) -> None:
    blobs = [png(6)]
    response = client.post("/v1/embeddings", files=files(*blobs), data={"normalize": "true"})
    got = embeddings_of(response)
    torch.testing.assert_close(got.norm(dim=1), torch.ones(1))
    torch.testing.assert_close(got, reference(tiny_model, blobs, normalize=True),
                               atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("value", ["0", "yes", "off"])
def test_multipart_booleans_are_true_or_false_as_the_schema_says(client: TestClient,
                                                                 value: str) -> None:
    response = client.post("/v1/embeddings", files=files(png(6)), data={"normalize": value})
    assert "normalize: must be true or false" in assert_error(response, 422,
                                                              "invalid_request")["message"]


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


def test_json_nested_100000_levels_deep_is_a_400(tiny_model: torch.nn.Module) -> None:
    body = b"[" * 100_000 + b"]" * 100_000
    settings = Settings(max_bytes=len(body) + 1)
    with TestClient(create_app(settings, models={"tiny": tiny_model})) as test_client:
        response = test_client.post("/v1/embeddings", content=body,
                                    headers={"content-type": "application/json"})
    assert "not valid JSON" in assert_error(response, 400, "malformed_json")["message"]


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
    with TestClient(create_app(Settings(backend="torch"), models={"broken": broken}),
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


def test_probes_stay_open_with_an_api_key(keyed_client: TestClient) -> None:
    assert keyed_client.get("/healthz").status_code == 200
    assert keyed_client.get("/livez").status_code == 200


def test_page_and_api_docs_stay_open_with_an_api_key(keyed_client: TestClient) -> None:
    """They hold no data: a browser opens them without a header, and the page asks for the key."""
    for path in ("/", "/docs", "/openapi.json"):
        assert keyed_client.get(path).status_code == 200, path


# ---------------------------------------------------------------------------------------------
# metrics


def test_metrics_count_requests_by_route_and_status(client: TestClient) -> None:
    route = dict(route="/v1/embeddings", method="POST")
    before = client.get("/metrics").text
    client.post("/v1/embeddings", files=files(png(1)))
    client.post("/v1/embeddings", content=b"x", headers={"content-type": "text/plain"})
    after = client.get("/metrics")
    assert after.headers["content-type"].startswith("text/plain; version=0.0.4")
    for status in ("200", "415"):
        assert (sample(after.text, "frossl_http_requests_total", status=status, **route)
                == sample(before, "frossl_http_requests_total", status=status, **route) + 1)


def test_metrics_expose_latency_batches_queue_images_and_backend(client: TestClient) -> None:
    client.post("/v1/embeddings", files=files(png(1), png(2)))
    text = client.get("/metrics").text
    assert sample(text, "frossl_http_request_duration_seconds_bucket", route="/v1/embeddings",
                  method="POST", le="+Inf") >= 1
    assert sample(text, "frossl_batch_size_bucket", model="tiny", le="+Inf") >= 1
    assert 'frossl_queue_depth{model="tiny"} 0.0' in text
    assert sample(text, "frossl_images_processed_total", model="tiny") >= 2
    assert sample(text, "frossl_model_info", model="tiny", backend="onnxruntime", device="cpu") == 1


# ---------------------------------------------------------------------------------------------
# domain errors: one status each, in serve/errors.py


@pytest.mark.parametrize("name", serve.exceptions.__all__)
def test_every_domain_error_has_a_status(name: str) -> None:
    error = getattr(serve.exceptions, name)("message")
    assert 400 <= status_of(error) < 600 and (status_of(error) != 500 or name == "ServeError")
