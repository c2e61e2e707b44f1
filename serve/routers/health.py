"""Probes for load balancers and orchestrators, open even when the service has an API key.

``GET /livez`` (liveness): 200 as long as the process answers, also while models load, so an
orchestrator does not restart a pod that is still loading. ``GET /healthz`` (readiness): 200
once every model and search index is loaded, 503 while loading or after a failed load.
"""
from __future__ import annotations

from typing import Any, Dict

from fastapi import APIRouter, Depends, Request

from ..dependencies import get_registry
from ..errors import ERROR_RESPONSES
from ..registry import ModelRegistry

router = APIRouter(tags=["health"])


@router.get("/livez", summary="Liveness: 200 while the process answers")
async def livez(registry: ModelRegistry = Depends(get_registry)) -> Dict[str, Any]:
    """Restart the service only when this fails; it stays 200 while models load."""
    return {"status": "alive", "models": registry.state}


@router.get("/healthz", summary="Readiness: 200 once the models are loaded",
            responses={503: ERROR_RESPONSES[503]})
async def healthz(request: Request, registry: ModelRegistry = Depends(get_registry)
                  ) -> Dict[str, Any]:
    """Send traffic only when this is 200 (models and search indexes loaded)."""
    registry.require_ready()
    indexes = request.app.state.indexes
    indexes.require_ready()
    body = {"status": "ok", "models": [spec.name for spec in registry.specs],
            "default": registry.default_name}
    if indexes.specs:  # only with --index: the body without one stays as it was
        body["indexes"] = [spec.name for spec in indexes.specs]
    return body
