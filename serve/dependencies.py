"""Shared dependencies (``Depends``): settings, the model registry, the API key, parsed inputs."""
from __future__ import annotations

import functools
import hmac
from typing import Optional

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from .config import Settings
from .exceptions import Unauthorized
from .inputs import ImageRequest, read_image_request
from .metrics import ServiceMetrics
from .registry import ModelHandle, ModelRegistry
from .schemas import EmbeddingOptions, EmbeddingRequest, PredictionOptions, PredictionRequest

__all__ = [
    "embedding_inputs",
    "embedding_model",
    "get_metrics",
    "get_registry",
    "get_settings",
    "prediction_inputs",
    "prediction_model",
    "ready_registry",
    "require_api_key",
    "requested_model",
]

_bearer = HTTPBearer(auto_error=False, description="The service's API key, when it has one.")


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_registry(request: Request) -> ModelRegistry:
    return request.app.state.registry


def get_metrics(request: Request) -> ServiceMetrics:
    return request.app.state.metrics


def ready_registry(registry: ModelRegistry = Depends(get_registry)) -> ModelRegistry:
    """The registry once every model is loaded (503 before)."""
    registry.require_ready()
    return registry


def require_api_key(settings: Settings = Depends(get_settings),
                    credentials: Optional[HTTPAuthorizationCredentials] = Depends(_bearer)) -> None:
    """401 unless the service has no key or the request carries ``Authorization: Bearer KEY``."""
    if settings.api_key is None:
        return
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("missing API key: send 'Authorization: Bearer "
                           "<key>'.", code="unauthorized")
    if not hmac.compare_digest(credentials.credentials.encode("utf-8"),
                               settings.api_key.get_secret_value().encode("utf-8")):
        raise Unauthorized("invalid API key.", code="unauthorized")


async def embedding_inputs(request: Request, settings: Settings = Depends(get_settings)
                           ) -> ImageRequest:
    """The images and options of an embeddings request (JSON of our shape or OpenAI's, or
    multipart)."""
    from .openai_compat import parse_embeddings_body

    parse = functools.partial(parse_embeddings_body, settings=settings, scope=request.scope)
    return await read_image_request(request, settings, EmbeddingRequest, EmbeddingOptions, parse)


async def prediction_inputs(request: Request, settings: Settings = Depends(get_settings)
                            ) -> ImageRequest:
    """The images and options of a predictions request (JSON or multipart)."""
    return await read_image_request(request, settings, PredictionRequest, PredictionOptions)


def requested_model(inputs: ImageRequest, registry: ModelRegistry) -> ModelHandle:
    """The handle of the model a parsed request names (404 unknown, 503 loading)."""
    return registry.get(inputs.options.model)


# The registry comes first: while models load, answer 503 without reading the body.
async def embedding_model(registry: ModelRegistry = Depends(ready_registry),
                          inputs: ImageRequest = Depends(embedding_inputs)) -> ModelHandle:
    """The model an embeddings request names."""
    return requested_model(inputs, registry)


async def prediction_model(registry: ModelRegistry = Depends(ready_registry),
                           inputs: ImageRequest = Depends(prediction_inputs)) -> ModelHandle:
    """The model a predictions request names."""
    return requested_model(inputs, registry)
