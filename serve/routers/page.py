"""GET /: the browser demo page, and /static/: its HTML, CSS and JavaScript (no build step).

The page calls the service's own JSON API, so it shows exactly what the API does. It and its
files carry no data and are open even with an API key (the page then asks for the key).
Static files are read by Starlette's StaticFiles, never queued with inference.
"""
from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["STATIC_DIR", "install_page", "router"]

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"  # package data (pyproject.toml)
# Everything the page loads comes from this service; images are data: or blob: URLs.
CONTENT_SECURITY_POLICY = ("default-src 'self'; img-src 'self' data: blob:; "
                           "object-src 'none'; base-uri 'none'; frame-ancestors 'none'")

router = APIRouter(include_in_schema=False)


@router.get("/")
async def page() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers={
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        "X-Content-Type-Options": "nosniff",
    })


def install_page(app: FastAPI) -> None:
    """Serve the page at / and its files at /static/."""
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
