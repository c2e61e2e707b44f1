"""/openapi.json says what the service does: a bearer scheme only with an API key, images
as base64, and the service's own error body on every documented error (serve/openapi.py).

schemathesis checks the schema against a running service in test_schema_fuzz.py.
"""
from __future__ import annotations

from typing import Any, Dict, Iterator, Tuple

import pytest
from fastapi.testclient import TestClient

from serve.app import create_app
from serve.config import ModelSpec, Settings
from serve_helpers import API_KEY

PROTECTED = ("/v1/models", "/v1/embeddings", "/metrics")
PROBES = ("/livez", "/healthz")


def _spec(api_key: Any) -> Dict[str, Any]:
    settings = Settings(models=(ModelSpec("tiny", "tiny"),), api_key=api_key, workers=1)
    # no `with`: no lifespan, so no model loads; the schema does not need one
    return TestClient(create_app(settings)).get("/openapi.json").json()


@pytest.fixture(scope="module")
def specs() -> Iterator[Tuple[Dict[str, Any], Dict[str, Any]]]:
    yield _spec(None), _spec(API_KEY)


def _resolve(spec: Dict[str, Any], schema: Dict[str, Any]) -> Dict[str, Any]:
    """``schema``, or the component its ``$ref`` names."""
    ref = schema.get("$ref", "")
    return spec["components"]["schemas"][ref.rsplit("/", 1)[-1]] if ref else schema


def _operations(spec: Dict[str, Any]) -> Iterator[Tuple[str, Dict[str, Any]]]:
    for path, item in spec["paths"].items():
        for operation in item.values():
            yield path, operation


def test_without_a_key_no_security_no_401_no_header(specs) -> None:
    spec, _ = specs
    assert "securitySchemes" not in spec.get("components", {})
    for path, operation in _operations(spec):
        assert "security" not in operation, path
        assert "401" not in operation["responses"], path
        assert all(p["in"] != "header" for p in operation.get("parameters", [])), path


def test_with_a_key_a_bearer_scheme_on_protected_routes_only(specs) -> None:
    _, spec = specs
    schemes = spec["components"]["securitySchemes"]
    assert [(s["type"], s["scheme"]) for s in schemes.values()] == [("http", "bearer")]
    operations = dict(_operations(spec))
    for path in PROTECTED:
        assert operations[path]["security"] == [{name: []} for name in schemes], path
        assert "401" in operations[path]["responses"], path
    for path in PROBES:
        assert "security" not in operations[path], path


def test_images_are_typed_as_base64(specs) -> None:
    spec, _ = specs
    base64 = {"type": "string", "format": "byte", "contentEncoding": "base64"}
    body = spec["paths"]["/v1/embeddings"]["post"]["requestBody"]["content"]
    ours, openai = (_resolve(spec, s) for s in body["application/json"]["schema"]["anyOf"])
    images = ours["properties"]["images"]
    assert images["items"] == base64
    assert "data:" in images["description"] and images["minItems"] == 1
    assert openai["properties"]["input"]["anyOf"] == [base64, {"type": "array", "items": base64}]
    assert body["multipart/form-data"]["schema"]["properties"]["file"]["minItems"] == 1


def test_every_documented_error_has_the_service_error_body(specs) -> None:
    for spec in specs:
        assert "HTTPValidationError" not in spec["components"].get("schemas", {})
        for path, operation in _operations(spec):
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")):  # ours, or the caller's protocol's (OpenAI, V2)
                    schema = _resolve(spec, response["content"]["application/json"]["schema"])
                    for shape in schema.get("anyOf", [schema]):
                        assert _resolve(spec, shape)["required"] == ["error"], (path, status)


def test_image_routes_list_their_4xx_answers(specs) -> None:
    spec, keyed = specs
    for route in ("/v1/embeddings", "/v1/predictions", "/v1/neighbours"):
        assert {"400", "404", "413", "415", "422", "503"} <= set(
            spec["paths"][route]["post"]["responses"]), route
        assert "401" in keyed["paths"][route]["post"]["responses"], route
