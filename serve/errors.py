"""Errors to HTTP: each domain error (``serve.exceptions``) gets its status here, in one table.

Every error the service returns is ``{"error": {"code": ..., "message": ..., "request_id":
...}}``, whoever raised it: our domain errors, Starlette's ``HTTPException`` (unknown path,
wrong method) and FastAPI's request validation. Unexpected exceptions become a 500 in
``serve.middleware``; no traceback ever reaches the client.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Mapping, Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .exceptions import (InvalidInput, MalformedBody, ModelsLoading, NotFound, QueueFull,
                         ServeError, TooLarge, Unauthorized, Unavailable, UnsupportedMedia)

__all__ = [
    "ERROR_RESPONSES",
    "ErrorInfo",
    "IMAGE_ERROR_RESPONSES",
    "VALIDATION_RESPONSE",
    "REQUEST_ID_HEADER",
    "REQUEST_ID_SCOPE_KEY",
    "STATUS_OF",
    "error_response",
    "error_schema",
    "install_exception_handlers",
    "request_id_of",
    "status_of",
    "describe_error",
    "validation_details",
    "validation_message",
]

_logger = logging.getLogger("serve")

REQUEST_ID_HEADER = "X-Request-ID"
REQUEST_ID_SCOPE_KEY = "frossl.request_id"  # set by serve.middleware for every request
STATUS_OF: Dict[type, int] = {  # domain error -> HTTP status (subclasses inherit)
    MalformedBody: 400,
    Unauthorized: 401,
    NotFound: 404,
    TooLarge: 413,
    UnsupportedMedia: 415,
    InvalidInput: 422,
    Unavailable: 503,
}
HEADERS_OF: Dict[type, Dict[str, str]] = {  # extra response headers of some domain errors
    Unauthorized: {"WWW-Authenticate": "Bearer"},
    ModelsLoading: {"Retry-After": "2"},
    QueueFull: {"Retry-After": "1"},
}
_STATUS_CODES = {  # status -> code for errors raised by Starlette / FastAPI themselves
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "too_many_requests",
    500: "internal_error",
    503: "service_unavailable",
}


def _first_in_mro(table: Mapping[type, Any], error: ServeError, default: Any) -> Any:
    return next((table[cls] for cls in type(error).__mro__ if cls in table), default)


def status_of(error: ServeError) -> int:
    """The HTTP status of a domain error (its nearest class in ``STATUS_OF``; else 500)."""
    return _first_in_mro(STATUS_OF, error, 500)


def request_id_of(scope_or_request: Any) -> Optional[str]:
    """The request id that serve.middleware gave this request (None outside it)."""
    scope = getattr(scope_or_request, "scope", scope_or_request)
    return scope.get(REQUEST_ID_SCOPE_KEY) if isinstance(scope, dict) else None


def error_response(status_code: int, code: str, message: str, request_id: Optional[str] = None,
                   headers: Optional[Mapping[str, str]] = None,
                   details: Optional[List[Dict[str, Any]]] = None) -> JSONResponse:
    """The JSON error response every route returns."""
    error: Dict[str, Any] = {"code": code, "message": message}
    if details:
        error["details"] = details
    if request_id:
        error["request_id"] = request_id
    return JSONResponse({"error": error}, status_code=status_code, headers=dict(headers or {}))


def validation_message(errors: Iterable[Mapping[str, Any]]) -> str:
    """One readable line from pydantic errors: ``top_k: Input should be ...; images: ...``."""
    parts = []
    for err in errors:
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "header")]
        where = ".".join(loc) or "request"
        msg = str(err.get("msg", "invalid"))
        if err.get("type") == "missing":
            msg = "field required"
        elif err.get("type") == "extra_forbidden":
            msg = "unknown field"
        parts.append(f"{where}: {msg}")
    return "; ".join(parts) or "invalid request"


def validation_details(errors: Iterable[Mapping[str, Any]]) -> List[Dict[str, Any]]:
    """JSON-safe subset of pydantic errors (location, message, type; never the input)."""
    return [{"loc": [p if isinstance(p, (int, str)) else str(p) for p in err.get("loc", ())],
             "msg": str(err.get("msg", "")), "type": str(err.get("type", ""))} for err in errors]


@dataclass(frozen=True)
class ErrorInfo:
    """What the client is told of an error, before a protocol shapes the body."""

    status: int
    code: str
    message: str
    headers: Optional[Mapping[str, str]] = None
    details: Optional[List[Dict[str, Any]]] = None


def describe_error(request: Request, exc: Exception) -> Optional[ErrorInfo]:
    """Status, code, message and headers of a domain, HTTP or validation error (None for
    any other exception: those are 500s)."""
    if isinstance(exc, ServeError):
        return ErrorInfo(status_of(exc), exc.code, exc.message,
                         _first_in_mro(HEADERS_OF, exc, None), exc.details)
    if isinstance(exc, StarletteHTTPException):
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = f"no route {request.method} {request.url.path}; see /docs for the API."
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}."
        return ErrorInfo(exc.status_code, _STATUS_CODES.get(exc.status_code, "http_error"),
                         message, getattr(exc, "headers", None))
    if isinstance(exc, RequestValidationError):
        errors = list(exc.errors())
        return ErrorInfo(422, "invalid_request", validation_message(errors),
                         details=validation_details(errors))
    return None


async def _known_error(request: Request, exc: Exception) -> JSONResponse:
    info = describe_error(request, exc)
    assert info is not None
    return error_response(info.status, info.code, info.message, request_id_of(request),
                          info.headers, info.details)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    # Safety net only: serve.middleware turns unexpected errors into a 500 before this.
    request_id = request_id_of(request)
    _logger.error("unhandled error in %s %s [request %s]", request.method, request.url.path,
                  request_id, exc_info=exc)
    return error_response(500, "internal_error", "internal server error; quote the request id "
                          "when reporting it.", request_id,
                          {REQUEST_ID_HEADER: request_id} if request_id else None)


def install_exception_handlers(app: FastAPI) -> None:
    """Route every error type to the common JSON shape."""
    for error_type in (ServeError, StarletteHTTPException, RequestValidationError):
        app.add_exception_handler(error_type, _known_error)
    app.add_exception_handler(Exception, _unexpected_error)


def error_schema(description: str) -> Dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {
            "type": "object",
            "properties": {"error": {
                "type": "object",
                "properties": {"code": {"type": "string"}, "message": {"type": "string"},
                               "request_id": {"type": "string"}},
                "required": ["code", "message"],
            }},
            "required": ["error"],
        }}},
    }


ERROR_RESPONSES: Dict[int, Dict[str, Any]] = {  # for routers' `responses=`: documents errors
    401: error_schema("Missing or wrong API key (only when the service has one)"),
    503: error_schema("Models still loading, or the batch queue is full (retry later)"),
}
VALIDATION_RESPONSE = error_schema("A path or query parameter is invalid")
IMAGE_ERROR_RESPONSES: Dict[int, Dict[str, Any]] = {
    400: error_schema("Malformed JSON or multipart body"),
    404: error_schema("Unknown model"),
    413: error_schema("Body, image count or image dimensions over the limits"),
    415: error_schema("Wrong content type, or a file that is not an image"),
    422: error_schema("Invalid field, base64, or a corrupt, empty or animated image"),
}
