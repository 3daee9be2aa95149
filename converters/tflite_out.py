"""Writing models out: Keras -> TFLite bytes (full int8 by default), the yolo_tpu
metadata, TensorFlow Lite Micro C source, and atomic files. The conversion's library half,
shared by `converters.quantize` (YOLO models) and `converters.generic` (any Keras model)."""
from __future__ import annotations

import contextlib
import os
import re
import warnings
from collections.abc import Callable, Iterator
from io import StringIO

import numpy as np

from yolo_tpu.meta import METADATA_KEY, ModelMeta
from yolo_tpu.native_log import native_stderr_captured

MODES = ("int8", "float16", "dynamic", "float32")


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
    from .progress import step
    from .ranges import fast_calibration
    step(f"converting to {mode} TFLite (TensorFlow traces the model first)")
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


def write(path: str, data: bytes) -> None:
    """Write via a temporary name, so a failed run never leaves a half-written model."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.part"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


