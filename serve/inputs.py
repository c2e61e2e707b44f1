"""Read an image request within the limits: JSON with base64 images, or multipart ``file`` parts.

The body size is enforced while it is read: a Content-Length over ``max_bytes`` is refused
before a byte is read, and a streamed (chunked) body is cut off as soon as it passes the
limit. The image count is checked before any image is decoded.
"""
from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable, Dict, List, Optional, Type

import orjson
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from .config import Settings
from .errors import validation_details, validation_message
from .exceptions import InvalidInput, MalformedBody, TooLarge, UnsupportedMedia

__all__ = ["ImageRequest", "b64decode_image", "check_image_count", "json_image_request",
           "load_json", "parse_json_body", "read_body", "read_image_request", "validate_fields"]

FILE_FIELDS = ("file", "files")  # multipart part names that carry images
MAX_FORM_FIELDS = 16  # non-file multipart fields (model, normalize, top_k)
MAX_FIELD_BYTES = 64 * 1024  # size of one non-file multipart field
_URLSAFE = str.maketrans("-_", "+/")
_URL_SCHEMES = ("http://", "https://")  # refused: the service never fetches URLs


@dataclass
class ImageRequest:
    """A parsed image request: its option fields and the raw bytes of each image."""

    options: Any  # EmbeddingOptions / PredictionOptions (or their JSON subclasses)
    images: List[bytes]
    labels: List[str]  # how errors name each image


def _too_large(max_bytes: int, what: str) -> TooLarge:
    return TooLarge(f"request body {what} the limit of {max_bytes} "
                    "bytes; send fewer or smaller images per request.", code="payload_too_large")


async def _limited_stream(request: Request, max_bytes: int) -> AsyncIterator[bytes]:
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > max_bytes:
            raise _too_large(max_bytes, "exceeds")
        yield chunk


def check_image_count(count: int, settings: Settings) -> None:
    """TooLarge when one request carries more than ``max_images`` images."""
    if count > settings.max_images:
        raise TooLarge(f"{count} images in one request; the limit is "
                       f"{settings.max_images}. Split them over several requests.",
                       code="too_many_images")


