"""POST /v1/neighbours: the gallery images nearest to posted images, by cosine similarity."""
from __future__ import annotations

import asyncio
from typing import List

import torch
from fastapi import APIRouter, Depends, Request

from ..config import Settings
from ..dependencies import get_settings, ready_registry, require_api_key, requested_model
from ..errors import ERROR_RESPONSES, IMAGE_ERROR_RESPONSES
from ..exceptions import InvalidInput
from ..gallery import GalleryIndex
from ..inputs import ImageRequest, read_image_request
from ..registry import ModelHandle, ModelRegistry
from ..responses import NumpyJSONResponse
from ..schemas import NeighbourOptions, NeighbourRequest, NeighbourResponse, request_body

router = APIRouter(prefix="/v1", tags=["neighbours"], dependencies=[Depends(require_api_key)],
                   responses={**ERROR_RESPONSES, **IMAGE_ERROR_RESPONSES})


async def neighbour_inputs(request: Request, settings: Settings = Depends(get_settings)
                           ) -> ImageRequest:
    """The images and options of a neighbours request (JSON or multipart)."""
    return await read_image_request(request, settings, NeighbourRequest, NeighbourOptions)


async def neighbour_model(registry: ModelRegistry = Depends(ready_registry),  # 503 first
                          inputs: ImageRequest = Depends(neighbour_inputs)) -> ModelHandle:
    """The model a neighbours request names."""
    return requested_model(inputs, registry)


def _gallery(handle: ModelHandle, inputs: ImageRequest) -> GalleryIndex:
    index = handle.gallery
    if index is None:
        raise InvalidInput(f"model {handle.name} has no gallery; publish it with `python -m "
                           "train.publish RUN_DIR --gallery N` or use /v1/predictions.",
                           code="no_gallery")
    k = inputs.options.k
    if k > len(index):
        raise InvalidInput(f"k: must be in 1..{len(index)} (the gallery size of model "
                           f"{handle.name}), got {k}.")
    return index


@router.post("/neighbours", response_model=NeighbourResponse, summary="Nearest gallery images",
             openapi_extra=request_body(NeighbourRequest, NeighbourOptions))
async def find_neighbours(handle: ModelHandle = Depends(neighbour_model),
                          inputs: ImageRequest = Depends(neighbour_inputs),
                          settings: Settings = Depends(get_settings)) -> NumpyJSONResponse:
    """The ``k`` images of the model's gallery (real test images of its data set, embedded at
    start-up) most cosine-similar to each posted image, with their true labels and PNGs,
    and each posted image as the model saw it. Same inputs as /v1/embeddings."""
    index = _gallery(handle, inputs)
    batches: List[torch.Tensor] = []
    features, _ = await handle.run(inputs, settings.max_pixels, on_preprocessed=batches.append)
    nearest = index.nearest(features, inputs.options.k)
    views = await asyncio.get_running_loop().run_in_executor(  # PNG encoding: off the loop
        handle.executor, index.model_views, batches[0])
    return NumpyJSONResponse({
        "model": handle.name,
        "gallery": index.describe(),
        "data": [{"index": i, "input_image": view, "neighbours": items}
                 for i, (view, items) in enumerate(zip(views, nearest))],
    })
