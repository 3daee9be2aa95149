"""Command-line pieces `detect` and `batch` share: argument types that refuse bad values
before any work, the model options, the one-line error and log format, and loading the
Detector with a one-line error. A module of its own so that neither command imports the
other (`batch` used to take these from `detect`).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import IO, Any

from .backends import BackendError, parse_device

# Relative to the current folder, where `make demo` and `python -m converters` write it:
# never inside the installed package (site-packages holds no model).
DEFAULT_MODEL = os.path.join("build", "yolov3-tiny_int8.tflite")

log = logging.getLogger("yolo_tpu")


def bounded(convert: type, what: str, low: float, inclusive: bool = True,
             high: float | None = None):
    """An argparse type: `convert(text)` in [low, high] (or (low, high] when not
    `inclusive`), with a message naming the bound that was missed."""
    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None
        if high is not None and not (value > low and value <= high):
            raise argparse.ArgumentTypeError(f"must be in ({low:g}, {high:g}], got {text}")
        if value < low or (value == low and not inclusive) or value != value:  # NaN too
            bound = f"at least {low:g}" if inclusive else f"above {low:g}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {text}")
        return value
    parse.__name__ = f"{convert.__name__} >= {low:g}"  # argparse's "invalid <name> value"
    return parse


unit_interval = bounded(float, "a number", 0.0, inclusive=False, high=1.0)  # (0, 1]
positive_int = bounded(int, "an integer", 1)
non_negative_int = bounded(int, "an integer", 0)
positive_float = bounded(float, "a number", 0.0, inclusive=False)
max_det = bounded(int, "an integer", 1, high=100_000)  # beyond: memory, not detections
# OpenCV's FFmpeg timeouts are milliseconds in an int: an hour is ample for any stream
timeout_s = bounded(float, "a number", 0.0, inclusive=False, high=3600.0)


def serve_fps(text: str) -> float:
    """--serve-fps: 0 (a JPEG for every frame) or 0.1..1000 JPEGs a second (a slower rate
    would leave the encoder asleep for hours, a picture frozen)."""
    value = bounded(float, "a number", 0.0)(text)
    if value and not 0.1 <= value <= 1000:
        raise argparse.ArgumentTypeError(f"must be 0 (every frame) or in [0.1, 1000], got {text}")
    return value


def preprocess_arg(text: str) -> str:
    """An argparse type for --preprocess (`0..1`, `-1..1`, `raw` or `MEAN,STD`)."""
    from .classifier import parse_preprocess
    try:
        parse_preprocess(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def add_model_args(p: argparse.ArgumentParser, what: str = "image") -> None:
    """--model, --conf, --iou, --device, --max-det: shared by detect and batch."""
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help=f"converted .tflite model (default: {DEFAULT_MODEL} in the current "
                        "folder, written by `make demo` or `python -m converters`), or its "
                        "segments from converters.segment, comma-separated in order: run as a "
                        "pipeline")
    p.add_argument("--conf", type=unit_interval, default=0.25,
                   help="score threshold, in (0, 1] (default 0.25)")
    p.add_argument("--iou", type=unit_interval, default=0.45,
                   help="NMS IoU threshold, in (0, 1] (default 0.45)")
    p.add_argument("--device", default="auto",
                   help="auto, cpu, tpu, tpu:N, usb, usb:N, pci or pci:N (default auto: the "
                        "Edge TPU for a compiled model, else the CPU; with several Edge "
                        "TPUs, replicas or segments); DEV+DEV runs one copy per device, "
                        "frames in turn, e.g. usb:0+usb:1 or cpu+cpu; for segments, one "
                        "per segment comma-separated, e.g. usb:0,usb:1")
    p.add_argument("--max-det", type=max_det, default=300,
                   help=f"at most this many detections per {what} (default 300)")


def frame_size(text: str) -> tuple[int, int]:
    """argparse type: `640x480` -> (640, 480)."""
    w, sep, h = text.lower().partition("x")
    if not sep or not w.isdigit() or not h.isdigit() or int(w) < 1 or int(h) < 1:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 640x480, got {text!r}")
    return int(w), int(h)


def serve_address(text: str) -> tuple[str, int]:
    """argparse type: `8080`, `HOST:8080`, `[::1]:8080` -> (host, port)."""
    from .serve import parse_address
    try:
        return parse_address(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def error(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)


def run_guarded(run, args: argparse.Namespace) -> int:
    """`run(args)` for a command line: Ctrl-C is exit 130 with one line, and a stdout
    closed early (`| head`) stops quietly, keeping Python from complaining again when it
    flushes stdout at exit."""
    try:
        return run(args)
    except KeyboardInterrupt:
        print("yolo_tpu: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


class StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is now (it may be replaced, e.g. by pytest)."""

    @property  # type: ignore[override]
    def stream(self) -> IO[str]:
        return sys.stderr

    @stream.setter
    def stream(self, value: IO[str]) -> None:
        pass


