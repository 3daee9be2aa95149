"""Checked darknet layers + folded weights -> a Keras model with a fixed (1, H, W, 3) input.

Every choice here is made for the TFLite graph it lowers to: padding that matches darknet
without an extra op where Keras agrees, upsampling as RESIZE_NEAREST_NEIGHBOR (Keras'
UpSampling2D lowers to TILE on rank-5 tensors, which the Edge TPU cannot run), and leaky
ReLU in the form the `--leaky` policy asks for.
"""
from __future__ import annotations

import zipfile

import numpy as np

from yolo_tpu.meta import Head, ModelMeta

from yolo_tpu.native_log import native_stderr_captured

with native_stderr_captured():  # the oneDNN notice TensorFlow prints as it loads
    import keras
    import tensorflow as tf

from .cfg import Layer, Network
from .darknet import DEFAULT_LEAKY, LEAKY_POLICIES
from .weights import ConvWeights
META_ENTRY = "yolo_tpu.json"  # stored beside config.json inside the .keras zip
LEAKY_SLOPE = 0.1  # darknet's leaky_activate: x > 0 ? x : .1 * x
tf.get_logger().setLevel("ERROR")  # resize_nearest_neighbor's deprecation notice


@keras.saving.register_keras_serializable(package="yolo_tpu")
class NearestUpsample(keras.layers.Layer):
    """Darknet `[upsample]`: nearest neighbour, lowered to TFLite RESIZE_NEAREST_NEIGHBOR."""

    def __init__(self, stride: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.stride = stride

    def call(self, x):
        h, w = x.shape[1], x.shape[2]
        # half_pixel_centers=False is darknet's (and the Edge TPU's) pixel mapping.
        return tf.compat.v1.image.resize_nearest_neighbor(
            x, (h * self.stride, w * self.stride), align_corners=False,
            half_pixel_centers=False)

    def compute_output_shape(self, shape):
        return (shape[0], shape[1] * self.stride, shape[2] * self.stride, shape[3])

    def get_config(self):
        return {**super().get_config(), "stride": self.stride}


@keras.saving.register_keras_serializable(package="yolo_tpu")
class LeakyMaximum(keras.layers.Layer):
    """Leaky ReLU as max(x, 0.1 x): exact, and MUL + MAXIMUM both run on the Edge TPU."""

    def call(self, x):
        return keras.ops.maximum(x, x * LEAKY_SLOPE)

    def compute_output_shape(self, shape):
        return shape


@keras.saving.register_keras_serializable(package="yolo_tpu")
class LeakyAddRelu(keras.layers.Layer):
    """Leaky ReLU as 0.1 x + relu(0.9 x): exact, MUL + MUL(ReLU) + ADD, all Edge TPU ops.

    Unlike max(x, 0.1 x) it quantizes well: each op gets its own int8 scale, whereas the
    int8 MAXIMUM shares one scale with its inputs and so clips the convolution output at
    the leaky output's minimum (0.1 x its true minimum).
    """

    def call(self, x):
        return x * LEAKY_SLOPE + keras.ops.relu(x * (1 - LEAKY_SLOPE))

    def compute_output_shape(self, shape):
        return shape


def _activation(x, act: str, leaky: str, name: str):
    if act == "linear":
        return x
    if act == "relu" or (act == "leaky" and leaky == "relu"):
        return keras.layers.ReLU(name=name)(x)
    if act == "logistic":
        return keras.layers.Activation("sigmoid", name=name)(x)
    if leaky == "maximum":
        return LeakyMaximum(name=name)(x)
    if leaky == "addrelu":
        return LeakyAddRelu(name=name)(x)
    if leaky == "prelu":
        return keras.layers.PReLU(keras.initializers.Constant(LEAKY_SLOPE), shared_axes=[1, 2],
                                  name=name)(x)
    return keras.layers.LeakyReLU(LEAKY_SLOPE, name=name)(x)


def _padding(size: int, stride: int, pad: int, n: int) -> tuple[str, tuple[int, int]]:
    """Keras padding mode for darknet's symmetric `pad`, plus explicit (top, bottom) if needed.

    Darknet pads `pad` on both sides; Keras 'same' puts the smaller half of the needed padding
    on top. They agree for stride 1; for stride 2 darknet pads top/left, so we pad
    explicitly (a PAD op, which the Edge TPU runs) and convolve 'valid'.
    """
    out = (n + 2 * pad - size) // stride + 1
    total = max(0, (out - 1) * stride + size - n)
    if out == -(-n // stride) and total // 2 == pad:
        return "same", (0, 0)
    if pad == 0:
        return "valid", (0, 0)
    return "valid", (pad, max(0, total - pad))


def _conv(x, layer: Layer, w: ConvWeights, leaky: str):
    p, i = layer.params, layer.index
    h, wd = x.shape[1], x.shape[2]
    mode, (top, bottom) = _padding(p["size"], p["stride"], p["pad"], h)
    _, (left, right) = _padding(p["size"], p["stride"], p["pad"], wd)
    if top or bottom or left or right:
        x = keras.layers.ZeroPadding2D(((top, bottom), (left, right)), name=f"pad_{i}")(x)
    act = p["activation"]
    # Plain ReLU (and the relu policy's stand-in for leaky) fuses into the convolution.
    fused = "relu" if act == "relu" or (act == "leaky" and leaky == "relu") else None
    if p["groups"] > 1:
        conv = keras.layers.DepthwiseConv2D(p["size"], p["stride"], mode, activation=fused,
                                            name=f"conv_{i}")
        x = conv(x)
        conv.set_weights([w.kernel.reshape(p["size"], p["size"], p["filters"], 1), w.bias])
    else:
        conv = keras.layers.Conv2D(p["filters"], p["size"], p["stride"], mode,
                                   activation=fused, name=f"conv_{i}")
        x = conv(x)
        conv.set_weights([w.kernel, w.bias])
    return x if fused else _activation(x, act, leaky, f"{act}_{i}")


def build_model(net: Network, weights: dict[int, ConvWeights], leaky: str = DEFAULT_LEAKY,
                names: tuple[str, ...] = ()) -> tuple[keras.Model, ModelMeta]:
    """One pass over the layers, like darknet's forward pass; outputs are the raw heads."""
    if leaky not in LEAKY_POLICIES:
        raise ValueError(f"leaky policy must be one of {LEAKY_POLICIES}, got {leaky!r}")
    inputs = keras.Input((net.height, net.width, net.channels), batch_size=1, name="image")
    outs: list = []
    heads: list[tuple] = []
    x = inputs
    for layer in net.layers:
        i, p = layer.index, layer.params
        if layer.kind == "convolutional":
            x = _conv(x, layer, weights[i], leaky)
        elif layer.kind == "maxpool":
            x = keras.layers.MaxPooling2D(p["size"], p["stride"], "same", name=f"maxpool_{i}")(x)
        elif layer.kind == "route":
            srcs = [outs[j] for j in layer.inputs]
            x = srcs[0] if len(srcs) == 1 else keras.layers.Concatenate(name=f"route_{i}")(srcs)
        elif layer.kind == "shortcut":
            x = keras.layers.Add(name=f"shortcut_{i}")([x, outs[layer.inputs[1]]])
            x = _activation(x, p["activation"], leaky, f"{p['activation']}_{i}")
        elif layer.kind == "upsample":
            x = NearestUpsample(p["stride"], name=f"upsample_{i}")(x)
        elif layer.kind == "yolo":
            heads.append((x, layer))
        outs.append(x)
    classes = {layer.params["classes"] for _, layer in heads}
    if len(classes) != 1:
        raise ValueError(f"{net.path}: [yolo] layers disagree on classes: {sorted(classes)}")
    meta = ModelMeta(
        width=net.width, height=net.height, classes=classes.pop(), names=tuple(names),
        leaky=leaky,
        heads=tuple(Head(tuple(l.params["mask"]),
                         tuple(tuple(l.params["anchors"][m]) for m in l.params["mask"]),
                         net.width // l.shape[1]) for _, l in heads))
    model = keras.Model(inputs, [t for t, _ in heads], name="yolo")
    return model, meta


def save_model(model: keras.Model, meta: ModelMeta, path: str) -> None:
    """Save as `.keras` with the runtime metadata stored as an extra entry in the archive."""
    model.save(path)
    with zipfile.ZipFile(path, "a") as z:
        z.writestr(META_ENTRY, meta.to_json())


def load_model(path: str) -> tuple[keras.Model, ModelMeta]:
    """Load a `.keras` written by `save_model`; a plain Keras file is a clear error."""
    try:
        with zipfile.ZipFile(path) as z:
            meta = ModelMeta.from_json(z.read(META_ENTRY))
    except (OSError, zipfile.BadZipFile, KeyError, ValueError) as e:
        raise ValueError(f"{path}: not a yolo_tpu .keras model ({e})") from None
    return keras.models.load_model(path, compile=False), meta


def predict(model: keras.Model, image_rgb01: np.ndarray) -> list[np.ndarray]:
    """Raw head outputs for one (H, W, 3) or (1, H, W, 3) float image in 0..1."""
    x = image_rgb01[None] if image_rgb01.ndim == 3 else image_rgb01
    outs = model(x.astype(np.float32), training=False)
    outs = outs if isinstance(outs, (list, tuple)) else [outs]
    return [np.asarray(o) for o in outs]
