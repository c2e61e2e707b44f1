"""Request and response bodies (pydantic), shared by the routers and the OpenAPI docs."""
from __future__ import annotations

from typing import Annotated, Any, Dict, List, Optional

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "CardSummary",
    "EmbeddingOptions",
    "EmbeddingRequest",
    "EmbeddingResponse",
    "ModelCard",
    "ModelInfo",
    "ModelList",
    "NeighbourOptions",
    "NeighbourRequest",
    "NeighbourResponse",
    "PredictionOptions",
    "PredictionRequest",
    "PredictionResponse",
]

DEFAULT_TOP_K = 5
DEFAULT_NEIGHBOURS = 8


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: Optional[str] = Field(None, description="Model name; default: the service's first.")


class EmbeddingOptions(_Options):
    """Fields of an embeddings request besides the images (multipart form fields)."""

    normalize: bool = Field(False, description="L2-normalise each embedding.")


class PredictionOptions(_Options):
    """Fields of a predictions request besides the images (multipart form fields)."""

    top_k: int = Field(DEFAULT_TOP_K, ge=1, description="Classes to return per image, "
                       "1..num_classes (default 5, capped at num_classes).")


class NeighbourOptions(_Options):
    """Fields of a neighbours request besides the images (multipart form fields)."""

    k: int = Field(DEFAULT_NEIGHBOURS, ge=1, description="Gallery items to return per image, "
                   "1..gallery size (default 8).")


# a base64 image file; the schema says so (format byte) so generated clients and fuzzers send
# base64, and the description names the data: URL form that is accepted as well
Base64Image = Annotated[str, Field(json_schema_extra={"format": "byte",
                                                      "contentEncoding": "base64"})]
_IMAGES = Field(..., min_length=1, description="Image files (PNG, JPEG, WebP, ...), each "
                "base64-encoded (standard or URL-safe alphabet), or as a data: URL "
                "(`data:image/png;base64,...`).")


class EmbeddingRequest(EmbeddingOptions):
    """JSON body of POST /v1/embeddings."""

    images: List[Base64Image] = _IMAGES


class PredictionRequest(PredictionOptions):
    """JSON body of POST /v1/predictions."""

    images: List[Base64Image] = _IMAGES


class NeighbourRequest(NeighbourOptions):
    """JSON body of POST /v1/neighbours."""

    images: List[Base64Image] = _IMAGES


class Embedding(BaseModel):
    index: int
    embedding: List[float]


class EmbeddingResponse(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    model: str
    dim: int
    data: List[Embedding]


class Prediction(BaseModel):
    label: str
    class_id: int
    score: float


class ImagePredictions(BaseModel):
    index: int
    predictions: List[Prediction]


class PredictionResponse(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    model: str
    data: List[ImagePredictions]


class ModelInfo(BaseModel):
    """What the service knows of a loaded model (built once by the registry)."""

    model_config = ConfigDict(frozen=True)

    name: str
    source: str
    architecture: str
    dataset: Optional[str]
    embedding_dim: int
    num_classes: int
    label_names: Optional[List[str]]
    input_size: List[int]
    metrics: Dict[str, Any]
    backend: str = Field(description="What runs the forward pass: torch or onnxruntime.")
    device: str


class ModelCard(ModelInfo):
    """A model in /v1/models: its info and whether requests without ``model`` get it."""

    default: bool


class Limits(BaseModel):
    max_images_per_request: int
    max_bytes: int
    max_pixels: int


class Batching(BaseModel):
    max_batch_size: int
    max_wait_ms: float
    max_queue: int


class ModelList(BaseModel):
    object: str = "list"
    default: str
    data: List[ModelCard]
    limits: Limits
    batching: Batching


def multipart_schema(options: type) -> Dict[str, Any]:
    """OpenAPI schema of the multipart form: ``file`` parts plus the option fields."""
    props: Dict[str, Any] = {
        "file": {"type": "array", "items": {"type": "string", "format": "binary"}, "minItems": 1,
                 "description": "One or more image files, each as a `file` part."},
    }
    for name, field in options.model_fields.items():
        schema: Dict[str, Any] = {"type": {bool: "boolean", int: "integer"}.get(
            field.annotation, "string")}
        if field.description:
            schema["description"] = field.description
        if field.default is not None:
            schema["default"] = field.default
        props[name] = schema
    return {"type": "object", "properties": props, "required": ["file"]}


def request_body(json_model: type, options: type) -> Dict[str, Any]:
    """``openapi_extra`` documenting both encodings of an image request."""
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": json_model.model_json_schema()},
        "multipart/form-data": {"schema": multipart_schema(options)},
    }}}


class GalleryInfo(BaseModel):
    size: int
    dataset: str
    split: str


class Neighbour(BaseModel):
    index: int = Field(description="Position in the model's gallery.")
    label: str = Field(description="The gallery image's true label.")
    class_id: int
    similarity: float = Field(description="Cosine similarity of the two embeddings.")
    image: str = Field(description="The gallery image as a data:image/png;base64 URL.")


class ImageNeighbours(BaseModel):
    index: int
    input_image: str = Field(description="The posted image after the model's preprocessing "
                             "(resize, crop, colour mode), as a data:image/png;base64 URL.")
    neighbours: List[Neighbour]


class NeighbourResponse(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    model: str
    gallery: GalleryInfo
    data: List[ImageNeighbours]


class Plot(BaseModel):
    name: str
    url: str


class CardSummary(BaseModel):
    """What the demo page shows beside a model: card numbers, plots, gallery."""

    name: str
    dataset: Optional[str]
    metrics: Dict[str, Any]
    hardware: Optional[str]
    plots: List[Plot]
    gallery: Optional[GalleryInfo]
