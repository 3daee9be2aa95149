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
    """A BGR copy of `image` with every detection drawn; the input is left untouched.

    Boxes first, then labels. Labels are placed in descending score order, and a label that
    would cover one already placed moves down below it, so detections that share a box
    (car 0.67 and truck 0.51 on the same vehicle) each keep a readable label. They are
    painted in ascending score order, so if two still overlap, the higher score is on top.
    """
    out = to_bgr(image)
    h, w = out.shape[:2]
    lw = line_width or max(round((h + w) / 2 * 0.003), 2)
    font_scale = lw / 3
    font_thick = max(lw - 1, 1)
    pad = max(lw // 2, 1)
    order = np.argsort(-detections.scores, kind="stable")
    dets = list(detections)
    ids = detections.tracker_id.tolist() if detections.tracker_id is not None else None
    for k in order[::-1]:
        x1, y1, x2, y2 = (int(round(v)) for v in dets[k].box)
        cv2.rectangle(out, (x1, y1), (x2, y2), class_colour(dets[k].class_id), lw, cv2.LINE_AA)
    labels: list[tuple[int, str, tuple[int, int, int, int], int]] = []
    placed: list[tuple[int, int, int, int]] = []
    for k in order:
        det = dets[k]
        x1, y1 = int(round(det.box[0])), int(round(det.box[1]))
        text = f"{det.label} {det.score:.2f}"
        if ids is not None and ids[k] >= 0:  # tracked: the id first, it is what is followed
            text = f"#{ids[k]} {text}"
        (tw, th), base = cv2.getTextSize(text, _FONT, font_scale, font_thick)
        box_w, box_h = tw + 2 * pad, th + base + 2 * pad
        # Above the box when it fits, else just inside its top edge; never off the right side.
        top = y1 - box_h if y1 - box_h >= 0 else y1
        left = min(max(x1, 0), max(w - box_w, 0))
        rect = _free_spot((left, top, box_w, box_h), placed, h)
        placed.append(rect)
        labels.append((k, text, rect, th))
    for k, text, (left, top, box_w, box_h), th in reversed(labels):
        colour = class_colour(dets[k].class_id)
        cv2.rectangle(out, (left, top), (left + box_w, top + box_h), colour, cv2.FILLED)
        cv2.putText(out, text, (left + pad, top + pad + th), _FONT, font_scale,
                    _text_colour(colour), font_thick, cv2.LINE_AA)
    return out


def _overlaps(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def _free_spot(rect: tuple[int, int, int, int], placed: list[tuple[int, int, int, int]],
               height: int) -> tuple[int, int, int, int]:
    """`rect` moved down, below each placed label it would cover, while it stays in the
    image; where it cannot, its first position (painted under the higher scores)."""
    left, top, w, h = rect
    for _ in range(len(placed)):
        hit = next((p for p in placed if _overlaps((left, top, w, h), p)), None)
        if hit is None:
            return left, top, w, h
        top = hit[1] + hit[3]
        if top + h > height:
            return rect
    return (left, top, w, h) if not any(_overlaps((left, top, w, h), p) for p in placed) else rect
