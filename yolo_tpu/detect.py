"""`python -m yolo_tpu.detect --image PATH [PATH ...]`: detect objects in images.

PATH is a file, a folder (its images, sorted) or a glob. One readable line per image on
stdout (stderr with `--json -`, so stdout stays machine-readable), `--json` writes one JSON
line per image, flushed as it goes, `--save DIR` writes annotated copies.

Exit status: 0 every image processed; 1 some input could not be read or found (the others
were still processed); 2 nothing could run (bad model, device or arguments, or no input).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from typing import IO, Any

import cv2
import numpy as np

from . import __version__
from .backends import BackendError, parse_device
from .sources import expand_image_args

# The package's parent: the default model lives in the repo's build/ (`make demo` writes it).
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_MODEL = os.path.join(ROOT, "build", "yolov3-tiny_int8.tflite")

log = logging.getLogger("yolo_tpu")

# Leading bytes -> format name, to say *what* is wrong with a file OpenCV will not decode.
_MAGIC = ((b"\xff\xd8\xff", "JPEG"), (b"\x89PNG\r\n\x1a\n", "PNG"), (b"BM", "BMP"),
          (b"GIF8", "GIF"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"))
# ANYCOLOR|ANYDEPTH rather than IMREAD_UNCHANGED: grey stays one channel and 16 bit stays
# 16 bit as with UNCHANGED, but the EXIF orientation is applied (UNCHANGED ignores it, so a
# phone photo would be detected sideways); alpha is dropped, which letterbox would do anyway.
_IMREAD_FLAGS = cv2.IMREAD_ANYCOLOR | cv2.IMREAD_ANYDEPTH


class ImageError(ValueError):
    """An input file that is not a usable image: the message says why (not the path)."""


# ---------------------------------------------------------------- reading images

def _format(raw: bytes) -> str | None:
    if raw[:4] == b"RIFF" and raw[8:12] == b"WEBP":
        return "WebP"
    return next((name for magic, name in _MAGIC if raw.startswith(magic)), None)


def _truncation(raw: bytes, fmt: str | None) -> str | None:
    """Why a JPEG/PNG is cut short, or None: checked before decoding, as libpng would
    otherwise print its own complaint to stderr next to ours."""
    # Entropy-coded JPEG data never holds FF D9 (0xFF is stuffed), so a scan that ends
    # properly is followed by the end-of-image marker.
    if fmt == "JPEG" and raw.rfind(b"\xff\xd9") < raw.rfind(b"\xff\xda"):
        return "truncated JPEG (no end-of-image marker after the image data)"
    if fmt == "PNG" and raw.rfind(b"IEND") < 0:
        return "truncated PNG (no IEND chunk)"
    return None


def to_uint8(image: np.ndarray) -> np.ndarray:
    """8-bit pixels: 16-bit images keep their top byte (as cv2.imread's default does)."""
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        return (image >> 8).astype(np.uint8)
    raise ImageError(f"unsupported pixel type {image.dtype} (expected 8 or 16 bit)")


def read_image(path: str) -> np.ndarray:
    """A uint8 grey, BGR or BGRA image; ImageError saying why a file is not one."""
    try:
        raw = np.fromfile(path, np.uint8)  # bytes first: non-ASCII paths, and a reason on failure
    except OSError as e:
        raise ImageError(f"cannot read: {e.strerror or e}") from None
    if raw.size == 0:
        raise ImageError("empty file")
    head = raw[:16].tobytes()
    fmt = _format(head)
    reason = _truncation(raw.tobytes(), fmt) if fmt in ("JPEG", "PNG") else None
    if reason:
        raise ImageError(reason)
    image = cv2.imdecode(raw, _IMREAD_FLAGS)
    if image is None:
        raise ImageError(f"corrupt {fmt} data, OpenCV cannot decode it" if fmt
                         else "not an image (OpenCV recognises no image format in it)")
    return to_uint8(image)


# ---------------------------------------------------------------- output

def record(source: str, image: np.ndarray, detections: Any) -> dict[str, Any]:
    """The JSON line of one image: boxes in its own pixels."""
    h, w = image.shape[:2]
    return {"source": source, "frame": 0, "width": int(w), "height": int(h),
            "detections": detections.to_dict()}


def summary_line(source: str, image: np.ndarray, detections: Any, ms: float) -> str:
    """`dog.jpg 768x576: dog 0.89, bicycle 0.81 (12.3 ms)`."""
    h, w = image.shape[:2]
    found = ", ".join(f"{d.label} {d.score:.2f}" for d in detections) or "no detections"
    return f"{source} {w}x{h}: {found} ({ms:.1f} ms)"


def save_path(folder: str, source: str, taken: set[str]) -> str:
    """`folder/<name of source>`; a name already written in this run gets `_2`, `_3`, ..."""
    stem, ext = os.path.splitext(os.path.basename(source))
    path, n = os.path.join(folder, stem + ext), 1
    while path in taken:
        n += 1
        path = os.path.join(folder, f"{stem}_{n}{ext}")
    taken.add(path)
    return path


# ---------------------------------------------------------------- arguments

def unit_interval(text: str) -> float:
    """argparse type: a float in (0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m yolo_tpu.detect",
        description="Detect objects in images with a converted YOLO .tflite model "
                    "(Edge TPU or CPU).",
        epilog="Exit status: 0 all images processed; 1 some input could not be read or "
               "found (the rest were processed); 2 nothing could run (model, device, "
               "arguments, or no input).")
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help="converted .tflite model (default: build/yolov3-tiny_int8.tflite "
                        "in the repo, written by `make demo`)")
    p.add_argument("--image", nargs="+", required=True, metavar="PATH",
                   help="image files, folders (their images, sorted) or globs")
    p.add_argument("--conf", type=unit_interval, default=0.25,
                   help="score threshold, in (0, 1] (default 0.25)")
    p.add_argument("--iou", type=unit_interval, default=0.45,
                   help="NMS IoU threshold, in (0, 1] (default 0.45)")
    p.add_argument("--device", default="auto",
                   help="auto, cpu, tpu, tpu:N, usb, usb:N, pci or pci:N (default auto: the "
                        "Edge TPU for a compiled model, else the CPU)")
    p.add_argument("--max-det", type=positive_int, default=300,
                   help="at most this many detections per image (default 300)")
    p.add_argument("--save", metavar="DIR",
                   help="write annotated copies here, under the same file names")
    p.add_argument("--json", metavar="FILE",
                   help="write one JSON line per image to FILE ('-': stdout)")
    p.add_argument("--version", action="version", version=f"yolo_tpu {__version__}")
    return p.parse_args(argv)


# ---------------------------------------------------------------- main

def _error(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is now (it may be replaced, e.g. by pytest)."""

    @property  # type: ignore[override]
    def stream(self) -> IO[str]:
        return sys.stderr

    @stream.setter
    def stream(self, value: IO[str]) -> None:
        pass


def _setup_logging() -> None:
    """`yolo_tpu: ...` lines on stderr for our logger only (other libraries stay quiet)."""
    if any(isinstance(h, _StderrHandler) for h in log.handlers):
        return  # main() called again in the same process (tests): one handler is enough
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


def _quiet_failed_delegate() -> None:
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


def _check_save_dir(folder: str, files: list[str]) -> str | None:
    """Why annotated copies cannot go to `folder` (would overwrite an input), or None."""
    target = os.path.realpath(folder)
    for f in files:
        if os.path.realpath(os.path.dirname(os.path.abspath(f))) == target:
            return (f"--save {folder}: is the folder of input {f}; annotated copies would "
                    "overwrite the inputs")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        return f"--save {folder}: {e.strerror or e}"
    return None


def load_detector(args: argparse.Namespace):
    """The Detector, or None after a one-line error (model, device or backend problem)."""
    from .detector import Detector, ModelError  # numba-backed: import once we need it
    _quiet_failed_delegate()
    try:
        return Detector(args.model, device=args.device, conf=args.conf, iou=args.iou,
                        max_det=args.max_det)
    except (ModelError, BackendError) as e:
        _error(str(e))
    except ValueError as e:  # a model file the interpreter rejects in some other way
        _error(f"{args.model}: {e}")
    return None


def run(args: argparse.Namespace) -> int:
    try:
        parse_device(args.device)
    except ValueError as e:
        _error(f"--device: {e}")
        return 2
    files, missing = expand_image_args(args.image)
    for e in missing:
        _error(str(e))
    if not files:
        return 2
    if args.save and (problem := _check_save_dir(args.save, files)):
        _error(problem)
        return 2
    detector = load_detector(args)
    if detector is None:
        return 2
    text_out: IO[str] = sys.stderr if args.json == "-" else sys.stdout
    json_out: IO[str] | None = None
    if args.json == "-":
        json_out = sys.stdout
    elif args.json:
        try:
            json_out = open(args.json, "w", encoding="utf-8")
        except OSError as e:
            _error(f"--json {args.json}: {e.strerror or e}")
            return 2
    try:
        return _process(detector, files, args, json_out, text_out, failures=len(missing))
    finally:
        if json_out is not None and json_out is not sys.stdout:
            json_out.close()


def _summary(times: list[float], n_dets: int, failures: int) -> str:
    """`6 images, 11 detections, 0 failures, 39.7 ms/image mean (17.6 after the first)`.

    The first image also pays one-off costs (numba loads its cached machine code on the
    first call), so the steady-state figure is given beside the plain mean.
    """
    n = len(times)
    text = f"{n} image{'s' * (n != 1)}, {n_dets} detections, {failures} failures"
    if n:
        text += f", {sum(times) / n:.1f} ms/image mean"
    if n > 1:
        text += f" ({sum(times[1:]) / (n - 1):.1f} after the first)"
    return text


def _process(detector, files: list[str], args: argparse.Namespace, json_out: IO[str] | None,
             text_out: IO[str], failures: int) -> int:
    """Detect in every file; a bad file is reported and skipped. Exit status 0 or 1."""
    from .draw import draw_detections
    times: list[float] = []
    n_dets = 0
    saved: set[str] = set()
    for path in files:
        try:
            image = read_image(path)
        except ImageError as e:
            _error(f"{path}: {e}")
            failures += 1
            continue
        t0 = time.perf_counter()
        dets = detector(image)
        ms = (time.perf_counter() - t0) * 1e3
        times.append(ms)
        n_dets += len(dets)
        if json_out is not None:
            json_out.write(json.dumps(record(path, image, dets)) + "\n")
            json_out.flush()  # a crash or Ctrl-C later must not lose lines already produced
        print(summary_line(path, image, dets, ms), file=text_out, flush=True)
        if args.save:
            out = save_path(args.save, path, saved)
            try:
                ok = cv2.imwrite(out, draw_detections(image, dets))
            except cv2.error as e:
                ok, why = False, str(e).strip().splitlines()[-1]
            else:
                why = "OpenCV cannot write this file type"
            if not ok:
                _error(f"{out}: cannot save annotated copy: {why}")
                failures += 1
    print(f"yolo_tpu: {_summary(times, n_dets, failures)}", file=sys.stderr, flush=True)
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    _setup_logging()
    try:
        return run(args)
    except KeyboardInterrupt:
        print("yolo_tpu: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # stdout closed early (`| head`): stop quietly, and keep Python from complaining
        # again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
