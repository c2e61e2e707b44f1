"""GET /metrics: Prometheus text format."""
from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from ..dependencies import get_metrics, require_api_key
from ..errors import ERROR_RESPONSES
from ..metrics import CONTENT_TYPE, ServiceMetrics

router = APIRouter(tags=["metrics"], dependencies=[Depends(require_api_key)],
                   responses={401: ERROR_RESPONSES[401]})


@router.get("/metrics", response_class=Response, summary="Prometheus metrics")
async def metrics(registry: ServiceMetrics = Depends(get_metrics)) -> Response:
    """Requests by route and status, request latency, batch sizes, queue depth, images, and
    each model's backend (``frossl_model_info``); one set for all ``--workers``."""
    return Response(registry.render(), media_type=CONTENT_TYPE)
