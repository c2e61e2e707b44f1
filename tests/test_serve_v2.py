"""The Open Inference Protocol (KServe V2) over HTTP, through the real ``tritonclient[http]``
against a real ``python -m serve`` with an API key, with binary tensor data on and off, and
its bad tensors. One server per module (conftest.py's keyed_server).
"""
from __future__ import annotations

import io
import json
from typing import Any, Dict, Iterator, List, Optional

import httpx
import numpy as np
import pytest
import torch
import tritonclient.http as triton
from PIL import Image
from tritonclient.utils import InferenceServerException

import frossl_hub
from frossl_hub.inference import BatchTransform
from serve_helpers import API_KEY, b64, png, reference, sample

pytestmark = pytest.mark.slow

AUTH = {"Authorization": f"Bearer {API_KEY}"}  # copied per call: tritonclient adds to the dict it gets
BLOBS = [png(21), png(22, (44, 30)), png(23)]
HEADER_LENGTH = "Inference-Header-Content-Length"


@pytest.fixture(scope="module")
def client(keyed_server: str) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(url=keyed_server.removeprefix("http://"))
    yield client
    client.close()


def _image_input(blobs: List[bytes], binary: bool) -> triton.InferInput:
    tensor = triton.InferInput("images", [len(blobs)], "BYTES")
    items = blobs if binary else [b64(b) for b in blobs]  # JSON carries base64 strings
    tensor.set_data_from_numpy(np.array(items, dtype=np.object_), binary_data=binary)
    return tensor


def _infer(client: triton.InferenceServerClient, tensor: triton.InferInput, names: List[str],
           binary: bool) -> Any:
    outputs = [triton.InferRequestedOutput(n, binary_data=binary) for n in names]
    return client.infer("tiny", [tensor], outputs=outputs, headers=dict(AUTH))


def _v1_embeddings(server: str, blobs: List[bytes]) -> torch.Tensor:
    response = httpx.post(f"{server}/v1/embeddings", json={"images": [b64(b) for b in blobs]},
                          headers=AUTH, timeout=60)
    assert response.status_code == 200, response.text
    return torch.tensor([d["embedding"] for d in response.json()["data"]])


