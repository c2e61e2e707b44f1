"""JSON responses written by orjson straight from NumPy arrays (no Python float per value)."""
from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import JSONResponse

__all__ = ["NumpyJSONResponse"]


class NumpyJSONResponse(JSONResponse):
    """A JSON response whose content may hold NumPy arrays (float32 rows stay float32-exact)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)
