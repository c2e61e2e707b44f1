"""The FastAPI application: assembles settings, models, routers and error handlers."""
from __future__ import annotations

import contextlib
import logging
import os
from typing import AsyncIterator, Mapping, Optional

# anyio >= 4.15 imports its asyncio back end lazily, on the first run_in_threadpool; a worker
# whose first requests and model loading race through that import can fail it with
# "No module named 'anyio.abc._sockets'" (seen in benchmarks/serve_throughput.py with two
# workers). Importing it here, once, before any thread starts, takes the race away.
import anyio._backends._asyncio  # noqa: F401
import torch
from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from starlette.concurrency import run_in_threadpool

from .config import Settings, describe, settings_from_env
from .errors import install_exception_handlers
from .metrics import ServiceMetrics
from .middleware import RequestContextMiddleware
from .openapi import install_openapi
from .metrics import multiprocess_mode
from .indexes import IndexRegistry
from .registry import ModelRegistry, torch_threads_for
from . import routers

__all__ = ["create_app", "create_app_from_env"]

_logger = logging.getLogger("serve")

DESCRIPTION = """Embeddings and linear-probe predictions of FroSSL-pretrained ResNet18 models.

Concurrent requests share forward passes (dynamic micro-batching). Send images as
multipart `file` parts or as base64 strings in JSON. Every error is
`{"error": {"code": ..., "message": ...}}`, except on the two other protocols spoken here:
OpenAI's embeddings request on /v1/embeddings (OpenAI's error body) and the Open Inference
Protocol (KServe V2) under /v2 (`{"error": "..."}`).
"""


def create_app(settings: Optional[Settings] = None,
               models: Optional[Mapping[str, torch.nn.Module]] = None) -> FastAPI:
    """Build the app. Models load in a background thread when it starts (GET /healthz is
    503 until they are ready).

    Args:
        settings: service settings; default ``Settings()``.
        models: already-loaded models by name, served instead of ``settings.models``.
    """
    from frossl_hub import __version__

    settings = settings or Settings()
    service_metrics = ServiceMetrics()
    registry = ModelRegistry(settings, service_metrics, models)
    indexes = IndexRegistry(settings, service_metrics)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        torch.set_num_threads(torch_threads_for(settings))
        _logger.info("settings: %s", "; ".join(describe(settings)))
        registry.start()
        indexes.start()
        try:
            yield
        finally:
            await run_in_threadpool(indexes.close)
            await run_in_threadpool(registry.close)
            if multiprocess_mode():  # this worker's live gauges (queue depth) stop counting
                from prometheus_client import multiprocess

                multiprocess.mark_process_dead(os.getpid())

    # /docs and /redoc load Swagger UI and ReDoc from this service (the package's copies under
    # /static-offline-docs), not from a CDN: FastAPI's default pages are blank offline.
    app = FastAPIOffline(title="frossl-hub", version=__version__, description=DESCRIPTION,
                         lifespan=lifespan)
    app.state.settings = settings
    app.state.registry = registry
    app.state.indexes = indexes
    app.state.metrics = service_metrics
    install_exception_handlers(app)
    app.add_middleware(RequestContextMiddleware, metrics=service_metrics)
    for module in (routers.health, routers.models, routers.embeddings, routers.predictions,
                   routers.metrics, routers.neighbours, routers.cards, routers.v2, routers.search):
        app.include_router(module.router)
    routers.page.install_page(app)
    install_openapi(app, settings)
    return app


def create_app_from_env() -> FastAPI:
    """App factory for uvicorn worker processes (``--workers N``): settings from FROSSL_SERVE_*."""
    settings = settings_from_env()
    configure_logging(settings.log_level)
    return create_app(settings)


def configure_logging(level: str) -> None:
    """Send the service's own log lines, and frossl_hub's (the ONNX export), to stderr at the
    uvicorn log level."""
    for name in ("serve", "frossl_hub"):
        logger = logging.getLogger(name)
        if not logger.handlers:
            handler = logging.StreamHandler()
            handler.setFormatter(logging.Formatter(
                f"%(asctime)s %(levelname)s {name}[%(process)d]: %(message)s"))
            logger.addHandler(handler)
            logger.propagate = False
        logger.setLevel(logging.DEBUG if level == "trace" else level.upper())
