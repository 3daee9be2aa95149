"""One model on several devices at once (`--device usb:0+usb:1`): replicas for one stream.

Coral's advice for several Edge TPUs: a model whose parameters fit one TPU's ~8 MiB cache runs
best as copies, one per TPU, taking frames in turn; a model that does not fit runs best cut
into segments, one per TPU, as a pipeline (`pipeline.SegmentedModel`). Here each replica is an
interpreter of the kind `Detector` loads for one device, with a thread of its own (`invoke`
releases the GIL): frame k goes to replica k mod N, and `collect` takes the results back in
the order the frames went in. `auto_plan` makes the choice `--device auto` makes when
libedgetpu lists several TPUs.
"""
from __future__ import annotations

import logging
import os
import queue
import re
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from .backends import Device, parse_device

log = logging.getLogger("yolo_tpu")

MIB = 2 ** 20
CACHE_BYTES = 8 * MIB  # the Edge TPU's on-chip SRAM, where cached parameters live
SEPARATOR = "+"
_STOP = object()


class ReplicasError(ValueError):
    """A replica list that cannot be run (malformed, or mixed with segments)."""


def replica_devices(text: str) -> list[Device] | None:
    """`usb:0+usb:1` -> one Device each; None for a single device (no `+`). ValueError (one
    line) for an empty part or `auto` inside a list."""
    if SEPARATOR not in text:
        return None
    parts = [p.strip() for p in text.split(SEPARATOR)]
    if any(not p for p in parts):
        raise ValueError(f"{text!r}: empty device in a replica list; write DEV+DEV, e.g. "
                         "usb:0+usb:1 or cpu+cpu")
    devices = [parse_device(p) for p in parts]
    if any(d.kind == "auto" for d in devices):
        raise ValueError(f"{text!r}: auto cannot be one replica; name each device, e.g. "
                         "usb:0+usb:1")
    return devices


class Replicas:
    """N interpreters of one model as one: `get_input_details()` / `get_output_details()`
    like an interpreter's (outputs indexed by position), `run(tensor)` for one frame, and
    `submit(tensor)` / `collect()` with up to `in_flight` frames outstanding, in order."""

    def __init__(self, interpreters: list[Any], labels: list[str]):
        self.interpreters, self.labels = interpreters, labels
        first = interpreters[0]
        self._input = first.get_input_details()[0]["index"]
        self._output_details = first.get_output_details()
        self._outputs = [d["index"] for d in self._output_details]
        self._threads: list[threading.Thread] = []
        self._inboxes: list[queue.Queue] = []
        self._outboxes: list[queue.Queue] = []
        self._submitted = self._collected = 0

    @property
    def label(self) -> str:
        return f"{len(self.interpreters)} replicas: " + "; ".join(self.labels)

    @property
    def in_flight(self) -> int:
        """Two frames per replica: one running, one waiting, so no replica waits for the
        caller's post-processing of another's result."""
        return 2 * len(self.interpreters)

    def get_input_details(self) -> list[dict]:
        return self.interpreters[0].get_input_details()

    def get_output_details(self) -> list[dict]:
        return [{**d, "index": k} for k, d in enumerate(self._output_details)]

    def _invoke(self, k: int, tensor: np.ndarray) -> list[np.ndarray]:
        interpreter = self.interpreters[k]
        interpreter.set_tensor(self._input, tensor)
        interpreter.invoke()
        return [interpreter.get_tensor(i) for i in self._outputs]  # copies

    def run(self, tensor: np.ndarray) -> list[np.ndarray]:
        """One frame on the next replica, waited for."""
        self.submit(tensor)
        return self.collect()

    def start(self) -> None:
        """One thread per replica (idempotent)."""
        if self._threads:
            return
        n = len(self.interpreters)
        self._inboxes = [queue.Queue() for _ in range(n)]
        self._outboxes = [queue.Queue() for _ in range(n)]
        for k in range(n):
            t = threading.Thread(target=self._work, args=(k,), name=f"yolo_tpu-replica-{k}",
                                 daemon=True)
            t.start()
            self._threads.append(t)

    def _work(self, k: int) -> None:
        inbox, outbox = self._inboxes[k], self._outboxes[k]
        while True:
            tensor = inbox.get()
            if tensor is _STOP:
                return
            try:
                outbox.put(self._invoke(k, tensor))
            except Exception as e:  # noqa: BLE001 - handed to collect(), raised there
                outbox.put(RuntimeError(f"replica {k} ({self.labels[k]}): "
                                        f"{' '.join(str(e).split())}"))

    def submit(self, tensor: np.ndarray) -> None:
        """Hand a frame to the next replica in turn (round-robin)."""
        if self._submitted - self._collected >= self.in_flight:
            raise RuntimeError(f"more than {self.in_flight} frames submitted and not collected")
        self.start()
        self._inboxes[self._submitted % len(self.interpreters)].put(tensor)
        self._submitted += 1

    def collect(self) -> list[np.ndarray]:
        """The outputs of the oldest frame submitted, in `get_output_details()` order."""
        if self._collected >= self._submitted:
            raise RuntimeError("collect() without a submitted frame")
        item = self._outboxes[self._collected % len(self.interpreters)].get()
        self._collected += 1
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        """Stop the threads (frames not collected are dropped)."""
        for box in self._inboxes:
            box.put(_STOP)
        for t in self._threads:
            t.join()
        self._threads, self._submitted, self._collected = [], 0, 0


