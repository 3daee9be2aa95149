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

from .calibration import DEFAULT_CALIB, DEFAULT_EVAL, SAMPLES, CalibrationError, expand, read_image

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


# A fidelity on fewer reference detections than this cannot fail a conversion by itself:
# one detection (or one score crossing 0.25) moves F1 by about 1/n, so below 20 a single
# box costs more than 0.05, half the gap between a perfect model and --min-fidelity 0.9.
MIN_REFERENCE = 20
# With --calib and no --eval, every HOLD_OUT-th of the user's photos (sorted, from the
# first) judges the int8 model and is not calibrated on.
HOLD_OUT = 4
COCO_NAMES = os.path.join(os.path.dirname(SAMPLES), "cfg", "coco.names")


def is_coco(names: tuple[str, ...], classes: int) -> bool:
    """Whether the model detects COCO's classes: its names are coco.names (or, without
    names, it has COCO's 80 classes). Only such a model can be judged on the bundled photos."""
    if not names:
        return classes == 80
    with open(COCO_NAMES, encoding="utf-8") as f:
        return tuple(line.strip() for line in f if line.strip()) == tuple(names)


def split_images(calib: list[str] | None, eval_paths: list[str] | None,
                 coco: bool) -> tuple[list[str], list[str]]:
    """(calibration files, fidelity images). Explicit --eval images judge; else with --calib
    a deterministic part of the user's own photos is held out (never calibrated on); else
    the bundled photos not used for calibration judge, for a COCO model only."""
    if eval_paths:
        files = expand(eval_paths)
        for path in files:  # a fidelity figure over fewer images than asked misleads
            if is_video_name(path):
                raise CalibrationError(f"--eval {path}: a video; --eval takes images")
            if (problem := read_image(path)[1]) is not None:
                raise CalibrationError(f"--eval {path}: {problem}")
        return (expand(calib) if calib else list(DEFAULT_CALIB)), files
    if not calib:
        return list(DEFAULT_CALIB), (list(DEFAULT_EVAL) if coco else [])
    files = expand(calib)
    photos = [p for p in files if os.path.splitext(p)[1].lower() in IMAGE_EXTENSIONS]
    held = photos[::HOLD_OUT] if len(photos) >= 2 else []
    return [p for p in files if p not in held], held


def no_fidelity_reason(calib: list[str] | None, coco: bool) -> str:
    """Why there is no fidelity figure (split_images gave no images)."""
    if not calib and not coco:
        return ("fidelity: cannot judge: the bundled photos show COCO's classes, not this "
                "model's; pass --calib (or --eval) with images of your model's subjects")
    return "fidelity: no held-out images (pass --eval, or two or more photos to --calib)"


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

    @property
    def lost(self) -> int:
        return self.reference - self.matched

    @property
    def judged(self) -> bool:
        """Enough reference detections for the score to judge the model (MIN_REFERENCE)."""
        return self.reference >= MIN_REFERENCE

    def fails(self, min_fidelity: float) -> bool:
        """Below `min_fidelity` beyond doubt: with enough reference detections, or with so
        many lost and extra that the score stays below even if the detections missing to
        MIN_REFERENCE were all matched."""
        if self.score is None or self.score >= min_fidelity:
            return False
        if self.judged:
            return True
        pad = MIN_REFERENCE - self.reference
        padded = 2 * (self.matched + pad) / (MIN_REFERENCE + self.matched + pad
                                              + self.unexplained)
        return padded < min_fidelity

    def describe(self) -> str:
        on = (f"{len(self.images)} held-out image{'s' if len(self.images) != 1 else ''} "
              f"({', '.join(os.path.basename(p) for p in self.images)})")
        if self.score is None:
            return (f"fidelity: cannot score: the exact float model finds nothing on {on}; "
                    "pass --eval with images showing the model's classes")
        text = (f"fidelity {self.score:.2f} against the exact float model on {on}: "
                f"{self.matched} of {self.reference} reference detections matched at conf "
                f"{CONF}, {self.unexplained} extra; mAP@0.5 {self.map50:.3f}")
        if not self.judged:
            text += (f"; too few to judge ({self.reference} reference detections, at least "
                     f"{MIN_REFERENCE} needed: pass --eval with more images of your "
                     "model's subjects)")
        return text


def measure(reference_model, meta: ModelMeta, tflite_path: str, images: list[str]) -> Fidelity:
    """Run the `.tflite` and the exact float Keras model on `images` and compare."""
    from .progress import step
    step(f"scoring the int8 model against the float model on {len(images)} images (the "
         "first run after an install also compiles the detection kernels, 10-30 s)")
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
