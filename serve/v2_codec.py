"""Tensors in and out of the Open Inference Protocol (V2): JSON and binary tensor data.

A request body is a JSON header, optionally followed by binary tensor data (Triton's
extension, which ``tritonclient`` uses): the header's length travels in the
``Inference-Header-Content-Length`` header and each input sent that way has
``parameters.binary_data_size``. BYTES elements in binary are a 4-byte little-endian length
then the bytes; FP32 is little-endian float32, row-major. A request carries exactly one
input: ``images`` (BYTES ``[N]``, image files; base64 or data: URLs in JSON) or
``pixel_values`` (FP32 ``[N, C, H, W]``, preprocessed at the model's input size). Failures
are domain errors (``serve.exceptions``) naming the tensor; the V2 router answers them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import orjson
import torch
from starlette.responses import Response

from .config import Settings
from .exceptions import InvalidInput, MalformedBody
from .inputs import b64decode_image, check_image_count, load_json, validate_fields
from .v2_schemas import InferRequest, RequestInput, RequestOutput

__all__ = [
    "EMBEDDING",
    "HEADER_LENGTH",
    "IMAGES",
    "LOGITS",
    "PIXELS",
    "PROBABILITIES",
    "V2Request",
    "decode_infer_request",
    "encode_infer_response",
    "split_body",
]

HEADER_LENGTH = "Inference-Header-Content-Length"  # bytes of JSON before the binary data
IMAGES, PIXELS = "images", "pixel_values"  # the two inputs (send one)
EMBEDDING, LOGITS, PROBABILITIES = "embedding", "logits", "probabilities"  # the outputs
MODEL_VERSION = "1"  # each served model has one version
_BINARY_SIZE = "binary_data_size"


@dataclass
class V2Request:
    """A decoded inference request: image files or a preprocessed batch, and what to return."""

    id: Optional[str]
    outputs: List[Tuple[str, bool]]  # (output name, as binary data), in response order
    images: List[bytes] = field(default_factory=list)
    labels: List[str] = field(default_factory=list)
    pixels: Optional[torch.Tensor] = None  # float32 (N, C, H, W)


def split_body(body: bytes, header_length: Optional[str]) -> Tuple[bytes, bytes]:
    """(JSON header, binary data) of a body; all JSON without ``Inference-Header-Content-Length``."""
    if header_length is None:
        return body, b""
    try:
        length = int(header_length)
    except ValueError:
        raise MalformedBody(f"{HEADER_LENGTH} must be a number of bytes, got "
                            f"{header_length!r}.") from None
    if length < 0 or length > len(body):
        raise MalformedBody(f"{HEADER_LENGTH} is {length}, but the body has {len(body)} bytes.")
    return body[:length], body[length:]


def _binary_chunks(inputs: Sequence[RequestInput], binary: bytes) -> List[Optional[bytes]]:
    """Each input's share of the binary data, in order (None: its data is in the JSON)."""
    chunks: List[Optional[bytes]] = []
    offset = 0
    for tensor in inputs:
        size = (tensor.parameters or {}).get(_BINARY_SIZE)
        if size is None:
            chunks.append(None)
            continue
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InvalidInput(f"input {tensor.name}: {_BINARY_SIZE} must be a byte count, "
                               f"got {size!r}.")
        chunks.append(binary[offset:offset + size])
        offset += size
    if offset != len(binary):
        raise InvalidInput(f"the inputs' {_BINARY_SIZE} add up to {offset} bytes, but "
                           f"{len(binary)} bytes of binary data follow the JSON header.")
    return chunks


def _count(tensor: RequestInput) -> int:
    if any(dim < 0 for dim in tensor.shape):
        raise InvalidInput(f"input {tensor.name}: shape {tensor.shape} has a negative size.")
    return math.prod(tensor.shape)


