"""Errors in the caller's own protocol: an APIRoute whose errors a protocol shapes itself.

The service's common error body is ``{"error": {"code", "message", "request_id"}}``
(``serve.errors``). The OpenAI request shape on POST /v1/embeddings answers OpenAI's
``{"error": {"message", "type", "param", "code"}}`` and the V2 routes answer
``{"error": "..."}``: their routers use ``protocol_route(render)``, which catches the errors
raised while the route runs (its dependencies included: API key, readiness, body) and
hands them to ``render``. The status and the message stay those of ``serve.errors``.
"""
from __future__ import annotations

from typing import Any, Callable, Coroutine, Optional, Type

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

from .errors import ErrorInfo, describe_error

__all__ = ["PROTOCOL_SCOPE_KEY", "Render", "protocol_route"]

PROTOCOL_SCOPE_KEY = "frossl.protocol"  # set once a request's protocol is known ("openai")
Render = Callable[[Request, ErrorInfo], Optional[Response]]  # None: the common body


def protocol_route(render: Render) -> Type[APIRoute]:
    """An APIRoute class whose known errors (domain, HTTP, validation) ``render`` answers;
    where it returns None, the app's handlers answer with the common body."""

    class ProtocolRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def handle(request: Request) -> Response:
                try:
                    return await handler(request)
                except Exception as exc:
                    info = describe_error(request, exc)
                    response = render(request, info) if info is not None else None
                    if response is None:
                        raise
                    return response

            return handle

    return ProtocolRoute
