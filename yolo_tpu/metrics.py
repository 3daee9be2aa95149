"""Agreement between two detectors as mAP@0.5, one of them taken as ground truth.

Used to measure what conversion and quantization cost against darknet or the float model.
VOC-style all-point interpolated AP per class, averaged over the classes the reference
detects (as VOC and COCO do). Give the candidate's detections at a low confidence
threshold: AP ranks them by score, so a box the reference keeps at 0.26 and the candidate
scores 0.24 is a small ranking cost, not a miss.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in `a` (N, 4) with every box in `b` (M, 4), x1 y1 x2 y2."""
    tl = np.maximum(a[:, None, :2], b[None, :, :2])
    br = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(br - tl, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
    """Area under the precision envelope (VOC 2010+ all-point interpolation)."""
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.concatenate([[0.0], precision, [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]
    steps = np.nonzero(r[1:] != r[:-1])[0]
    return float(np.sum((r[steps + 1] - r[steps]) * p[steps + 1]))


def map50(predictions: Sequence, truths: Sequence, iou_threshold: float = 0.5) -> float:
    """Mean AP over images; each item has `xyxy`, `scores`, `class_ids` (e.g. Detections).

    Returns 1.0 when the reference detects nothing (nothing to disagree about).
    """
    if len(predictions) != len(truths):
        raise ValueError("one prediction set per ground-truth set")
    classes = set()
    for d in truths:
        classes.update(int(c) for c in d.class_ids)
    if not classes:
        return 1.0
    aps = []
    for cls in sorted(classes):
        scores, hits, n_truth = [], [], 0
        for pred, truth in zip(predictions, truths):
            t = np.asarray(truth.xyxy)[np.asarray(truth.class_ids) == cls]
            sel = np.asarray(pred.class_ids) == cls
            p, s = np.asarray(pred.xyxy)[sel], np.asarray(pred.scores)[sel]
            n_truth += len(t)
            order = np.argsort(-s, kind="stable")
            taken = np.zeros(len(t), bool)
            ious = iou_matrix(p[order], t) if len(t) and len(p) else np.zeros((len(p), 0))
            for row, k in enumerate(order):
                scores.append(s[k])
                # the best truth not yet matched (COCO's rule): with VOC's "best truth,
                # else a false positive", two near-identical truths (boxes clipped to the
                # same image edges) can hand both predictions the same one
                free = np.where(taken, -1.0, ious[row]) if ious.shape[1] else ious[row]
                j = int(np.argmax(free)) if ious.shape[1] else -1
                hit = j >= 0 and free[j] >= iou_threshold
                if hit:
                    taken[j] = True
                hits.append(hit)
        order = np.argsort(-np.asarray(scores), kind="stable")
        tp = np.cumsum(np.asarray(hits, float)[order]) if hits else np.zeros(0)
        fp = np.cumsum(1.0 - np.asarray(hits, float)[order]) if hits else np.zeros(0)
        recall = tp / n_truth
        precision = tp / np.maximum(tp + fp, 1e-12)
        aps.append(average_precision(recall, precision))
    return float(np.mean(aps))
