"""GET /v1/models/{name}/card and its plots: what a reader needs to judge a model at a glance."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict, List

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse

from ..dependencies import ready_registry, require_api_key
from ..errors import ERROR_RESPONSES, error_schema
from ..exceptions import NotFound
from ..gallery import model_folder
from ..registry import ModelHandle, ModelRegistry, folder_config
from ..schemas import CardSummary

router = APIRouter(prefix="/v1", tags=["models"], dependencies=[Depends(require_api_key)],
                   responses={**ERROR_RESPONSES, 404: error_schema("Unknown model or plot")})

PLOTS_DIR = "plots"  # as train.publish writes it
_PLOT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\.png$")


def _plots(handle: ModelHandle) -> Dict[str, Path]:
    """The model folder's plots/*.png by file name (none for a model without a folder)."""
    folder = model_folder(handle.model)
    if folder is None or not (folder / PLOTS_DIR).is_dir():
        return {}
    return {p.name: p for p in sorted((folder / PLOTS_DIR).iterdir())
            if p.is_file() and _PLOT_NAME.match(p.name)}


@router.get("/models/{name}/card", response_model=CardSummary, summary="A model's card summary")
async def get_card(name: str, request: Request,
                   registry: ModelRegistry = Depends(ready_registry)) -> Dict[str, Any]:
    """The card's headline numbers (linear probe, kNN, untrained baseline, training time),
    the hardware it was trained on, its training plots and its gallery."""
    handle = registry.get(name)
    frossl = folder_config(handle.model).get("frossl")
    hardware = frossl.get("hardware") if isinstance(frossl, dict) else None
    plots: List[Dict[str, str]] = [
        {"name": Path(file).stem,
         "url": request.url_for("get_plot", name=handle.name, filename=file).path}
        for file in _plots(handle)]
    return {"name": handle.name, "dataset": handle.info.dataset, "metrics": handle.info.metrics,
            "hardware": str(hardware) if hardware else None, "plots": plots,
            "gallery": handle.gallery.describe() if handle.gallery is not None else None}


@router.get("/models/{name}/plots/{filename}", response_class=FileResponse,
            summary="One of a model's training plots (PNG)")
async def get_plot(name: str, filename: str,
                   registry: ModelRegistry = Depends(ready_registry)) -> FileResponse:
    handle = registry.get(name)
    plots = _plots(handle)
    if filename not in plots:
        raise NotFound(f"model {handle.name} has no plot {filename!r}; it has: "
                       f"{', '.join(plots) or 'none'}.", code="plot_not_found")
    return FileResponse(plots[filename], media_type="image/png")
