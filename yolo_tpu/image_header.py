"""An image's size from its header, checked before anything is decoded.

A PNG or JPEG header may claim any size (100000 x 100000 is 30 GB of BGR pixels): OpenCV
refuses such a file with a `cv2.error` only after parsing it, and a header just under its
own limit (2^30 pixels) would still be decoded into gigabytes. The header is read here
(PNG's IHDR, JPEG's SOF marker, BMP's info header) and a claimed size over MAX_PIXELS is
refused in one line before decoding.
"""
from __future__ import annotations

import os

# 16384 x 16384: far beyond any camera or detector input. OPENCV_IO_MAX_IMAGE_PIXELS
# (OpenCV's own cap, read the same way) lowers or raises it.
MAX_PIXELS = int(os.environ.get("OPENCV_IO_MAX_IMAGE_PIXELS", 0) or 2 ** 28)

# JPEG start-of-frame markers (baseline, progressive, lossless...): C0-CF but DHT, JPG, DAC.
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _png_size(raw: bytes) -> tuple[int, int] | None:
    if len(raw) < 24 or raw[12:16] != b"IHDR":
        return None
    return int.from_bytes(raw[16:20], "big"), int.from_bytes(raw[20:24], "big")


def _jpeg_size(raw: bytes) -> tuple[int, int] | None:
    pos = 2
    while pos + 4 <= len(raw):
        if raw[pos] != 0xFF:
            return None
        marker = raw[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length
            pos += 2
            continue
        length = int.from_bytes(raw[pos + 2:pos + 4], "big")
        if marker in _SOF:
            if pos + 9 > len(raw):
                return None
            height = int.from_bytes(raw[pos + 5:pos + 7], "big")
            width = int.from_bytes(raw[pos + 7:pos + 9], "big")
            return width, height
        if marker == 0xDA or length < 2:  # image data before any frame header
            return None
        pos += 2 + length
    return None


def _bmp_size(raw: bytes) -> tuple[int, int] | None:
    if len(raw) < 26:
        return None
    width = int.from_bytes(raw[18:22], "little", signed=True)
    height = int.from_bytes(raw[22:26], "little", signed=True)
    return abs(width), abs(height)


# Leading bytes -> format name.
MAGIC = ((b"\xff\xd8\xff", "JPEG"), (b"\x89PNG\r\n\x1a\n", "PNG"), (b"BM", "BMP"),
         (b"GIF8", "GIF"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"))


def image_format(raw: bytes) -> str | None:
    """The format the leading bytes name (JPEG, PNG, BMP, GIF, TIFF, WebP), or None."""
    if raw[:4] == b"RIFF" and raw[8:12] == b"WEBP":
        return "WebP"
    return next((name for magic, name in MAGIC if raw.startswith(magic)), None)


SIZE_READERS = {"PNG": _png_size, "JPEG": _jpeg_size, "BMP": _bmp_size}


def header_size(raw: bytes, fmt: str | None) -> tuple[int, int] | None:
    """(width, height) the header of a `fmt` file claims, or None if not read here."""
    reader = SIZE_READERS.get(fmt or "")
    return reader(raw) if reader else None


def oversize(raw: bytes, fmt: str | None, limit: int = MAX_PIXELS) -> str | None:
    """Why the image is refused before decoding (a claimed size over `limit` pixels or of
    zero pixels), or None."""
    size = header_size(raw, fmt)
    if size is None:
        return None
    width, height = size
    if width * height > limit:
        return (f"{fmt} header claims {width}x{height} pixels, over the limit of {limit} "
                "(OPENCV_IO_MAX_IMAGE_PIXELS); not decoded")
    if width == 0 or height == 0:
        return f"{fmt} header claims {width}x{height} pixels: no image"
    return None
