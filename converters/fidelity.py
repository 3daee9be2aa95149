"""How close each model form comes to darknet's own detections (and to the float model).

Darknet's `detector test` pipeline, run through libdarknet on the same photos, is the
ground truth; each `.tflite` form runs through the runtime's `Detector`. Shared by the
fidelity tests and `scripts/fidelity.py`, so the README's table and the tests measure the
same thing.
"""
from __future__ import annotations

import numpy as np

from yolo_tpu.detections import Detections
from yolo_tpu.detector import Detector
from yolo_tpu.metrics import map50

from .accuracy import CANDIDATE_CONF, CONF, IOU


def darknet_detections(cfg: str, weights: str, images: list[str],
                       names: tuple[str, ...] = (), ref=None) -> list[Detections]:
    """Darknet's detections (thresh 0.25, NMS 0.45) for each image, as Detections; `ref`
    is the darknet build (darknet_ref.DEBIAN by default, ALEXEYAB for its models)."""
    from .darknet_ref import DEBIAN, Darknet
    result = []
    with Darknet(cfg, weights, ref or DEBIAN) as dn:
        for path in images:
            dets = dn.detect(path, CONF, IOU)
            result.append(Detections.from_arrays(
                np.array([d.box for d in dets], np.float32).reshape(-1, 4),
                np.array([d.score for d in dets], np.float32),
                np.array([d.class_id for d in dets], np.int32), names))
    return result


def model_detections(model: str, images: list[str], conf: float = CANDIDATE_CONF) -> list[Detections]:
    import cv2
    detector = Detector(model, "cpu", conf=conf, iou=IOU)
    return [detector(cv2.imread(p)) for p in images]


def agreement(model: str, truths: list[Detections], images: list[str],
              conf: float = CANDIDATE_CONF) -> float:
    """mAP@0.5 of `model`'s detections (down to `conf`) with `truths` (one per image) as
    ground truth."""
    return map50(model_detections(model, images, conf), truths)
