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
from .leaky import DEFAULT_LEAKY, LEAKY_POLICIES
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


@keras.saving.register_keras_serializable(package="yolo_tpu")
class Mish(keras.layers.Layer):
    """x * tanh(softplus(x)), darknet's mish. Lowers to EXP/LOG/TANH: CPU only.

    The input to softplus is capped at 20 (darknet's own MISH_THRESHOLD: above it softplus
    is x and tanh of it 1.0 in float32), so EXP never overflows: an infinite calibration
    range would make the int8 converter abort."""

    def call(self, x):
        return x * keras.ops.tanh(keras.ops.softplus(keras.ops.minimum(x, 20.0)))

    def compute_output_shape(self, shape):
        return shape


@keras.saving.register_keras_serializable(package="yolo_tpu")
class HardMish(keras.layers.Layer):
    """Darknet's hard_mish (x if x > 0, x^2/2 + x above -2, else 0) = x * clip(x/2 + 1, 0, 1):
    MUL, ADD, MINIMUM/MAXIMUM, all Edge TPU ops."""

    def call(self, x):
        return x * keras.ops.clip(x * 0.5 + 1.0, 0.0, 1.0)

    def compute_output_shape(self, shape):
        return shape


@keras.saving.register_keras_serializable(package="yolo_tpu")
class ChannelGroup(keras.layers.Layer):
    """Darknet's route groups/group_id: the group_id-th of `groups` equal channel slices, as
    one STRIDED_SLICE (an Edge TPU op). Not SPLIT: its unused outputs get no calibration
    statistics, and the converter then leaves the SPLIT in float, off the TPU."""

    def __init__(self, groups: int = 1, group_id: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.groups, self.group_id = groups, group_id

    def call(self, x):
        size = x.shape[-1] // self.groups
        return x[..., self.group_id * size:(self.group_id + 1) * size]

    def compute_output_shape(self, shape):
        return (*shape[:-1], shape[-1] // self.groups)

    def get_config(self):
        return {**super().get_config(), "groups": self.groups, "group_id": self.group_id}


@keras.saving.register_keras_serializable(package="yolo_tpu")
class ChannelSlice(keras.layers.Layer):
    """Channels start:stop (STRIDED_SLICE): shortcuts between different channel counts."""

    def __init__(self, start: int = 0, stop: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.start, self.stop = start, stop

    def call(self, x):
        return x[..., self.start:self.stop]

    def compute_output_shape(self, shape):
        return (*shape[:-1], self.stop - self.start)

    def get_config(self):
        return {**super().get_config(), "start": self.start, "stop": self.stop}


@keras.saving.register_keras_serializable(package="yolo_tpu")
class EdgePad(keras.layers.Layer):
    """Pad by repeating the edge rows/columns (STRIDED_SLICE + CONCATENATION).

    Darknet's maxpool ignores positions outside the image; wherever a window also covers a
    real pixel (checked by the parser), a repeated edge value is one the window holds
    anyway, so max pooling over this padding is exact, and unlike -inf padding it quantizes.
    """

    def __init__(self, pads=((0, 0), (0, 0)), **kwargs):
        super().__init__(**kwargs)
        self.pads = tuple(tuple(int(v) for v in p) for p in pads)

    def call(self, x):
        (top, bottom), (left, right) = self.pads
        x = tf.concat([x[:, :1]] * top + [x] + [x[:, -1:]] * bottom, axis=1)
        return tf.concat([x[:, :, :1]] * left + [x] + [x[:, :, -1:]] * right, axis=2)

    def compute_output_shape(self, shape):
        (top, bottom), (left, right) = self.pads
        return (shape[0], shape[1] + top + bottom, shape[2] + left + right, shape[3])

    def get_config(self):
        return {**super().get_config(), "pads": self.pads}


@keras.saving.register_keras_serializable(package="yolo_tpu")
class DarknetReorg(keras.layers.Layer):
    """Darknet's [reorg] (reorg_cpu with forward=0): not TF's space_to_depth order.

    Darknet reads its (C, H, W) input buffer as (C/s^2, H*s, W*s), space-to-depths that,
    and writes the result buffer as the (C*s^2, H/s, W/s) output.
    """

    def __init__(self, stride: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.stride = stride

    def call(self, x):
        s = self.stride
        _, h, w, c = x.shape
        chw = tf.reshape(tf.transpose(x, (0, 3, 1, 2)), (1, c // (s * s), h * s, w * s))
        y = tf.nn.space_to_depth(tf.transpose(chw, (0, 2, 3, 1)), s)  # (1, h, w, c)
        y = tf.reshape(tf.transpose(y, (0, 3, 1, 2)), (1, c * s * s, h // s, w // s))
        return tf.transpose(y, (0, 2, 3, 1))

    def compute_output_shape(self, shape):
        s = self.stride
        return (shape[0], shape[1] // s, shape[2] // s, shape[3] * s * s)

    def get_config(self):
        return {**super().get_config(), "stride": self.stride}


@keras.saving.register_keras_serializable(package="yolo_tpu")
class Subsample(keras.layers.Layer):
    """Every (sy, sx)-th row and column from the top left: a strided dilated convolution,
    and pjreddie's shortcut from a larger layer (shortcut_cpu). A 1x1 MAX_POOL_2D at that
    stride (the Edge TPU runs no STRIDED_SLICE with strides other than 1; an int8 max pool
    keeps its input's scale, so it is exact), cropped to `rows` x `cols` if given."""

    def __init__(self, strides=(2, 2), rows: int = 0, cols: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.strides = tuple(int(v) for v in strides)
        self.rows, self.cols = int(rows), int(cols)  # 0: as many as fit

    def _counts(self, h: int, w: int) -> tuple[int, int]:
        sy, sx = self.strides
        return self.rows or -(-h // sy), self.cols or -(-w // sx)

    def call(self, x):
        sy, sx = self.strides
        rows, cols = self._counts(x.shape[1], x.shape[2])
        if (sy, sx) != (1, 1):
            x = tf.nn.max_pool2d(x, 1, (sy, sx), "VALID")
        return x[:, :rows, :cols, :] if x.shape[1:3] != (rows, cols) else x

    def compute_output_shape(self, shape):
        return (shape[0], *self._counts(shape[1], shape[2]), shape[3])

    def get_config(self):
        return {**super().get_config(), "strides": self.strides, "rows": self.rows,
                "cols": self.cols}


@keras.saving.register_keras_serializable(package="yolo_tpu")
class SpreadOut(keras.layers.Layer):
    """pjreddie's shortcut from a smaller layer: input pixel (j, i) lands at (j*s, i*s) of an
    (h, w) grid, zeros elsewhere. RESIZE_NEAREST_NEIGHBOR times a constant 0/1 mask (MUL),
    then zero padding to (h, w) (PAD): Edge TPU ops, exact in int8 (the mask is 0 or 1)."""

    def __init__(self, sample: int = 2, out_h: int = 0, out_w: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.sample, self.out_h, self.out_w = int(sample), int(out_h), int(out_w)

    def call(self, x):
        s, h, w = self.sample, x.shape[1], x.shape[2]
        up = tf.compat.v1.image.resize_nearest_neighbor(
            x, (h * s, w * s), align_corners=False, half_pixel_centers=False)
        mask = np.zeros((1, h * s, w * s, 1), np.float32)
        mask[:, ::s, ::s] = 1
        up = up * tf.constant(mask)
        return tf.pad(up, ((0, 0), (0, self.out_h - h * s), (0, self.out_w - w * s), (0, 0)))

    def compute_output_shape(self, shape):
        return (shape[0], self.out_h, self.out_w, shape[3])

    def get_config(self):
        return {**super().get_config(), "sample": self.sample, "out_h": self.out_h,
                "out_w": self.out_w}


@keras.saving.register_keras_serializable(package="yolo_tpu")
class SpaceToDepth(keras.layers.Layer):
    """AlexeyAB's [reorg3d] (reorg_cpu over the output's shape, forward=0): output channel
    (dy*s + dx)*C + c of cell (j, i) is input (j*s + dy, i*s + dx, c), which is TF's
    space_to_depth order: one SPACE_TO_DEPTH op."""

    def __init__(self, stride: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.stride = stride

    def call(self, x):
        return tf.nn.space_to_depth(x, self.stride)

    def compute_output_shape(self, shape):
        s = self.stride
        return (shape[0], shape[1] // s, shape[2] // s, shape[3] * s * s)

    def get_config(self):
        return {**super().get_config(), "stride": self.stride}


def _leaky(x, leaky: str, name: str):
    if leaky == "relu":
        return keras.layers.ReLU(name=name)(x)
    if leaky == "maximum":
        return LeakyMaximum(name=name)(x)
    if leaky == "addrelu":
        return LeakyAddRelu(name=name)(x)
    if leaky == "prelu":
        return keras.layers.PReLU(keras.initializers.Constant(LEAKY_SLOPE), shared_axes=[1, 2],
                                  name=name)(x)
    return keras.layers.LeakyReLU(LEAKY_SLOPE, name=name)(x)


def _swish(x, leaky: str, name: str):
    """x * logistic(x): LOGISTIC + MUL, both Edge TPU ops."""
    gate = keras.layers.Activation("sigmoid", name=f"{name}_gate")(x)
    return keras.layers.Multiply(name=name)([x, gate])


# darknet activation -> Keras form. Leaky follows the --leaky policy.
ACTIVATION_BUILDERS = {
    "linear": lambda x, leaky, name: x,
    "relu": lambda x, leaky, name: keras.layers.ReLU(name=name)(x),
    "relu6": lambda x, leaky, name: keras.layers.ReLU(6.0, name=name)(x),
    "logistic": lambda x, leaky, name: keras.layers.Activation("sigmoid", name=name)(x),
    "tanh": lambda x, leaky, name: keras.layers.Activation("tanh", name=name)(x),
    "leaky": _leaky,
    "swish": _swish,
    "mish": lambda x, leaky, name: Mish(name=name)(x),
    "hard_mish": lambda x, leaky, name: HardMish(name=name)(x),
}


def _activation(x, act: str, leaky: str, name: str):
    return ACTIVATION_BUILDERS[act](x, leaky, name)


def _axis_padding(size: int, stride: int, pad: int, n: int) -> tuple[bool, tuple[int, int]]:
    """(matches Keras 'same', explicit (before, after)) for darknet's symmetric `pad`.

    Darknet pads `pad` on both sides; Keras 'same' puts the smaller half of the needed padding
    first. They agree for stride 1; for stride 2 darknet pads top/left, so we pad explicitly
    (a PAD op, which the Edge TPU runs) and convolve 'valid'.
    """
    out = (n + 2 * pad - size) // stride + 1
    total = max(0, (out - 1) * stride + size - n)
    same = out == -(-n // stride) and total // 2 == pad
    return same, (pad, max(0, (out - 1) * stride + size - n - pad))


class _Context:
    """What the builders share: outputs so far, weights, the leaky policy."""

    def __init__(self, weights: dict[int, ConvWeights], leaky: str):
        self.outs: list = []
        self.weights, self.leaky = weights, leaky


def _conv(ctx: _Context, x, layer: Layer):
    p, i, w = layer.params, layer.index, ctx.weights[layer.index]
    sx, sy = p["stride"], p["stride_y"]
    dilation = p.get("dilation", 1)
    if dilation > 1:
        # im2col_cpu_ext: pad*dilation each side, taps dilation apart. TF has no strided
        # dilated convolution: convolve at stride 1 and keep every stride-th output.
        pad = p["pad"] * dilation
        mode = "same" if 2 * pad == dilation * (p["size"] - 1) else "valid"
        if mode == "valid" and pad:
            x = keras.layers.ZeroPadding2D(pad, name=f"pad_{i}")(x)
        subsample, sx, sy = (sy, sx), 1, 1
    else:
        same_y, pads_y = _axis_padding(p["size"], sy, p["pad"], x.shape[1])
        same_x, pads_x = _axis_padding(p["size"], sx, p["pad"], x.shape[2])
        mode = "same" if same_x and same_y else "valid"
        if mode == "valid" and any(pads_y + pads_x):
            x = keras.layers.ZeroPadding2D((pads_y, pads_x), name=f"pad_{i}")(x)
        subsample = (1, 1)
    rate = {"dilation_rate": dilation} if dilation > 1 else {}
    act, groups, filters, c = p["activation"], p["groups"], p["filters"], p["in_channels"]
    # Plain ReLU (and the relu policy's stand-in for leaky) fuses into the convolution.
    fused = "relu" if act == "relu" or (act == "leaky" and ctx.leaky == "relu") else None
    if groups > 1 and groups == c:
        conv = keras.layers.DepthwiseConv2D(p["size"], (sy, sx), mode,
                                            depth_multiplier=filters // c, activation=fused,
                                            name=f"conv_{i}", **rate)
        x = conv(x)
        conv.set_weights([w.kernel.reshape(p["size"], p["size"], c, filters // c), w.bias])
    elif groups > 1:
        # Grouped convolution as SPLIT + one CONV_2D per group + CONCATENATION.
        per = filters // groups
        parts = []
        for g in range(groups):
            part = ChannelGroup(groups, g, name=f"group_{i}_{g}")(x)
            conv = keras.layers.Conv2D(per, p["size"], (sy, sx), mode, activation=fused,
                                       name=f"conv_{i}_{g}", **rate)
            parts.append(conv(part))
            conv.set_weights([w.kernel[..., g * per:(g + 1) * per], w.bias[g * per:(g + 1) * per]])
        x = keras.layers.Concatenate(name=f"conv_{i}")(parts)
    else:
        conv = keras.layers.Conv2D(filters, p["size"], (sy, sx), mode, activation=fused,
                                   name=f"conv_{i}", **rate)
        x = conv(x)
        conv.set_weights([w.kernel, w.bias])
    if subsample != (1, 1):
        x = Subsample(subsample, name=f"conv_{i}_stride")(x)
    return x if fused else _activation(x, act, ctx.leaky, f"{act}_{i}")


def _maxpool(ctx: _Context, x, layer: Layer):
    p, i = layer.params, layer.index
    size, sx, sy, padding = p["size"], p["stride"], p["stride_y"], p["padding"]
    pads = []
    same = True
    for n, s in ((x.shape[1], sy), (x.shape[2], sx)):
        out = (n + padding - size) // s + 1
        total = max(0, (out - 1) * s + size - n)
        same = same and out == -(-n // s) and total // 2 == padding // 2
        pads.append((padding // 2, max(0, (out - 1) * s + size - n - padding // 2)))
    if same:
        return keras.layers.MaxPooling2D(size, (sy, sx), "same", name=f"maxpool_{i}")(x)
    if any(pads[0] + pads[1]):
        x = EdgePad(pads, name=f"pad_{i}")(x)
    return keras.layers.MaxPooling2D(size, (sy, sx), "valid", name=f"maxpool_{i}")(x)


def _local_avgpool(ctx: _Context, x, layer: Layer):
    """forward_local_avgpool_layer: the sum over a window's real pixels / their count. Where
    the padding is TF's 'same', AVERAGE_POOL_2D does exactly that; otherwise zero padding,
    a 'valid' average and a constant per-position factor window/count (MUL)."""
    p, i = layer.params, layer.index
    size, sx, sy, padding = p["size"], p["stride"], p["stride_y"], p["padding"]
    h, w = x.shape[1], x.shape[2]
    out_h, out_w = layer.shape[:2]
    before = padding // 2
    same = all(out == -(-n // s) and max(0, (out - 1) * s + size - n) // 2 == before
               for n, out, s in ((h, out_h, sy), (w, out_w, sx)))
    if same:
        return keras.layers.AveragePooling2D(size, (sy, sx), "same", name=f"local_avgpool_{i}")(x)
    pads = [(before, max(0, (out - 1) * s + size - n - before))
            for n, out, s in ((h, out_h, sy), (w, out_w, sx))]
    counts = np.ones((out_h, out_w), np.float32)
    for axis, (n, out, s) in enumerate(((h, out_h, sy), (w, out_w, sx))):
        start = np.arange(out) * s - before
        real = np.minimum(start + size, n) - np.maximum(start, 0)
        counts *= real[:, None] if axis == 0 else real[None, :]
    x = keras.layers.ZeroPadding2D(pads, name=f"pad_{i}")(x)
    x = keras.layers.AveragePooling2D(size, (sy, sx), "valid", name=f"local_avgpool_{i}_sum")(x)
    factor = (size * size / counts).reshape(1, out_h, out_w, 1)
    return ConstantScale(factor.tolist(), name=f"local_avgpool_{i}")(x)


@keras.saving.register_keras_serializable(package="yolo_tpu")
class ConstantScale(keras.layers.Layer):
    """x times a constant (1, H, W, 1) map: one MUL."""

    def __init__(self, factor=None, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, x):
        return x * tf.constant(np.asarray(self.factor, np.float32))

    def compute_output_shape(self, shape):
        return shape

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


def _avgpool(ctx: _Context, x, layer: Layer):
    return keras.layers.AveragePooling2D((x.shape[1], x.shape[2]), name=f"avgpool_{layer.index}")(x)


def _route(ctx: _Context, x, layer: Layer):
    p, i = layer.params, layer.index
    srcs = [ctx.outs[j] for j in layer.inputs]
    if p["groups"] > 1:
        srcs = [ChannelGroup(p["groups"], p["group_id"], name=f"route_{i}_group{k}")(t)
                for k, t in enumerate(srcs)]
    return srcs[0] if len(srcs) == 1 else keras.layers.Concatenate(name=f"route_{i}")(srcs)


def _shortcut(ctx: _Context, x, layer: Layer):
    """Darknet adds each `from` layer into the channels both have; the rest pass as they are."""
    i, (h, w, c) = layer.index, layer.shape
    resample = layer.params.get("resample") or [(1, 1, h, w)] * (len(layer.inputs) - 1)
    for k, (j, (stride, sample, rows, cols)) in enumerate(zip(layer.inputs[1:], resample)):
        other = ctx.outs[j]
        if (rows, cols) != tuple(other.shape[1:3]) or stride > 1:  # pjreddie's stride
            other = Subsample((stride, stride), rows, cols, name=f"shortcut_{i}_{k}_stride")(other)
        if sample > 1:  # pjreddie's sample: into every sample-th pixel
            other = SpreadOut(sample, h, w, name=f"shortcut_{i}_{k}_sample")(other)
        elif (rows, cols) != (h, w):
            other = keras.layers.ZeroPadding2D(((0, h - rows), (0, w - cols)),
                                               name=f"shortcut_{i}_{k}_pad")(other)
        oc = other.shape[-1]
        if oc > c:
            other = ChannelSlice(0, c, name=f"shortcut_{i}_{k}_slice")(other)
        if oc < c:
            head = ChannelSlice(0, oc, name=f"shortcut_{i}_{k}_head")(x)
            tail = ChannelSlice(oc, c, name=f"shortcut_{i}_{k}_tail")(x)
            summed = keras.layers.Add(name=f"shortcut_{i}_{k}_add")([head, other])
            x = keras.layers.Concatenate(name=f"shortcut_{i}_{k}")([summed, tail])
        else:
            x = keras.layers.Add(name=f"shortcut_{i}_{k}")([x, other])
    act = layer.params["activation"]
    return _activation(x, act, ctx.leaky, f"{act}_{i}")


def _upsample(ctx: _Context, x, layer: Layer):
    p, i = layer.params, layer.index
    x = NearestUpsample(p["stride"], name=f"upsample_{i}")(x)
    if p["scale"] != 1.0:
        x = keras.layers.Rescaling(p["scale"], name=f"upsample_{i}_scale")(x)
    return x


def _multiply(ctx: _Context, x, layer: Layer):
    """[sam]: element-wise product; [scale_channels]: times a 1x1xC layer (broadcast)."""
    i, act = layer.index, layer.params["activation"]
    x = keras.layers.Multiply(name=f"{layer.kind}_{i}")([x, ctx.outs[layer.inputs[1]]])
    return _activation(x, act, ctx.leaky, f"{act}_{i}")


def _activation_layer(ctx: _Context, x, layer: Layer):
    act = layer.params["activation"]
    return _activation(x, act, ctx.leaky, f"{act}_{layer.index}")


def _reorg(ctx: _Context, x, layer: Layer):
    return DarknetReorg(layer.params["stride"], name=f"reorg_{layer.index}")(x)


# One builder per darknet section type (the cfg parser's BUILDERS has the same rows).
LAYER_BUILDERS = {
    "convolutional": _conv,
    "maxpool": _maxpool,
    "avgpool": _avgpool,
    "route": _route,
    "shortcut": _shortcut,
    "upsample": _upsample,
    "dropout": lambda ctx, x, layer: x,  # identity at inference
    "empty": lambda ctx, x, layer: x,
    "activation": _activation_layer,
    "sam": _multiply,
    "scale_channels": _multiply,
    "reorg": _reorg,
    "reorg3d": lambda ctx, x, layer: SpaceToDepth(layer.params["stride"],
                                                  name=f"reorg3d_{layer.index}")(x),
    "local_avgpool": _local_avgpool,
    "yolo": lambda ctx, x, layer: x,  # heads: the raw output of the layer before
    "region": lambda ctx, x, layer: x,
}


def head_meta(net: Network, layer: Layer) -> Head:
    p = layer.params
    stride = net.width // layer.shape[1]
    anchors = tuple(tuple(p["anchors"][m]) for m in p["mask"])
    if layer.kind == "region":  # anchors in grid cells -> input pixels
        sx, sy = net.width / layer.shape[1], net.height / layer.shape[0]
        anchors = tuple((a * sx, b * sy) for a, b in anchors)
    return Head(tuple(p["mask"]), anchors, stride, layer.kind, float(p["scale_x_y"]),
                bool(p["new_coords"]))


def build_model(net: Network, weights: dict[int, ConvWeights], leaky: str = DEFAULT_LEAKY,
                names: tuple[str, ...] = ()) -> tuple[keras.Model, ModelMeta]:
    """One pass over the layers, like darknet's forward pass; outputs are the raw heads."""
    if leaky not in LEAKY_POLICIES:
        raise ValueError(f"leaky policy must be one of {LEAKY_POLICIES}, got {leaky!r}")
    inputs = keras.Input((net.height, net.width, net.channels), batch_size=1, name="image")
    ctx = _Context(weights, leaky)
    x = inputs
    for layer in net.layers:
        x = LAYER_BUILDERS[layer.kind](ctx, x, layer)
        ctx.outs.append(x)
    heads = net.heads
    last = heads[-1].params  # darknet's detector takes the NMS kind from the last head
    meta = ModelMeta(
        width=net.width, height=net.height, classes=net.classes, names=tuple(names),
        leaky=leaky, heads=tuple(head_meta(net, l) for l in heads),
        letter_box=net.letter_box, nms_kind=last["nms_kind"], beta_nms=float(last["beta_nms"]))
    model = keras.Model(inputs, [ctx.outs[l.index] for l in heads], name="yolo")
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
