"""mAP@0.5 on a darknet project's `valid` list, as AlexeyAB's `darknet detector map` computes it.

validate_detector_map (src/detector.c), with its defaults (`-points 0`, `-iou_thresh 0.5`):

- each image resized as the detector does (stretched, or letterboxed with `letter_box=1`);
  boxes from get_network_boxes at conf 0.005 (a cell's objectness > 0.005, each class whose
  objectness x class probability > 0.005 is a (box, class) row), then the cfg's NMS at 0.45
  (do_nms_sort per class, or the DIoU kinds); boxes in image-relative coordinates, not
  clipped (the letterbox is undone with darknet's float offset, (net - new) / 2);
- each row is matched to the truth of its class with the largest IoU > 0.5 (strictly), taken
  or not: ranked over all images by score, a row whose truth an earlier row took is a false
  positive (VOC's rule, not COCO's "best free truth");
- AP per class is the area under the precision envelope at every recall step ("Area Under
  Curve for each unique Recall"; `-points 11` / `101` sample 11 or 101 recall points);
- mAP is the mean over **all** the model's classes: a class without a labelled object in the
  list has AP 0 and still counts, as darknet counts it.

The only difference left against darknet is image decoding (compare on PNGs: JPEG decoders
differ by a few levels a pixel) and float rounding.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from yolo_tpu.decode import decode_heads
from yolo_tpu.meta import ModelMeta
from yolo_tpu.nms import nms
from yolo_tpu.preprocess import Letterbox, letterbox

from .darknet_data import DataError, Labels, Project, image_list, read_labels

THRESH = 0.005  # validate_detector_map's const thresh
NMS = 0.45  # and its const nms
IOU_THRESH = 0.5  # -iou_thresh default
POINTS = 0  # -points default: area under the curve


@dataclass(frozen=True)
class ImageDetections:
    """darknet's (box, class) rows of one image after NMS: x, y, w, h relative to the image."""

    xywh: np.ndarray  # (N, 4)
    scores: np.ndarray  # (N,)
    class_ids: np.ndarray  # (N,)


def darknet_rows(outputs: list[np.ndarray], quant: list, meta: ModelMeta,
                 box: Letterbox) -> ImageDetections:
    """Raw heads -> the rows get_network_boxes + NMS give validate_detector_map."""
    boxes, scores, class_ids = decode_heads(outputs, quant, meta.heads,
                                            (meta.width, meta.height), THRESH)
    keep = nms(boxes, scores, class_ids, NMS, max_det=max(1, len(scores)),
               kind=meta.nms_kind, beta=meta.beta_nms,
               xy_scale=(1.0 / box.new_w, 1.0 / box.new_h))
    b = boxes[keep].astype(np.float64)
    # correct_yolo_boxes: (x - (net - new) / 2) / new, with the float half offset
    dx, dy = (meta.width - box.new_w) / 2.0, (meta.height - box.new_h) / 2.0
    cx = ((b[:, 0] + b[:, 2]) / 2 - dx) / box.new_w
    cy = ((b[:, 1] + b[:, 3]) / 2 - dy) / box.new_h
    w, h = (b[:, 2] - b[:, 0]) / box.new_w, (b[:, 3] - b[:, 1]) / box.new_h
    return ImageDetections(np.stack([cx, cy, w, h], axis=1).reshape(-1, 4),
                           scores[keep].astype(np.float64), class_ids[keep].astype(np.int64))


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """darknet's box_iou for every pair of center boxes a (N, 4) and b (M, 4)."""
    ax1, ax2 = a[:, None, 0] - a[:, None, 2] / 2, a[:, None, 0] + a[:, None, 2] / 2
    ay1, ay2 = a[:, None, 1] - a[:, None, 3] / 2, a[:, None, 1] + a[:, None, 3] / 2
    bx1, bx2 = b[None, :, 0] - b[None, :, 2] / 2, b[None, :, 0] + b[None, :, 2] / 2
    by1, by2 = b[None, :, 1] - b[None, :, 3] / 2, b[None, :, 1] + b[None, :, 3] / 2
    iw = np.minimum(ax2, bx2) - np.maximum(ax1, bx1)
    ih = np.minimum(ay2, by2) - np.maximum(ay1, by1)
    inter = np.where((iw > 0) & (ih > 0), iw * ih, 0.0)
    union = a[:, None, 2] * a[:, None, 3] + b[None, :, 2] * b[None, :, 3] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def average_precisions(detections: Sequence[ImageDetections], truths: Sequence[Labels],
                       classes: int, iou_thresh: float = IOU_THRESH,
                       points: int = POINTS) -> np.ndarray:
    """AP per class, validate_detector_map's counting and curve (see the module docstring)."""
    probs, cls_of, truth_of = [], [], []
    offset = 0  # unique_truth_count: truths are numbered over all images
    for dets, truth in zip(detections, truths):
        ious = box_iou(dets.xywh, truth.xywh.astype(np.float64)) if len(truth.class_ids) \
            else np.zeros((len(dets.scores), 0))
        same = dets.class_ids[:, None] == truth.class_ids[None, :]
        ious = np.where(same & (ious > iou_thresh), ious, 0.0)
        best = np.argmax(ious, axis=1) if ious.shape[1] else np.zeros(len(dets.scores), int)
        found = ious[np.arange(len(best)), best] > 0 if ious.shape[1] else \
            np.zeros(len(best), bool)
        probs.append(dets.scores)
        cls_of.append(dets.class_ids)
        truth_of.append(np.where(found, best + offset, -1))
        offset += len(truth.class_ids)
    counts = np.bincount(np.concatenate([t.class_ids for t in truths]).astype(np.int64),
                         minlength=classes)[:classes] if truths else np.zeros(classes, int)
    if not probs or not sum(len(p) for p in probs):
        return np.zeros(classes)
    p, c, t = (np.concatenate(x) for x in (probs, cls_of, truth_of))
    order = np.argsort(-p, kind="stable")  # detections_comparator, descending
    c, t = c[order], t[order]
    # a row is a true positive if its truth is not taken by an earlier (higher) row
    tp = np.zeros(len(t), bool)
    taken = np.zeros(offset, bool)
    for rank in np.nonzero(t >= 0)[0]:
        if not taken[t[rank]]:
            taken[t[rank]] = tp[rank] = True
    aps = np.zeros(classes)
    for k in range(classes):
        mine = c == k
        tp_cum = np.cumsum(mine & tp)
        fp_cum = np.cumsum(mine & ~tp)
        seen = tp_cum + fp_cum
        precision = np.where(seen > 0, tp_cum / np.maximum(seen, 1), 0.0)
        recall = tp_cum / counts[k] if counts[k] else np.zeros(len(tp_cum))
        aps[k] = _curve_area(precision, recall, points)
    return aps


