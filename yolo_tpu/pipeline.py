"""A model cut into segments (`converters.segment`), run as one: a pipeline over devices.

Each segment gets its own interpreter on its own device (one Edge TPU each, or the CPU) and
its own thread; the threads are joined by small bounded queues, so while segment 1 works on
frame k, segment 0 already works on frame k+1, and frames come out in the order they went in.

Segments are chained by tensor name: what travels down the pipeline is a dict of named
tensors, the model input first; each stage reads its inputs from it by name and adds its
outputs, so a later segment can read a tensor an earlier one produced (a skip connection)
without any segment copying it through. Names survive `edgetpu_compiler`, the metadata does
not; the `yolo_tpu_segment` entry (when present) only confirms the order.
"""
from __future__ import annotations

import json
import os
import queue
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .backends import BackendError, parse_device
from .model_trial import load_interpreter

SEGMENT_KEY = "yolo_tpu_segment"
QUEUE_SIZE = 2  # frames waiting between two stages: enough to keep both busy
EDGETPU_CUSTOM_OP = "edgetpu-custom-op"

_STOP = object()


class SegmentsError(ValueError):
    """Segments that do not make one model (order, missing tensors, device count)."""


def model_paths(model: str | Sequence[str]) -> list[str]:
    """`a.tflite` -> [a]; `seg0.tflite,seg1.tflite` or a list -> the segments, in order."""
    parts = model.split(",") if isinstance(model, str) else list(model)
    return [p.strip() for p in parts if p.strip()]


def segment_devices(device: str, count: int) -> list[str]:
    """One device per segment: `usb:0,usb:1` as listed, or one device for all. A single TPU
    kind without an index is numbered (`usb` -> usb:0, usb:1, ...): a TPU runs one segment."""
    devices = [d.strip() for d in device.split(",")]
    if len(devices) > 1:
        if len(devices) != count:
            raise SegmentsError(f"--device lists {len(devices)} devices for {count} "
                                f"segment{'s' * (count != 1)}; give one per segment or one "
                                "for all")
        return devices
    dev = parse_device(devices[0])
    numbered = {None: "tpu:", "usb": "usb:", "pci": "pci:"}
    if count == 1 or dev.kind != "tpu" or dev.delegate_device not in numbered:
        return devices * count
    return [f"{numbered[dev.delegate_device]}{i}" for i in range(count)]


def chain_plan(stages: list[tuple[str, list[str], list[str]]],
               model_outputs: list[str] | None = None
               ) -> tuple[str, list[str], list[set[str]]]:
    """(model input, model outputs, per stage the names still needed after it) for stages
    given as (path, input names, output names), in order; SegmentsError when a stage reads
    a tensor no earlier stage produces. Without `model_outputs` (compiled segments lose the
    metadata) the outputs are the tensors that no later stage reads."""
    path, inputs, _ = stages[0]
    if len(inputs) != 1:
        raise SegmentsError(f"{path}: takes {len(inputs)} tensors, not an image; list the "
                            "segments in order, ..._segment_0_of_N first")
    available = set(inputs)
    for path, ins, outs in stages:
        missing = [n for n in ins if n not in available]
        if missing:
            raise SegmentsError(f"{path}: needs tensor {missing[0]!r}, which no earlier "
                                "segment produces; list the segments of one model in order")
        available |= set(outs)
    read_later = [set().union(*(set(ins) for _, ins, _ in stages[k + 1:]))
                  for k in range(len(stages))]
    outputs = list(model_outputs) if model_outputs else [
        n for k, (_, _, outs) in enumerate(stages) for n in outs if n not in read_later[k]]
    return inputs[0], outputs, [later | set(outputs) for later in read_later]


@dataclass
class Stage:
    """One segment on its device: where its named inputs go and its named outputs come from."""
    path: str
    interpreter: Any
    label: str
    inputs: dict[str, int]   # tensor name -> the interpreter's input index
    outputs: dict[str, int]  # tensor name -> the interpreter's output index
    info: dict[str, Any] | None  # the yolo_tpu_segment metadata, if the file still has it

    def run(self, tensors: dict[str, np.ndarray]) -> None:
        """Invoke on the named tensors it needs; add what it produces."""
        for name, index in self.inputs.items():
            self.interpreter.set_tensor(index, tensors[name])
        self.interpreter.invoke()
        for name, index in self.outputs.items():
            tensors[name] = self.interpreter.get_tensor(index)  # a copy


def segment_info(metadata: dict[str, bytes]) -> dict[str, Any] | None:
    """The `yolo_tpu_segment` entry of a model's metadata (None: not a segment, or compiled)."""
    try:
        return json.loads(metadata[SEGMENT_KEY]) if SEGMENT_KEY in metadata else None
    except ValueError:
        return None


