"""`Classifier`: an image classifier `.tflite` in, its top-k labels out: frame -> tensor -> scores.

The detector's sibling for a model from `converters.quantize` that is not a YOLO: the
same backends (CPU, Edge TPU, `--device`), the same compiled-model rule (a
`*_edgetpu.tflite` takes its metadata from the uncompiled model beside it). A frame is
resized to the input (grey for a one-channel input, RGB otherwise) and becomes the input
as `(pixel - mean) / std`, quantized with the input's own scale: the preprocessing stored
at conversion (`--preprocess`), or the user's. Without either, pixels 0..255 span the
input's quantized range (as calibration on images does), and a float input takes 0..1.
"""
from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from .meta import METADATA_KEY, ClassifierMeta
from .model_trial import ModelError, load_interpreter, model_summary

log = logging.getLogger("yolo_tpu")
# --preprocess NAME: (mean, std) on pixels 0..255; or "MEAN,STD" given as numbers
PREPROCESS = {"0..1": (0.0, 255.0), "-1..1": (127.5, 127.5), "raw": (0.0, 1.0)}


def accept_negative_ranges(parser) -> None:
    """Let `--preprocess -1..1` read as a value: argparse takes any word starting with '-'
    for an option unless it looks like a negative number (this parser has no such option)."""
    parser._negative_number_matcher = re.compile(r"^-\d+$|^-\d*\.\d+$|^-\d+\.\.-?\d+$")


def parse_preprocess(text: str) -> tuple[float, float]:
    """`0..1`, `-1..1`, `raw` or `MEAN,STD` (pixel units) -> (mean, std); ValueError why not."""
    if text in PREPROCESS:
        return PREPROCESS[text]
    parts = text.split(",")
    try:
        mean, std = (float(p) for p in parts)
    except ValueError:
        raise ValueError(f"{text!r}: expected {', '.join(PREPROCESS)} or MEAN,STD "
                         "(numbers, in pixel units 0..255)") from None
    if not (np.isfinite(mean) and np.isfinite(std) and std > 0):
        raise ValueError(f"{text!r}: MEAN must be finite and STD positive")
    return mean, std


def resize_pixels(image: np.ndarray, width: int, height: int, channels: int) -> np.ndarray:
    """A uint8 BGR/grey/BGRA image as the (height, width, channels) pixels the model sees:
    RGB for 3 channels, grey for 1, resized with area averaging (as the converter's
    calibration on images does)."""
    if image.ndim == 2:
        image = image[:, :, None]
    c = image.shape[2]
    if channels == 1:
        grey = image[:, :, 0] if c == 1 else cv2.cvtColor(
            image, cv2.COLOR_BGRA2GRAY if c == 4 else cv2.COLOR_BGR2GRAY)
        out = cv2.resize(grey, (width, height), interpolation=cv2.INTER_AREA)
        return out[:, :, None]
    if channels != 3:
        raise ValueError(f"an image cannot feed a {channels}-channel input")
    code = {1: cv2.COLOR_GRAY2RGB, 4: cv2.COLOR_BGRA2RGB}.get(c, cv2.COLOR_BGR2RGB)
    rgb = cv2.cvtColor(image, code)
    return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)


def input_lut(dtype: np.dtype, scale: float, zero_point: int,
              norm: tuple[float, float] | None) -> np.ndarray:
    """pixel 0..255 -> input value (quantized for an int input). `norm` None: the pixels
    span the quantized range (uint8 as is, int8 minus 128), a float input takes 0..1."""
    pixels = np.arange(256, dtype=np.float64)
    if dtype == np.float32:
        mean, std = norm or PREPROCESS["0..1"]
        return ((pixels - mean) / std).astype(np.float32)
    info = np.iinfo(dtype)
    if norm is None:
        return (pixels + info.min).astype(dtype)
    mean, std = norm
    q = np.round((pixels - mean) / std / scale + zero_point)
    return np.clip(q, info.min, info.max).astype(dtype)


@dataclass(frozen=True)
class Top:
    """One of the top-k classes: its index, label and score (the model's output value)."""
    class_id: int
    label: str
    score: float


def _metadata(path: str, metadata: dict[str, bytes], compiled: bool) -> tuple[bytes | None, str]:
    """The classifier metadata payload and where it came from; a compiled model's from the
    uncompiled model it was compiled from, beside it (edgetpu_compiler drops metadata)."""
    from .tflite_file import NotTfliteError, read_io, read_summary
    if METADATA_KEY in metadata or not compiled:
        return metadata.get(METADATA_KEY), path
    folder, name = os.path.split(path)
    stem = name[:-len(".tflite")] if name.endswith(".tflite") else name
    if not stem.endswith("_edgetpu"):
        return None, path
    sibling = os.path.join(folder, stem[:-len("_edgetpu")] + ".tflite")
    try:
        found, _ = read_summary(sibling)
        if METADATA_KEY in found and read_io(sibling) == read_io(path):
            log.info("%s: metadata from %s", name, sibling)
            return found[METADATA_KEY], sibling
    except (OSError, NotTfliteError):
        pass
    return None, path


