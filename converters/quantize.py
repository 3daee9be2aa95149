"""`python -m converters.quantize MODEL.keras -o OUT.tflite`: Keras -> TFLite, full int8 by default.

int8 is what the Edge TPU runs: every op int8 (TFLITE_BUILTINS_INT8 only, so a float op is
a conversion error, not a silent CPU fallback), uint8 input and output. Calibration uses
real images through the runtime's own letterbox. The model's metadata (anchors, masks,
classes, names, input size, leaky policy) is stored in the flatbuffer, so the runtime needs
only the `.tflite`. float16, dynamic and float32 are the CPU forms users compare against.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterator

import numpy as np

from yolo_tpu.meta import ModelMeta

from .calibration import DEFAULT_CALIB, CalibrationError

from .tflite_out import (  # noqa: F401 (re-exported: the converter's API)
    MODES, c_array, c_header, c_name, to_tflite, with_metadata, write, write_c_array)

DEFAULT_NUM = 100


def calibration_feed(images: list[np.ndarray], num: int, meta: ModelMeta,
                     progress: bool = True) -> Callable[[], Iterator[list[np.ndarray]]]:
    """The representative dataset: letterboxed real images, with a progress bar."""
    from .calibration import samples, warn_if_few
    from .progress import progress as report

    warn_if_few(images, num)  # before the bar, so the warning has a line of its own

    def feed():
        # fed as the runtime will feed the model: stretched unless it letterboxes
        it = samples(images, num, meta.width, meta.height, stretch=not meta.letter_box)
        for tensor in report(it, num, "calibrating", enabled=progress):
            yield [tensor]
    return feed


def quantize(model, meta: ModelMeta, mode: str = "int8", calib: list[str] | None = None,
             num: int = DEFAULT_NUM, io: str = "uint8", progress: bool = True,
             images: list[np.ndarray] | None = None) -> bytes:
    """Keras model + metadata -> `.tflite` bytes with the metadata embedded.

    int8 calibrates on `images` if given (already read), else on the files `calib` names.
    """
    feed = None
    if mode == "int8":
        if num < 1:  # with no samples TensorFlow silently writes a float model
            raise CalibrationError(f"int8 needs at least 1 calibration sample, got {num}")
        if images is None:
            from .calibration import load_images
            images = load_images(list(calib or DEFAULT_CALIB))
        feed = calibration_feed(images, num, meta, progress)
    return with_metadata(to_tflite(model, mode, io, feed), meta)


def add_calibration_args(ap: argparse.ArgumentParser) -> None:
    """--calib, --num, --io, --eval, --min-fidelity: one definition for converters and
    converters.quantize."""
    from .cli import fraction, positive_int
    from .accuracy import HOLD_OUT, MIN_FIDELITY
    ap.add_argument("--calib", nargs="+", metavar="PATH",
                    help="calibration images/videos: files, folders or globs (default: "
                         f"{', '.join(os.path.basename(p) for p in DEFAULT_CALIB)} from samples/)")
    ap.add_argument("--num", type=positive_int, default=DEFAULT_NUM, help="calibration samples")
    ap.add_argument("--io", choices=("uint8", "int8"), default="uint8",
                    help="type of the int8 model's input and outputs")
    ap.add_argument("--eval", nargs="+", metavar="PATH",
                    help="images for the fidelity report (default: every "
                         f"{HOLD_OUT}th --calib photo, held out of calibration; without "
                         "--calib, the sample photos not calibrated on, for a COCO model)")
    ap.add_argument("--min-fidelity", type=fraction, default=MIN_FIDELITY,
                    help="exit 1 when the int8 model's fidelity to the exact float model "
                         "(F1 of matched detections at conf 0.25) is below this; 0 accepts any")


def main(argv: list[str] | None = None) -> int:
    from .cli import HelpFormatter, fidelity_ok
    ap = argparse.ArgumentParser(prog="python -m converters.quantize",
                                 description=__doc__.split("\n")[0],
                                 formatter_class=HelpFormatter)
    ap.add_argument("model", help=".keras model written by converters.darknet, or any Keras "
                                  "model (.keras, .h5, a SavedModel folder)")
    ap.add_argument("-o", "--output", required=True, help="output .tflite")
    ap.add_argument("--mode", choices=MODES, default="int8", help="TFLite form")
    add_calibration_args(ap)
    ap.add_argument("--c-array", metavar="FILE.cc",
                    help="also write the model as TensorFlow Lite Micro source, and FILE.h")
    from .generic import add_args, dispatch
    add_args(ap)
    args = ap.parse_args(argv)
    from . import missing_tensorflow
    if problem := missing_tensorflow():
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if (status := dispatch(args)) is not None:  # any Keras model not from converters.darknet
        return status
    args.io = args.io or "uint8"
    from .progress import step
    step("loading TensorFlow")
    from .accuracy import is_coco, measure, no_fidelity_reason, size_line, split_images
    from .calibration import load_images
    from .keras_model import load_model
    try:
        model, meta = load_model(args.model)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    coco = is_coco(meta.names, meta.classes)
    try:
        calib_files, eval_paths = split_images(args.calib, args.eval, coco)
        images = load_images(calib_files) if args.mode == "int8" else None
    except CalibrationError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    data = quantize(model, meta, args.mode, None, args.num, args.io, images=images)
    write(args.output, data)
    print(f"wrote {args.output} ({len(data) / 1e6:.2f} MB, {args.mode})")
    if args.c_array:
        write_c_array(args.c_array, data, c_name(args.output))
    if not eval_paths:
        print(no_fidelity_reason(args.calib, coco))
        return 0
    if meta.leaky == "relu":
        print(f"note: {args.model} was built with --leaky relu, so the reference below is its "
              "ReLU float model, not darknet's leaky arithmetic; `python -m converters` "
              "measures against the exact model")
    fidelity = measure(model, meta, args.output, eval_paths)
    print(fidelity.describe())
    print(size_line(args.output, args.model))
    return 0 if fidelity_ok(fidelity, args.min_fidelity, meta.leaky) else 1


if __name__ == "__main__":
    sys.exit(main())