class SegmentedModel:
    """The segments as one model: `get_input_details()` / `get_output_details()` like an
    interpreter's (outputs indexed by position), `run(tensor)` for one frame, and
    `submit(tensor)` / `collect()` to keep one frame per stage in flight."""

    def __init__(self, paths: list[str], device: str = "auto"):
        from .tflite_file import NotTfliteError, read_summary
        summaries = []
        for path in paths:
            try:
                summaries.append(read_summary(path))
            except OSError as e:
                raise SegmentsError(f"{path}: cannot read model: {e.strerror or e}") from None
            except NotTfliteError as e:
                raise SegmentsError(f"{path}: not a TFLite model ({e})") from None
        compiled = [EDGETPU_CUSTOM_OP in custom for _, custom in summaries]
        if device.strip().lower() == "auto" and all(compiled):
            device = "tpu"  # compiled segments: one TPU each (tpu:0, tpu:1, ...)
        devices = segment_devices(device, len(paths))
        threads = max(1, (os.cpu_count() or 1) // len(paths))
        self.stages: list[Stage] = []
        for k, (path, dev, (metadata, custom)) in enumerate(zip(paths, devices, summaries)):
            info = segment_info(metadata)
            if info is not None and (info.get("index"), info.get("count")) != (k, len(paths)):
                raise SegmentsError(
                    f"{path}: is segment {info.get('index')} of {info.get('count')}, given as "
                    f"segment {k} of {len(paths)}; list the segments in order, "
                    "..._segment_0_of_N first")
            interpreter, label = load_interpreter(path, dev, EDGETPU_CUSTOM_OP in custom,
                                                  threads=threads)
            self.stages.append(Stage(
                path, interpreter, label,
                {d["name"]: d["index"] for d in interpreter.get_input_details()},
                {d["name"]: d["index"] for d in interpreter.get_output_details()}, info))
        self._check_chain()
        self._threads: list[threading.Thread] = []
        self._queues: list[queue.Queue] = []

    def _check_chain(self) -> None:
        info = next((s.info for s in self.stages if s.info), None)
        plan = chain_plan([(s.path, list(s.inputs), list(s.outputs)) for s in self.stages],
                          (info or {}).get("model_outputs"))
        self.input_name, self.output_names, self._keep = plan
        self._producer = {n: s for s in self.stages for n in s.outputs}

    @property
    def label(self) -> str:
        return "; ".join(f"segment {k}: {s.label}" for k, s in enumerate(self.stages))

    def get_input_details(self) -> list[dict]:
        first = self.stages[0]
        return [d for d in first.interpreter.get_input_details()
                if d["name"] == self.input_name]

    def get_output_details(self) -> list[dict]:
        details = []
        for position, name in enumerate(self.output_names):
            stage = self._producer[name]
            d = next(d for d in stage.interpreter.get_output_details() if d["name"] == name)
            details.append({**d, "index": position})
        return details

    def _through(self, k: int, tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.stages[k].run(tensors)
        return {n: v for n, v in tensors.items() if n in self._keep[k]}

    def run(self, tensor: np.ndarray) -> list[np.ndarray]:
        """One frame through every stage in this thread (no overlap)."""
        if self._threads:
            self.submit(tensor)
            return self.collect()
        tensors = {self.input_name: tensor}
        for k in range(len(self.stages)):
            tensors = self._through(k, tensors)
        return [tensors[n] for n in self.output_names]

    # ------------------------------------------------------------ the threaded pipeline

    def start(self) -> None:
        """One thread per stage, joined by bounded queues (idempotent)."""
        if self._threads:
            return
        self._queues = [queue.Queue(maxsize=QUEUE_SIZE) for _ in range(len(self.stages) + 1)]
        for k in range(len(self.stages)):
            t = threading.Thread(target=self._work, args=(k,), name=f"yolo_tpu-segment-{k}",
                                 daemon=True)
            t.start()
            self._threads.append(t)

    def _work(self, k: int) -> None:
        inbox, outbox = self._queues[k], self._queues[k + 1]
        while True:
            item = inbox.get()
            if item is _STOP:
                outbox.put(_STOP)
                return
            if not isinstance(item, BaseException):
                try:
                    item = self._through(k, item)
                except Exception as e:  # noqa: BLE001 - handed to collect(), raised there
                    item = e if isinstance(e, BackendError) else \
                        RuntimeError(f"{self.stages[k].path}: {e}")  # kept: DeviceStopped
            outbox.put(item)

    def submit(self, tensor: np.ndarray) -> None:
        """Queue one frame's input tensor (blocks while the first queue is full)."""
        self.start()
        self._queues[0].put({self.input_name: tensor})

    def collect(self) -> list[np.ndarray]:
        """The outputs of the oldest frame submitted, in `get_output_details()` order."""
        item = self._queues[-1].get()
        if isinstance(item, BaseException):
            raise item
        if item is _STOP:
            raise RuntimeError("pipeline closed")
        return [item[n] for n in self.output_names]

    def close(self) -> None:
        """Stop the stage threads (frames still queued are dropped)."""
        if not self._threads:
            return
        self._queues[0].put(_STOP)
        while True:  # drain the end so every stage can hand on the stop
            item = self._queues[-1].get()
            if item is _STOP:
                break
        for t in self._threads:
            t.join()
        self._threads = []
