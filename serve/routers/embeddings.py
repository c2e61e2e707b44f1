"""POST /v1/embeddings: pooled backbone features of images, batched with concurrent requests.

One route, two JSON shapes: ours (``{"images": [...]}``, also as multipart) and OpenAI's
(``{"model", "input", "encoding_format"}``, see ``serve.openai_compat``), each answered and
failing in its own shape.
"""
from __future__ import annotations

from typing import Any, Dict, Union

import torch.nn.functional as F
from fastapi import APIRouter, Depends

from ..config import Settings
from ..dependencies import embedding_inputs, embedding_model, get_settings, require_api_key
from ..errors import ERROR_RESPONSES, IMAGE_ERROR_RESPONSES
from ..inputs import ImageRequest
from ..openai_compat import (OpenAIEmbeddingRequest, OpenAIEmbeddingResponse, OpenAIRoute,
                             openai_embeddings, with_openai_errors)
from ..registry import ModelHandle
from ..responses import NumpyJSONResponse
from ..schemas import EmbeddingOptions, EmbeddingRequest, EmbeddingResponse, request_body

router = APIRouter(prefix="/v1", tags=["embeddings"], dependencies=[Depends(require_api_key)],
                   responses=with_openai_errors({**ERROR_RESPONSES, **IMAGE_ERROR_RESPONSES}),
                   route_class=OpenAIRoute)


def _request_body() -> Dict[str, Any]:
    """Both JSON shapes (ours, OpenAI's) and multipart, for the OpenAPI schema."""
    body = request_body(EmbeddingRequest, EmbeddingOptions)
    json_body = body["requestBody"]["content"]["application/json"]
    json_body["schema"] = {"anyOf": [json_body["schema"],
                                     OpenAIEmbeddingRequest.model_json_schema()]}
    return body


@router.post("/embeddings", response_model=Union[EmbeddingResponse, OpenAIEmbeddingResponse],
             summary="Embed images (our shape or OpenAI's)", openapi_extra=_request_body())
async def create_embeddings(handle: ModelHandle = Depends(embedding_model),  # 503 first
                            inputs: ImageRequest = Depends(embedding_inputs),
                            settings: Settings = Depends(get_settings)) -> NumpyJSONResponse:
    """One embedding per image, in input order: the model's pooled pre-logits features,
    equal to ``frossl_hub.embed(model, images)``. Send JSON ``{"images": [base64...]}`` or
    multipart ``file`` parts (``normalize`` L2-normalises each embedding), or OpenAI's
    ``{"model", "input": [base64...], "encoding_format"}`` for OpenAI's response shape."""
    if isinstance(inputs.options, OpenAIEmbeddingRequest):
        return await openai_embeddings(handle, inputs, settings.max_pixels)
    features, _ = await handle.run(inputs, settings.max_pixels)
    if inputs.options.normalize:
        features = F.normalize(features, dim=1)
    rows = features.numpy()
    return NumpyJSONResponse({
        "model": handle.name,
        "dim": int(rows.shape[1]),
        "data": [{"index": i, "embedding": row} for i, row in enumerate(rows)],
    })
