"""`--leaky auto`: of the exact Edge TPU forms of leaky, the one whose int8 model keeps the
exact float model's detections best on the user's own images.

Measured on the real trained models (README, "Real trained models"): addrelu (0.1x +
relu(0.9x)) keeps darknet's detections on three of the four (mAP@0.5 0.989-1.000), where
prelu ties or loses (Yolo-Fastest 0.973); on the custom 10-class yolov4-tiny addrelu's
extra roundings cost 0.938 and prelu's single rounding keeps 0.997. No statistic of the
layers told which form a model wants (the head-error measure picked prelu for Yolo-Fastest
too), so the choice is made the way the result is judged: the int8 model's detections
against the exact float model's, ranked as mAP@0.5 (then F1 at conf 0.25).

On which images: every photo the user gave, the calibrated-on ones included. Both forms are
calibrated on the same photos, so neither gains from that; the held-out quarter alone is
too small to tell forms apart (7-11 reference detections on the real models, where the
forms differ by one or two). The fidelity report is still judged on the held-out photos.

The second form costs a second calibration, so it is tried only when the first keeps less
than KEEP of the float model's detections and the photos show at least MIN_REFERENCE
(too few cannot tell forms apart either).
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass

from yolo_tpu.sources import IMAGE_EXTENSIONS

from .accuracy import MIN_REFERENCE, Fidelity, measure
from .darknet import Converted, exact_reference
from .leaky import AUTO_FORMS

# The first form at or above this mAP@0.5 against the float model is kept without trying
# another: the forms that pass it on the real models are within 0.005 of the best form.
KEEP = 0.99
MAX_IMAGES = 40  # photos scored per form, spread evenly over the user's (sorted)


@dataclass(frozen=True)
class Trial:
    """One form's int8 conversion: the model as built, the equalized one it was quantized
    from, the `.tflite` bytes, and its fidelity to the exact float model (None: unscored)."""
    leaky: str
    converted: Converted
    equalized: Converted
    data: bytes
    fidelity: Fidelity | None = None


@dataclass(frozen=True)
class Choice:
    trial: Trial                        # the form kept
    tried: tuple[Trial, ...]            # every form converted, in order
    images: tuple[str, ...] = ()
    reason: str = ""

    @property
    def scores(self) -> dict[str, float]:
        """Form -> mAP@0.5 against the float model, for every form scored."""
        return {t.leaky: t.fidelity.map50 for t in self.tried if t.fidelity is not None}

    def describe(self) -> str:
        """The summary's line: the form kept and the figures it was kept on."""
        if not self.scores:
            return f"leaky: {self.trial.leaky} (auto: {self.reason})"
        figures = ", ".join(f"{k} {v:.3f}" for k, v in self.scores.items())
        return (f"leaky: {self.trial.leaky} (auto: mAP@0.5 against the float model on "
                f"{len(self.images)} of your photos, calibration ones included: {figures}"
                f"{'; ' + self.reason if self.reason else ''})")

    def to_json(self) -> dict:
        first = self.tried[0].fidelity
        return {"form": self.trial.leaky, "auto": True, "images": len(self.images),
                "reference": first.reference if first else 0,
                "map50": self.scores, "reason": self.reason}


def choice_images(calib_files: list[str], eval_files: list[str]) -> list[str]:
    """The user's photos (calibration and held-out; videos skipped), at most MAX_IMAGES
    spread evenly over them in sorted order."""
    photos = sorted({p for p in [*calib_files, *eval_files]
                     if os.path.splitext(p)[1].lower() in IMAGE_EXTENSIONS})
    if len(photos) > MAX_IMAGES:
        photos = [photos[i * len(photos) // MAX_IMAGES] for i in range(MAX_IMAGES)]
    return photos


def better(a: Trial, b: Trial) -> bool:
    """Whether `b` keeps strictly more of the float model's detections than `a`: mAP@0.5,
    then F1; a tie keeps `a`, the earlier (preferred) form."""
    fa, fb = a.fidelity, b.fidelity
    key = lambda f: (round(f.map50, 6), round(f.score or 0.0, 6))  # noqa: E731
    return key(fb) > key(fa)


def choose(first: Converted, int8: Callable[[Converted], tuple[Converted, bytes]],
           rebuild: Callable[[str], Converted], images: list[str]) -> Choice:
    """Quantize `first` (built with AUTO_FORMS[0]) and, when it keeps too little on
    `images`, each later form (`rebuild(form)`), keeping the best. `int8(c)` gives
    (equalized c, .tflite bytes)."""
    from .progress import step
    q, data = int8(first)
    trial = Trial(first.meta.leaky, first, q, data)
    if not images:
        return Choice(trial, (trial,), reason="no photos of yours to measure the forms on "
                                              "(pass --calib)")
    reference = exact_reference(first)  # every exact form computes the same function
    with tempfile.TemporaryDirectory(prefix="yolo_tpu_leaky_") as tmp:
        def scored(t: Trial) -> Trial:
            path = os.path.join(tmp, f"{t.leaky}.tflite")
            with open(path, "wb") as f:
                f.write(t.data)
            return Trial(t.leaky, t.converted, t.equalized, t.data,
                         measure(reference, t.converted.meta, path, images))

        trial = scored(trial)
        tried = [trial]
        f = trial.fidelity
        if f.map50 >= KEEP:
            return Choice(trial, tuple(tried), tuple(images))
        if f.reference < MIN_REFERENCE:
            return Choice(trial, tuple(tried), tuple(images),
                          f"{f.reference} reference detections, too few to tell forms apart")
        best = trial
        for form in AUTO_FORMS[1:]:
            step(f"--leaky auto: {trial.leaky} keeps mAP@0.5 {f.map50:.3f} of the float "
                 f"model's detections on {len(images)} photos; converting with {form}")
            c = rebuild(form)
            q, data = int8(c)
            t = scored(Trial(form, c, q, data))
            tried.append(t)
            if better(best, t):
                best = t
    return Choice(best, tuple(tried), tuple(images))
