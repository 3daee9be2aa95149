#!/usr/bin/env python3
"""Time the runtime's post-processing (decode + NMS) against plain numpy and OpenCV.

Inputs are synthetic but shaped like tiny-YOLOv3 416 int8 outputs, (1, 13, 13, 255) and
(1, 26, 26, 255) with scale ~0.15: background cells with low objectness logits, a few dozen
confident cells around a dozen objects (neighbouring cells and anchors fire too, so NMS has
work). At conf 0.25 a frame gives a few dozen boxes; at conf 0.001 (mAP evaluation) thousands.

Compared, in the same run, medians over many repetitions after a warm-up (numba compile):
  - yolo_tpu.decode.decode_heads + yolo_tpu.nms.nms
  - a vectorised numpy decode + a numpy greedy NMS (the usual Python post-processing)
  - cv2.dnn.NMSBoxesBatched for the NMS part (boxes converted to x, y, w, h as it needs)
and NMS alone on 10,000 random boxes (80 classes) against cv2.dnn.NMSBoxesBatched.

Targets: decode + NMS <= 0.5 ms at conf 0.25; NMS on 10,000 boxes no slower than OpenCV.
Exit status 1 if a target is missed.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from yolo_tpu.decode import decode_heads  # noqa: E402
from yolo_tpu.meta import Head  # noqa: E402
from yolo_tpu.nms import nms  # noqa: E402

HEADS = (
    Head((3, 4, 5), ((81.0, 82.0), (135.0, 169.0), (344.0, 319.0)), 32),
    Head((0, 1, 2), ((10.0, 14.0), (23.0, 27.0), (37.0, 58.0)), 16),
)
NET = (416, 416)
CLASSES = 80
IOU = 0.45
TARGET_MS = 0.5


# --- synthetic model outputs ----------------------------------------------------------------

def _logit(p: np.ndarray | float) -> np.ndarray | float:
    return np.log(p / (1.0 - p))


def tiny_yolo_outputs(rng: np.random.Generator, objects: int = 12):
    """int8 outputs and their (scale, zero_point), like a quantized tiny-YOLOv3 on a busy frame.

    Each object is seen by the cell holding its centre and, less surely, by the 8 around it, on
    both heads, all predicting (roughly) the object's box, as a trained model's do.
    """
    outputs, quant = [], []
    centres = rng.uniform(30, 386, (objects, 2))
    sizes = rng.uniform(20, 250, (objects, 2))
    labels = rng.integers(0, CLASSES, objects)
    for head in HEADS:
        g = NET[0] // head.stride
        x = np.empty((g, g, 3, 5 + CLASSES), np.float32)
        x[..., :4] = rng.normal(0.0, 1.0, x[..., :4].shape)
        x[..., 4] = rng.normal(-7.0, 1.5, (g, g, 3))  # background objectness ~0.001
        x[..., 5:] = rng.normal(-6.0, 1.5, (g, g, 3, CLASSES))
        for (cx, cy), (w, h), label in zip(centres, sizes, labels):
            col, row = int(cx // head.stride), int(cy // head.stride)
            a = int(np.argmin([abs(np.log(w * h / (aw * ah))) for aw, ah in head.anchors]))
            for dr in (-1, 0, 1):
                for dc in (-1, 0, 1):
                    r, c = row + dr, col + dc
                    if not (0 <= r < g and 0 <= c < g):
                        continue
                    centre = dr == 0 and dc == 0
                    # offsets of the object centre from this cell, squashed into the cell
                    ox = np.clip(cx / head.stride - c + rng.normal(0, 0.05), 0.02, 0.98)
                    oy = np.clip(cy / head.stride - r + rng.normal(0, 0.05), 0.02, 0.98)
                    x[r, c, a, 0:2] = _logit(ox), _logit(oy)
                    x[r, c, a, 2] = np.log(w / head.anchors[a][0]) + rng.normal(0, 0.1)
                    x[r, c, a, 3] = np.log(h / head.anchors[a][1]) + rng.normal(0, 0.1)
                    x[r, c, a, 4] = rng.uniform(1.0, 5.0) if centre else rng.uniform(-4.0, 0.0)
                    x[r, c, a, 5 + label] = rng.uniform(2.0, 6.0)
                    x[r, c, a, 5 + rng.integers(0, CLASSES)] = rng.uniform(-3.0, 0.0)
        scale = float(rng.uniform(0.12, 0.18))
        zp = int(rng.integers(-10, 10))
        q = np.clip(np.round(x / scale) + zp, -128, 127).astype(np.int8)
        outputs.append(q.reshape(1, g, g, 3 * (5 + CLASSES)))
        quant.append((scale, zp))
    return outputs, quant


def random_boxes(rng: np.random.Generator, n: int, classes: int = CLASSES):
    xy = rng.uniform(0, 400, (n, 2))
    wh = rng.uniform(8, 120, (n, 2))
    boxes = np.hstack([xy, xy + wh]).astype(np.float32)
    return boxes, rng.uniform(0.01, 1.0, n).astype(np.float32), rng.integers(0, classes, n).astype(np.int32)


# --- the plain-numpy baseline ---------------------------------------------------------------

def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def numpy_decode(outputs, quant, heads, net, conf):
    """Vectorised darknet decode: dequantize, sigmoid, threshold, class probs."""
    all_boxes, all_scores, all_ids = [], [], []
    for out, (scale, zp), head in zip(outputs, quant, heads):
        _, gh, gw, ch = out.shape
        n_a = len(head.mask)
        x = ((out.astype(np.float32) - zp) * scale).reshape(gh, gw, n_a, ch // n_a)
        obj = _sigmoid(x[..., 4])
        rows, cols, anchors = np.nonzero(obj > conf)
        cell = x[rows, cols, anchors]
        o = obj[rows, cols, anchors]
        cx = (cols + _sigmoid(cell[:, 0])) * (net[0] / gw)
        cy = (rows + _sigmoid(cell[:, 1])) * (net[1] / gh)
        anc = np.asarray(head.anchors, np.float32)[anchors]
        w = np.exp(cell[:, 2]) * anc[:, 0]
        h = np.exp(cell[:, 3]) * anc[:, 1]
        probs = o[:, None] * _sigmoid(cell[:, 5:])
        i, c = np.nonzero(probs > conf)
        all_boxes.append(np.stack([cx[i] - w[i] / 2, cy[i] - h[i] / 2, cx[i] + w[i] / 2, cy[i] + h[i] / 2], 1))
        all_scores.append(probs[i, c])
        all_ids.append(c.astype(np.int32))
    return np.concatenate(all_boxes), np.concatenate(all_scores), np.concatenate(all_ids)


def numpy_nms(boxes, scores, class_ids, iou):
    """Greedy NMS, one vectorised IoU row per kept box; classes apart by a coordinate offset."""
    if len(boxes) == 0:
        return np.empty(0, np.int64)
    b = boxes.astype(np.float64) + (class_ids[:, None] * (float(boxes.max()) + 1.0))
    x1, y1, x2, y2 = b.T
    areas = (x2 - x1) * (y2 - y1)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        iw = np.clip(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0, None)
        ih = np.clip(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0, None)
        inter = iw * ih
        order = rest[inter / (areas[i] + areas[rest] - inter) <= iou]
    return np.asarray(keep, np.int64)


def cv2_nms(boxes, scores, class_ids, iou):
    xywh = boxes.astype(np.float64)
    xywh[:, 2:] -= xywh[:, :2]
    return np.asarray(cv2.dnn.NMSBoxesBatched(xywh, scores, class_ids, 0.0, iou), np.int64).ravel()


# --- timing ---------------------------------------------------------------------------------

def median_ms(fn: Callable[[], object], reps: int, budget_s: float = 2.0) -> float:
    """Median of `reps` timed calls (fewer for a slow fn: about `budget_s` in all, >= 5)."""
    t0 = time.perf_counter()
    for _ in range(3):
        fn()  # warm-up: numba compile / cache load, allocator, caches
    per_call = (time.perf_counter() - t0) / 3
    reps = int(max(5, min(reps, budget_s / max(per_call, 1e-9))))
    times = []
    for _ in range(reps):
        t0 = time.perf_counter_ns()
        fn()
        times.append(time.perf_counter_ns() - t0)
    return float(np.median(times)) / 1e6


def table(title: str, rows: list[tuple[str, float, float | None, float | None]]) -> None:
    """rows: (stage, ours, numpy, OpenCV) medians in ms; ratios are baseline / ours."""
    def cell(ms: float | None, ours: float) -> str:
        return f"{ms:11.4f} {ms / ours:7.1f}x" if ms is not None else f"{'-':>11} {'':8}"
    print(title)
    print(f"  {'stage':<34} {'yolo_tpu':>11} {'numpy':>11} {'ratio':>8} {'OpenCV':>11} {'ratio':>8}")
    for name, ours, np_ms, cv_ms in rows:
        print(f"  {name:<34} {ours:11.4f} {cell(np_ms, ours)} {cell(cv_ms, ours)}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=300, help="repetitions per measurement")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    outputs, quant = tiny_yolo_outputs(rng)
    verdicts = []

    print("tiny-YOLOv3 416 int8 outputs (1,13,13,255) + (1,26,26,255); ratio = baseline / yolo_tpu")
    for conf in (0.25, 0.001):
        boxes, scores, ids = decode_heads(outputs, quant, HEADS, NET, conf)
        nb, ns, ni = numpy_decode(outputs, quant, HEADS, NET, conf)
        kept = nms(boxes, scores, ids, IOU, max_det=len(boxes))
        same = (len(nb) == len(boxes) and set(kept.tolist()) == set(cv2_nms(boxes, scores, ids, IOU).tolist())
                and set(kept.tolist()) == set(numpy_nms(boxes, scores, ids, IOU).tolist()))
        t_dec = median_ms(lambda: decode_heads(outputs, quant, HEADS, NET, conf), args.reps)
        t_nms = median_ms(lambda: nms(boxes, scores, ids, IOU), args.reps)
        t_all = median_ms(lambda: nms(*decode_heads(outputs, quant, HEADS, NET, conf), IOU), args.reps)
        t_np_dec = median_ms(lambda: numpy_decode(outputs, quant, HEADS, NET, conf), args.reps)
        t_np_nms = median_ms(lambda: numpy_nms(boxes, scores, ids, IOU), args.reps)
        t_cv_nms = median_ms(lambda: cv2_nms(boxes, scores, ids, IOU), args.reps)
        table(f"\nconf {conf}: {len(boxes)} (box, class) rows, {len(kept)} kept (iou {IOU});"
              f" numpy and OpenCV agree: {'yes' if same else 'NO'}; median ms", [
                  ("decode", t_dec, t_np_dec, None),
                  ("nms (OpenCV: NMSBoxesBatched)", t_nms, t_np_nms, t_cv_nms),
                  ("decode + nms (OpenCV: numpy dec.)", t_all, t_np_dec + t_np_nms, t_np_dec + t_cv_nms),
              ])
        if conf == 0.25:
            verdicts.append((f"decode + NMS at conf 0.25: {t_all:.4f} ms <= {TARGET_MS} ms", t_all <= TARGET_MS))
        if not same:
            verdicts.append((f"conf {conf}: results agree with numpy and OpenCV", False))

    print("\nNMS on 10,000 random boxes (80 classes, sides 8-120 px in 416x416), iou 0.45")
    boxes, scores, ids = random_boxes(rng, 10_000)
    kept = nms(boxes, scores, ids, IOU, max_det=len(boxes))
    same = set(kept.tolist()) == set(cv2_nms(boxes, scores, ids, IOU).tolist())
    t_ours = median_ms(lambda: nms(boxes, scores, ids, IOU, max_det=len(boxes)), args.reps)
    t_cv = median_ms(lambda: cv2_nms(boxes, scores, ids, IOU), args.reps)
    t_ours_ag = median_ms(lambda: nms(boxes, scores, ids, IOU, agnostic=True, max_det=len(boxes)), args.reps)
    xywh = boxes.astype(np.float64)
    xywh[:, 2:] -= xywh[:, :2]
    t_cv_ag = median_ms(lambda: cv2.dnn.NMSBoxes(xywh, scores, 0.0, IOU), args.reps)
    table(f"  {len(kept)} kept; same set as OpenCV: {'yes' if same else 'NO'}; median ms", [
        ("per class (OpenCV: NMSBoxesBatched)", t_ours, None, t_cv),
        ("agnostic (OpenCV: NMSBoxes)", t_ours_ag, None, t_cv_ag),
    ])
    verdicts.append((f"NMS 10,000 boxes: {t_ours:.3f} ms <= OpenCV {t_cv:.3f} ms", t_ours <= t_cv and same))

    print()
    for text, ok in verdicts:
        print(f"{'PASS' if ok else 'FAIL'}: {text}")
    return 0 if all(ok for _, ok in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
