"""Decode and validate untrusted image bytes, then preprocess them for a model.

Runs in a worker thread, never on the event loop. Checks, in order: empty input, a
known image format, width*height from the header against ``max_pixels`` (PIL opens
lazily, so a decompression bomb is refused before its pixels are decoded), a single
frame, then a full decode (truncated or corrupt data fails here). Palette, alpha,
CMYK and 16-bit images are valid: the model's transform converts them
(``frossl_hub.inference.to_model_mode``).
"""
from __future__ import annotations

import io
import struct
from typing import Callable, List, Optional, Sequence, Tuple

import torch
from PIL import Image, UnidentifiedImageError

from .exceptions import InvalidInput, TooLarge, UnsupportedMedia

__all__ = ["FORMATS", "decode_image", "preprocess_images"]

# Formats accepted (JPEG includes MPO); anything else (EPS, PSD, ...) is refused before a
# decoder runs.
FORMATS: Tuple[str, ...] = ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP", "PPM")
_MAGIC: Tuple[Tuple[bytes, int, str], ...] = (  # (signature, offset, format) for error messages
    (b"\x89PNG\r\n\x1a\n", 0, "PNG"),
    (b"\xff\xd8\xff", 0, "JPEG"),
    (b"GIF87a", 0, "GIF"),
    (b"GIF89a", 0, "GIF"),
    (b"BM", 0, "BMP"),
    (b"II*\x00", 0, "TIFF"),
    (b"MM\x00*", 0, "TIFF"),
    (b"WEBP", 8, "WEBP"),
)
_SINGLE_FRAME_FORMATS = ("MPO",)  # extra frames are previews/depth maps: use the primary one


def _sniff(data: bytes) -> Optional[str]:
    """Image format named by the file's magic bytes, if any (only to explain failures)."""
    for magic, offset, name in _MAGIC:
        if data[offset:offset + len(magic)] == magic:
            return name
    return None


def _header_size(data: bytes, fmt: Optional[str]) -> Optional[Tuple[int, int]]:
    """Width and height straight from a PNG or GIF header (PIL refuses zero sizes opaquely)."""
    try:
        if fmt == "PNG" and data[12:16] == b"IHDR":
            return struct.unpack(">II", data[16:24])
        if fmt == "GIF":
            return struct.unpack("<HH", data[6:10])
    except struct.error:
        return None
    return None


def decode_image(data: bytes, label: str, max_pixels: int) -> Image.Image:
    """Validate and fully decode one image.

    Args:
        data: the raw file bytes.
        label: how to name the image in errors (``image 2 ('cat.png')``).
        max_pixels: largest width*height accepted, checked before decoding.

    Raises:
        InvalidInput: empty, corrupt, truncated, zero-size or multi-frame.
        UnsupportedMedia: not an image in a supported format.
        TooLarge: more than ``max_pixels`` pixels.
    """
    if not data:
        raise InvalidInput(f"{label} is empty (0 bytes).", code="empty_image")
    fmt = _sniff(data)
    try:
        image = Image.open(io.BytesIO(data), formats=FORMATS)
    except Image.DecompressionBombError:  # PIL's own limit, far above ours by default
        raise TooLarge(f"{label} declares more pixels than can be "
                       f"decoded safely; the limit is {max_pixels} pixels (width*height).",
                       code="image_too_large") from None
    except UnidentifiedImageError:
        size = _header_size(data, fmt)
        if size is not None and 0 in size:
            raise InvalidInput(f"{label} has zero width or height "
                               f"({size[0]}x{size[1]}).", code="zero_size_image") from None
        if fmt is not None:
            raise InvalidInput(f"{label} looks like a {fmt} file but its "
                               "header is corrupt or unsupported.", code="corrupt_image") from None
        raise UnsupportedMedia(f"{label} is not an image in a supported "
                               f"format ({', '.join(FORMATS)}).",
                               code="unsupported_image") from None
    except Exception as exc:  # plugins raise SyntaxError, ValueError, struct.error...
        raise InvalidInput(f"{label} is a corrupt image: {exc}", code="corrupt_image") from None
    try:
        width, height = image.size
        if width < 1 or height < 1:
            raise InvalidInput(f"{label} has zero width or height "
                               f"({width}x{height}).", code="zero_size_image")
        if width * height > max_pixels:
            raise TooLarge(f"{label} is {width}x{height} = "
                           f"{width * height} pixels, over the limit of {max_pixels}; "
                           "downscale it before sending.", code="image_too_large")
        try:
            frames = 1 if image.format in _SINGLE_FRAME_FORMATS else getattr(image, "n_frames", 1)
        except Exception as exc:
            raise InvalidInput(f"{label} is a corrupt image: {exc}", code="corrupt_image") from None
        if frames > 1:
            raise InvalidInput(f"{label} is animated or multi-frame "
                               f"({frames} frames); send a single frame.", code="animated_image")
        try:
            image.load()
        except Exception as exc:
            raise InvalidInput(f"{label} is truncated or corrupt "
                               f"({image.format}): {exc}", code="corrupt_image") from None
    except BaseException:
        image.close()
        raise
    return image


def preprocess_images(blobs: Sequence[bytes], labels: Sequence[str], max_pixels: int,
                      transform: Callable[[Image.Image], torch.Tensor]) -> torch.Tensor:
    """Decode, validate and transform the images of one request into an (N, C, H, W) batch
    (uint8 with ``BatchTransform.to_uint8``: the batcher normalises whole batches).

    Fails on the first bad image, naming it.
    """
    tensors: List[torch.Tensor] = []
    for data, label in zip(blobs, labels):
        image = decode_image(data, label, max_pixels)
        try:
            tensors.append(transform(image))
        except (ValueError, OSError, TypeError) as exc:
            raise InvalidInput(f"{label} (mode {image.mode}) cannot "
                               f"be converted for the model: {exc}",
                               code="unsupported_image_mode") from None
        finally:
            image.close()
    return torch.stack(tensors)
