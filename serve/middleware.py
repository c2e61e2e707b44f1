"""Per-request bookkeeping (pure ASGI): request id, metrics, and the last line against 500 leaks.

Every response carries ``X-Request-ID`` (the client's, when it sent a sane one). An
exception no handler took is logged with that id and answered with a JSON 500 that
names the id and nothing else.
"""
from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Optional

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import REQUEST_ID_HEADER, REQUEST_ID_SCOPE_KEY, error_response
from .metrics import ServiceMetrics

__all__ = ["RequestContextMiddleware"]

_logger = logging.getLogger("serve")
_CLIENT_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")  # accepted from the client's X-Request-ID
CLIENT_CLOSED = 499  # nginx's code for "client went away"; recorded in metrics only


def _incoming_id(scope: Scope) -> Optional[str]:
    for key, value in scope.get("headers", ()):
        if key == b"x-request-id":
            text = value.decode("latin-1")
            return text if _CLIENT_ID.match(text) else None
    return None


class RequestContextMiddleware:
    """Give each request an id, count and time it, and turn unexpected errors into a JSON 500."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_id(scope) or uuid.uuid4().hex
        scope[REQUEST_ID_SCOPE_KEY] = request_id
        header = (REQUEST_ID_HEADER.lower().encode(), request_id.encode())
        status = 500
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                headers = [h for h in message.get("headers", []) if h[0] != header[0]]
                message = {**message, "headers": headers + [header]}
            await send(message)

        t0 = time.perf_counter()
        try:
            await self.app(scope, receive, send_with_id)
        except ClientDisconnect:
            status = CLIENT_CLOSED
        except Exception as exc:
            _logger.error("unhandled error in %s %s [request %s]", scope.get("method"),
                          scope.get("path"), request_id, exc_info=exc)
            status = 500
            if not started:
                response = error_response(
                    500, "internal_error", "internal server error; quote the request id when "
                    "reporting it.", request_id, {REQUEST_ID_HEADER: request_id})
                await response(scope, receive, send)
        finally:
            # the route template keeps label values few; 404s share one label
            route = getattr(scope.get("route"), "path", None)
            path = route or ("unmatched" if status == 404 else scope.get("path", ""))
            method = scope.get("method", "")
            self.metrics.requests.labels(route=path, method=method, status=str(status)).inc()
            self.metrics.latency.labels(route=path, method=method).observe(time.perf_counter() - t0)
