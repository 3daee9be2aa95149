"""`python -m converters.quantize MODEL.keras -o OUT.tflite`: Keras -> TFLite, full int8 by default.

int8 is what the Edge TPU runs: every op int8 (TFLITE_BUILTINS_INT8 only, so a float op is
a conversion error, not a silent CPU fallback), uint8 input and output. Calibration uses
real images through the runtime's own letterbox. The model's metadata (anchors, masks,
classes, names, input size, leaky policy) is stored in the flatbuffer, so the runtime needs
only the `.tflite`. float16, dynamic and float32 are the CPU forms users compare against.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
import warnings
from collections.abc import Callable, Iterator
from io import StringIO

import numpy as np

from yolo_tpu.meta import METADATA_KEY, ModelMeta

from .calibration import DEFAULT_CALIB, CalibrationError
from yolo_tpu.native_log import native_stderr_captured

MODES = ("int8", "float16", "dynamic", "float32")
DEFAULT_NUM = 100


def to_tflite(model, mode: str = "int8", io: str = "uint8",
              representative: Callable[[], Iterator[list[np.ndarray]]] | None = None,
              fast: bool = True) -> bytes:
    """Convert a Keras model; `representative` yields calibration batches for int8, whose
    ranges are measured by converters.ranges (`fast`) or TensorFlow's own calibrator."""
    import tensorflow as tf
    tf.get_logger().setLevel("ERROR")
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if mode == "int8":
        if representative is None:
            raise ValueError("int8 needs calibration data")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = converter.inference_output_type = (
            tf.uint8 if io == "uint8" else tf.int8)
    elif mode == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif mode == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif mode != "float32":
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    # The Keras export prints its whole signature to stdout, and the MLIR quantizer writes
    # `fully_quantize: 0, inference_type: 6, ...` straight to fd 2; keep the user's screen
    # for our own progress and report.
    from .ranges import fast_calibration
    with contextlib.redirect_stdout(StringIO()), warnings.catch_warnings(), \
            native_stderr_captured(), (fast_calibration() if fast else contextlib.nullcontext()):
        warnings.simplefilter("ignore")
        return converter.convert()



def with_metadata(tflite: bytes, meta: ModelMeta) -> bytes:
    from yolo_tpu.tflite_file import add_metadata
    return add_metadata(tflite, {METADATA_KEY: meta.to_json().encode()})


def c_array(data: bytes, name: str, header: str | None = None) -> str:
    """The model as C++ source for TensorFlow Lite Micro: `alignas(16) const unsigned char
    NAME[]` (const: it stays in flash, not RAM; 16-byte aligned, as TFLM reads the
    flatbuffer in place) and `const unsigned int NAME_len`, 12 bytes a line as `xxd -i`.
    `header`: included first, so its `extern` declarations give both external linkage
    (a namespace-scope const is otherwise private to its file in C++)."""
    lines = [f'#include "{header}"', ""] if header else []
    lines.append(f"alignas(16) const unsigned char {name}[] = {{")
    for i in range(0, len(data), 12):
        chunk = ", ".join(f"0x{b:02x}" for b in data[i:i + 12])
        lines.append(f"  {chunk}{',' if i + 12 < len(data) else ''}")
    lines += ["};", f"const unsigned int {name}_len = {len(data)};", ""]
    return "\n".join(lines)


def c_header(name: str, guard: str) -> str:
    """The header declaring `c_array`'s two symbols."""
    return (f"#ifndef {guard}\n#define {guard}\n\n"
            f"extern const unsigned char {name}[];\nextern const unsigned int {name}_len;\n\n"
            f"#endif  // {guard}\n")


def c_name(path: str) -> str:
    """A C identifier from a file name (m.tflite -> m_tflite; a leading digit gets g_)."""
    name = re.sub(r"[^0-9a-zA-Z]", "_", os.path.basename(path))
    return f"g_{name}" if name[:1].isdigit() else name


def write_c_array(path: str, data: bytes, name: str) -> None:
    """FILE.cc and FILE.h beside it (each written whole, via a temporary name)."""
    header = os.path.splitext(path)[0] + ".h"
    write(header, c_header(name, c_name(header).upper() + "_").encode())
    write(path, c_array(data, name, os.path.basename(header)).encode())
    print(f"wrote {path} and {header} ({name}, {name}_len)")


def calibration_feed(images: list[np.ndarray], num: int, meta: ModelMeta,
                     progress: bool = True) -> Callable[[], Iterator[list[np.ndarray]]]:
    """The representative dataset: letterboxed real images, with a progress bar."""
    from tqdm import tqdm

    from .calibration import samples, warn_if_few

    warn_if_few(images, num)  # before the bar, so the warning has a line of its own

    def feed():
        # fed as the runtime will feed the model: stretched unless it letterboxes
        it = samples(images, num, meta.width, meta.height, stretch=not meta.letter_box)
        for tensor in tqdm(it, total=num, desc="calibrating", unit="img", disable=not progress,
                           file=sys.stderr):
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


def write(path: str, data: bytes) -> None:
    """Write via a temporary name, so a failed run never leaves a half-written model."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.part"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def add_calibration_args(ap: argparse.ArgumentParser) -> None:
    """--calib, --num, --io, --eval, --min-fidelity: one definition for converters and
    converters.quantize."""
    from .__main__ import fraction, positive_int
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
    from .__main__ import HelpFormatter, fidelity_ok
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