def setup_logging() -> None:
    """`yolo_tpu: ...` lines on stderr for our logger only (other libraries stay quiet)."""
    if any(isinstance(h, StderrHandler) for h in log.handlers):
        return  # main() called again in the same process (tests): one handler is enough
    handler = StderrHandler()
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


def quiet_failed_delegate() -> None:
    """Hide LiteRT's `Exception ignored in Delegate.__del__` traceback.

    When libedgetpu is absent, `load_delegate` fails inside `Delegate.__init__` and the
    half-built object's `__del__` raises AttributeError (`_library` was never set); Python
    prints that as a traceback below our one-line error. Only that exact case is dropped.
    """
    previous = sys.unraisablehook
    if getattr(previous, "_yolo_tpu", False):
        return  # already installed (main() called again in the same process)

    def hook(unraisable: Any) -> None:
        obj = unraisable.object
        if (issubclass(unraisable.exc_type, AttributeError)
                and getattr(obj, "__qualname__", "") == "Delegate.__del__"):
            return
        previous(unraisable)

    hook._yolo_tpu = True  # type: ignore[attr-defined]
    sys.unraisablehook = hook


def load_detector(args: argparse.Namespace):
    """The Detector, or None after a one-line error (model, device or backend problem)."""
    from .detector import Detector, ModelError  # numba-backed: import once we need it
    quiet_failed_delegate()
    if args.model == DEFAULT_MODEL and not os.path.exists(args.model):
        error(f"no --model given, and the default {DEFAULT_MODEL} is not in "
               f"{os.getcwd()}: pass --model FILE.tflite, or build it here with `make demo` "
               "or `python -m converters CFG WEIGHTS --out-dir build` (needs `pip install "
               "'.[convert]'`)")
        return None
    try:
        return Detector(args.model, device=args.device, conf=args.conf, iou=args.iou,
                        max_det=args.max_det)
    except (ModelError, BackendError) as e:
        error(str(e))
    except ValueError as e:  # a model file the interpreter rejects in some other way
        error(f"{args.model}: {e}")
    return None


def device_ok(device: str) -> bool:
    """Whether --device is well formed (one device, or one per segment separated by commas);
    if not, one error line says why (before any work)."""
    from .replicas import replica_devices
    try:
        for one in device.split(","):
            if replica_devices(one) is None:
                parse_device(one)
    except ValueError as e:
        error(f"--device: {e}")
        return False
    return True


def warm_up(detector, started: float) -> None:
    """One inference on a blank image before the first real one, so one-time work (numba
    loading its machine code, the interpreter packing its weights on the first invoke) is
    reported here as "model ready in X s" and not charged to the first image."""
    import time

    import numpy as np
    detector(np.zeros((detector.meta.height, detector.meta.width, 3), np.uint8))
    log.info("model ready in %.1f s (loaded, and a first inference: not counted in the "
             "per-image times)", time.monotonic() - started)
