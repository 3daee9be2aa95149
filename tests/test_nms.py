"""nms() against OpenCV's NMSBoxesBatched / NMSBoxes on random boxes."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from yolo_tpu.nms import nms


def _random_boxes(rng: np.random.Generator, n: int, extent: float, max_side: float, classes: int):
    """Boxes (x1 y1 x2 y2) with positive area, distinct scores in (0.01, 1), class ids."""
    xy = rng.uniform(0, extent, (n, 2))
    wh = rng.uniform(1.0, max_side, (n, 2))
    boxes = np.hstack([xy, xy + wh]).astype(np.float32)
    scores = rng.uniform(0.01, 1.0, n).astype(np.float32)
    # distinct scores: greedy NMS is only defined up to the order of ties
    while len(np.unique(scores)) < n:
        scores = rng.uniform(0.01, 1.0, n).astype(np.float32)
    class_ids = rng.integers(0, classes, n).astype(np.int32)
    return boxes, scores, class_ids


def _xywh(boxes: np.ndarray) -> np.ndarray:
    # OpenCV takes Rect2d (x, y, w, h); float64 so it sees exactly our float32 corners
    b = boxes.astype(np.float64)
    return np.hstack([b[:, :2], b[:, 2:] - b[:, :2]])


def _cv2_batched(boxes, scores, class_ids, iou):
    # score_threshold 0: every score here is > 0, so OpenCV filters nothing
    return np.asarray(cv2.dnn.NMSBoxesBatched(_xywh(boxes), scores, class_ids, 0.0, iou), np.int64).ravel()


def _cv2_agnostic(boxes, scores, iou):
    return np.asarray(cv2.dnn.NMSBoxes(_xywh(boxes), scores, 0.0, iou), np.int64).ravel()


# (n boxes, extent, max side, classes, iou): sparse to very dense, 1 to 80 classes
CASES = [
    (20, 100.0, 40.0, 1, 0.5),
    (200, 416.0, 80.0, 3, 0.45),
    (500, 100.0, 60.0, 5, 0.45),   # dense: most boxes overlap something
    (1000, 416.0, 30.0, 80, 0.45),
    (300, 50.0, 50.0, 2, 0.7),
    (300, 416.0, 120.0, 10, 0.3),
    (50, 20.0, 20.0, 4, 0.1),
]


@pytest.mark.parametrize("seed", range(50))
def test_matches_opencv_batched(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, extent, side, classes, iou = CASES[seed % len(CASES)]
    boxes, scores, class_ids = _random_boxes(rng, n, extent, side, classes)
    kept = nms(boxes, scores, class_ids, iou, max_det=n)
    ref = _cv2_batched(boxes, scores, class_ids, iou)
    assert kept.dtype == np.int64
    assert set(kept.tolist()) == set(ref.tolist())
    assert 0 < len(kept) <= n
    assert np.all(np.diff(scores[kept]) < 0), "not in descending score order"
    # OpenCV's order is by score too, so the lists are equal, not only the sets
    np.testing.assert_array_equal(kept, ref)


@pytest.mark.parametrize("seed", range(20))
def test_agnostic_matches_opencv_nmsboxes(seed: int) -> None:
    rng = np.random.default_rng(1000 + seed)
    n, extent, side, classes, iou = CASES[seed % len(CASES)]
    boxes, scores, class_ids = _random_boxes(rng, n, extent, side, max(classes, 3))
    kept = nms(boxes, scores, class_ids, iou, agnostic=True, max_det=n)
    np.testing.assert_array_equal(kept, _cv2_agnostic(boxes, scores, iou))
    # class_ids=None means agnostic too
    np.testing.assert_array_equal(nms(boxes, scores, None, iou, max_det=n), kept)


def test_per_class_is_not_agnostic() -> None:
    # two identical boxes: different classes both survive, the same class keeps the better one
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10]], np.float32)
    scores = np.array([0.6, 0.9], np.float32)
    assert nms(boxes, scores, np.array([0, 1]), 0.5).tolist() == [1, 0]
    assert nms(boxes, scores, np.array([2, 2]), 0.5).tolist() == [1]
    assert nms(boxes, scores, np.array([0, 1]), 0.5, agnostic=True).tolist() == [1]


def test_iou_threshold_is_strict_and_uses_plain_areas() -> None:
    # IoU of these two is 50 / 150 = 1/3 with w*h areas (with +1 areas it would be 66/187)
    boxes = np.array([[0, 0, 10, 10], [5, 0, 15, 10]], np.float32)
    scores = np.array([0.9, 0.8], np.float32)
    ids = np.zeros(2, np.int32)
    assert nms(boxes, scores, ids, 0.34).tolist() == [0, 1]
    assert nms(boxes, scores, ids, 0.33).tolist() == [0]
    assert nms(boxes, scores, ids, 0.36).tolist() == _cv2_batched(boxes, scores, ids, 0.36).tolist()
    assert nms(boxes, scores, ids, 0.33).tolist() == _cv2_batched(boxes, scores, ids, 0.33).tolist()


@pytest.mark.parametrize("seed", range(5))
def test_max_det_keeps_the_best(seed: int) -> None:
    rng = np.random.default_rng(2000 + seed)
    boxes, scores, class_ids = _random_boxes(rng, 400, 416.0, 40.0, 5)
    full = nms(boxes, scores, class_ids, 0.45, max_det=10_000)
    assert len(full) > 50
    for k in (1, 7, 50):
        np.testing.assert_array_equal(nms(boxes, scores, class_ids, 0.45, max_det=k), full[:k])
    assert len(nms(boxes, scores, class_ids, 0.45, max_det=0)) == 0
    assert len(nms(boxes, scores, class_ids, 0.45)) == min(300, len(full))  # default max_det


def test_sparse_and_negative_class_ids() -> None:
    # ids far apart take the merge-sort path; negative ids are just another class
    rng = np.random.default_rng(7)
    boxes, scores, _ = _random_boxes(rng, 300, 100.0, 50.0, 1)
    class_ids = rng.choice(np.array([-5, 0, 10**6, 2 * 10**9], np.int64), 300).astype(np.int32)
    dense = np.unique(class_ids, return_inverse=True)[1].astype(np.int32)
    kept = nms(boxes, scores, class_ids, 0.45, max_det=300)
    np.testing.assert_array_equal(kept, nms(boxes, scores, dense, 0.45, max_det=300))
    np.testing.assert_array_equal(kept, _cv2_batched(boxes, scores, dense, 0.45))


def test_ties_keep_input_order() -> None:
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [50, 50, 60, 60]], np.float32)
    scores = np.array([0.5, 0.5, 0.5], np.float32)
    assert nms(boxes, scores, np.zeros(3), 0.5).tolist() == [0, 2]


def test_empty_input() -> None:
    kept = nms(np.empty((0, 4), np.float32), np.empty(0, np.float32), np.empty(0, np.int32), 0.45)
    assert kept.dtype == np.int64 and kept.shape == (0,)
    assert nms(np.empty((0, 4)), np.empty(0), None, 0.45, agnostic=True).shape == (0,)


def test_mismatched_lengths_raise() -> None:
    with pytest.raises(ValueError):
        nms(np.zeros((3, 4)), np.zeros(2), np.zeros(3), 0.5)
    with pytest.raises(ValueError):
        nms(np.zeros((3, 4)), np.zeros(3), np.zeros(2), 0.5)


def _diou_reference(boxes, scores, class_ids, thr, beta, sx, sy):
    """darknet's diounms_sort transcribed: per class, by score, suppress when
    IoU - (d / c)^beta > thr on boxes scaled by (sx, sy)."""
    b = boxes.astype(np.float64) * [sx, sy, sx, sy]
    keep = []
    for c in np.unique(class_ids):
        kept: list[int] = []
        for i in sorted(np.nonzero(class_ids == c)[0], key=lambda i: -scores[i]):
            ok = True
            for k in kept:
                iw = min(b[i, 2], b[k, 2]) - max(b[i, 0], b[k, 0])
                ih = min(b[i, 3], b[k, 3]) - max(b[i, 1], b[k, 1])
                inter = max(iw, 0) * max(ih, 0)
                area = lambda j: (b[j, 2] - b[j, 0]) * (b[j, 3] - b[j, 1])  # noqa: E731
                iou = inter / (area(i) + area(k) - inter)
                cw = max(b[i, 2], b[k, 2]) - min(b[i, 0], b[k, 0])
                ch = max(b[i, 3], b[k, 3]) - min(b[i, 1], b[k, 1])
                d = ((b[i, 0] + b[i, 2] - b[k, 0] - b[k, 2]) ** 2
                     + (b[i, 1] + b[i, 3] - b[k, 1] - b[k, 3]) ** 2) / 4
                if iou - (d / (cw * cw + ch * ch)) ** beta > thr:
                    ok = False
                    break
            if ok:
                kept.append(i)
        keep += kept
    return sorted(keep, key=lambda i: -scores[i])


@pytest.mark.parametrize("kind,beta", [("greedynms", 0.6), ("diounms", 0.6), ("diounms", 1.0)])
def test_diou_kinds_match_darknets_rule(kind, beta):
    rng = np.random.default_rng(11)
    boxes, scores, class_ids = _random_boxes(rng, 300, 200.0, 80.0, 3)
    sx, sy = 1 / 640, 1 / 360  # DIoU is measured in image-relative coordinates
    ours = nms(boxes, scores, class_ids, 0.45, max_det=1000, kind=kind, beta=beta,
               xy_scale=(sx, sy))
    ref = _diou_reference(boxes, scores, class_ids, 0.45, 0.6 if kind == "greedynms" else beta,
                          sx, sy)
    assert ours.tolist() == ref
    plain = nms(boxes, scores, class_ids, 0.45, max_det=1000)
    assert len(ours) > len(plain)  # DIoU suppresses less than IoU: a real difference


def test_diou_two_boxes_by_hand():
    """IoU 0.5 > 0.45, but centres apart: DIoU = 0.5 - (d/c)^0.6 < 0.45 keeps both."""
    boxes = np.array([[0, 0, 10, 10], [0, 3.333, 10, 13.333]], np.float32)
    scores = np.array([0.9, 0.8], np.float32)
    assert nms(boxes, scores, None, 0.45).tolist() == [0]
    assert nms(boxes, scores, None, 0.45, kind="greedynms").tolist() == [0, 1]
    with pytest.raises(ValueError, match="nms kind"):
        nms(boxes, scores, None, 0.45, kind="soft")
