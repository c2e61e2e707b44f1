"""Bodies of the Open Inference Protocol (KServe V2) over HTTP, for the routes and the docs.

Names follow the protocol's specification: https://kserve.github.io/website/latest/modelserving/
data_plane/v2_protocol/ (and Triton's binary tensor data extension).
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Union

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "InferRequest",
    "InferResponse",
    "ModelMetadata",
    "ModelReady",
    "RequestInput",
    "RequestOutput",
    "ResponseOutput",
    "ServerLive",
    "ServerMetadata",
    "ServerReady",
    "TensorMetadata",
    "V2Error",
    "inline_schema",
]


class TensorMetadata(BaseModel):
    name: str
    datatype: str = Field(description="BYTES, FP32, ...")
    shape: List[int] = Field(description="-1: any size along that axis.")


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: List[str]


class ServerLive(BaseModel):
    live: bool


class ServerReady(BaseModel):
    ready: bool


class ModelMetadata(BaseModel):
    name: str
    versions: List[str]
    platform: str = Field(description="What runs the forward pass.")
    inputs: List[TensorMetadata] = Field(description="Send exactly one of them per request.")
    outputs: List[TensorMetadata]


class ModelReady(BaseModel):
    name: str
    ready: bool


class _Tensor(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str
    parameters: Optional[Dict[str, Any]] = Field(
        None, description="binary_data_size: the tensor's bytes follow the JSON header "
        "(binary tensor data extension).")


class RequestInput(_Tensor):
    shape: List[int]
    datatype: str
    data: Optional[List[Any]] = Field(None, description="Row-major values (flat or nested); "
                                      "BYTES elements are base64 images or data: URLs.")


class RequestOutput(_Tensor):
    """A requested output; ``parameters.binary_data`` asks for it as binary data."""


class InferRequest(BaseModel):
    """JSON body (or JSON header, with the binary tensor data extension) of an inference."""

    model_config = ConfigDict(extra="ignore")

    id: Optional[str] = None
    parameters: Optional[Dict[str, Any]] = Field(
        None, description="binary_data_output: every output as binary data.")
    inputs: List[RequestInput]
    outputs: Optional[List[RequestOutput]] = Field(
        None, description="Default: embedding, and logits when the model has a head.")


class ResponseOutput(BaseModel):
    name: str
    shape: List[int]
    datatype: str
    parameters: Optional[Dict[str, Any]] = None
    data: Optional[List[Union[float, int]]] = None


class InferResponse(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    model_name: str
    model_version: Optional[str] = None
    id: Optional[str] = None
    outputs: List[ResponseOutput]


class V2Error(BaseModel):
    """Every V2 error body."""

    error: str


def inline_schema(model: type) -> Dict[str, Any]:
    """``model``'s JSON schema with its nested models inlined (no ``$defs``), for
    ``openapi_extra``, where references to ``#/$defs`` would not resolve."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return resolve(defs[ref.rsplit("/", 1)[-1]])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    return resolve(schema)
