"""Draw `Detections` on an image: a box per detection, a filled label with class and score.

Sizes scale with the image, so labels stay readable on a 320 px thumbnail and on a 4K frame;
the label text is black or white, whichever contrasts with its class colour.
"""
from __future__ import annotations

import cv2
import numpy as np

from .detections import Detections

__all__ = ["PALETTE", "class_colour", "draw_detections", "to_bgr"]

# 20 distinct colours (BGR), cycled by class id: a class keeps its colour across images.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (56, 56, 255), (151, 157, 255), (31, 112, 255), (29, 178, 255), (49, 210, 207),
    (10, 249, 72), (23, 204, 146), (134, 219, 61), (52, 147, 26), (187, 212, 0),
    (168, 153, 44), (255, 194, 0), (147, 69, 52), (255, 115, 100), (236, 24, 0),
    (255, 56, 132), (133, 0, 82), (255, 56, 203), (200, 149, 255), (199, 55, 255),
)
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def class_colour(class_id: int) -> tuple[int, int, int]:
    return PALETTE[int(class_id) % len(PALETTE)]


def to_bgr(image: np.ndarray) -> np.ndarray:
    """A BGR uint8 copy of a grey, BGR or BGRA uint8 image (colour boxes need 3 channels)."""
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.ndim == 3 and image.shape[2] == 3:
        return image.copy()
    raise ValueError(f"expected a grey, BGR or BGRA image, got shape {image.shape}")


def _text_colour(bg: tuple[int, int, int]) -> tuple[int, int, int]:
    b, g, r = bg
    return (0, 0, 0) if 0.114 * b + 0.587 * g + 0.299 * r > 150 else (255, 255, 255)


def draw_detections(image: np.ndarray, detections: Detections,
                    line_width: int | None = None) -> np.ndarray:
    """A BGR copy of `image` with every detection drawn; the input is left untouched."""
    out = to_bgr(image)
    h, w = out.shape[:2]
    lw = line_width or max(round((h + w) / 2 * 0.003), 2)
    font_scale = lw / 3
    font_thick = max(lw - 1, 1)
    for det in detections:
        colour = class_colour(det.class_id)
        x1, y1, x2, y2 = (int(round(v)) for v in det.box)
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, lw, cv2.LINE_AA)
        text = f"{det.label} {det.score:.2f}"
        (tw, th), base = cv2.getTextSize(text, _FONT, font_scale, font_thick)
        pad = max(lw // 2, 1)
        box_h = th + base + 2 * pad
        # Above the box when it fits, else just inside its top edge; never off the right side.
        top = y1 - box_h if y1 - box_h >= 0 else y1
        left = min(max(x1, 0), max(w - tw - 2 * pad, 0))
        cv2.rectangle(out, (left, top), (left + tw + 2 * pad, top + box_h), colour, cv2.FILLED)
        cv2.putText(out, text, (left + pad, top + pad + th), _FONT, font_scale,
                    _text_colour(colour), font_thick, cv2.LINE_AA)
    return out