def _curve_area(precision: np.ndarray, recall: np.ndarray, points: int) -> float:
    """validate_detector_map's AP of one class from its precision/recall at every rank."""
    if points == 0:
        # backwards over the ranks: delta recall times the best precision from that rank on
        envelope = np.maximum.accumulate(precision[::-1])[::-1]
        area = float(np.sum((recall[1:] - recall[:-1]) * envelope[:-1]))
        return area + float(recall[0] * envelope[0])
    total = 0.0
    for point in range(points):
        reached = recall >= point / (points - 1)
        total += float(precision[reached].max()) if reached.any() else 0.0
    return total / points


Runner = Callable[[np.ndarray], ImageDetections]


def keras_runner(model, meta: ModelMeta) -> Runner:
    """The float Keras model, fed as the runtime feeds it."""
    from .keras_model import predict

    def run(image_bgr: np.ndarray) -> ImageDetections:
        tensor, box = letterbox(image_bgr, meta.width, meta.height, np.float32,
                                stretch=not meta.letter_box)
        outs = predict(model, tensor)
        return darknet_rows(outs, [None] * len(outs), meta, box)
    return run


def tflite_runner(path: str) -> Runner:
    """A `.tflite` through the runtime's Detector (its preprocessing and input type)."""
    from yolo_tpu.detector import Detector
    detector = Detector(path, device="cpu", conf=THRESH, iou=NMS)

    def run(image_bgr: np.ndarray) -> ImageDetections:
        tensor, box = detector.preprocess(image_bgr)
        return darknet_rows(detector.infer(tensor), detector.head_quantization,
                            detector.meta, box)
    return run


def validation_set(project: Project, classes: int) -> tuple[list[str], list[Labels]]:
    """The `valid` list's images and their labels, all checked before any model runs."""
    if project.classes is not None and project.classes != classes:
        raise DataError(f"{project.path}: classes={project.classes}, but the model has "
                        f"{classes} classes")
    if project.names and len(project.names) != classes:
        raise DataError(f"{project.names_path}: {len(project.names)} names for a "
                        f"{classes}-class model")
    paths = image_list(project, "valid")
    return paths, [read_labels(p, classes) for p in paths]


def evaluate(project: Project, meta: ModelMeta, runners: dict[str, Runner],
             progress: bool = True) -> dict:
    """The report's `map50` entry: darknet's mAP@0.5 of each runner ("float", "int8") on
    the valid list, overall and per class name."""
    classes = meta.classes
    paths, truths = validation_set(project, classes)
    names = project.names or meta.names or tuple(str(i) for i in range(classes))
    detections: dict[str, list[ImageDetections]] = {k: [] for k in runners}
    from .progress import progress as report
    for path in report(paths, len(paths), "mAP@0.5 on the valid list", enabled=progress):
        image = cv2.imread(path, cv2.IMREAD_COLOR)
        if image is None:
            raise DataError(f"{path}: not a readable image (listed in {project.valid})")
        for key, run in runners.items():
            detections[key].append(run(image))
    aps = {k: average_precisions(d, truths, classes) for k, d in detections.items()}
    return {**{k: float(a.mean()) for k, a in aps.items()},
            "images": len(paths), "boxes": int(sum(len(t.class_ids) for t in truths)),
            "per_class": {name: {k: float(a[i]) for k, a in aps.items()}
                          for i, name in enumerate(names)}}


def describe(result: dict) -> list[str]:
    """Report lines: overall figures, then the classes int8 costs most."""
    kinds = [k for k in ("float", "int8") if k in result]
    head = ", ".join(f"{k} {result[k]:.3f}" for k in kinds)
    lines = [f"mAP@0.5 (darknet detector map's rule) on {result['images']} valid images, "
             f"{result['boxes']} labelled boxes: {head}"]
    if "float" in result and "int8" in result:
        worst = sorted(result["per_class"].items(),
                       key=lambda kv: kv[1]["int8"] - kv[1]["float"])[:3]
        lost = [f"{n} {v['float']:.3f} -> {v['int8']:.3f}" for n, v in worst
                if v["int8"] < v["float"] - 0.005]
        if lost:
            lines.append("  classes int8 costs most: " + "; ".join(lost))
    return lines
