"""What can go wrong while serving, in the service's own terms (no HTTP here).

The request readers, the image decoder, the registry and the batcher raise these;
``serve.errors`` maps each class to an HTTP status in one table. ``code`` is the stable,
machine-readable name clients see (``corrupt_image``, ``queue_full``...).
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

__all__ = [
    "InvalidInput",
    "MalformedBody",
    "ModelLoadFailed",
    "ModelsLoading",
    "NotFound",
    "QueueFull",
    "ServeError",
    "ShuttingDown",
    "TooLarge",
    "Unauthorized",
    "Unavailable",
    "UnknownModel",
    "UnsupportedMedia",
]


class ServeError(Exception):
    """A failure to report to the client: a stable code and a message saying what to fix.

    Args:
        code: snake_case name of the failure; each class has a default.
        message: what is wrong and, where useful, what to do instead.
        details: per-field problems (``[{"loc": [...], "msg": ..., "type": ...}]``).
    """

    code = "error"

    def __init__(self, message: str, code: Optional[str] = None,
                 details: Optional[List[Dict[str, Any]]] = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or type(self).code
        self.details = details

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code!r}, {self.message!r})"


class MalformedBody(ServeError):
    """The body cannot be parsed at all (broken JSON or multipart, bad Content-Length)."""

    code = "bad_request"


class InvalidInput(ServeError):
    """A field, a base64 string or an image is invalid (corrupt, empty, animated...)."""

    code = "invalid_request"


class UnsupportedMedia(ServeError):
    """The body's content type, or an image's format, is not one the service reads."""

    code = "unsupported_media_type"


class TooLarge(ServeError):
    """The body, the image count or an image's pixel count is over its limit."""

    code = "payload_too_large"


class Unauthorized(ServeError):
    """The API key is missing or wrong."""

    code = "unauthorized"


class NotFound(ServeError):
    """The request names something this service does not have."""

    code = "not_found"


class UnknownModel(NotFound):
    """The request names a model this service does not serve."""

    code = "model_not_found"


class Unavailable(ServeError):
    """The service cannot take the request now; a later retry may succeed."""

    code = "service_unavailable"


class ModelsLoading(Unavailable):
    """The models are still loading."""

    code = "models_loading"


class ModelLoadFailed(Unavailable):
    """A model failed to load; the service will not become ready."""

    code = "model_load_failed"


class QueueFull(Unavailable):
    """The batcher's queue holds ``max_queue`` images already."""

    code = "queue_full"


class ShuttingDown(Unavailable):
    """The service is stopping and takes no new work."""

    code = "shutting_down"
