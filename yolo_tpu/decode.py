"""Decode YOLO head outputs into boxes, scores and class ids, as darknet does.

darknet (src/yolo_layer.c, get_yolo_box / get_yolo_detections), per cell (row, col) and anchor:

    x = (col + s * sigmoid(tx) - (s-1)/2) / gw    w = exp(tw) * anchor_w / net_w
    y = (row + s * sigmoid(ty) - (s-1)/2) / gh    h = exp(th) * anchor_h / net_h
    objectness = sigmoid(to)                      keep the cell if objectness > conf
    prob[c] = objectness * sigmoid(tc)            keep (box, c) if prob[c] > conf

with s = scale_x_y (1 unless the cfg says). `new_coords=1` heads (YOLOv7) output values their
convolution already passed through the logistic: no sigmoid here, and w = 4 tw^2 anchor_w.
`[region]` heads (YOLOv2, src/region_layer.c): prob[c] = objectness * softmax(t)[c], anchors
in grid cells (stored in pixels in the metadata).

A box may give several (box, class) rows, like darknet's detections. Boxes come back as
x1, y1, x2, y2 in model-input pixels; `Letterbox.to_source` maps them to the source image.

Quantized outputs (uint8/int8) hold at most 256 distinct values per tensor, so sigmoid and exp
of every possible value are tabulated once per (scale, zero_point): the kernel never
dequantizes the tensor, it reads one byte per anchor-cell, looks up its objectness and goes
on unless it passes the threshold. Thresholding the tabulated float values is exactly the
float test, so there is no off-by-one-quantum question at the boundary.
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Sequence

import numpy as np

from .meta import Head
from .nms import cached_njit

__all__ = ["decode_heads"]

Quant = tuple[float, int] | None


# Head modes: how the raw entries of one anchor turn into a box and class scores.
YOLO, YOLO_NEW_COORDS, REGION = 0, 1, 2


def head_mode(head: Head) -> int:
    if head.kind == "region":
        return REGION
    return YOLO_NEW_COORDS if head.new_coords else YOLO


@lru_cache(maxsize=64)
def _tables(scale: float, zero_point: int, signed: bool,
            mode: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per byte value (read as uint8): the x/y/objectness/class activation, the w/h factor
    and the plain dequantized value (for the region softmax)."""
    u = np.arange(256, dtype=np.uint8)
    q = u.view(np.int8).astype(np.float64) if signed else u.astype(np.float64)
    x = (q - zero_point) * scale
    if mode == YOLO_NEW_COORDS:  # outputs already logistic (the conv's activation)
        act, wh = x.copy(), 4.0 * x * x
    else:
        act = 1.0 / (1.0 + np.exp(-x))
        with np.errstate(over="ignore"):  # exp of a huge logit is inf, as darknet's expf
            wh = np.exp(x)
    for t in (act, wh, x):
        t.flags.writeable = False
    return act, wh, x


@lru_cache(maxsize=64)
def _anchors(head: Head) -> np.ndarray:
    a = np.asarray(head.anchors, dtype=np.float64).reshape(-1, 2)
    a.flags.writeable = False
    return a


