"""POST /v1/embeddings: pooled backbone features of images, batched with concurrent requests."""
from __future__ import annotations

import torch.nn.functional as F
from fastapi import APIRouter, Depends

from ..config import Settings
from ..dependencies import embedding_inputs, embedding_model, get_settings, require_api_key
from ..errors import ERROR_RESPONSES, IMAGE_ERROR_RESPONSES
from ..inputs import ImageRequest
from ..registry import ModelHandle
from ..responses import NumpyJSONResponse
from ..schemas import EmbeddingOptions, EmbeddingRequest, EmbeddingResponse, request_body

router = APIRouter(prefix="/v1", tags=["embeddings"], dependencies=[Depends(require_api_key)],
                   responses={**ERROR_RESPONSES, **IMAGE_ERROR_RESPONSES})


@router.post("/embeddings", response_model=EmbeddingResponse, summary="Embed images",
             openapi_extra=request_body(EmbeddingRequest, EmbeddingOptions))
async def create_embeddings(handle: ModelHandle = Depends(embedding_model),  # 503 first
                            inputs: ImageRequest = Depends(embedding_inputs),
                            settings: Settings = Depends(get_settings)) -> NumpyJSONResponse:
    """One embedding per image, in input order: the model's pooled pre-logits features,
    equal to ``frossl_hub.embed(model, images)``. Send JSON ``{"images": [base64...]}`` or
    multipart ``file`` parts; ``normalize`` L2-normalises each embedding."""
    features, _ = await handle.run(inputs, settings.max_pixels)
    if inputs.options.normalize:
        features = F.normalize(features, dim=1)
    rows = features.numpy()
    return NumpyJSONResponse({
        "model": handle.name,
        "dim": int(rows.shape[1]),
        "data": [{"index": i, "embedding": row} for i, row in enumerate(rows)],
    })
