"""OpenAI's embeddings shape on POST /v1/embeddings: its request, its response, its errors.

A JSON body with ``input`` (and no ``images``) is OpenAI's request: ``input`` is one base64
image or ``data:`` URL or a list of them, ``encoding_format`` is ``float`` or ``base64``
(little-endian float32, as OpenAI encodes it), ``dimensions`` must equal the model's
embedding size and ``user`` is ignored. Its answer is OpenAI's ``{"object": "list", "data":
[{"object": "embedding", ...}], "model", "usage"}``, its errors OpenAI's
``{"error": {"message", "type", "param", "code"}}``. The images go through the same decoding,
limits and micro-batcher as ``{"images": [...]}``.
"""
from __future__ import annotations

import base64
from typing import Any, Dict, List, Literal, MutableMapping, Optional, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .config import Settings
from .errors import ErrorInfo
from .exceptions import InvalidInput
from .inputs import (ImageRequest, b64decode_image, check_image_count, json_image_request,
                     load_json, validate_fields)
from .protocol_errors import PROTOCOL_SCOPE_KEY, protocol_route
from .registry import ModelHandle
from .responses import NumpyJSONResponse
from .schemas import Base64Image, EmbeddingRequest

__all__ = [
    "OpenAIEmbeddingRequest",
    "OpenAIEmbeddingResponse",
    "OpenAIRoute",
    "is_openai_body",
    "openai_embeddings",
    "openai_image_request",
    "parse_embeddings_body",
    "with_openai_errors",
]

PROTOCOL = "openai"  # the value of PROTOCOL_SCOPE_KEY on OpenAI-shaped requests
_ERROR_TYPES = {401: "authentication_error", 403: "permission_error", 404: "invalid_request_error",
                429: "rate_limit_error"}  # status -> OpenAI error type; other 4xx: invalid_request


class OpenAIEmbeddingRequest(BaseModel):
    """OpenAI's embeddings request (``client.embeddings.create``), with images as input."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: Optional[str] = Field(None, description="Model name; default: the service's first.")
    input: Union[Base64Image, List[Base64Image]] = Field(..., description="One image or a list of images, each "
                                         "base64 or a data: URL (never an http(s):// URL).")
    encoding_format: Literal["float", "base64"] = Field(
        "float", description="float: lists of numbers; base64: little-endian float32 bytes.")
    dimensions: Optional[int] = Field(None, description="Must equal the model's embedding size: "
                                      "embeddings are not shortened.")
    user: Optional[str] = Field(None, description="Ignored.")


class OpenAIEmbedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: Union[List[float], str] = Field(description="Floats, or base64 of float32 bytes.")


class OpenAIUsage(BaseModel):
    prompt_tokens: int = Field(description="The number of images.")
    total_tokens: int = Field(description="The number of images.")


class OpenAIEmbeddingResponse(BaseModel):
    """OpenAI's embeddings response."""

    model_config = ConfigDict(protected_namespaces=())

    object: Literal["list"] = "list"
    data: List[OpenAIEmbedding]
    model: str
    usage: OpenAIUsage


def is_openai_body(data: Any) -> bool:
    """Whether a parsed JSON body is OpenAI's request (``input``) rather than ``images``."""
    return isinstance(data, dict) and "input" in data and "images" not in data


_IMAGES_NOT_TEXT = "this service embeds images, not text: send base64 image files or data: URLs"


def _check_input(raw: Any) -> None:
    """Token ids and empty inputs get their own messages (before pydantic's generic ones)."""
    items = [raw] if isinstance(raw, str) else raw
    if isinstance(items, list) and not all(isinstance(item, str) for item in items):
        raise InvalidInput(f"input: {_IMAGES_NOT_TEXT} as strings, not token ids.",
                           code="invalid_request")
    if items == [] or (isinstance(items, list) and any(not item for item in items)):
        raise InvalidInput("input is empty: send one or more base64 images or data: URLs.",
                           code="empty_input")


def _decode(text: str, label: str) -> bytes:
    try:
        return b64decode_image(text, label)
    except InvalidInput as exc:
        if exc.code != "invalid_base64":
            raise
        raise InvalidInput(f"{exc.message[:-1]}; {_IMAGES_NOT_TEXT}.", code=exc.code) from None


