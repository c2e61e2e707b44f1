"""POST /v1/predictions: top-k classes from the model's linear-probe head, with softmax scores."""
from __future__ import annotations

from fastapi import APIRouter, Depends

from ..config import Settings
from ..dependencies import get_settings, prediction_inputs, prediction_model, require_api_key
from ..errors import ERROR_RESPONSES, IMAGE_ERROR_RESPONSES
from ..exceptions import InvalidInput
from ..inputs import ImageRequest
from ..registry import ModelHandle
from ..responses import NumpyJSONResponse
from ..schemas import PredictionOptions, PredictionRequest, PredictionResponse, request_body

router = APIRouter(prefix="/v1", tags=["predictions"], dependencies=[Depends(require_api_key)],
                   responses={**ERROR_RESPONSES, **IMAGE_ERROR_RESPONSES})


def _top_k(inputs: ImageRequest, handle: ModelHandle) -> int:
    classes = handle.info.num_classes
    if classes < 1:
        raise InvalidInput(f"model {handle.name} has no linear-probe head; "
                           "use /v1/embeddings.", code="no_classifier")
    top_k = inputs.options.top_k
    if "top_k" not in inputs.options.model_fields_set:
        return min(top_k, classes)  # the default adapts to small heads
    if not 1 <= top_k <= classes:
        raise InvalidInput(f"top_k: must be in 1..{classes} for model "
                           f"{handle.name}, got {top_k}.", code="invalid_request")
    return top_k


@router.post("/predictions", response_model=PredictionResponse, summary="Classify images",
             openapi_extra=request_body(PredictionRequest, PredictionOptions))
async def create_predictions(handle: ModelHandle = Depends(prediction_model),  # 503 first
                             inputs: ImageRequest = Depends(prediction_inputs),
                             settings: Settings = Depends(get_settings)) -> NumpyJSONResponse:
    """The ``top_k`` most likely classes per image, in input order, with softmax scores of
    the linear-probe head (the model's ``fc``). Same inputs as /v1/embeddings."""
    top_k = _top_k(inputs, handle)
    _, logits = await handle.run(inputs, settings.max_pixels)
    scores, ids = logits.softmax(dim=1).topk(top_k, dim=1)
    labels = handle.label_names
    return NumpyJSONResponse({
        "model": handle.name,
        "data": [
            {"index": i, "predictions": [
                {"label": labels[k], "class_id": k, "score": s}
                for k, s in zip(row_ids, row_scores)]}
            for i, (row_ids, row_scores) in enumerate(zip(ids.tolist(), scores.numpy()))
        ],
    })