@cached_njit
def _decode_quantized(out, gw, act, wh, val, anchors, stride_x, stride_y, conf, mode, sxy):
    """out: (gh*gw, A, 5+C) bytes (int8 viewed as uint8); act/wh/val: 256-entry tables."""
    cells, n_anchors, entries = out.shape
    n_classes = entries - 5
    # Pass 1: count candidate cells, so the result arrays are sized without guessing.
    n_cand = 0
    for cell in range(cells):
        for a in range(n_anchors):
            if act[out[cell, a, 4]] > conf:
                n_cand += 1
    cap = n_cand * n_classes
    boxes = np.empty((cap, 4), np.float32)
    scores = np.empty(cap, np.float32)
    class_ids = np.empty(cap, np.int32)
    probs = np.empty(n_classes, np.float64)
    shift = 0.5 * (sxy - 1.0)
    n = 0
    for cell in range(cells):
        for a in range(n_anchors):
            obj = act[out[cell, a, 4]]
            if not obj > conf:
                continue
            row = cell // gw
            col = cell - row * gw
            cx = (col + sxy * act[out[cell, a, 0]] - shift) * stride_x
            cy = (row + sxy * act[out[cell, a, 1]] - shift) * stride_y
            hw = 0.5 * wh[out[cell, a, 2]] * anchors[a, 0]
            hh = 0.5 * wh[out[cell, a, 3]] * anchors[a, 1]
            _class_probs(out[cell, a], act, val, obj, mode, probs)
            for c in range(n_classes):
                prob = probs[c]
                if prob > conf:
                    boxes[n, 0] = cx - hw
                    boxes[n, 1] = cy - hh
                    boxes[n, 2] = cx + hw
                    boxes[n, 3] = cy + hh
                    scores[n] = prob
                    class_ids[n] = c
                    n += 1
    return boxes[:n], scores[:n], class_ids[:n]


@cached_njit
def _class_probs(entries, act, val, obj, mode, probs):
    """objectness x class score; [region]: x softmax over the class logits (darknet's)."""
    n_classes = probs.shape[0]
    if mode != REGION:
        for c in range(n_classes):
            probs[c] = obj * act[entries[5 + c]]
        return
    largest = -np.inf
    for c in range(n_classes):
        largest = max(largest, val[entries[5 + c]])
    total = 0.0
    for c in range(n_classes):
        probs[c] = math.exp(val[entries[5 + c]] - largest)
        total += probs[c]
    for c in range(n_classes):
        probs[c] = obj * probs[c] / total


@cached_njit
def _decode_float(out, gw, anchors, stride_x, stride_y, conf, obj_logit, mode, sxy):
    """out: (gh*gw, A, 5+C) float outputs; obj_logit = logit(conf), a cheap pre-filter
    (-inf for new_coords heads, whose objectness is already a probability)."""
    cells, n_anchors, entries = out.shape
    n_classes = entries - 5
    n_cand = 0
    for cell in range(cells):
        for a in range(n_anchors):
            if out[cell, a, 4] >= obj_logit:
                n_cand += 1
    cap = n_cand * n_classes
    boxes = np.empty((cap, 4), np.float32)
    scores = np.empty(cap, np.float32)
    class_ids = np.empty(cap, np.int32)
    probs = np.empty(n_classes, np.float64)
    shift = 0.5 * (sxy - 1.0)
    n = 0
    for cell in range(cells):
        for a in range(n_anchors):
            t = np.float64(out[cell, a, 4])
            if not t >= obj_logit:
                continue
            if mode == YOLO_NEW_COORDS:
                obj = t
            else:
                obj = 1.0 / (1.0 + math.exp(-t))
            if not obj > conf:  # the exact test; the logit compare only skips work
                continue
            row = cell // gw
            col = cell - row * gw
            tx = np.float64(out[cell, a, 0])
            ty = np.float64(out[cell, a, 1])
            tw = np.float64(out[cell, a, 2])
            th = np.float64(out[cell, a, 3])
            if mode == YOLO_NEW_COORDS:
                fx, fy, fw, fh = tx, ty, 4.0 * tw * tw, 4.0 * th * th
            else:
                fx = 1.0 / (1.0 + math.exp(-tx))
                fy = 1.0 / (1.0 + math.exp(-ty))
                fw, fh = math.exp(tw), math.exp(th)
            cx = (col + sxy * fx - shift) * stride_x
            cy = (row + sxy * fy - shift) * stride_y
            hw = 0.5 * fw * anchors[a, 0]
            hh = 0.5 * fh * anchors[a, 1]
            if mode == REGION:
                largest = -np.inf
                for c in range(n_classes):
                    largest = max(largest, np.float64(out[cell, a, 5 + c]))
                total = 0.0
                for c in range(n_classes):
                    probs[c] = math.exp(np.float64(out[cell, a, 5 + c]) - largest)
                    total += probs[c]
                for c in range(n_classes):
                    probs[c] = obj * probs[c] / total
            elif mode == YOLO_NEW_COORDS:
                for c in range(n_classes):
                    probs[c] = obj * np.float64(out[cell, a, 5 + c])
            else:
                for c in range(n_classes):
                    probs[c] = obj / (1.0 + math.exp(-np.float64(out[cell, a, 5 + c])))
            for c in range(n_classes):
                prob = probs[c]
                if prob > conf:
                    boxes[n, 0] = cx - hw
                    boxes[n, 1] = cy - hh
                    boxes[n, 2] = cx + hw
                    boxes[n, 3] = cy + hh
                    scores[n] = prob
                    class_ids[n] = c
                    n += 1
    return boxes[:n], scores[:n], class_ids[:n]


