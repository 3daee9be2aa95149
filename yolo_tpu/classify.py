"""`python -m yolo_tpu.classify`: the top classes of images, video files and cameras.

`--model M.tflite` is any image classifier from `converters.quantize` (or any one-input
image `.tflite`); `--image PATH ...` prints one line per image, `--video FILE` and
`--cam [N]` one per frame (`--max-frames N` to stop early), `--json FILE` one JSON line
each. The model runs where `--device` says, as for `yolo_tpu.detect` (a
`*_edgetpu.tflite` on the Edge TPU). Exit status: 0 every input classified; 1 some input
could not be read; 2 nothing could run (bad model, device, arguments, no input).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from typing import IO, Any

from . import __version__
from .backends import BackendError, parse_device
from .cli import error as _error, positive_int as _positive_int, preprocess_arg, run_guarded, \
    setup_logging
from .sources import SourceError, VideoSource, camera_spec, expand_image_args, video_spec


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from .classifier import PREPROCESS, accept_negative_ranges
    p = argparse.ArgumentParser(prog="python -m yolo_tpu.classify",
                                description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="classifier .tflite (or *_edgetpu.tflite)")
    p.add_argument("--labels", metavar="FILE",
                   help="class names, one per line (default: those stored in the model)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--image", nargs="+", metavar="PATH", help="image files, folders or globs")
    src.add_argument("--video", metavar="FILE", help="a video file: every frame, in order")
    src.add_argument("--cam", nargs="?", const="0", metavar="INDEX|DEVICE",
                     help="a camera (default 0)")
    p.add_argument("--top", type=_positive_int, default=5, help="classes to report")
    p.add_argument("--device", default="auto",
                   help="auto (Edge TPU for a compiled model), cpu, tpu, tpu:usb:0, ...")
    p.add_argument("--preprocess", type=preprocess_arg, metavar="|".join(PREPROCESS) + "|MEAN,STD",
                   help="how pixels 0..255 become the input (default: as stored in the model)")
    p.add_argument("--json", metavar="FILE", help="one JSON line per image or frame ('-': stdout)")
    p.add_argument("--max-frames", type=_positive_int, metavar="N",
                   help="stop a video or camera after N frames")
    p.add_argument("--version", action="version", version=f"yolo_tpu {__version__}")
    accept_negative_ranges(p)
    return p.parse_args(argv)


def load_classifier(args: argparse.Namespace):
    """The Classifier, or None after a one-line error."""
    from .classifier import Classifier, read_labels
    from .model_trial import ModelError
    try:
        labels = read_labels(args.labels) if args.labels else None
        return Classifier(args.model, device=args.device, labels=labels,
                          preprocess=args.preprocess, top=args.top)
    except (ModelError, BackendError) as e:
        _error(str(e))
    except ValueError as e:  # a model file the interpreter rejects in some other way
        _error(f"{args.model}: {e}")
    return None


def describe(source: str, top: list, ms: float) -> str:
    return f"{source}: " + ", ".join(f"{t.label} {t.score:.3f}" for t in top) + f" ({ms:.1f} ms)"


def record(source: str, top: list, ms: float, frame: int | None = None) -> dict[str, Any]:
    rec: dict[str, Any] = {"source": source}
    if frame is not None:
        rec["frame"] = frame
    rec["top"] = [{"class": t.class_id, "label": t.label, "score": round(t.score, 6)} for t in top]
    rec["ms"] = round(ms, 3)
    return rec


def _items(args: argparse.Namespace, files: list[str], failures: list[str]):
    """(source name, frame index or None, BGR image) of every input, in order; an
    unreadable image is reported, counted in `failures` and skipped."""
    from .detect import ImageError, read_image
    if args.image is not None:
        for path in files:
            try:
                yield path, None, read_image(path)
            except ImageError as e:
                failures.append(f"{path}: {e}")
                _error(f"{path}: {e}")
        return
    spec = video_spec(args.video) if args.video is not None else camera_spec(args.cam)
    with VideoSource(spec).open() as source:
        for frame in source.frames():
            yield source.name, frame.index, frame.image
            if args.max_frames and frame.index + 1 >= args.max_frames:
                break


def run(args: argparse.Namespace) -> int:
    try:
        for one in args.device.split(","):
            parse_device(one)
    except ValueError as e:
        _error(f"--device: {e}")
        return 2
    failures: list[str] = []
    files: list[str] = []
    if args.image is not None:
        files, missing = expand_image_args(args.image)
        for e in missing:
            _error(str(e))
            failures.append(str(e))
        if not files:
            return 2
    else:
        try:
            video_spec(args.video) if args.video is not None else camera_spec(args.cam)
        except SourceError as e:
            _error(str(e))
            return 2
    classifier = load_classifier(args)
    if classifier is None:
        return 2
    out: IO[str] | None = None
    if args.json:
        try:
            out = sys.stdout if args.json == "-" else open(args.json, "w", encoding="utf-8")
        except OSError as e:
            _error(f"--json {args.json}: {e.strerror or e}")
            return 2
    text = sys.stderr if args.json == "-" else sys.stdout
    count = 0
    try:
        for source, frame, image in _items(args, files, failures):
            start = time.perf_counter()
            top = classifier(image)
            ms = (time.perf_counter() - start) * 1e3
            name = source if frame is None else f"{source} frame {frame}"
            print(describe(name, top, ms), file=text, flush=True)
            if out is not None:
                out.write(json.dumps(record(source, top, ms, frame)) + "\n")
                out.flush()
            count += 1
    except SourceError as e:
        _error(str(e))
        return 2 if count == 0 else 1
    finally:
        if out is not None and out is not sys.stdout:
            out.close()
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging()
    return run_guarded(run, args)


if __name__ == "__main__":
    sys.exit(main())