def _deserialize_bytes(blob: bytes, name: str) -> List[bytes]:
    items, offset = [], 0
    while offset < len(blob):
        if offset + 4 > len(blob):
            raise InvalidInput(f"input {name}: the binary data ends inside an element's length.")
        size = int.from_bytes(blob[offset:offset + 4], "little")
        offset += 4
        if offset + size > len(blob):
            raise InvalidInput(f"input {name}: element {len(items)} declares {size} bytes, "
                               f"but only {len(blob) - offset} remain.")
        items.append(blob[offset:offset + size])
        offset += size
    return items


def _flat(data: List[Any]) -> List[Any]:
    return [x for row in data for x in (row if isinstance(row, list) else [row])]


def _image_input(tensor: RequestInput, chunk: Optional[bytes], settings: Settings
                 ) -> Tuple[List[bytes], List[str]]:
    if len(tensor.shape) not in (1, 2) or (len(tensor.shape) == 2 and tensor.shape[1] != 1):
        raise InvalidInput(f"input {IMAGES} must have shape [N] (one image file per element), "
                           f"got {tensor.shape}.")
    count = _count(tensor)
    check_image_count(count, settings)
    if chunk is not None:
        images = _deserialize_bytes(chunk, IMAGES)
    else:
        texts = _flat(tensor.data or [])
        if not all(isinstance(text, str) for text in texts):
            raise InvalidInput(f"input {IMAGES}: in JSON, each element must be a string (a "
                               "base64 image or a data: URL).")
        images = [b64decode_image(text, f"{IMAGES}[{i}]") for i, text in enumerate(texts)]
    if len(images) != count:
        raise InvalidInput(f"input {IMAGES}: shape {tensor.shape} holds {count} elements, "
                           f"but {len(images)} were sent.")
    if count < 1:
        raise InvalidInput(f"input {IMAGES} is empty: send one or more image files.")
    return images, [f"{IMAGES}[{i}]" for i in range(count)]


def _pixel_input(tensor: RequestInput, chunk: Optional[bytes], settings: Settings,
                 input_size: Sequence[int]) -> torch.Tensor:
    wanted = [int(x) for x in input_size]
    if len(tensor.shape) != 4 or list(tensor.shape[1:]) != wanted or tensor.shape[0] < 1:
        raise InvalidInput(f"input {PIXELS} has shape {tensor.shape}; the model takes "
                           f"[N, {', '.join(map(str, wanted))}] with N >= 1.")
    count = _count(tensor)
    check_image_count(tensor.shape[0], settings)
    if chunk is not None:
        if len(chunk) != 4 * count:
            raise InvalidInput(f"input {PIXELS}: shape {tensor.shape} of FP32 takes "
                               f"{4 * count} bytes, but {_BINARY_SIZE} is {len(chunk)}.")
        values = np.frombuffer(chunk, dtype="<f4").astype(np.float32)
    else:
        try:
            values = np.asarray(tensor.data, dtype=np.float32).reshape(-1)
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"input {PIXELS}: data must be numbers ({exc}).") from None
        if values.size != count:
            raise InvalidInput(f"input {PIXELS}: shape {tensor.shape} holds {count} values, "
                               f"but {values.size} were sent.")
    if not np.isfinite(values).all():
        raise InvalidInput(f"input {PIXELS} contains NaN or infinity.")
    return torch.from_numpy(values.reshape(tensor.shape))


_DATATYPES = {IMAGES: "BYTES", PIXELS: "FP32"}


def _check_input(inputs: Sequence[RequestInput], input_size: Sequence[int]) -> RequestInput:
    shape = f"[-1, {', '.join(str(int(x)) for x in input_size)}]"
    accepted = f"{IMAGES} (BYTES [-1], image files) or {PIXELS} (FP32 {shape}, preprocessed)"
    if len(inputs) != 1:
        raise InvalidInput(f"send exactly one input, {accepted}; got "
                           f"{[t.name for t in inputs] or 'none'}.")
    tensor = inputs[0]
    if tensor.name not in _DATATYPES:
        raise InvalidInput(f"unknown input {tensor.name!r}; send {accepted}.")
    if tensor.datatype != _DATATYPES[tensor.name]:
        raise InvalidInput(f"input {tensor.name} must be {_DATATYPES[tensor.name]}, got "
                           f"{tensor.datatype!r}.")
    if tensor.data is not None and _BINARY_SIZE in (tensor.parameters or {}):
        raise InvalidInput(f"input {tensor.name} has both data and {_BINARY_SIZE}; send one.")
    if tensor.data is None and _BINARY_SIZE not in (tensor.parameters or {}):
        raise InvalidInput(f"input {tensor.name} has no data: send data, or binary data with "
                           f"parameters.{_BINARY_SIZE}.")
    return tensor