def _logit(p: float) -> float:
    if p <= 0.0:
        return -math.inf
    if p >= 1.0:
        return math.inf
    # a hair below the true logit, so float rounding never makes the pre-filter drop a keeper
    return math.log(p / (1.0 - p)) - 1e-6


def _decode_one(out: np.ndarray, quant: Quant, head: Head, net_w: int, net_h: int, conf: float):
    if out.ndim != 4 or out.shape[0] != 1:
        raise ValueError(f"expected a (1, gh, gw, A*(5+C)) output, got {out.shape}")
    _, gh, gw, channels = out.shape
    n_anchors = len(head.mask)
    if channels % n_anchors or channels // n_anchors < 6:
        raise ValueError(f"{channels} channels do not split into {n_anchors} anchors x (5+C)")
    # (cells, anchor, entry) is a view: darknet's channel order is anchor-major.
    cube = np.ascontiguousarray(out).reshape(gh * gw, n_anchors, channels // n_anchors)
    anchors = _anchors(head)
    mode, sxy = head_mode(head), float(head.scale_x_y)
    # stride in pixels = net / grid, as darknet divides by gw and multiplies back by net_w
    sx, sy = net_w / gw, net_h / gh
    if out.dtype == np.float32 or out.dtype == np.float64:
        cube = cube.astype(np.float32, copy=False)
        obj_logit = -math.inf if mode == YOLO_NEW_COORDS else _logit(conf)
        return _decode_float(cube, gw, anchors, sx, sy, conf, obj_logit, mode, sxy)
    if out.dtype not in (np.uint8, np.int8):
        raise TypeError(f"unsupported output dtype {out.dtype}")
    if quant is None:
        raise ValueError("a quantized output needs its (scale, zero_point)")
    act, wh, val = _tables(float(quant[0]), int(quant[1]), out.dtype == np.int8, mode)
    return _decode_quantized(cube.view(np.uint8), gw, act, wh, val, anchors, sx, sy, conf,
                             mode, sxy)


def decode_heads(
    outputs: Sequence[np.ndarray],
    quant: Sequence[Quant],
    heads: Sequence[Head],
    input_size: tuple[int, int],
    conf: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes (N, 4) float32 x1 y1 x2 y2 in input pixels, scores (N,) float32, class ids (N,) int32.

    outputs[i]: (1, gh, gw, A*(5+C)) for heads[i], channel = anchor*(5+C) + entry; uint8/int8
    with quant[i] = (scale, zero_point), or float32 logits with quant[i] None.
    input_size: the model's (width, height). Rows are in head, cell, anchor, class order.
    """
    if not (len(outputs) == len(quant) == len(heads)):
        raise ValueError(f"{len(outputs)} outputs, {len(quant)} quant params, {len(heads)} heads")
    net_w, net_h = input_size
    conf = float(conf)
    parts = [_decode_one(o, q, h, net_w, net_h, conf) for o, q, h in zip(outputs, quant, heads)]
    if len(parts) == 1:
        return parts[0]
    boxes, scores, class_ids = zip(*parts)
    return np.concatenate(boxes), np.concatenate(scores), np.concatenate(class_ids)