def read_classifier_info(path: str) -> tuple[ClassifierMeta | None, bool]:
    """The model's classifier metadata (None: none stored) and whether it is compiled."""
    metadata, compiled = model_summary(path)
    payload, source = _metadata(path, metadata, compiled)
    if payload is None:
        return None, compiled
    try:
        return ClassifierMeta.from_json(payload), compiled
    except ValueError as e:
        raise ModelError(f"{source}: unreadable classifier metadata ({e})") from None


def read_labels(path: str) -> tuple[str, ...]:
    """One label per line (blank lines ignored at the end); ModelError naming the file."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ModelError(f"{path}: cannot read labels: {getattr(e, 'strerror', None) or e}") \
            from None
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise ModelError(f"{path}: no labels in it (one per line)")
    return tuple(line.strip() for line in lines)


class Classifier:
    """A loaded classifier on a device; call it on a BGR image to get its top classes."""

    def __init__(self, model: str, device: str = "auto", labels: Sequence[str] | None = None,
                 preprocess: str | None = None, top: int = 5):
        """`labels` override the stored names; `preprocess` (`0..1`, `-1..1`, `raw`,
        `MEAN,STD`) overrides the stored preprocessing."""
        if not os.path.isfile(model):
            raise ModelError(f"{model}: no such model file (write one with "
                             "`python -m converters.quantize MODEL -o OUT.tflite`)")
        if int(top) != top or top < 1:
            raise ValueError(f"top must be a positive integer, got {top!r}")
        self.model_path, self.top = model, int(top)
        self.meta, self.compiled = read_classifier_info(model)
        try:
            self.interpreter, self.backend = load_interpreter(model, device, self.compiled)
        except ValueError as e:
            if isinstance(e, ModelError):
                raise
            raise ModelError(f"{model}: {e}") from None
        log.info("%s: %s", os.path.basename(model), self.backend)
        inputs = self.interpreter.get_input_details()
        if len(inputs) != 1 or len(inputs[0]["shape"]) != 4:
            raise ModelError(f"{model}: not an image classifier (wants one input of shape "
                             f"(1, H, W, C), has {[tuple(i['shape']) for i in inputs]})")
        inp = inputs[0]
        _, self.height, self.width, self.channels = (int(v) for v in inp["shape"])
        if self.channels not in (1, 3):
            raise ModelError(f"{model}: input has {self.channels} channels; images feed 1 or 3")
        self._input_index = inp["index"]
        self.input_dtype = np.dtype(inp["dtype"])
        norm = (parse_preprocess(preprocess) if preprocess is not None
                else (self.meta.mean, self.meta.std)
                if self.meta is not None and self.meta.mean is not None else None)
        if norm is None:
            log.info("%s: no stored preprocessing; pixels span the input's range (pass "
                     "--preprocess to choose)", os.path.basename(model))
        self.preprocessing = norm
        self._lut = input_lut(self.input_dtype, *inp["quantization"], norm)
        out = self.interpreter.get_output_details()[0]
        self._output_index = out["index"]
        scale, zero_point = out["quantization"]
        self._out_quant = ((float(scale), int(zero_point))
                           if np.dtype(out["dtype"]) != np.float32 else None)
        self.classes = int(np.prod(out["shape"][1:]))
        self.names = tuple(labels) if labels is not None else (
            self.meta.names if self.meta is not None else ())

    def label(self, class_id: int) -> str:
        return self.names[class_id] if class_id < len(self.names) else str(class_id)

    def preprocess(self, image_bgr: np.ndarray) -> np.ndarray:
        """The (1, H, W, C) input tensor in the model's own type."""
        pixels = resize_pixels(image_bgr, self.width, self.height, self.channels)
        return self._lut[pixels][None]

    def scores(self, image_bgr: np.ndarray) -> np.ndarray:
        """The model's output for one image, dequantized, flattened to one value per class."""
        self.interpreter.set_tensor(self._input_index, self.preprocess(image_bgr))
        try:
            self.interpreter.invoke()
        except RuntimeError as e:
            raise ModelError(f"{self.model_path}: inference failed: "
                             f"{' '.join(str(e).split())}") from None
        raw = self.interpreter.get_tensor(self._output_index).reshape(-1)
        if self._out_quant is None:
            return raw.astype(np.float32)
        scale, zero_point = self._out_quant
        return ((raw.astype(np.float32) - zero_point) * scale).astype(np.float32)

    def __call__(self, image_bgr: np.ndarray, top: int | None = None) -> list[Top]:
        s = self.scores(image_bgr)
        k = min(top or self.top, s.size)
        order = np.argsort(-s, kind="stable")[:k]
        return [Top(int(i), self.label(int(i)), float(s[i])) for i in order]
