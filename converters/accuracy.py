"""What quantization cost: detections of a `.tflite` against the float Keras model.

Both go through the runtime's own letterbox, decode and NMS, so the only difference left is
the model arithmetic. The images are ones the quantizer did not calibrate on.
"""
from __future__ import annotations

import os

import cv2
import numpy as np

from yolo_tpu.detections import Detections
from yolo_tpu.detector import Detector, postprocess
from yolo_tpu.meta import ModelMeta
from yolo_tpu.metrics import map50
from yolo_tpu.preprocess import letterbox

from .calibration import DEFAULT_CALIB, DEFAULT_EVAL, SAMPLES, expand

CONF, IOU = 0.25, 0.45  # the runtime's defaults: the reference's detections at these
# The candidate is scored over all its detections down to this confidence, as mAP
# evaluations do, so a score moving across 0.25 costs ranking, not a whole detection.
CANDIDATE_CONF = 0.005


def keras_detect(model, meta: ModelMeta, image_bgr: np.ndarray, conf: float = CONF,
                 iou: float = IOU) -> Detections:
    """Float reference detections from the Keras model."""
    from .keras_model import predict
    tensor, box = letterbox(image_bgr, meta.width, meta.height, np.float32,
                            stretch=not meta.letter_box)
    outs = predict(model, tensor)
    return postprocess(outs, [None] * len(outs), meta, box, conf, iou)


def eval_images(calib: list[str] | None, eval_paths: list[str] | None) -> list[str]:
    """Explicit --eval images, else the bundled photos not used for calibration."""
    if eval_paths:
        return expand(eval_paths)
    if not calib:
        return list(DEFAULT_EVAL)
    used = {os.path.abspath(p) for p in expand(calib)}
    pool = sorted(os.path.join(SAMPLES, f) for f in os.listdir(SAMPLES))
    return [p for p in pool if os.path.abspath(p) not in used]


def quantization_cost(model, meta: ModelMeta, tflite_path: str,
                      images: list[str]) -> tuple[float, int, int]:
    """(mAP@0.5 of the tflite against the float model, float detections, tflite detections).

    Detection counts are at the runtime's default confidence.
    """
    detector = Detector(tflite_path, device="cpu", conf=CANDIDATE_CONF, iou=IOU)
    truths, preds = [], []
    for path in images:
        image = cv2.imread(path)
        if image is None:
            continue
        truths.append(keras_detect(model, meta, image))
        preds.append(detector(image))
    kept = sum(int((p.scores > CONF).sum()) for p in preds)
    return map50(preds, truths), sum(map(len, truths)), kept


def report_quantization_cost(model, meta: ModelMeta, tflite_path: str, float_path: str,
                             calib: list[str] | None, eval_paths: list[str] | None) -> str:
    images = eval_images(calib, eval_paths)
    if not images:
        return "quantization cost: no held-out images to measure on (pass --eval)"
    score, n_float, n_quant = quantization_cost(model, meta, tflite_path, images)
    return (f"quantization cost on {len(images)} held-out images "
            f"({', '.join(os.path.basename(p) for p in images)}): mAP@0.5 {score:.3f} against "
            f"the float model ({n_float} float detections, {n_quant} quantized); "
            f"size {os.path.getsize(tflite_path) / 1e6:.2f} MB "
            f"(float {os.path.basename(float_path)}: {os.path.getsize(float_path) / 1e6:.2f} MB)")