def _requested(outputs: Optional[List[RequestOutput]], parameters: Mapping[str, Any],
               available: Sequence[str], default: Sequence[str]) -> List[Tuple[str, bool]]:
    all_binary = parameters.get("binary_data_output", False)
    if not isinstance(all_binary, bool):
        raise InvalidInput("parameters.binary_data_output must be true or false.")
    if not outputs:
        return [(name, all_binary) for name in default]
    chosen = []
    for output in outputs:
        if output.name not in available:
            raise InvalidInput(f"unknown output {output.name!r}; this model has "
                               f"{', '.join(available)}.")
        params = output.parameters or {}
        if params.get("classification"):
            raise InvalidInput(f"output {output.name}: classification is not supported; "
                               f"request {PROBABILITIES} instead.")
        binary = params.get("binary_data", all_binary)
        if not isinstance(binary, bool):
            raise InvalidInput(f"output {output.name}: binary_data must be true or false.")
        chosen.append((output.name, binary))
    return chosen


def decode_infer_request(body: bytes, header_length: Optional[str], settings: Settings,
                         input_size: Sequence[int], available: Sequence[str],
                         default: Sequence[str]) -> V2Request:
    """A V2 inference body as a V2Request.

    Args:
        body: the whole body; header_length: its ``Inference-Header-Content-Length``.
        input_size: the model's (C, H, W); available, default: output names.

    Raises:
        MalformedBody: not JSON, or a header length beyond the body.
        InvalidInput: a missing or wrong tensor; TooLarge: over ``max_images``.
    """
    header, binary = split_body(body, header_length)
    data = load_json(header)
    if not isinstance(data, dict):
        raise InvalidInput('the body must be a JSON object like {"inputs": [...]}.')
    parsed: InferRequest = validate_fields(InferRequest, data)
    chunks = _binary_chunks(parsed.inputs, binary)
    tensor = _check_input(parsed.inputs, input_size)
    outputs = _requested(parsed.outputs, parsed.parameters or {}, available, default)
    request = V2Request(parsed.id, outputs)
    if tensor.name == IMAGES:
        request.images, request.labels = _image_input(tensor, chunks[0], settings)
    else:
        request.pixels = _pixel_input(tensor, chunks[0], settings, input_size)
    return request


def encode_infer_response(model_name: str, request_id: Optional[str],
                          tensors: Mapping[str, np.ndarray], outputs: Sequence[Tuple[str, bool]]
                          ) -> Response:
    """The V2 response: JSON, or a JSON header plus binary data when an output asks for it."""
    entries: List[Dict[str, Any]] = []
    chunks: List[bytes] = []
    for name, binary in outputs:
        array = np.ascontiguousarray(tensors[name], dtype="<f4")
        entry: Dict[str, Any] = {"name": name, "datatype": "FP32", "shape": list(array.shape)}
        if binary:
            chunks.append(array.tobytes())
            entry["parameters"] = {_BINARY_SIZE: len(chunks[-1])}
        else:
            entry["data"] = array.reshape(-1)
        entries.append(entry)
    head: Dict[str, Any] = {"model_name": model_name, "model_version": MODEL_VERSION}
    if request_id is not None:
        head["id"] = request_id
    head["outputs"] = entries
    header = orjson.dumps(head, option=orjson.OPT_SERIALIZE_NUMPY)
    if not chunks:
        return Response(header, media_type="application/json")
    return Response(header + b"".join(chunks), media_type="application/octet-stream",
                    headers={HEADER_LENGTH: str(len(header))})
