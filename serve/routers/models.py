"""GET /v1/models: the served models, their cards, and the service's limits and batching."""
from __future__ import annotations

from typing import Any, Dict

from fastapi import APIRouter, Depends

from ..config import Settings
from ..dependencies import get_settings, ready_registry, require_api_key
from ..errors import ERROR_RESPONSES, error_schema
from ..registry import ModelRegistry
from ..schemas import ModelCard, ModelList

router = APIRouter(prefix="/v1", tags=["models"], dependencies=[Depends(require_api_key)],
                   responses=ERROR_RESPONSES)


def _card(registry: ModelRegistry, name: str) -> Dict[str, Any]:
    handle = registry.get(name)
    return dict(handle.info.model_dump(), default=handle.name == registry.default_name)


@router.get("/models", response_model=ModelList, summary="List the served models")
async def list_models(registry: ModelRegistry = Depends(ready_registry),
                      settings: Settings = Depends(get_settings)) -> Dict[str, Any]:
    return {
        "object": "list",
        "default": registry.default_name,
        "data": [_card(registry, info.name) for info in registry.infos()],
        "limits": {"max_images_per_request": settings.max_images,
                   "max_bytes": settings.max_bytes, "max_pixels": settings.max_pixels},
        "batching": {"max_batch_size": settings.max_batch_size,
                     "max_wait_ms": settings.max_wait_ms, "max_queue": settings.max_queue},
    }


@router.get("/models/{name}", response_model=ModelCard, summary="One served model",
            responses={404: error_schema("Unknown model")})
async def get_model(name: str, registry: ModelRegistry = Depends(ready_registry)
                    ) -> Dict[str, Any]:
    return _card(registry, name)
