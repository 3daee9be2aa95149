"""Letterbox a BGR frame into the model's input tensor, the way darknet does.

darknet's `letterbox_image` (src/image.c) keeps the aspect ratio, scales the image to fit,
truncating the other side's size to an int (`new_h = (im.h * w) / im.w`), places it at
`((w - new_w) / 2, (h - new_h) / 2)` (integer division) and fills the rest with 0.5 grey.
The geometry here is the same to the pixel, and the resize is darknet's own (`resize_image`:
bilinear with aligned corners, see `darknet_resize`), so a model sees what it saw under
darknet. AlexeyAB's detector stretches instead (the whole input, aspect ratio not kept)
unless the cfg says `letter_box=1`: `letterbox(..., stretch=True)`.

Pad value: 0.5 for float inputs (darknet's own value). For uint8 inputs (input quantization
scale 1/255, zero point 0) 0.5 is 127.5, not representable; 127 is what darknet itself writes
when it turns its float image into bytes (`(unsigned char)(255 * x)` truncates), and either
neighbour is half a quantum off. int8 inputs (scale 1/255, zero point -128) get the same bytes
shifted by -128.

The uint8 path never goes through float: the resize and cv2.cvtColor write straight into the
output buffer (pass `out=` to reuse one across frames), only the pad strips are filled.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["Letterbox", "letterbox", "letterbox_geometry", "stretch_geometry", "PAD_UINT8",
           "PAD_FLOAT"]

PAD_UINT8 = 127
PAD_FLOAT = 0.5

_TO_RGB = {1: cv2.COLOR_GRAY2RGB, 3: cv2.COLOR_BGR2RGB, 4: cv2.COLOR_BGRA2RGB}


@dataclass(frozen=True)
class Letterbox:
    """Where the source image sits in the model input: input = source * scale + pad."""

    scale_x: float  # new_w / src_w (new_w is truncated, so x and y scales differ slightly)
    scale_y: float
    pad_x: int
    pad_y: int
    new_w: int  # size of the resized image inside the input
    new_h: int
    src_w: int
    src_h: int
    dst_w: int
    dst_h: int

    def to_source(self, boxes_xyxy: np.ndarray) -> np.ndarray:
        """Boxes (N, 4) x1 y1 x2 y2 in input pixels -> source pixels, clipped to the image."""
        b = np.asarray(boxes_xyxy, dtype=np.float32).reshape(-1, 4)
        out = np.empty_like(b)
        out[:, 0::2] = (b[:, 0::2] - self.pad_x) * np.float32(1.0 / self.scale_x)
        out[:, 1::2] = (b[:, 1::2] - self.pad_y) * np.float32(1.0 / self.scale_y)
        np.clip(out[:, 0::2], 0.0, self.src_w, out=out[:, 0::2])
        np.clip(out[:, 1::2], 0.0, self.src_h, out=out[:, 1::2])
        return out

    def to_input(self, boxes_xyxy: np.ndarray) -> np.ndarray:
        """Boxes (N, 4) x1 y1 x2 y2 in source pixels -> input pixels (not clipped)."""
        b = np.asarray(boxes_xyxy, dtype=np.float32).reshape(-1, 4)
        out = np.empty_like(b)
        out[:, 0::2] = b[:, 0::2] * np.float32(self.scale_x) + self.pad_x
        out[:, 1::2] = b[:, 1::2] * np.float32(self.scale_y) + self.pad_y
        return out


def letterbox_geometry(src_w: int, src_h: int, dst_w: int, dst_h: int) -> Letterbox:
    """darknet letterbox_image's new size and offset, including its float32 ratio compare."""
    if min(src_w, src_h, dst_w, dst_h) <= 0:
        raise ValueError(f"empty image or input: {src_w}x{src_h} -> {dst_w}x{dst_h}")
    if np.float32(dst_w) / np.float32(src_w) < np.float32(dst_h) / np.float32(src_h):
        new_w, new_h = dst_w, (src_h * dst_w) // src_w
    else:
        new_w, new_h = (src_w * dst_h) // src_h, dst_h
    # darknet would make a 0-pixel image from a 1000x1 strip; keep at least one row/column.
    new_w, new_h = max(new_w, 1), max(new_h, 1)
    return Letterbox(
        scale_x=new_w / src_w, scale_y=new_h / src_h,
        pad_x=(dst_w - new_w) // 2, pad_y=(dst_h - new_h) // 2,
        new_w=new_w, new_h=new_h, src_w=src_w, src_h=src_h, dst_w=dst_w, dst_h=dst_h,
    )


def stretch_geometry(src_w: int, src_h: int, dst_w: int, dst_h: int) -> Letterbox:
    """AlexeyAB darknet's default `resize_image`: the whole input, aspect ratio not kept."""
    if min(src_w, src_h, dst_w, dst_h) <= 0:
        raise ValueError(f"empty image or input: {src_w}x{src_h} -> {dst_w}x{dst_h}")
    return Letterbox(scale_x=dst_w / src_w, scale_y=dst_h / src_h, pad_x=0, pad_y=0,
                     new_w=dst_w, new_h=dst_h, src_w=src_w, src_h=src_h, dst_w=dst_w,
                     dst_h=dst_h)


