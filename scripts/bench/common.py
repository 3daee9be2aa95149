"""What every contestant shares: paths, the photos' settings, timing and memory helpers,
and the records (Contestant, Result). Only the standard library at module level: the
OpenCV-4 worker imports this in a venv with nothing but opencv-python-headless and numpy.
"""
from __future__ import annotations

import os
import resource
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CFG = os.path.join(ROOT, "cfg", "yolov3-tiny.cfg")
WEIGHTS = os.path.join(ROOT, "weights", "yolov3-tiny.weights")
NAMES = os.path.join(ROOT, "cfg", "coco.names")
SAMPLES = os.path.join(ROOT, "samples")
BENCH_DIR = os.path.join(ROOT, "build", "bench")
DOCS = os.path.join(ROOT, "docs")
README = os.path.join(ROOT, "README.md")
MARK_START, MARK_END = "<!-- benchmark:start -->", "<!-- benchmark:end -->"
OPENCV4 = "4.14.0.94"
OPENCV4_VENV = os.path.join(BENCH_DIR, "opencv4-venv")
CONF, IOU = 0.25, 0.45  # darknet's `detector test` defaults and the runtime's
CANDIDATE_CONF = 0.005  # candidates scored down to this, as converters.accuracy does
INPUT_SIZE = 416
# (quantizer mode, --leaky): the int8 forms for the Edge TPU, the float forms as
# scripts/fidelity.py builds them (float32 keeps LEAKY_RELU: darknet's arithmetic).
FORMS = (("int8", "addrelu"), ("int8", "maximum"), ("int8", "relu"),
         ("float16", "maximum"), ("dynamic", "maximum"), ("float32", "keep"))
ANNOTATED = ("dog.jpg", "kite.jpg", "person.jpg")  # photos drawn for the README
ANNOTATED_WIDTH = 560
ANNOTATED_MAX_BYTES = 100_000
SHIPPED = "int8-addrelu"  # what `python -m converters` makes by default (--leaky auto keeps
# addrelu on the bundled model): the video and ceiling targets are measured on it
MODES = ("file", "frame", "invoke")
# The CPU's int8 ceiling: a large model of nothing but int8 3x3 convolutions (the op that
# dominates YOLO), 256 -> 256 channels on 56x56, where XNNPACK runs at its best.
CEILING_SHAPE = (56, 56, 256)
CEILING_CONVS = 2
VIDEO_FRAMES = 150


def say(message: str) -> None:
    """Progress and notes go to stderr, so stdout holds the table and the verdicts."""
    print(message, file=sys.stderr, flush=True)


def one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[-1] if text else ''}".rstrip(": ")


def timed(fn: Callable[[Any], object], items: list) -> list[float]:
    """Wall ms of fn(item) for each item."""
    result = []
    for item in items:
        t0 = time.perf_counter_ns()
        fn(item)
        result.append((time.perf_counter_ns() - t0) / 1e6)
    return result


def cpu_seconds() -> float:
    """User + system CPU time of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mb() -> float:
    """This process's peak resident set size (VmHWM), in MB.

    Not getrusage's ru_maxrss: Linux carries that over fork and exec, so a worker started
    by a parent that once held TensorFlow would report the parent's peak.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class Contestant:
    key: str  # stable id used by the targets, e.g. "int8-addrelu", "opencv"
    label: str
    spec: dict  # what the worker loads (kind, paths, device)
    python: str  # interpreter that runs the worker
    model_bytes: int
    edgetpu_ops: str = "-"
    macs: int = 0  # multiply-accumulates of the convolutions per invoke (TFLite models)


@dataclass
class Result:
    contestant: Contestant
    threads: str = ""  # how the worker set its threads, in words
    thread_count: int | None = None
    versions: dict = field(default_factory=dict)
    ms: dict[str, list[float]] = field(default_factory=dict)  # mode -> per-round ms/photo
    peak_rss_mb: float | None = None
    agreement: float | None = None
    cpu_s: float = 0.0  # CPU time over all timed passes, and their wall time
    wall_s: float = 0.0

    @property
    def cores_busy(self) -> float | None:
        """CPU seconds per wall second while timed: the threads that really worked."""
        return self.cpu_s / self.wall_s if self.wall_s else None

    def median(self, mode: str) -> float | None:
        values = self.ms.get(mode)
        return statistics.median(values) if values else None