def load_replicas(path: str, devices: list[Device], compiled: bool) -> Replicas:
    """One interpreter per device (each loaded as `Detector` loads one), CPU threads shared."""
    from .model_trial import load_interpreter
    threads = max(1, (os.cpu_count() or 1) // len(devices))
    loaded = [load_interpreter(path, d, compiled, threads=threads) for d in devices]
    return Replicas([i for i, _ in loaded], [label for _, label in loaded])


# ---------------------------------------------------------------- --device auto, several TPUs

def parameter_bytes(path: str) -> int:
    """A model's parameter bytes. Compiled: the `parameters` of every executable in the
    edgetpu-custom-op's DarwiNN package (what the TPU caches or streams; libedgetpu's
    executable.fbs), or the custom op's whole payload when it holds no package; uncompiled:
    the bytes of its constant tensors."""
    from .tflite_file import EDGETPU_CUSTOM_CODE, custom_payloads, read_model
    with open(path, "rb") as f:
        raw = f.read()
    payloads = custom_payloads(raw, EDGETPU_CUSTOM_CODE)
    if not payloads:
        model = read_model(raw)
        return sum(len(t.data or b"") for t in model.tensors if t.is_constant)
    total = 0
    for _, data in payloads:
        package = _package_parameters(data)
        total += len(data) if package is None else package
    return total


def _package_parameters(data: bytes) -> int | None:
    """Sum of `Executable.parameters` over a DarwiNN Package (id DWN1), or None if absent.

    Package field 1: serialized_multi_executable; MultiExecutable field 0:
    serialized_executables (strings); Executable field 6: parameters."""
    from flatbuffers import encode, number_types
    from flatbuffers.table import Table
    uoffset = number_types.UOffsetTFlags.packer_type
    start = data.find(b"DWN1") - 4
    if start < 0:
        return None

    def root(buf: bytearray) -> Table:
        return Table(buf, encode.Get(uoffset, buf, 0))

    def field_bytes(table: Table, field: int) -> bytes | None:
        at = table.Offset(4 + 2 * field)
        if not at:
            return None
        begin = table.Vector(at)
        return bytes(table.Bytes[begin:begin + table.VectorLen(at)])

    try:
        multi = field_bytes(root(bytearray(data[start:])), 1)
        if multi is None:
            return None
        table = root(bytearray(multi))
        at = table.Offset(4)
        total = 0
        for i in range(table.VectorLen(at) if at else 0):
            pos = table.Vector(at) + 4 * i
            pos += encode.Get(uoffset, table.Bytes, pos)
            size = encode.Get(uoffset, table.Bytes, pos)
            executable = root(bytearray(table.Bytes[pos + 4:pos + 4 + size]))
            total += len(field_bytes(executable, 6) or b"")
        return total
    except Exception:  # noqa: BLE001 - a damaged package gives no answer, not a crash
        return None


@dataclass(frozen=True)
class AutoPlan:
    """What `--device auto` runs a compiled model on when several TPUs are listed."""
    kind: str             # "replicas", "segments" or "one" (does not fit, no segments)
    paths: list[str]      # the model, or its compiled segments
    device: str           # the --device text for them
    message: str          # the one line that says which, and why


def compiled_segments(path: str, most: int) -> list[str] | None:
    """Compiled segments of this model beside it (`<stem>_segment_<i>_of_<N>_edgetpu.tflite`,
    converters.segment + edgetpu_compile), for the largest N <= `most` found complete."""
    folder, name = os.path.split(path)
    stem = re.sub(r"(_edgetpu)?\.tflite$", "", name)
    for count in range(most, 1, -1):
        found = [os.path.join(folder, f"{stem}_segment_{i}_of_{count}_edgetpu.tflite")
                 for i in range(count)]
        if all(os.path.isfile(p) for p in found):
            return found
    return None


def auto_plan(path: str, tpus: int, cache: int | None = None) -> AutoPlan:
    """Replicas when the parameters fit one TPU's cache (`CACHE_BYTES`), segments when not."""
    cache = CACHE_BYTES if cache is None else cache
    size = parameter_bytes(path)
    name, mib = os.path.basename(path), size / MIB
    if size <= cache:
        device = SEPARATOR.join(f"tpu:{k}" for k in range(tpus))
        return AutoPlan("replicas", [path], device,
                        f"{name}: parameters {mib:.1f} MiB fit the Edge TPU's "
                        f"{cache / MIB:.0f} MiB cache: one replica on each of the {tpus} TPUs "
                        "(frames in turn)")
    segments = compiled_segments(path, tpus)
    if segments:
        return AutoPlan("segments", segments, "tpu",
                        f"{name}: parameters {mib:.1f} MiB exceed the Edge TPU's "
                        f"{cache / MIB:.0f} MiB cache: its {len(segments)} compiled segments "
                        f"as a pipeline, one TPU each")
    stem = re.sub(r"(_edgetpu)?\.tflite$", "", name)
    return AutoPlan("one", [path], "tpu",
                    f"{name}: parameters {mib:.1f} MiB exceed the Edge TPU's "
                    f"{cache / MIB:.0f} MiB cache, so replicas would stream them every frame; "
                    f"running on one TPU: to use all {tpus}, cut it with `python -m "
                    f"converters.segment {stem}.tflite --segments {tpus}` and compile each "
                    "segment beside it")


def listed_tpus() -> int:
    """How many Edge TPUs libedgetpu lists (0 when it cannot be loaded)."""
    from .edgetpu import probe_library
    try:
        return len(probe_library().devices)
    except OSError:
        return 0