def openai_image_request(data: Dict[str, Any], settings: Settings) -> ImageRequest:
    """OpenAI's request as an ImageRequest whose options are the OpenAIEmbeddingRequest.

    Raises:
        InvalidInput: invalid fields, empty input, token ids, URLs, invalid base64.
        TooLarge: more than ``max_images`` images.
    """
    if isinstance(data.get("input"), list):
        check_image_count(len(data["input"]), settings)
    _check_input(data.get("input"))
    parsed = validate_fields(OpenAIEmbeddingRequest, data)
    texts = [parsed.input] if isinstance(parsed.input, str) else parsed.input
    images = [_decode(text, f"input[{i}]") for i, text in enumerate(texts)]
    options = parsed.model_copy(update={"input": []})
    return ImageRequest(options, images, [f"input[{i}]" for i in range(len(images))])


def parse_embeddings_body(body: bytes, settings: Settings, scope: MutableMapping[str, Any]
                          ) -> ImageRequest:
    """A JSON embeddings body of either shape; marks OpenAI's in ``scope`` so that its errors
    answer in OpenAI's shape."""
    data = load_json(body)
    if is_openai_body(data):
        scope[PROTOCOL_SCOPE_KEY] = PROTOCOL
        return openai_image_request(data, settings)
    return json_image_request(data, settings, EmbeddingRequest)


def _encode(row: np.ndarray, encoding_format: str) -> Any:
    if encoding_format == "base64":
        return base64.b64encode(row.astype("<f4", copy=False).tobytes()).decode("ascii")
    return row


async def openai_embeddings(handle: ModelHandle, inputs: ImageRequest, max_pixels: int
                            ) -> NumpyJSONResponse:
    """OpenAI's embeddings response for an OpenAI-shaped request (raw embeddings, equal to
    ``frossl_hub.embed``)."""
    options: OpenAIEmbeddingRequest = inputs.options
    dim = handle.info.embedding_dim
    if options.dimensions is not None and options.dimensions != dim:
        raise InvalidInput(f"dimensions: model {handle.name} gives {dim}-dimensional "
                           f"embeddings and cannot shorten them; got {options.dimensions}.",
                           code="invalid_dimensions", details=[
                               {"loc": ["dimensions"], "msg": "not the model's", "type": "value"}])
    features, _ = await handle.run(inputs, max_pixels)
    rows = features.numpy()
    count = len(inputs.images)
    return NumpyJSONResponse({
        "object": "list",
        "data": [{"object": "embedding", "index": i,
                  "embedding": _encode(row, options.encoding_format)}
                 for i, row in enumerate(rows)],
        "model": handle.name,
        "usage": {"prompt_tokens": count, "total_tokens": count},
    })


def _param(info: ErrorInfo) -> Optional[str]:
    if info.details:
        loc = info.details[0].get("loc") or []
        return str(loc[0]) if loc else None
    return "input" if info.message.startswith("input") else None


def render_openai_error(request: Request, info: ErrorInfo) -> Optional[Response]:
    """OpenAI's error body on OpenAI-shaped requests; None (the common body) on the others."""
    if request.scope.get(PROTOCOL_SCOPE_KEY) != PROTOCOL:
        return None
    kind = _ERROR_TYPES.get(info.status, "invalid_request_error" if info.status < 500
                            else "server_error")
    return JSONResponse({"error": {"message": info.message, "type": kind, "param": _param(info),
                                   "code": info.code}},
                        status_code=info.status, headers=dict(info.headers or {}))


OpenAIRoute = protocol_route(render_openai_error)  # route class of POST /v1/embeddings


def with_openai_errors(responses: Dict[int, Dict[str, Any]]) -> Dict[int, Dict[str, Any]]:
    """``responses=`` whose error bodies are the common one or, on OpenAI-shaped requests,
    OpenAI's (for the OpenAPI schema)."""
    out: Dict[int, Dict[str, Any]] = {}
    for status, entry in responses.items():
        common = entry["content"]["application/json"]["schema"]
        out[status] = {**entry, "content": {"application/json": {
            "schema": {"anyOf": [common, _OPENAI_ERROR_SCHEMA]}}}}
    return out


_NULLABLE_STRING = {"anyOf": [{"type": "string"}, {"type": "null"}]}
_OPENAI_ERROR_SCHEMA: Dict[str, Any] = {
    "title": "OpenAIErrorResponse",
    "type": "object",
    "properties": {"error": {
        "type": "object",
        "properties": {"message": {"type": "string"}, "type": {"type": "string"},
                       "param": _NULLABLE_STRING, "code": _NULLABLE_STRING},
        "required": ["message", "type", "param", "code"],
    }},
    "required": ["error"],
}
