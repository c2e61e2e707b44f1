"""GET /healthz: 200 once every model is loaded, 503 while loading or after a failed load."""
from __future__ import annotations

from typing import Any, Dict

from fastapi import APIRouter, Depends

from ..dependencies import get_registry
from ..errors import ERROR_RESPONSES
from ..registry import ModelRegistry

router = APIRouter(tags=["health"], responses={503: ERROR_RESPONSES[503]})


@router.get("/healthz", summary="Readiness: 200 once the models are loaded")
async def healthz(registry: ModelRegistry = Depends(get_registry)) -> Dict[str, Any]:
    """Open even when the service has an API key, for load balancers and orchestrators."""
    registry.require_ready()
    return {"status": "ok", "models": [spec.name for spec in registry.specs],
            "default": registry.default_name}
