"""`Detector`: one `.tflite` file (or its segments) in, `Detections` out: frames -> tensor -> heads -> boxes -> NMS.

Everything the model needs (anchors, masks, classes, names, input size) comes from the
metadata the quantizer embedded, so the model file is the only input (a compiled model
whose metadata edgetpu_compiler dropped takes it from the uncompiled model beside it).
Outputs are matched to heads by grid size, not by position: the TFLite converter does not
keep Keras' order.
"""
from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Sequence

import cv2
import numpy as np

from .decode import decode_heads
from .detections import Detections
from .backends import BackendError
from .meta import METADATA_KEY, ModelMeta
from .model_trial import ModelError, load_interpreter, model_summary
from .nms import nms
from .pipeline import SegmentedModel, SegmentsError, model_paths, segment_info
from .preprocess import Letterbox, letterbox
from .replicas import Replicas, auto_plan, listed_tpus, load_replicas, replica_devices

log = logging.getLogger("yolo_tpu")
SIDECAR_SUFFIX = ".yolo_tpu.json"


def metadata_sources(path: str) -> list[str]:
    """Where a compiled model's metadata may be, in order: the uncompiled model beside it
    (edgetpu_compiler names its output `<stem>_edgetpu.tflite`), then a sidecar JSON."""
    folder, name = os.path.split(path)
    stem = name[:-len(".tflite")] if name.endswith(".tflite") else name
    found = []
    if stem.endswith("_edgetpu"):
        found.append(os.path.join(folder, stem[:-len("_edgetpu")] + ".tflite"))
    found.append(os.path.join(folder, stem + SIDECAR_SUFFIX))
    return found


def _sibling_meta(path: str, sibling: str) -> bytes | None:
    """The sibling's metadata if it is the model `path` was compiled from, else None."""
    from .tflite_file import NotTfliteError, read_io, read_summary
    try:
        metadata, _ = read_summary(sibling)
        if METADATA_KEY not in metadata or read_io(sibling) != read_io(path):
            return None  # the compiler keeps input/output names, types and quantization
    except (OSError, NotTfliteError):
        return None
    return metadata[METADATA_KEY]


def _missing_metadata(path: str, compiled: bool) -> ModelError:
    if not compiled:
        return ModelError(f"{path}: no yolo_tpu metadata; convert the model with "
                          "`python -m converters` (or converters.quantize); an image "
                          "classifier runs with `python -m yolo_tpu.classify`")
    sources = metadata_sources(path)
    beside = (f"put {os.path.basename(sources[0])} (the model it was compiled from) beside it, "
              if len(sources) > 1 else "")
    return ModelError(f"{path}: compiled model without yolo_tpu metadata (edgetpu_compiler "
                      f"drops it); {beside}or run `python -m converters.edgetpu_compile "
                      f"{path} --metadata-from UNCOMPILED.tflite`")


def read_model_info(path: str) -> tuple[ModelMeta, bool]:
    """The model's metadata, and whether edgetpu_compiler has compiled the model.

    A compiled model without metadata (straight from edgetpu_compiler) takes it from the
    uncompiled model beside it, if that is the model it was compiled from, or a sidecar
    `<stem>.yolo_tpu.json`.
    """
    metadata, compiled = model_summary(path)
    payload, source = metadata.get(METADATA_KEY), path
    if payload is None and compiled:
        for candidate in metadata_sources(path):
            if not os.path.isfile(candidate):
                continue
            if candidate.endswith(SIDECAR_SUFFIX):
                with open(candidate, "rb") as f:
                    payload, source = f.read(), candidate
            else:
                payload, source = _sibling_meta(path, candidate), candidate
            if payload is not None:
                log.info("%s: metadata from %s", os.path.basename(path), candidate)
                break
    if payload is None and (part := segment_info(metadata)):
        raise ModelError(f"{path}: is segment {part.get('index')} of {part.get('count')} of "
                         f"{part.get('source') or 'a model'}; pass all its segments, in order "
                         "and comma-separated")
    if payload is None:
        raise _missing_metadata(path, compiled)
    try:
        meta = ModelMeta.from_json(payload)
    except (ValueError, KeyError, TypeError) as e:
        raise ModelError(f"{source}: unreadable yolo_tpu metadata ({e})") from None
    return meta, compiled


