"""The Open Inference Protocol (KServe V2) over HTTP: what ``tritonclient`` and KServe speak.

``GET /v2``, ``/v2/health/live``, ``/v2/health/ready``, ``/v2/models/{name}``,
``/v2/models/{name}/ready`` and ``POST /v2/models/{name}/infer``. Inference takes image
files (``images``, BYTES) or a preprocessed batch (``pixel_values``, FP32) and returns
``embedding``, ``logits`` and, on request, ``probabilities``, as JSON or binary tensor data
(``serve.v2_codec``). It shares the micro-batcher, the limits and the API key with /v1;
the health routes stay open like /livez and /healthz. Every error is ``{"error": "..."}``:
400 for a bad request, else the status /v1 gives it (401, 404, 413, 503).
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from ..config import Settings
from ..dependencies import get_registry, get_settings, ready_registry, require_api_key
from ..errors import ErrorInfo
from ..inputs import ImageRequest, read_body
from ..protocol_errors import protocol_route
from ..registry import ModelHandle, ModelRegistry
from ..v2_codec import (EMBEDDING, HEADER_LENGTH, IMAGES, LOGITS, MODEL_VERSION, PIXELS,
                        PROBABILITIES, decode_infer_request, encode_infer_response)
from ..v2_schemas import (InferRequest, InferResponse, ModelMetadata, ModelReady, ServerLive,
                          ServerMetadata, ServerReady, V2Error, inline_schema)

BAD_REQUEST_STATUSES = (400, 415, 422)  # answered as V2's 400
EXTENSIONS = ["binary_tensor_data"]


def render_v2_error(request: Request, info: ErrorInfo) -> Optional[Response]:
    """V2's ``{"error": "..."}``, with 400 for every bad request."""
    status = 400 if info.status in BAD_REQUEST_STATUSES else info.status
    return JSONResponse({"error": info.message}, status_code=status,
                        headers=dict(info.headers or {}))


def _error(description: str) -> Dict[str, Any]:
    return {"model": V2Error, "description": description}


router = APIRouter(prefix="/v2", tags=["v2 (Open Inference Protocol)"],
                   route_class=protocol_route(render_v2_error),
                   responses={"default": _error("Any other error (never FastAPI's 422 body)")})
_KEYED = [Depends(require_api_key)]
_UNAVAILABLE = {503: _error("Models still loading, or the batch queue is full")}
_MODEL_ERRORS = {401: _error("Missing or wrong API key"), 404: _error("Unknown model"),
                 **_UNAVAILABLE}


def _outputs(handle: ModelHandle) -> List[str]:
    return [EMBEDDING, LOGITS, PROBABILITIES] if handle.has_head else [EMBEDDING]


@router.get("", response_model=ServerMetadata, summary="Server metadata", dependencies=_KEYED,
            responses={401: _MODEL_ERRORS[401]})
async def server_metadata() -> Dict[str, Any]:
    from frossl_hub import __version__

    return {"name": "frossl-hub", "version": __version__, "extensions": EXTENSIONS}


@router.get("/health/live", response_model=ServerLive, summary="Liveness (open)")
async def server_live() -> Dict[str, Any]:
    return {"live": True}


@router.get("/health/ready", response_model=ServerReady, summary="Readiness (open)",
            responses=_UNAVAILABLE)
async def server_ready(registry: ModelRegistry = Depends(get_registry)) -> Dict[str, Any]:
    """200 once every model is loaded, 503 before."""
    registry.require_ready()
    return {"ready": True}


@router.get("/models/{name}", response_model=ModelMetadata, summary="Model metadata",
            dependencies=_KEYED, responses=_MODEL_ERRORS)
async def model_metadata(name: str, registry: ModelRegistry = Depends(ready_registry)
                         ) -> Dict[str, Any]:
    """The model's inputs (send one of them) and outputs, with datatypes and shapes."""
    handle = registry.get(name)
    info = handle.info
    widths = {EMBEDDING: info.embedding_dim, LOGITS: info.num_classes,
              PROBABILITIES: info.num_classes}
    return {
        "name": handle.name, "versions": [MODEL_VERSION], "platform": info.backend,
        "inputs": [{"name": IMAGES, "datatype": "BYTES", "shape": [-1]},
                   {"name": PIXELS, "datatype": "FP32", "shape": [-1, *info.input_size]}],
        "outputs": [{"name": n, "datatype": "FP32", "shape": [-1, widths[n]]}
                    for n in _outputs(handle)],
    }


@router.get("/models/{name}/ready", response_model=ModelReady, summary="Model readiness",
            dependencies=_KEYED, responses=_MODEL_ERRORS)
async def model_ready(name: str, registry: ModelRegistry = Depends(ready_registry)
                      ) -> Dict[str, Any]:
    return {"name": registry.get(name).name, "ready": True}


_INFER_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": inline_schema(InferRequest)},
    "application/octet-stream": {"schema": {
        "type": "string", "format": "binary",
        "description": f"Binary tensor data extension: a JSON header (InferRequest) of "
                       f"{HEADER_LENGTH} bytes, then each input's binary data."}},
}}}
_INFER_RESPONSES = {200: {"content": {"application/octet-stream": {"schema": {
    "type": "string", "format": "binary",
    "description": f"When an output asks for binary data: a JSON header of {HEADER_LENGTH} "
                   "bytes, then each binary output's little-endian float32 data."}}}},
    400: _error("Malformed body, or a wrong tensor (name, datatype, shape, size, data)"),
    413: _error("Body or image count over the limits")}


@router.post("/models/{name}/infer", response_model=InferResponse, summary="Inference",
             openapi_extra=_INFER_BODY, dependencies=_KEYED,
             responses={**_MODEL_ERRORS, **_INFER_RESPONSES})
async def infer(name: str, request: Request, registry: ModelRegistry = Depends(ready_registry),
                settings: Settings = Depends(get_settings)) -> Response:
    """Embeddings, logits and probabilities of image files or a preprocessed batch, through
    the same micro-batcher as /v1; equal to /v1/embeddings and ``frossl_hub.embed``."""
    handle = registry.get(name)
    body = await read_body(request, settings)
    decoded = await run_in_threadpool(
        decode_infer_request, body, request.headers.get(HEADER_LENGTH), settings,
        handle.info.input_size, _outputs(handle), _outputs(handle)[:2])
    if decoded.pixels is not None:
        features, logits = await handle.run_tensor(decoded.pixels)
    else:
        features, logits = await handle.run(
            ImageRequest(None, decoded.images, decoded.labels), settings.max_pixels)
    names = {n for n, _ in decoded.outputs}
    tensors = {EMBEDDING: features.numpy()}
    if names & {LOGITS, PROBABILITIES}:
        tensors[LOGITS] = logits.numpy()
        tensors[PROBABILITIES] = logits.softmax(dim=1).numpy()
    return encode_infer_response(handle.name, decoded.id, tensors, decoded.outputs)