def test_health_metadata_and_readiness(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("tiny", headers=dict(AUTH))
    assert not client.is_model_ready("nope", headers=dict(AUTH))
    assert client.get_server_metadata(headers=dict(AUTH))["extensions"] == ["binary_tensor_data"]


def test_model_metadata_lists_inputs_and_outputs(client: triton.InferenceServerClient) -> None:
    meta = client.get_model_metadata("tiny", headers=dict(AUTH))
    assert meta["inputs"] == [{"name": "images", "datatype": "BYTES", "shape": [-1]},
                              {"name": "pixel_values", "datatype": "FP32",
                               "shape": [-1, 3, 32, 32]}]
    assert [(o["name"], o["shape"]) for o in meta["outputs"]] == [
        ("embedding", [-1, 512]), ("logits", [-1, 10]), ("probabilities", [-1, 10])]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_image_files_equal_v1_and_frossl_hub_embed(binary: bool, keyed_server: str,
                                                   client: triton.InferenceServerClient,
                                                   tiny_model: torch.nn.Module) -> None:
    result = _infer(client, _image_input(BLOBS, binary), ["embedding"], binary)
    got = torch.from_numpy(result.as_numpy("embedding").copy())
    assert got.shape == (3, 512)
    assert torch.equal(got, _v1_embeddings(keyed_server, BLOBS))
    torch.testing.assert_close(got, reference(tiny_model, BLOBS), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_preprocessed_fp32_equals_frossl_hub_embed(binary: bool,
                                                   client: triton.InferenceServerClient,
                                                   tiny_model: torch.nn.Module) -> None:
    pixels = BatchTransform(tiny_model)([Image.open(io.BytesIO(b)) for b in BLOBS[:2]]).numpy()
    tensor = triton.InferInput("pixel_values", list(pixels.shape), "FP32")
    tensor.set_data_from_numpy(pixels, binary_data=binary)
    result = _infer(client, tensor, ["embedding"], binary)
    torch.testing.assert_close(torch.from_numpy(result.as_numpy("embedding").copy()),
                               frossl_hub.embed(tiny_model, torch.from_numpy(pixels)),
                               atol=1e-5, rtol=1e-5)


def test_logits_and_probabilities_match_the_linear_probe(
        client: triton.InferenceServerClient, tiny_model: torch.nn.Module) -> None:
    result = _infer(client, _image_input(BLOBS[:1], True), ["probabilities", "logits"], True)
    logits = torch.from_numpy(result.as_numpy("logits").copy())
    assert logits.shape == (1, 10)
    torch.testing.assert_close(torch.from_numpy(result.as_numpy("probabilities").copy()),
                               logits.softmax(dim=1))
    assert result.as_numpy("embedding") is None  # only what was asked for
    features = frossl_hub.embed(tiny_model, [Image.open(io.BytesIO(BLOBS[0]))])
    with torch.inference_mode():
        expected = tiny_model.get_classifier()(features)
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=1e-4)


def test_no_outputs_requested_returns_embedding_and_logits(
        client: triton.InferenceServerClient) -> None:
    result = client.infer("tiny", [_image_input(BLOBS[:2], True)], headers=dict(AUTH))
    names = [o["name"] for o in result.get_response()["outputs"]]
    assert names == ["embedding", "logits"]
    assert result.as_numpy("logits").shape == (2, 10)


def test_infer_goes_through_the_micro_batcher(keyed_server: str,
                                              client: triton.InferenceServerClient) -> None:
    before = sample(httpx.get(f"{keyed_server}/metrics", headers=dict(AUTH)).text, "frossl_images_processed_total",
                    model="tiny")
    _infer(client, _image_input(BLOBS, True), ["embedding"], True)
    after = sample(httpx.get(f"{keyed_server}/metrics", headers=dict(AUTH)).text, "frossl_images_processed_total",
                   model="tiny")
    assert after - before == 3


def test_infer_needs_the_api_key(client: triton.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException, match="API key"):
        client.infer("tiny", [_image_input(BLOBS[:1], True)])


def test_openapi_documents_the_v2_routes(keyed_server: str) -> None:
    paths = httpx.get(f"{keyed_server}/openapi.json").json()["paths"]
    assert {"/v2", "/v2/health/live", "/v2/health/ready", "/v2/models/{name}",
            "/v2/models/{name}/ready", "/v2/models/{name}/infer"} <= set(paths)
    infer = paths["/v2/models/{name}/infer"]["post"]
    assert set(infer["requestBody"]["content"]) == {"application/json",
                                                   "application/octet-stream"}
    assert "$defs" not in json.dumps(infer["requestBody"])


# ---------------------------------------------------------------------------------------------
# bad input: V2's {"error": "..."} with a 4xx, and the server stays healthy


def _fp32(shape: List[int], data: Optional[List[float]] = None) -> Dict[str, Any]:
    size = int(np.prod(shape))
    return {"name": "pixel_values", "datatype": "FP32", "shape": shape,
            "data": data if data is not None else [0.0] * size}


def _binary_body(header: Dict[str, Any], payload: bytes) -> Dict[str, Any]:
    text = json.dumps(header).encode()
    return {"content": text + payload, "headers": {**AUTH, HEADER_LENGTH: str(len(text))}}


def _nan_body() -> Dict[str, Any]:
    values = np.zeros((1, 3, 32, 32), dtype="<f4")
    values[0, 1, 2, 3] = np.nan
    header = {"inputs": [{"name": "pixel_values", "datatype": "FP32", "shape": [1, 3, 32, 32],
                          "parameters": {"binary_data_size": values.nbytes}}]}
    return _binary_body(header, values.tobytes())


def _long_header_body() -> Dict[str, Any]:
    body = _binary_body({"inputs": [_fp32([1, 3, 32, 32])]}, b"")
    body["headers"][HEADER_LENGTH] = str(len(body["content"]) + 10)
    return body


def _not_an_image_body() -> Dict[str, Any]:
    element = b"not an image"
    payload = len(element).to_bytes(4, "little") + element
    header = {"inputs": [{"name": "images", "datatype": "BYTES", "shape": [1],
                          "parameters": {"binary_data_size": len(payload)}}]}
    return _binary_body(header, payload)


def _json(body: Dict[str, Any]) -> Dict[str, Any]:
    return {"json": body, "headers": AUTH}


BAD = {  # case -> (request keywords, status, words the message must contain)
    "missing inputs": (_json({}), 400, "inputs: field required"),
    "no input": (_json({"inputs": []}), 400, "exactly one input"),
    "unknown input": (_json({"inputs": [{**_fp32([1, 3, 32, 32]), "name": "x"}]}), 400,
                      "unknown input 'x'"),
    "wrong datatype": (_json({"inputs": [{**_fp32([1, 3, 32, 32]), "datatype": "INT64"}]}),
                       400, "must be FP32"),
    "wrong shape": (_json({"inputs": [_fp32([3, 32, 32])]}), 400, "[N, 3, 32, 32]"),
    "wrong size": (_json({"inputs": [_fp32([1, 3, 16, 16])]}), 400, "[N, 3, 32, 32]"),
    "count mismatch": (_json({"inputs": [_fp32([2, 3, 32, 32], [0.0] * 3072)]}), 400,
                       "holds 6144 values, but 3072"),
    "bytes count mismatch": (_json({"inputs": [{"name": "images", "datatype": "BYTES",
                                                "shape": [2], "data": [b64(BLOBS[0])]}]}),
                             400, "holds 2 elements, but 1"),
    "NaN": (_nan_body(), 400, "NaN"),
    "header longer than body": (_long_header_body(), 400, "but the body has"),
    "bytes element not an image": (_not_an_image_body(), 400, "images[0] is not an image"),
    "json bytes element not base64": (_json({"inputs": [{"name": "images", "datatype": "BYTES",
                                                         "shape": [1], "data": ["%%%"]}]}),
                                      400, "images[0] is not valid base64"),
    "unknown output": (_json({"inputs": [_fp32([1, 3, 32, 32])], "outputs": [{"name": "x"}]}),
                       400, "unknown output 'x'"),
    "not json": ({"content": b"{nope", "headers": AUTH}, 400, "not valid JSON"),
    "too many images": (_json({"inputs": [_fp32([5, 3, 32, 32])]}), 413, "limit is 4"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_tensor_gets_v2_error_body(case: str, keyed_server: str) -> None:
    kwargs, status, words = BAD[case]
    response = httpx.post(f"{keyed_server}/v2/models/tiny/infer", timeout=60, **kwargs)
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and isinstance(body["error"], str)
    assert words in body["error"], body
    assert httpx.get(f"{keyed_server}/v2/health/ready").status_code == 200


def test_unknown_model_gets_v2_error_body(client: triton.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException, match="unknown model 'nope'") as info:
        client.infer("nope", [_image_input(BLOBS[:1], True)], headers=dict(AUTH))
    assert info.value.status() == "404"


def test_a_batch_of_images_and_preprocessed_rows_normalises_only_the_images(
        tiny_model: torch.nn.Module) -> None:
    from serve.config import ModelSpec, Settings
    from serve.metrics import ServiceMetrics
    from serve.registry import ModelRegistry

    registry = ModelRegistry(Settings(models=(ModelSpec("tiny", "tiny"),)), ServiceMetrics(),
                             {"tiny": tiny_model})
    registry.start()
    try:
        transform = registry.get("tiny").transform
        images = torch.stack([transform.to_uint8(Image.open(io.BytesIO(b))) for b in BLOBS])
        preprocessed = transform.normalize(images[1:])
        batch = registry.get("tiny").collate([images[:1], preprocessed])
        assert batch.dtype == torch.float32
        assert torch.equal(batch, transform.normalize(images))
    finally:
        registry.close()
