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

MODES = ("int8", "float16", "dynamic", "float32")
DEFAULT_NUM = 100


def to_tflite(model, mode: str = "int8", io: str = "uint8",
              representative: Callable[[], Iterator[list[np.ndarray]]] | None = None) -> bytes:
    """Convert a Keras model; `representative` yields calibration batches for int8."""
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
    # The Keras export prints its whole signature to stdout; keep the user's screen for
    # our own progress and report.
    with contextlib.redirect_stdout(StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return converter.convert()


def with_metadata(tflite: bytes, meta: ModelMeta) -> bytes:
    from yolo_tpu.tflite_file import add_metadata
    return add_metadata(tflite, {METADATA_KEY: meta.to_json().encode()})


def c_array(data: bytes, name: str) -> str:
    """The model as a C array, in the layout `xxd -i` writes."""
    lines = [f"unsigned char {name}[] = {{"]
    for i in range(0, len(data), 12):
        chunk = ", ".join(f"0x{b:02x}" for b in data[i:i + 12])
        lines.append(f"  {chunk}{',' if i + 12 < len(data) else ''}")
    lines += ["};", f"unsigned int {name}_len = {len(data)};", ""]
    return "\n".join(lines)


def c_name(path: str) -> str:
    return re.sub(r"[^0-9a-zA-Z]", "_", os.path.basename(path))


def calibration_feed(paths: list[str], num: int, meta: ModelMeta,
                     progress: bool = True) -> Callable[[], Iterator[list[np.ndarray]]]:
    """The representative dataset: letterboxed real images, with a progress bar.

    The images are read here, so a bad --calib fails before TensorFlow's long set-up.
    """
    from tqdm import tqdm

    from .calibration import load_images, samples
    images = load_images(paths)

    def feed():
        # fed as the runtime will feed the model: stretched unless it letterboxes
        it = samples(images, num, meta.width, meta.height, stretch=not meta.letter_box)
        for tensor in tqdm(it, total=num, desc="calibrating", unit="img", disable=not progress,
                           file=sys.stderr):
            yield [tensor]
    return feed


def quantize(model, meta: ModelMeta, mode: str = "int8", calib: list[str] | None = None,
             num: int = DEFAULT_NUM, io: str = "uint8", progress: bool = True) -> bytes:
    """Keras model + metadata -> `.tflite` bytes with the metadata embedded."""
    feed = calibration_feed(list(calib or DEFAULT_CALIB), num, meta, progress) \
        if mode == "int8" else None
    return with_metadata(to_tflite(model, mode, io, feed), meta)


def write(path: str, data: bytes) -> None:
    """Write via a temporary name, so a failed run never leaves a half-written model."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.part"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m converters.quantize",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("model", help=".keras model written by converters.darknet")
    ap.add_argument("-o", "--output", required=True, help="output .tflite")
    ap.add_argument("--mode", choices=MODES, default="int8")
    ap.add_argument("--calib", nargs="+", metavar="PATH",
                    help="calibration images: files, folders, globs or videos "
                         "(default: three of the bundled sample photos)")
    ap.add_argument("--num", type=int, default=DEFAULT_NUM,
                    help=f"calibration samples (default {DEFAULT_NUM})")
    ap.add_argument("--io", choices=("uint8", "int8"), default="uint8",
                    help="int8 mode: type of the model's input and outputs")
    ap.add_argument("--eval", nargs="+", metavar="PATH",
                    help="images for the quantization-cost report (default: the bundled "
                         "sample photos not used for calibration)")
    ap.add_argument("--c-array", metavar="FILE.cc", help="also write the model as a C array")
    args = ap.parse_args(argv)
    from .keras_model import load_model
    try:
        model, meta = load_model(args.model)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        data = quantize(model, meta, args.mode, args.calib, args.num, args.io)
    except CalibrationError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    write(args.output, data)
    print(f"wrote {args.output} ({len(data) / 1e6:.2f} MB, {args.mode})")
    if args.c_array:
        os.makedirs(os.path.dirname(os.path.abspath(args.c_array)), exist_ok=True)
        with open(args.c_array, "w") as f:
            f.write(c_array(data, c_name(args.output)))
        print(f"wrote {args.c_array}")
    from .accuracy import report_quantization_cost
    print(report_quantization_cost(model, meta, args.output, args.model, args.calib,
                                   args.eval))
    return 0


if __name__ == "__main__":
    sys.exit(main())
