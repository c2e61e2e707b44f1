"""Search your images over HTTP: GET /v1/indexes, POST /v1/search, GET /v1/indexes/{name}/items/{id}.

A search embeds the posted images with the index's model (micro-batched with every other
request to that model), then searches the index (micro-batched with other searches).
``frossl_hub.index`` errors are mapped to the service's here: a bad ``k`` is 422, an item
that is not a file inside the indexed folder is 404.
"""
from __future__ import annotations

import mimetypes
from typing import Any, Dict, List, Optional

import torch.nn.functional as F
from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field

from ..config import Settings
from ..dependencies import get_settings, ready_registry, require_api_key
from ..errors import ERROR_RESPONSES, IMAGE_ERROR_RESPONSES
from ..exceptions import NotFound
from ..indexes import IndexRegistry
from ..inputs import ImageRequest, read_image_request
from ..registry import ModelRegistry
from ..responses import NumpyJSONResponse
from ..schemas import request_body

router = APIRouter(prefix="/v1", tags=["search"], dependencies=[Depends(require_api_key)],
                   responses=ERROR_RESPONSES)

DEFAULT_K = 10
# the 404s in the service's error body (the image routes' entry, renamed)
NOT_FOUND = {404: {**IMAGE_ERROR_RESPONSES[404], "description": "Unknown index"}}
ITEM_NOT_FOUND = {404: {**IMAGE_ERROR_RESPONSES[404], "description": "Unknown index, or no "
                        "such item file inside the indexed folder"}}


class SearchOptions(BaseModel):
    """Fields of a search request besides the images (multipart form fields)."""

    model_config = ConfigDict(extra="forbid")
    index: Optional[str] = Field(None, description="Index name; default: the service's first.")
    k: int = Field(DEFAULT_K, ge=1, description="Hits per image, 1..index size (default 10).")


class SearchRequest(SearchOptions):
    """JSON body of POST /v1/search."""

    images: List[str] = Field(..., min_length=1, description="Base64-encoded image files.")


class Hit(BaseModel):
    id: int = Field(description="Item id: GET /v1/indexes/{index}/items/{id} returns its file.")
    path: str = Field(description="The file's path inside the indexed folder.")
    score: float = Field(description="Cosine similarity of the two embeddings.")
    url: str


class ImageHits(BaseModel):
    index: int
    hits: List[Hit]


class SearchResponse(BaseModel):
    model_config = ConfigDict(protected_namespaces=())
    index: str
    model: str
    data: List[ImageHits]


def get_indexes(request: Request) -> IndexRegistry:
    return request.app.state.indexes


def ready_indexes(indexes: IndexRegistry = Depends(get_indexes)) -> IndexRegistry:
    indexes.require_ready()
    return indexes


async def search_inputs(request: Request, settings: Settings = Depends(get_settings)
                        ) -> ImageRequest:
    return await read_image_request(request, settings, SearchRequest, SearchOptions)


@router.get("/indexes", summary="List the served search indexes")
async def list_indexes(indexes: IndexRegistry = Depends(ready_indexes)) -> Dict[str, Any]:
    return {"object": "list", **indexes.describe()}


@router.post("/search", response_model=SearchResponse, summary="Search an index with images",
             responses={**IMAGE_ERROR_RESPONSES, **NOT_FOUND},
             openapi_extra=request_body(SearchRequest, SearchOptions))
async def search(registry: ModelRegistry = Depends(ready_registry),  # 503 before the body
                 indexes: IndexRegistry = Depends(ready_indexes),
                 inputs: ImageRequest = Depends(search_inputs),
                 settings: Settings = Depends(get_settings)) -> NumpyJSONResponse:
    """The ``k`` indexed images most cosine-similar to each posted image (same inputs as
    /v1/embeddings), with their paths, scores and item ids."""
    handle = indexes.get(inputs.options.index)
    k = inputs.options.k
    handle.check_k(k)
    model = registry.get(handle.model_name)
    features, _ = await model.run(inputs, settings.max_pixels)
    hits = await handle.search(F.normalize(features.float(), dim=1), k)
    base = f"/v1/indexes/{handle.name}/items/"
    return NumpyJSONResponse({
        "index": handle.name,
        "model": model.name,
        "data": [{"index": i, "hits": [dict(h, url=f"{base}{h['id']}") for h in row]}
                 for i, row in enumerate(hits)],
    })


@router.get("/indexes/{name}/items/{item_id}", summary="The image file of an indexed item",
            response_class=FileResponse, responses=ITEM_NOT_FOUND)
async def get_item(name: str, item_id: str, indexes: IndexRegistry = Depends(ready_indexes)
                   ) -> FileResponse:
    """The stored file, read only from inside the indexed folder (no ``..``, no symlink out);
    an id that is not a number of this index is 404 like one out of range."""
    from frossl_hub.index import ItemNotFoundError

    handle = indexes.get(name)
    try:
        if not item_id.isascii() or not item_id.lstrip("-").isdigit():
            raise ItemNotFoundError(f"item {item_id!r} is not an item id (a number).")
        path = handle.index.item_file(int(item_id))
    except ItemNotFoundError as exc:
        raise NotFound(str(exc), code="item_not_found") from None
    media = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return FileResponse(path, media_type=media, headers={"X-Content-Type-Options": "nosniff"})
