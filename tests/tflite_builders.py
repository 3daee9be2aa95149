"""Tiny real TFLite models for the Edge TPU checker tests, and flatbuffer edits on them.

Each model is a few layers on a 32x32x3 input, converted with TF 2.21's TFLiteConverter the
way the project's quantizer converts (full int8, uint8 model input/output). The
representative dataset is 4 random arrays: these tests look at structure, not accuracy.
TensorFlow is imported inside the functions so collecting the tests stays cheap.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
from ai_edge_litert import schema_py_generated as schema
import flatbuffers

INPUT_SHAPE = (32, 32, 3)


def _converter(model: Any) -> Any:
    import tensorflow as tf

    return tf.lite.TFLiteConverter.from_keras_model(model)


def quantize_int8(model: Any, io_type: str = "uint8") -> bytes:
    """Full-integer int8 conversion; model input/output of `io_type` (uint8 or float32)."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    shape = (1,) + tuple(int(d) for d in model.inputs[0].shape[1:])

    def representative() -> Any:
        for _ in range(4):
            yield [rng.random(shape, dtype=np.float32)]

    conv = _converter(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    io = {"uint8": tf.uint8, "float32": tf.float32}[io_type]
    conv.inference_input_type = io
    conv.inference_output_type = io
    return conv.convert()


def float_tflite(model: Any) -> bytes:
    """Plain float32 conversion (no quantization)."""
    return _converter(model).convert()


def _nearest_upsample_layer() -> Any:
    """A Keras layer doing a 2x RESIZE_NEAREST_NEIGHBOR with half_pixel_centers=False."""
    import keras
    import tensorflow as tf

    class NearestUpsample(keras.layers.Layer):
        def call(self, x: Any) -> Any:
            size = (x.shape[1] * 2, x.shape[2] * 2)
            return tf.compat.v1.image.resize_nearest_neighbor(x, size, half_pixel_centers=False)

    return NearestUpsample()


def _input(batch_size: int | None = 1) -> Any:
    import keras

    return keras.Input(INPUT_SHAPE, batch_size=batch_size)


def all_supported_model() -> Any:
    """conv+relu, maxpool, nearest resize, concatenation: every op maps."""
    import keras

    L = keras.layers
    x = _input()
    a = L.Conv2D(8, 3, padding="same", activation="relu")(x)
    b = L.MaxPooling2D(2)(a)
    c = _nearest_upsample_layer()(b)
    return keras.Model(x, L.Concatenate()([c, a]))


def leaky_model() -> Any:
    """LEAKY_RELU in the middle: it and every op after it leave the Edge TPU."""
    import keras

    L = keras.layers
    x = _input()
    a = L.Conv2D(8, 3, padding="same", activation="relu")(x)
    b = L.MaxPooling2D(2)(a)
    c = L.LeakyReLU(negative_slope=0.1)(L.Conv2D(8, 1)(b))
    d = L.Maximum()([L.Conv2D(8, 3, padding="same")(c), b])
    e = _nearest_upsample_layer()(d)
    return keras.Model(x, L.Concatenate()([e, a]))


def upsampling_model() -> Any:
    """Keras UpSampling2D: lowered by TF 2.21 to RESHAPE + TILE on rank-5 tensors."""
    import keras

    L = keras.layers
    x = _input()
    a = L.Conv2D(8, 3, padding="same", activation="relu")(x)
    b = L.UpSampling2D(2)(L.MaxPooling2D(2)(a))
    return keras.Model(x, L.Concatenate()([b, a]))


def two_branch_model() -> Any:
    """conv -> LEAKY_RELU on one branch, conv -> conv on the other: two outputs."""
    import keras

    L = keras.layers
    x = _input()
    a = L.LeakyReLU(negative_slope=0.1)(L.Conv2D(8, 3, padding="same")(x))
    b = L.Conv2D(8, 1, activation="relu")(L.Conv2D(8, 3, padding="same", activation="relu")(x))
    return keras.Model(x, [a, L.MaxPooling2D(2)(b)])


def small_conv_model(batch_size: int | None = 1) -> Any:
    """conv+relu then maxpool; batch_size=None leaves the batch dynamic (-1 signature)."""
    import keras

    L = keras.layers
    x = _input(batch_size)
    return keras.Model(x, L.MaxPooling2D(2)(L.Conv2D(8, 3, padding="same", activation="relu")(x)))


# --- flatbuffer edits (object API) --------------------------------------------------------


def _unpack(tflite: bytes) -> Any:
    return schema.ModelT.InitFromObj(schema.Model.GetRootAs(tflite, 0))


def _pack(model: Any) -> bytes:
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _builtin(code: Any) -> int:
    return max(code.builtinCode, code.deprecatedBuiltinCode)


def edit_ops(tflite: bytes, op_name: str, edit: Callable[[Any, Any], None]) -> bytes:
    """Apply `edit(operator, operator_code)` to every `op_name` op of the main subgraph."""
    model = _unpack(tflite)
    code = getattr(schema.BuiltinOperator, op_name)
    for op in model.subgraphs[0].operators:
        op_code = model.operatorCodes[op.opcodeIndex]
        if _builtin(op_code) == code:
            edit(op, op_code)
    return _pack(model)


def with_op_version(tflite: bytes, op_name: str, version: int) -> bytes:
    """The model with `op_name`'s operator-code version set (as a newer converter would)."""

    def edit(op: Any, code: Any) -> None:
        code.version = version

    return edit_ops(tflite, op_name, edit)


def reorder_ops(tflite: bytes, order: list[int]) -> bytes:
    """The model with its main subgraph's operators in `order` (must stay topological)."""
    model = _unpack(tflite)
    graph = model.subgraphs[0]
    graph.operators = [graph.operators[i] for i in order]
    return _pack(model)


def size_limits_model() -> Any:
    """TRANSPOSE and RESIZE_BILINEAR on either side of edgetpu_check.SIZE_LIMITS, one branch each.

    On a 40x40x144 input: the NHWC -> NCHW transpose of a 24x24, 26x26 and 40x40 crop
    (82944, 97344 and 230400 elements), and bilinear resizes 24x24x24 -> 48x48 (2x, 55296),
    33x33x19 -> 66x66 (2x, 82764) and 1x1x256 -> 33x33 (33x, 278784); each branch is a model
    output.
    """
    import keras
    import tensorflow as tf

    L = keras.layers

    class Bilinear(keras.layers.Layer):
        def __init__(self, size: int, **kw: Any) -> None:
            super().__init__(**kw)
            self.size = size

        def call(self, x: Any) -> Any:
            return tf.compat.v1.image.resize_bilinear(x, (self.size, self.size),
                                                      align_corners=True)

    x = keras.Input((40, 40, 144), batch_size=1)
    a = L.Conv2D(144, 1, activation="relu")(x)
    outs = [L.Permute((3, 1, 2))(L.Cropping2D((40 - n) // 2)(a)) for n in (24, 26, 40)]
    small = L.Conv2D(24, 1, activation="relu")(L.Cropping2D(8)(x))
    mid = L.Conv2D(19, 1, activation="relu")(L.Cropping2D(((4, 3), (4, 3)))(x))
    pooled = L.Conv2D(256, 1, activation="relu")(L.GlobalAveragePooling2D(keepdims=True)(x))
    outs += [Bilinear(48)(small), Bilinear(66)(mid), Bilinear(33)(pooled)]
    return keras.Model(x, outs)
