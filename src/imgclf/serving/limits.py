"""What a client may send, checked before the work it would cost: the body size while it is read,
the image count while the multipart body is parsed, the pixel count from an image's header before
its pixels are decoded. Everything stays in memory; nothing a client sends is written to disk.

Each refusal is a `Rejected` (an HTTPException with a short `reason` for the error metric).
"""

from __future__ import annotations

import io
import re
import struct
from typing import AsyncIterator

import numpy as np
from fastapi import HTTPException

from imgclf.data.images import UnusableImage, load_resized

# A body over the limit by at most this much is read and thrown away before the 413 goes out,
# so the client, still sending, reads the answer instead of a reset connection.
DRAIN_BYTES = 64 * 1024 * 1024
RAW_TYPES = ("image/", "application/octet-stream")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f]")
# An image as the OpenAPI spec describes it, raw body or file part: bytes, at least one (an empty
# image is refused with 400). Whether the bytes decode as an image no schema can say: 415 / 422.
IMAGE = {"type": "string", "format": "binary", "minLength": 1}


class Rejected(HTTPException):
    """A request (or, alone in its request, an image) the service will not classify."""

    def __init__(self, status: int, detail: str, reason: str, headers: dict | None = None):
        super().__init__(status, detail, headers)
        self.reason = reason


async def read_body(
    content_length: str | None, stream: AsyncIterator[bytes], limit: int, expects_continue: bool = False
) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed `limit` bytes: from the
    Content-Length header before reading, else while reading (chunked bodies can lie by omission).
    A client that waits for "100 Continue" (curl does for big bodies) gets the 413 instead and
    never sends the body; one that sends anyway has a modest excess drained first."""
    too_large = Rejected(413, f"request body over the {limit / 2**20:g} MB limit (--max-upload-mb)", "too_large")
    declared = _declared_length(content_length)
    if declared is not None and declared > limit and (expects_continue or declared > limit + DRAIN_BYTES):
        raise too_large
    chunks, size = [], 0
    async for chunk in stream:
        size += len(chunk)
        if size > limit + DRAIN_BYTES:
            raise too_large
        if size <= limit:
            chunks.append(chunk)
    if size > limit:
        raise too_large
    return b"".join(chunks)


async def request_body(request, limit: int) -> bytes:
    """A FastAPI request's body under `limit` bytes (see read_body): every route reads its body so."""
    return await read_body(
        request.headers.get("content-length"),
        request.stream(),
        limit,
        request.headers.get("expect", "").lower() == "100-continue",
    )


async def request_images(request, settings) -> list[tuple[str, bytes]]:
    """(display name, bytes) of each image a request sends, within the service's size and count limits."""
    body = await request_body(request, settings.max_upload_bytes)
    return split_images(body, request.headers.get("content-type", ""), settings.max_images)


def _declared_length(value: str | None) -> int | None:
    if value is None:
        return None
    if not value.isdigit():
        raise Rejected(400, f"malformed Content-Length header {value[:40]!r}", "malformed")
    return int(value)


def split_images(body: bytes, content_type: str, max_images: int) -> list[tuple[str, bytes]]:
    """(display name, bytes) for each image in a request: every file part of a multipart/form-data
    body, or the whole body when it is sent raw (image/* or application/octet-stream)."""
    kind = content_type.split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        images = _multipart_files(body, content_type, max_images)
    elif kind == "" or kind.startswith(RAW_TYPES):
        images = [("", body)] if body or kind else []  # no body, no type: nothing sent, not an empty image
    else:
        raise Rejected(
            415,
            f"unsupported Content-Type '{kind}': send images as multipart/form-data "
            "(curl -F file=@photo.jpg) or raw bytes with Content-Type image/jpeg, image/png, ... "
            "(curl --data-binary @photo.jpg -H 'Content-Type: image/jpeg')",
            "unsupported",
        )
    if not images:
        raise Rejected(
            400,
            "no image in the request: send one as a file part (curl -F file=@photo.jpg) or as the body "
            "(curl --data-binary @photo.jpg -H 'Content-Type: image/jpeg')",
            "malformed",
        )
    # An empty image breaks the spec's minLength: the whole request is refused, as a schema says it is
    # (an image that turns out unreadable is answered in its place, beside its usable neighbours).
    empty = [i for i, (_, data) in enumerate(images) if not data]
    if empty:
        which = "" if len(images) == 1 else f" (image {empty[0] + 1} of {len(images)}, {images[empty[0]][0]!r})"
        raise Rejected(400, f"the image is empty (0 bytes){which}", "empty")
    return images