def _channels(image: np.ndarray) -> int:
    if image.ndim == 2:
        return 1
    if image.ndim == 3 and image.shape[2] in _TO_RGB:
        return image.shape[2]
    raise ValueError(f"expected an (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) image, got {image.shape}")


def darknet_resize(image: np.ndarray, w: int, h: int, dst: np.ndarray | None = None) -> np.ndarray:
    """darknet's `resize_image` (src/image.c): bilinear with the corners aligned, output pixel
    c samples source position c * (W - 1) / (w - 1), no antialiasing; OpenCV's INTER_LINEAR
    samples (c + 0.5) * W / w - 0.5 instead, a different picture for the same size. One
    warpAffine (OpenCV's fixed-point bilinear, 1/32 pixel positions), as fast as a resize."""
    src_h, src_w = image.shape[:2]
    sx = (src_w - 1) / (w - 1) if w > 1 else 0.0
    sy = (src_h - 1) / (h - 1) if h > 1 else 0.0
    m = np.array([[sx, 0.0, 0.0 if w > 1 else src_w - 1],
                  [0.0, sy, 0.0 if h > 1 else src_h - 1]])
    return cv2.warpAffine(image, m, (w, h), dst=dst,
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)


def _resize_rgb_into(image: np.ndarray, dst: np.ndarray) -> None:
    """Resize + BGR(A)/grey -> RGB into `dst` (an (h, w, 3) uint8 view), one temp at most."""
    code = _TO_RGB[_channels(image)]
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    h, w = dst.shape[:2]
    if (w, h) == (image.shape[1], image.shape[0]):
        cv2.cvtColor(image, code, dst=dst)
    elif w * h <= image.shape[0] * image.shape[1]:
        # shrinking: resize first, so the colour conversion touches fewer pixels
        cv2.cvtColor(darknet_resize(image, w, h), code, dst=dst)
    else:
        darknet_resize(cv2.cvtColor(image, code), w, h, dst=dst)


def _fill_pad(buf: np.ndarray, box: Letterbox, value: float) -> None:
    """Fill the input outside the image (the strips only; the image area is overwritten)."""
    y0, y1 = box.pad_y, box.pad_y + box.new_h
    x0, x1 = box.pad_x, box.pad_x + box.new_w
    buf[:y0] = value
    buf[y1:] = value
    buf[y0:y1, :x0] = value
    buf[y0:y1, x1:] = value


def letterbox(
    image_bgr: np.ndarray,
    width: int,
    height: int,
    dtype: type = np.uint8,
    out: np.ndarray | None = None,
    stretch: bool = False,
) -> tuple[np.ndarray, Letterbox]:
    """Letterbox a uint8 BGR (or grey, or BGRA) image into a (1, height, width, 3) RGB tensor.

    `stretch`: resize to the whole input instead, as AlexeyAB's darknet does for models
    trained without `[net] letter_box=1`.

    dtype np.uint8: 0..255 bytes; np.int8: the same bytes minus 128 (input zero point -128);
    np.float32: 0..1. `out`, if given, must be a C-contiguous (1, height, width, 3) array of
    that dtype and is filled in place (no allocation per frame).
    """
    image = np.asarray(image_bgr)
    if image.dtype != np.uint8:
        raise TypeError(f"expected a uint8 image, got {image.dtype}")
    _channels(image)
    dtype = np.dtype(dtype)
    if dtype not in (np.uint8, np.int8, np.float32):
        raise TypeError(f"unsupported input dtype {dtype}")
    shape = (1, height, width, 3)
    if out is None:
        out = np.empty(shape, dtype)
    elif out.shape != shape or out.dtype != dtype or not out.flags.c_contiguous:
        raise ValueError(f"out must be a C-contiguous {shape} {dtype} array")
    geometry = stretch_geometry if stretch else letterbox_geometry
    box = geometry(image.shape[1], image.shape[0], width, height)
    inner = (slice(box.pad_y, box.pad_y + box.new_h), slice(box.pad_x, box.pad_x + box.new_w))
    if dtype == np.float32:
        rgb = np.empty((box.new_h, box.new_w, 3), np.uint8)
        _resize_rgb_into(image, rgb)
        np.divide(rgb, np.float32(255.0), out=out[0][inner], dtype=np.float32)  # as darknet: x / 255
        _fill_pad(out[0], box, PAD_FLOAT)
        return out, box
    buf = out[0].view(np.uint8)  # int8 is filled as bytes and shifted below
    _resize_rgb_into(image, buf[inner])
    _fill_pad(buf, box, PAD_UINT8)
    if dtype == np.int8:
        np.bitwise_xor(buf, 0x80, out=buf)  # u - 128 as int8 is u ^ 0x80 read as int8
    return out, box