def validate_fields(model: Type[BaseModel], data: Dict[str, Any]) -> Any:
    """``model`` validated from ``data``; InvalidInput naming every bad field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        raise InvalidInput(validation_message(errors),
                           details=validation_details(errors), code="invalid_request") from None


def b64decode_image(text: str, label: str) -> bytes:
    """The bytes of an image sent as base64 or a ``data:`` URL (``label`` names it in errors).

    Raises:
        InvalidInput: an http(s):// URL (never fetched), a data: URL without base64 data,
            or invalid base64.
    """
    if text[:8].lower().startswith(_URL_SCHEMES):
        raise InvalidInput(f"{label} is a URL; this service never fetches URLs: send the image "
                           "itself as base64 or a data: URL.", code="url_not_supported")
    if text.startswith("data:"):
        header, sep, text = text.partition(",")
        if not sep or not header.endswith(";base64"):
            raise InvalidInput(f"{label} is a data: URL without "
                               "';base64,' data.", code="invalid_base64")
    try:  # the common case, plain standard base64, without copying the string twice
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        pass
    text = "".join(text.split()).translate(_URLSAFE)  # line breaks, URL-safe alphabet
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput(f"{label} is not valid base64: {exc}.",
                           code="invalid_base64") from None


def parse_json_body(body: bytes, settings: Settings, json_model: Type[BaseModel]
                    ) -> ImageRequest:
    """A JSON body (``{"images": [base64...], ...}``) as a validated request with image bytes.

    Raises:
        MalformedBody: not JSON (also a body nested deeper than orjson's 1024 levels).
        InvalidInput: not an object, invalid fields or base64; TooLarge: too many images.
    """
    return json_image_request(load_json(body), settings, json_model)


def load_json(body: bytes) -> Any:
    """A JSON document; MalformedBody (naming orjson's complaint) when it is not one."""
    try:
        return orjson.loads(body)  # no recursion: 100,000 nested "[" fail like any bad body
    except orjson.JSONDecodeError as exc:
        raise MalformedBody(f"the body is not valid JSON: {exc}.", code="malformed_json") from None


def json_image_request(data: Any, settings: Settings, json_model: Type[BaseModel]
                       ) -> ImageRequest:
    """Parsed JSON as a validated request: the image count, the fields, the base64 images."""
    if not isinstance(data, dict):
        raise InvalidInput("the JSON body must be an object like "
                           '{"images": ["<base64>", ...]}.', code="invalid_request")
    if isinstance(data.get("images"), list):
        check_image_count(len(data["images"]), settings)
    parsed = validate_fields(json_model, data)
    images = [b64decode_image(text, f"images[{i}]") for i, text in enumerate(parsed.images)]
    options = parsed.model_copy(update={"images": []})
    return ImageRequest(options, images, [f"images[{i}]" for i in range(len(images))])


def _check_content_length(request: Request, settings: Settings) -> None:
    length = request.headers.get("content-length")
    if length is not None:
        try:
            declared = int(length)
        except ValueError:
            raise MalformedBody(f"invalid Content-Length {length!r}.", code="bad_request") from None
        if declared > settings.max_bytes:
            raise _too_large(settings.max_bytes, f"of {declared} bytes exceeds")


async def read_body(request: Request, settings: Settings) -> bytes:
    """The whole body, refused (TooLarge) from its Content-Length or as soon as it streams
    past ``max_bytes``; MalformedBody for an invalid Content-Length."""
    _check_content_length(request, settings)
    return b"".join([chunk async for chunk in _limited_stream(request, settings.max_bytes)])


JsonParser = Callable[[bytes], ImageRequest]  # a JSON body -> the parsed request


async def _read_json(request: Request, settings: Settings, json_model: Type[BaseModel],
                     parse_json: Optional[JsonParser]) -> ImageRequest:
    body = b"".join([chunk async for chunk in _limited_stream(request, settings.max_bytes)])
    # megabytes of JSON and base64 take milliseconds to decode: keep them off the event loop
    if parse_json is not None:
        return await run_in_threadpool(parse_json, body)
    return await run_in_threadpool(parse_json_body, body, settings, json_model)


def _form_booleans(options_model: Type[BaseModel], fields: Dict[str, str]) -> Dict[str, Any]:
    """Boolean form fields as JSON spells them, ``true`` or ``false`` (any case), rather than
    pydantic's lax ``0``/``yes``/``off``..., so the multipart body means what its schema says."""
    out: Dict[str, Any] = dict(fields)
    for name, value in fields.items():
        field = options_model.model_fields.get(name)
        if field is None or field.annotation is not bool:
            continue
        if value.strip().lower() not in ("true", "false"):
            raise InvalidInput(f"{name}: must be true or false, got {value[:40]!r}.",
                               code="invalid_request")
        out[name] = value.strip().lower() == "true"
    return out


async def _read_multipart(request: Request, settings: Settings, options_model: Type[BaseModel]
                          ) -> ImageRequest:
    parser = MultiPartParser(request.headers, _limited_stream(request, settings.max_bytes),
                             max_files=settings.max_images + 1, max_fields=MAX_FORM_FIELDS,
                             max_part_size=MAX_FIELD_BYTES)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        if exc.message.startswith("Too many files"):
            raise TooLarge(f"more than {settings.max_images} images in "
                           "one request; split them over several requests.",
                           code="too_many_images") from None
        raise MalformedBody(f"the multipart body is invalid: "
                            f"{exc.message}", code="malformed_multipart") from None
    try:
        fields: Dict[str, str] = {}
        uploads: List[UploadFile] = []
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                if name not in FILE_FIELDS:
                    raise InvalidInput(f"unexpected file part {name!r}; "
                                       "send images as `file` parts.", code="invalid_request")
                uploads.append(value)
            elif name in FILE_FIELDS:
                raise InvalidInput(f"part {name!r} has no filename; send "
                                   "images as file uploads (curl -F file=@cat.png).",
                                   code="invalid_request")
            elif name in fields:
                raise InvalidInput(f"form field {name!r} given twice.", code="invalid_request")
            else:
                fields[name] = value
        options = validate_fields(options_model, _form_booleans(options_model, fields))
        if not uploads:
            raise InvalidInput("no images: send one or more `file` parts "
                               "(multipart/form-data).", code="invalid_request")
        check_image_count(len(uploads), settings)
        images = [await upload.read() for upload in uploads]
        labels = [f"image {i} ({u.filename!r})" if u.filename else f"image {i}"
                  for i, u in enumerate(uploads)]
        return ImageRequest(options, images, labels)
    finally:
        await form.close()


async def read_image_request(request: Request, settings: Settings,
                             json_model: Type[BaseModel], options_model: Type[BaseModel],
                             parse_json: Optional[JsonParser] = None) -> ImageRequest:
    """Parse an image request of either encoding, enforcing the body and image-count limits.

    ``parse_json`` replaces ``parse_json_body`` for JSON bodies (a route accepting two shapes).

    Raises:
        UnsupportedMedia, TooLarge, MalformedBody, InvalidInput (``serve.exceptions``).
    """
    content_type = request.headers.get("content-type", "")
    media = content_type.split(";", 1)[0].strip().lower()
    is_json = media == "application/json" or (media.startswith("application/")
                                              and media.endswith("+json"))
    if not is_json and media != "multipart/form-data":
        raise UnsupportedMedia(f"content type {media or 'none'!r} is not "
                               "accepted; send application/json with base64 images or "
                               "multipart/form-data with `file` parts.",
                               code="unsupported_media_type")
    _check_content_length(request, settings)
    if is_json:
        return await _read_json(request, settings, json_model, parse_json)
    return await _read_multipart(request, settings, options_model)

