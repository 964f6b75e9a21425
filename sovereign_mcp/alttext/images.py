"""The image a caption is asked for: base64 or a ``data:`` URI (RFC 2397), PNG, JPEG or WebP, size-capped.

The format is read from the bytes' signature (PNG: ``89 50 4E 47 0D 0A 1A 0A``; JPEG: ``FF D8 FF``; WebP:
``RIFF....WEBP``), never from a declared type, so a mislabelled upload is still recognised or refused.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

_DATA_URI = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(?:;[\w.+-]+=[\w.+-]+)*);base64,(?P<data>.*)$",
                       re.DOTALL)
MIME = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}


class ImageInputError(ValueError):
    """The image cannot be used: not base64, not PNG/JPEG/WebP, empty or too large (the message says which)."""


@dataclass(frozen=True, slots=True)
class Image:
    """Decoded image bytes and their format (``png`` | ``jpeg`` | ``webp``)."""

    data: bytes
    format: str

    @property
    def mime(self) -> str:
        return MIME[self.format]

    def data_uri(self) -> str:
        """The image as a ``data:<mime>;base64,...`` URI (what an OpenAI-compatible ``image_url`` takes)."""
        return f"data:{self.mime};base64,{base64.b64encode(self.data).decode('ascii')}"


def sniff(data: bytes) -> str | None:
    """``png`` | ``jpeg`` | ``webp`` from the signature, else ``None``."""
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def from_bytes(data: bytes, max_bytes: int) -> Image:
    """Raises :class:`ImageInputError` (empty, over ``max_bytes``, not PNG/JPEG/WebP)."""
    if not data:
        raise ImageInputError("the image is empty")
    if len(data) > max_bytes:
        raise ImageInputError(f"the image is {len(data)} bytes, over the {max_bytes} byte limit; scale it down "
                              "(a caption needs no more than about 1500 px on the long side)")
    kind = sniff(data)
    if kind is None:
        raise ImageInputError("not a PNG, JPEG or WebP image (checked from its first bytes)")
    return Image(data, kind)


def from_text(value: str, max_bytes: int) -> Image:
    """An image from base64 text or a ``data:`` URI.

    Raises:
        ImageInputError: not base64, or :func:`from_bytes` refuses the bytes.
    """
    text = value.strip()
    match = _DATA_URI.match(text)
    if text.startswith("data:") and not match:
        raise ImageInputError("a data: URI must be 'data:<type>;base64,<data>'")
    payload = match.group("data") if match else text
    if len(payload) > (max_bytes * 4) // 3 + 8:
        raise ImageInputError(f"the image is over the {max_bytes} byte limit; scale it down")
    try:
        data = base64.b64decode(re.sub(r"\s+", "", payload), validate=True)
    except (binascii.Error, ValueError):
        raise ImageInputError("the image is not valid base64 (nor a data: URI)") from None
    return from_bytes(data, max_bytes)
