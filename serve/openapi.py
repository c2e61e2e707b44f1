"""The OpenAPI schema says what this service, as configured, does.

FastAPI documents every dependency it sees: the bearer scheme of ``require_api_key`` on every
protected route, and its own ``{"detail": [...]}`` body for 422s. This service answers every
error as ``{"error": {...}}`` (``serve.errors``), and asks for a key only when it has one, so
``install_openapi`` rewrites the generated schema once: without an API key no security
scheme, no ``security`` and no 401 (clients generated from it ask for no key); with one, the
HTTP bearer scheme (Swagger UI's "Authorize" button at /docs) and a 401 on each protected
route; FastAPI's 422 body replaced by the service's error body everywhere.
"""
from __future__ import annotations

from typing import Any, Callable, Dict

from fastapi import FastAPI

from .config import Settings
from .errors import ERROR_RESPONSES, VALIDATION_RESPONSE

__all__ = ["install_openapi"]

_FASTAPI_422 = "#/components/schemas/HTTPValidationError"


def _operations(schema: Dict[str, Any]):
    for item in schema.get("paths", {}).values():
        for method, operation in item.items():
            if isinstance(operation, dict) and method != "parameters":
                yield operation


def _is_fastapi_422(response: Dict[str, Any]) -> bool:
    content = response.get("content", {}).get("application/json", {})
    return content.get("schema", {}).get("$ref") == _FASTAPI_422


def rewrite(schema: Dict[str, Any], keyed: bool) -> Dict[str, Any]:
    """``schema`` (FastAPI's) as this service behaves, with or without an API key (in place)."""
    for operation in _operations(schema):
        responses = operation.get("responses", {})
        if "422" in responses and _is_fastapi_422(responses["422"]):
            responses["422"] = VALIDATION_RESPONSE
        if not keyed:
            operation.pop("security", None)
            responses.pop("401", None)
        elif operation.get("security"):
            responses.setdefault("401", ERROR_RESPONSES[401])
    components = schema.get("components", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.get("schemas", {}).pop(name, None)
    if not keyed:
        components.pop("securitySchemes", None)
    return schema


def install_openapi(app: FastAPI, settings: Settings) -> None:
    """Make ``app.openapi()`` (and /openapi.json, /docs) return the rewritten schema."""
    generate: Callable[[], Dict[str, Any]] = app.openapi

    def openapi() -> Dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = rewrite(generate(), settings.api_key is not None)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