def _multipart_files(body: bytes, content_type: str, max_images: int) -> list[tuple[str, bytes]]:
    from python_multipart.multipart import MultipartParser, parse_options_header

    boundary = parse_options_header(content_type)[1].get(b"boundary")
    if not boundary:
        raise Rejected(400, "malformed multipart body: the Content-Type header has no boundary", "malformed")
    files: list[tuple[str, bytes]] = []
    part: dict = {}
    state = {"ended": False}

    def on_part_begin():
        part.clear()
        part.update(headers={}, field=b"", value=b"", data=[])

    def on_header_field(data, start, end):
        part["field"] += data[start:end]

    def on_header_value(data, start, end):
        part["value"] += data[start:end]

    def on_header_end():
        part["headers"][part["field"].lower()] = part["value"]
        part["field"], part["value"] = b"", b""

    def on_part_data(data, start, end):
        part["data"].append(data[start:end])

    def on_part_end():
        disposition = parse_options_header(part["headers"].get(b"content-disposition", b""))[1]
        filename = disposition.get(b"filename")
        data = b"".join(part["data"])
        # A form field without a file name is a setting, not an image; a file input left empty
        # in a browser form arrives as filename="" with no bytes.
        if filename is None and not part["headers"].get(b"content-type", b"").startswith((b"image/", b"application/")):
            return
        if filename == b"" and not data:
            return
        if len(files) >= max_images:
            # 422, not 413: the count breaks the documented maxItems, which schema checkers answer with a 4xx of content
            raise Rejected(422, f"more than {max_images} images in one request (--max-images)", "too_many")
        files.append((display_name(filename or b""), data))

    def on_end():
        state["ended"] = True

    callbacks = {
        "on_part_begin": on_part_begin,
        "on_header_field": on_header_field,
        "on_header_value": on_header_value,
        "on_header_end": on_header_end,
        "on_part_data": on_part_data,
        "on_part_end": on_part_end,
        "on_end": on_end,
    }
    try:
        parser = MultipartParser(boundary, callbacks)
        parser.write(body)
        parser.finalize()
    except Rejected:
        raise
    except Exception as e:  # noqa: BLE001 - python-multipart raises several types on bad input
        raise Rejected(400, f"malformed multipart body: {e}", "malformed") from e
    if not state["ended"]:
        raise Rejected(400, "malformed multipart body: it ends before its closing boundary", "malformed")
    return files


def display_name(raw: bytes) -> str:
    """The client's file name as a display string only: last path component, printable, short."""
    name = raw.decode("utf-8", errors="replace").replace("\\", "/").rsplit("/", 1)[-1]
    return _UNPRINTABLE.sub("", name)[:200]


def decode(data: bytes, size: int, resize: str, max_pixels: int) -> np.ndarray:
    """The model input (size, size, 3) uint8 for one uploaded image, decoded from memory the way
    `predict` decodes files. The pixel count is checked from the header before any pixel is decoded,
    so a small file claiming 50,000 x 50,000 pixels costs nothing. Raises `Rejected`."""
    if not data:
        raise Rejected(400, "empty image (0 bytes)", "empty")
    claimed = png_size(data)
    if claimed and claimed[0] * claimed[1] > max_pixels:
        raise rejection(f"too large: {claimed[0] * claimed[1]} pixels", max_pixels)
    try:
        # The service's limit is on what the header claims, whatever the format: the CLI decodes a
        # JPEG over it at reduced scale, an operator's --max-pixels refuses it.
        return load_resized(io.BytesIO(data), size, resize, max_pixels, claimed=True)
    except UnusableImage as e:
        raise rejection(e.reason, max_pixels) from e


def png_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of a PNG from its IHDR chunk, else None. Pillow opens a PNG only once it has
    read the chunks after IHDR, so a bare header claiming gigapixels would read as "not an image";
    its size, the truthful reason for a refusal, is right here."""
    if data.startswith(PNG_SIGNATURE) and data[12:16] == b"IHDR" and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    return None


def rejection(reason: str, max_pixels: int) -> Rejected:
    if reason.startswith("too large"):
        found = re.search(r"(\d+) pixels", reason)
        pixels = f"{int(found.group(1)):,} pixels" if found else "too many pixels"
        return Rejected(
            413, f"image has {pixels}, over the {max_pixels:,}-pixel limit (--max-pixels)", "too_many_pixels"
        )
    if reason.startswith("not an image"):
        return Rejected(
            415, "not an image (cannot identify format): send JPEG, PNG, BMP, GIF, WebP, TIFF or PGM/PPM", "unsupported"
        )
    return Rejected(422, f"unreadable image: {reason}", "corrupt")
