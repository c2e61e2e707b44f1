"""OpenAI's embeddings shape on POST /v1/embeddings, through the real ``openai`` client against a
real ``python -m serve`` (with an API key, sent as OpenAI's Bearer header), and its bad input.

One server per module (conftest.py's keyed_server); the V2 protocol is in test_serve_v2.py.
"""
from __future__ import annotations

import base64
from typing import Any, Dict

import httpx
import numpy as np
import openai
import pytest
import torch

from serve_helpers import API_KEY, b64, png, reference

pytestmark = pytest.mark.slow

AUTH = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture(scope="module")
def client(keyed_server: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{keyed_server}/v1", api_key=API_KEY, max_retries=0)


BLOBS = [png(11), png(12, (40, 36))]


def _floats(response: Any) -> np.ndarray:
    return np.asarray([item.embedding for item in response.data], dtype=np.float32)


def _post(server: str, body: Dict[str, Any], headers: Dict[str, str] = AUTH) -> httpx.Response:
    return httpx.post(f"{server}/v1/embeddings", json=body, headers=headers, timeout=60)


def test_openai_client_float_embeddings_equal_frossl_hub_embed(
        client: openai.OpenAI, tiny_model: torch.nn.Module) -> None:
    response = client.embeddings.create(model="tiny", input=[b64(b) for b in BLOBS],
                                        encoding_format="float")
    torch.testing.assert_close(torch.from_numpy(_floats(response)), reference(tiny_model, BLOBS),
                               atol=1e-5, rtol=1e-5)


def test_openai_base64_decodes_to_exactly_the_float_list(client: openai.OpenAI) -> None:
    floats = client.embeddings.create(model="tiny", input=b64(BLOBS[0]), encoding_format="float")
    packed = client.embeddings.create(model="tiny", input=b64(BLOBS[0]),
                                      encoding_format="base64")
    decoded = np.frombuffer(base64.b64decode(packed.data[0].embedding), dtype="<f4")
    assert decoded.shape == (512,)
    assert np.array_equal(decoded, _floats(floats)[0])


def test_openai_client_default_encoding_equals_frossl_hub_embed(
        client: openai.OpenAI, tiny_model: torch.nn.Module) -> None:
    # without encoding_format the client asks for base64 and decodes it itself
    response = client.embeddings.create(model="tiny", input=[b64(BLOBS[1])])
    torch.testing.assert_close(torch.from_numpy(_floats(response)),
                               reference(tiny_model, BLOBS[1:]), atol=1e-5, rtol=1e-5)


def test_openai_response_shape(client: openai.OpenAI) -> None:
    response = client.embeddings.create(model="tiny", input=["data:image/png;base64," + b64(b)
                                                             for b in BLOBS],
                                        encoding_format="float", dimensions=512, user="u-1")
    assert response.object == "list" and response.model == "tiny"
    assert [(d.object, d.index) for d in response.data] == [("embedding", 0), ("embedding", 1)]
    assert response.usage.prompt_tokens == response.usage.total_tokens == 2


def test_openai_without_the_key_is_an_authentication_error(keyed_server: str) -> None:
    keyless = openai.OpenAI(base_url=f"{keyed_server}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        keyless.embeddings.create(model="tiny", input=b64(BLOBS[0]))


def test_our_images_shape_keeps_working(keyed_server: str, tiny_model: torch.nn.Module) -> None:
    response = _post(keyed_server, {"images": [b64(b) for b in BLOBS]})
    assert response.status_code == 200 and response.json()["dim"] == 512
    got = torch.tensor([d["embedding"] for d in response.json()["data"]])
    torch.testing.assert_close(got, reference(tiny_model, BLOBS), atol=1e-5, rtol=1e-5)


def test_openapi_documents_both_shapes(keyed_server: str) -> None:
    route = httpx.get(f"{keyed_server}/openapi.json").json()["paths"]["/v1/embeddings"]["post"]
    shapes = route["requestBody"]["content"]["application/json"]["schema"]["anyOf"]
    assert [s["title"] for s in shapes] == ["EmbeddingRequest", "OpenAIEmbeddingRequest"]
    answers = route["responses"]["200"]["content"]["application/json"]["schema"]["anyOf"]
    assert {a["$ref"].rsplit("/", 1)[-1] for a in answers} == {"EmbeddingResponse",
                                                              "OpenAIEmbeddingResponse"}


BAD = {  # case -> (body, status, code, param)
    "empty input list": ({"model": "tiny", "input": []}, 422, "empty_input", "input"),
    "empty input string": ({"model": "tiny", "input": ""}, 422, "empty_input", "input"),
    "text, not an image": ({"model": "tiny", "input": "a photo of a cat."}, 422,
                           "invalid_base64", "input"),
    "base64 of text": ({"model": "tiny", "input": b64(b"hello, world")}, 415,
                       "unsupported_image", "input"),
    "token ids": ({"model": "tiny", "input": [[101, 2023]]}, 422, "invalid_request", "input"),
    "encoding_format": ({"model": "tiny", "input": b64(BLOBS[0]), "encoding_format": "int8"},
                        422, "invalid_request", "encoding_format"),
    "dimensions": ({"model": "tiny", "input": b64(BLOBS[0]), "dimensions": 256}, 422,
                   "invalid_dimensions", "dimensions"),
    "unknown model": ({"model": "text-embedding-3-small", "input": b64(BLOBS[0])}, 404,
                      "model_not_found", None),
    "http url": ({"model": "tiny", "input": "http://example.com/cat.png"}, 422,
                 "url_not_supported", "input"),
    "https url": ({"model": "tiny", "input": ["HTTPS://example.com/cat.png"]}, 422,
                  "url_not_supported", "input"),
    "too many images": ({"model": "tiny", "input": [b64(BLOBS[0])] * 5}, 413,
                        "too_many_images", None),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_openai_input_gets_openais_error_body(case: str, keyed_server: str) -> None:
    body, status, code, param = BAD[case]
    response = _post(keyed_server, body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(response.json()) == {"error"}
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["code"], error["param"], error["type"]) == (code, param,
                                                              "invalid_request_error")
    assert error["message"]
    assert httpx.get(f"{keyed_server}/healthz").status_code == 200


def test_openai_client_raises_the_servers_message(client: openai.OpenAI) -> None:
    with pytest.raises(openai.UnprocessableEntityError, match="never fetches URLs"):
        client.embeddings.create(model="tiny", input="https://example.com/cat.png")


def test_our_shape_refuses_urls_too_in_its_own_body(keyed_server: str) -> None:
    response = _post(keyed_server, {"images": ["https://example.com/cat.png"]})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "url_not_supported"
    assert "type" not in response.json()["error"]


def test_openai_missing_key_is_openais_shape_only_once_the_body_says_so(keyed_server: str) -> None:
    # the key is checked before the body is read: a 401 answers in the common shape
    response = _post(keyed_server, {"model": "tiny", "input": b64(BLOBS[0])}, headers={})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
