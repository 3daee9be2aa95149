"""What quantization cost: detections of a `.tflite` against the exact float model.

The reference is always the float model with darknet's arithmetic (leaky kept exact), so a
form that changes the arithmetic (`--leaky relu`) is charged for it too. Both sides go
through the runtime's own letterbox, decode and NMS, so the only difference left is the
model arithmetic. The images are ones the quantizer did not calibrate on.

Two figures: mAP@0.5 ranks the candidate's detections down to confidence 0.005, as mAP
evaluations do; fidelity counts what a user sees at the runtime's threshold (0.25): the
reference's detections matched by the candidate's (same class, IoU >= 0.5), as an F1
score. mAP alone overstates: a model whose scores all fall under 0.25 but keep their
order ranks well while showing the user nothing.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from yolo_tpu.detections import Detections
from yolo_tpu.detector import Detector, postprocess
from yolo_tpu.meta import ModelMeta
from yolo_tpu.metrics import iou_matrix, map50
from yolo_tpu.preprocess import letterbox
from yolo_tpu.sources import IMAGE_EXTENSIONS, is_video_name

from .calibration import DEFAULT_EVAL, SAMPLES, CalibrationError, expand, read_image

CONF, IOU = 0.25, 0.45  # the runtime's defaults: the reference's detections at these
# The candidate is scored over all its detections down to this confidence, as mAP
# evaluations do, so a score moving across 0.25 costs ranking, not a whole detection.
CANDIDATE_CONF = 0.005
# Default for `--min-fidelity`. Measured on the held-out photos (scripts/fidelity.py):
# the exact Edge TPU forms (addrelu, prelu) score 1.00 at 416x416 and 0.93 at 608x352;
# maximum 0.67 (416) and 0.40 (608x352); relu 0.00. 0.9 passes a model that loses one detection
# of ten and fails one that loses a fifth.
MIN_FIDELITY = 0.9
# A candidate detection shown at CONF counts as extra only when the exact float model has
# nothing of its class there even at this lower confidence: a score that merely crossed
# the threshold (float 0.24, int8 0.26) is the same detection, not one quantization made
# up. Measured: the default addrelu model's one "extra" on the held-out photos is such a
# crossing; with it counted, one more crossing would have failed --min-fidelity 0.9.
EXTRA_CONF = 0.1


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
        files = expand(eval_paths)
        for path in files:  # a fidelity figure over fewer images than asked misleads
            if is_video_name(path):
                raise CalibrationError(f"--eval {path}: a video; --eval takes images")
            if (problem := read_image(path)[1]) is not None:
                raise CalibrationError(f"--eval {path}: {problem}")
        return files
    if not calib:
        return list(DEFAULT_EVAL)
    used = {os.path.abspath(p) for p in expand(calib)}
    pool = sorted(os.path.join(SAMPLES, f) for f in os.listdir(SAMPLES)
                  if os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS)  # not photos.mp4
    return [p for p in pool if os.path.abspath(p) not in used]


def count_matched(candidates: Detections, reference: Detections, iou: float = 0.5) -> int:
    """Reference detections found by a candidate of the same class at IoU >= `iou`, each
    candidate used once (highest-scoring reference first)."""
    if not len(candidates) or not len(reference):
        return 0
    ious = iou_matrix(np.asarray(reference.xyxy), np.asarray(candidates.xyxy))
    ious[np.asarray(reference.class_ids)[:, None] != np.asarray(candidates.class_ids)[None]] = 0
    used = np.zeros(len(candidates), bool)
    matched = 0
    for row in np.argsort(-np.asarray(reference.scores), kind="stable"):
        score = np.where(used, 0.0, ious[row])
        j = int(np.argmax(score))
        if score[j] >= iou:
            used[j] = True
            matched += 1
    return matched


def count_extra(shown: Detections, reference_low: Detections) -> int:
    """Shown candidates that no reference detection of their class at IoU >= 0.5 explains,
    the reference taken down to EXTRA_CONF."""
    return len(shown) - count_matched(reference_low[reference_low.scores > EXTRA_CONF], shown)


@dataclass(frozen=True)
class Fidelity:
    """A candidate model against the exact float model on some images."""

    images: tuple[str, ...]
    reference: int  # the exact float model's detections at CONF
    candidates: int  # the candidate's detections at CONF
    matched: int  # reference detections the candidate finds at CONF
    map50: float  # candidate ranked down to CANDIDATE_CONF
    extra: int | None = None  # candidates at CONF the reference lacks even at EXTRA_CONF

    @property
    def score(self) -> float | None:
        """F1 of the matches at the runtime threshold; None when there is nothing to score."""
        if not self.reference:
            return None
        return 2 * self.matched / (self.reference + self.matched + self.unexplained)

    @property
    def unexplained(self) -> int:
        """Candidate detections the reference has nothing for (all unmatched ones if the
        low-threshold count was not taken)."""
        return self.candidates - self.matched if self.extra is None else self.extra

    def describe(self) -> str:
        on = (f"{len(self.images)} held-out image{'s' if len(self.images) != 1 else ''} "
              f"({', '.join(os.path.basename(p) for p in self.images)})")
        if self.score is None:
            return (f"fidelity: cannot score: the exact float model finds nothing on {on}; "
                    "pass --eval with images showing the model's classes")
        return (f"fidelity {self.score:.2f} against the exact float model on {on}: "
                f"{self.matched} of {self.reference} reference detections matched at conf "
                f"{CONF}, {self.unexplained} extra; mAP@0.5 {self.map50:.3f}")


def measure(reference_model, meta: ModelMeta, tflite_path: str, images: list[str]) -> Fidelity:
    """Run the `.tflite` and the exact float Keras model on `images` and compare."""
    detector = Detector(tflite_path, device="cpu", conf=CANDIDATE_CONF, iou=IOU)
    lows, preds, used = [], [], []
    for path in images:
        image, _ = read_image(path)
        if image is None:
            continue
        used.append(path)
        lows.append(keras_detect(reference_model, meta, image, conf=EXTRA_CONF))
        preds.append(detector(image))
    truths = [t[t.scores > CONF] for t in lows]
    shown = [p[p.scores > CONF] for p in preds]
    return Fidelity(tuple(used), sum(map(len, truths)), sum(map(len, shown)),
                    sum(count_matched(s, t) for s, t in zip(shown, truths)),
                    map50(preds, truths),
                    sum(count_extra(s, low) for s, low in zip(shown, lows)))


def quantization_cost(model, meta: ModelMeta, tflite_path: str,
                      images: list[str]) -> tuple[float, int, int]:
    """(mAP@0.5 of the tflite against `model`, reference detections, tflite detections)."""
    f = measure(model, meta, tflite_path, images)
    return f.map50, f.reference, f.candidates


def size_line(tflite_path: str, float_path: str) -> str:
    return (f"size {os.path.getsize(tflite_path) / 1e6:.2f} MB (float "
            f"{os.path.basename(float_path)}: {os.path.getsize(float_path) / 1e6:.2f} MB)")