def missing_model(path: str) -> str:
    """The error for a model file that is not there, naming the step that makes it: the
    compiler when the int8 model it compiles from is beside it, else the converter."""
    base, suffix = os.path.splitext(path)
    if base.endswith("_edgetpu") and os.path.exists(uncompiled := base[:-8] + suffix):
        return (f"{path}: no such model file; compile it from {uncompiled} with "
                f"`python -m converters.edgetpu_compile {uncompiled}` (needs edgetpu_compiler, "
                "x86-64 Linux), or run the int8 model on the CPU with --model "
                f"{uncompiled}")
    return f"{path}: no such model file (build it with `make demo` or `python -m converters`)"


class Detector:
    """A loaded model on a device; call it on a BGR image to get `Detections`."""

    def __init__(self, model: str | Sequence[str], device: str = "auto", conf: float = 0.25,
                 iou: float = 0.45, max_det: int = 300, agnostic: bool = False):
        """`model`: one `.tflite`, or the segments of one (`converters.segment`) as a list or
        comma-separated, run as a pipeline with one interpreter per device (`device`:
        one for all, or comma-separated, one per segment, e.g. `usb:0,usb:1`). `device`
        `usb:0+usb:1` (or `cpu+cpu`, ...) runs one copy of a model per device, frames in
        turn (`replicas`); `auto` with several Edge TPUs picks replicas or segments."""
        paths = model_paths(model)
        for path in paths or [str(model)]:
            if not os.path.exists(path):
                raise ModelError(missing_model(path))
        for name, value in (("conf", conf), ("iou", iou)):
            if not 0 < value <= 1:  # NaN fails too
                raise ValueError(f"{name} must be in (0, 1], got {value!r}")
        if int(max_det) != max_det or max_det < 1:
            raise ValueError(f"max_det must be a positive integer, got {max_det!r}")
        self.model_path = ",".join(paths)
        self.conf, self.iou, self.max_det, self.agnostic = conf, iou, max_det, agnostic
        self._chain: SegmentedModel | Replicas | None = None
        self._pending: deque[np.ndarray] = deque()
        try:
            if len(paths) == 1:
                paths, device = self._auto_devices(paths, device)
                self.model_path = ",".join(paths)
            replicas = replica_devices(device)
            if replicas and len(paths) > 1:
                raise ModelError(f"--device {device}: replicas (DEV+DEV) run one whole model; "
                                 "for segments give one device per segment, comma-separated")
            if len(paths) > 1:
                self._chain = SegmentedModel(paths, device)
                self.interpreter, self.backend = self._chain, self._chain.label
                self.meta, self.compiled = read_model_info(paths[-1])  # the last: the heads
            elif replicas:
                self.meta, self.compiled = read_model_info(paths[0])
                self._chain = load_replicas(paths[0], replicas, self.compiled)
                self.interpreter, self.backend = self._chain, self._chain.label
            else:
                self.meta, self.compiled = read_model_info(paths[0])
                self.interpreter, self.backend = load_interpreter(paths[0], device,
                                                                  self.compiled)
        except SegmentsError as e:
            raise ModelError(str(e)) from None
        except ValueError as e:  # LiteRT's error for a model it cannot load
            if isinstance(e, ModelError):
                raise
            raise ModelError(f"{self.model_path}: {e}") from None
        log.info("%s: %s", ", ".join(map(os.path.basename, paths)), self.backend)
        inp = self.interpreter.get_input_details()[0]
        self._input_index = inp["index"]
        self.input_dtype = np.dtype(inp["dtype"])
        _, h, w, _ = inp["shape"]
        if (w, h) != (self.meta.width, self.meta.height):
            raise ModelError(f"{model}: input {w}x{h} disagrees with its metadata "
                             f"{self.meta.width}x{self.meta.height}")
        self._lut = _input_lut(self.input_dtype, *inp["quantization"])
        self._outputs, self._quant = self._match_heads(self.interpreter.get_output_details())
        self._buffer: np.ndarray | None = None
        self.retried = 0  # retries the last frame's invoke needed (a supervised Edge TPU)
        self._compile_kernels()

    @staticmethod
    def _auto_devices(paths: list[str], device: str) -> tuple[list[str], str]:
        """`auto` for a compiled model with several Edge TPUs listed: replicas when its
        parameters fit one TPU's cache, its compiled segments when not (one line says which)."""
        if device.strip().lower() != "auto":
            return paths, device
        _, compiled = read_model_info(paths[0])
        tpus = listed_tpus() if compiled else 0
        if tpus < 2:
            return paths, device
        plan = auto_plan(paths[0], tpus)
        log.info("%s", plan.message)
        return plan.paths, plan.device

    def _compile_kernels(self) -> None:
        """First run after an install: say so, then compile the numba kernels here (they
        are cached on disk), so no detection, and no reported time, includes compiling."""
        from .nms import compile_kernels, uncompiled_kernels
        decode = "_decode_float" if any(q is None for q in self._quant) else "_decode_quantized"
        if not uncompiled_kernels({decode, "_group_by_class", "_greedy"}):
            return
        log.info("compiling the detection kernels once for this install (10-30 s); later "
                 "runs load them from numba's cache")
        compile_kernels()
        self(np.zeros((self.meta.height, self.meta.width, 3), np.uint8))

    def _match_heads(self, details: list[dict]) -> tuple[list[int], list]:
        """Output tensor index and (scale, zero_point) per head, matched by grid size."""
        by_grid = {tuple(d["shape"][1:3]): d for d in details}
        indices, quant = [], []
        for head in self.meta.heads:
            grid = (self.meta.height // head.stride, self.meta.width // head.stride)
            d = by_grid.get(grid)
            if d is None:
                raise ModelError(f"{self.model_path}: no output of grid {grid[1]}x{grid[0]} "
                                 f"for the stride-{head.stride} head")
            channels = int(d["shape"][3])
            if channels != len(head.mask) * (5 + self.meta.classes):
                raise ModelError(f"{self.model_path}: the stride-{head.stride} output has "
                                 f"{channels} channels, but its metadata says "
                                 f"{len(head.mask)} anchors x (5 + {self.meta.classes} classes)")
            indices.append(d["index"])
            scale, zero_point = d["quantization"]
            quant.append((float(scale), int(zero_point)) if d["dtype"] != np.float32 else None)
            if head.new_coords and quant[-1] is not None:
                _check_logistic(self.model_path, head, d["dtype"], *quant[-1])
        return indices, quant

    @property
    def head_quantization(self) -> list:
        """(scale, zero_point) of each head's output in metadata order, None for float."""
        return list(self._quant)

    def preprocess(self, image_bgr: np.ndarray,
                   reuse: bool = True) -> tuple[np.ndarray, Letterbox]:
        """Letterboxed input tensor in the model's own type (no float round trip for uint8).

        `reuse`: fill one buffer kept between calls (no allocation per frame); pass False
        when tensors are queued before `infer` (a pipeline), so each gets its own.
        """
        stretch = not self.meta.letter_box  # feed images as the model's darknet did
        if self.input_dtype == np.float32:
            return letterbox(image_bgr, self.meta.width, self.meta.height, np.float32,
                             stretch=stretch)
        tensor, box = letterbox(image_bgr, self.meta.width, self.meta.height, np.uint8,
                                out=self._buffer if reuse else None, stretch=stretch)
        if reuse:
            self._buffer = tensor
        if self._lut is not None:  # input quantization other than pixel / 255
            tensor = cv2.LUT(tensor, self._lut)
        return tensor, box

    def infer(self, tensor: np.ndarray) -> list[np.ndarray]:
        """Raw head outputs in metadata (cfg) order."""
        if self._chain is not None:
            outputs = self._chain.run(tensor)
            self.retried = getattr(self._chain, "retried", 0)
            return [outputs[i] for i in self._outputs]
        self.interpreter.set_tensor(self._input_index, tensor)
        try:
            self.interpreter.invoke()
        except RuntimeError as e:  # LiteRT's error for an op it cannot run on this input
            if isinstance(e, BackendError):  # supervised.DeviceStopped: the TPU is gone
                raise
            raise ModelError(f"{self.model_path}: inference failed: "
                             f"{' '.join(str(e).split())}") from None
        self.retried = getattr(self.interpreter, "retried", 0)  # a TPU's rebuilds (supervised)
        return [self.interpreter.get_tensor(i) for i in self._outputs]

    @property
    def in_flight(self) -> int:
        """Frames `submit` may hold before `collect` must be called: one per pipeline stage."""
        if isinstance(self._chain, Replicas):
            return self._chain.in_flight
        return len(self._chain.stages) if self._chain is not None else 1

    def submit(self, tensor: np.ndarray) -> None:
        """Start inference on a tensor (the next stage of a pipeline takes it when free);
        `collect` returns the results in submission order. Keep at most `in_flight` frames
        submitted and not collected, and do not reuse a submitted tensor's buffer."""
        if self._chain is not None:
            self._chain.submit(tensor)
        else:
            self._pending.append(tensor)

    def collect(self) -> list[np.ndarray]:
        """Raw head outputs of the oldest submitted tensor, as `infer` returns them."""
        if self._chain is not None:
            outputs = self._chain.collect()
            self.retried = getattr(self._chain, "retried", 0)  # replicas say; segments not
            return [outputs[i] for i in self._outputs]
        return self.infer(self._pending.popleft())

    def close(self) -> None:
        """Stop a pipeline's threads (a single model holds none), end a TPU's child."""
        inside = [self.interpreter]
        if self._chain is not None:
            self._chain.close()
            inside = getattr(self._chain, "interpreters", None) or \
                [stage.interpreter for stage in getattr(self._chain, "stages", [])]
        for interpreter in inside:
            if hasattr(interpreter, "close"):
                interpreter.close()

    def postprocess(self, outputs: list[np.ndarray], box: Letterbox) -> Detections:
        """Decode the heads, run NMS, map boxes back to the source image."""
        return postprocess(outputs, self._quant, self.meta, box, self.conf, self.iou,
                           self.max_det, self.agnostic)

    def __call__(self, image_bgr: np.ndarray) -> Detections:
        tensor, box = self.preprocess(image_bgr)
        return self.postprocess(self.infer(tensor), box)


def postprocess(outputs: list[np.ndarray], quant: list, meta: ModelMeta, box: Letterbox,
                conf: float, iou: float, max_det: int = 300,
                agnostic: bool = False) -> Detections:
    """Raw heads (quantized or float) -> Detections in source-image pixels."""
    boxes, scores, class_ids = decode_heads(outputs, quant, meta.heads,
                                            (meta.width, meta.height), conf)
    # DIoU is not invariant to stretching: measure it where darknet does, in coordinates
    # relative to the source image (input pixels over the resized image's size).
    keep = nms(boxes, scores, class_ids, iou, agnostic=agnostic, max_det=max_det,
               kind=meta.nms_kind, beta=meta.beta_nms,
               xy_scale=(1.0 / box.new_w, 1.0 / box.new_h))
    xyxy = box.to_source(boxes[keep])
    # a box whose centre fell in the letterbox padding can lie wholly outside the image:
    # clipped, it has no area, and it is not an object in the picture
    inside = (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])
    if not inside.all():
        xyxy, keep = xyxy[inside], keep[inside]
    return Detections.from_arrays(xyxy, scores[keep], class_ids[keep], meta.names)


def _check_logistic(path: str, head, dtype, scale: float, zero_point: int) -> None:
    """A new_coords head decodes its outputs as probabilities (its convolution ends in the
    logistic): a quantized range reaching well outside [0, 1] says the model's outputs are
    raw logits, so the metadata's new_coords is wrong and every score would exceed 1."""
    info = np.iinfo(dtype)
    low, high = (info.min - zero_point) * scale, (info.max - zero_point) * scale
    if low < -0.1 or high > 1.1:
        raise ModelError(f"{path}: metadata says the stride-{head.stride} head has new_coords "
                         f"(logistic outputs), but its output ranges {low:.3g}..{high:.3g}: "
                         "the metadata does not belong to this model")


def _input_lut(dtype: np.dtype, scale: float, zero_point: int) -> np.ndarray | None:
    """uint8 pixel -> quantized input value, or None when the pixel already is the value."""
    if dtype == np.float32:
        return None
    if dtype == np.uint8 and zero_point == 0 and abs(scale * 255 - 1) < 1e-6:
        return None
    info = np.iinfo(dtype)
    q = np.round(np.arange(256) / 255.0 / scale + zero_point)
    return np.clip(q, info.min, info.max).astype(dtype)
