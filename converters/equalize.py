"""Cross-layer equalization: per-channel scales moved between consecutive convolutions.

int8 gives each activation tensor one scale, so a channel whose values span 50 next to
channels spanning 0.5 leaves those with a few quantization steps (depthwise models, whose
channels never mix before the next 1x1, are the known worst case). Leaky, ReLU and linear
activations are positively homogeneous (f(s x) = s f(x) for s > 0), and so are max
pooling, nearest upsampling and channel concatenation; so multiplying output channel c of
a convolution by s_c and dividing every weight that reads that channel downstream by s_c
computes the same function in float, with the same ops. Choosing s_c from the channel's
measured range (on the calibration images) evens the ranges the int8 tensor has to hold.

Only producers whose output reaches nothing but convolutions, through such channel-wise
ops, are scaled: a [shortcut] adds two tensors (one scale for both), a [yolo] head's
values are decoded as they are, and other activations are not homogeneous.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

import numpy as np

from .cfg import Layer, Network
from .weights import ConvWeights

HOMOGENEOUS = ("linear", "leaky", "relu")
PASS_THROUGH = ("maxpool", "upsample", "dropout", "empty", "avgpool")
# s_c = (T / range_c) ** STRENGTH: 1 evens the activation ranges fully, 0 leaves them.
# Measured on the real models (scripts/realmodels.py); see the README table.
STRENGTH = 0.3
MAX_SCALE = 64.0  # a near-dead channel is not blown up into the consumers' weights


@dataclass(frozen=True)
class Reader:
    """A convolution reading the producer's channels: `channels[c]` is the input channel
    that producer channel c arrives at (-1: not there)."""

    layer: int
    channels: np.ndarray


def readers(net: Network, producer: int) -> list[Reader] | None:
    """The convolutions that read `producer`'s output channels, with the channel map; None
    when the output also reaches something that is not channel-wise homogeneous."""
    consumers: dict[int, list[Layer]] = {}
    for layer in net.layers:
        for j in layer.inputs:
            consumers.setdefault(j, []).append(layer)
    c = net.layers[producer].shape[2]
    frontier = [(producer, np.arange(c))]
    found: list[Reader] = []
    while frontier:
        j, chan = frontier.pop()
        for m in consumers.get(j, []):
            if m.kind in PASS_THROUGH:
                if m.kind == "upsample" and m.params.get("scale", 1.0) <= 0:
                    return None
                frontier.append((m.index, chan))
            elif m.kind == "route":
                groups, gid = m.params["groups"], m.params["group_id"]
                offset = 0
                for k in m.inputs:
                    size = net.layers[k].shape[2] // groups
                    if k == j:
                        local = chan - gid * size
                        inside = (chan >= 0) & (local >= 0) & (local < size)
                        mapped = np.where(inside, offset + local, -1)
                        if (mapped >= 0).any():
                            frontier.append((m.index, mapped))
                    offset += size
            elif m.kind == "convolutional" and m.inputs[0] == j:
                found.append(Reader(m.index, chan))
            else:
                return None
    return found or None


def _scale_inputs(w: ConvWeights, layer: Layer, channels: np.ndarray, scale: np.ndarray) -> None:
    """Divide the weights that read input channel channels[c] by scale[c]."""
    groups, cin, filters = layer.params["groups"], layer.params["in_channels"], layer.params["filters"]
    per_in, per_out = cin // groups, filters // groups
    for c in np.nonzero(channels >= 0)[0]:
        t = int(channels[c])
        g, local = divmod(t, per_in)
        w.kernel[:, :, local, g * per_out:(g + 1) * per_out] /= scale[c]


def scales(ranges: np.ndarray, strength: float = STRENGTH, target: float = 1.0) -> np.ndarray:
    """Per-channel factors that bring each channel's range toward `target`; a channel far
    below its layer's widest (near dead) counts as 1/MAX_SCALE of it."""
    if ranges.max() <= 0:
        return np.ones_like(ranges)
    r = np.maximum(ranges, ranges.max() / MAX_SCALE)
    return np.clip((target / r) ** strength, 1 / MAX_SCALE, MAX_SCALE)


def producers(net: Network) -> Iterable[tuple[Layer, list[Reader]]]:
    for layer in net.layers:
        if layer.kind == "convolutional" and layer.params["activation"] in HOMOGENEOUS:
            found = readers(net, layer.index)
            if found:
                yield layer, found


def equalize(net: Network, weights: dict[int, ConvWeights], ranges: dict[int, np.ndarray],
             strength: float = STRENGTH) -> tuple[dict[int, ConvWeights], int]:
    """New weights with each equalizable convolution's channels scaled by `scales` of its
    measured per-channel `ranges` (max |output| before the activation); and how many
    convolutions were scaled. Exact in float: the model computes the same function."""
    out = {i: replace(w, kernel=w.kernel.astype(np.float64).copy(),
                      bias=w.bias.astype(np.float64).copy()) for i, w in weights.items()}
    target = float(np.exp(np.mean([np.log(np.maximum(r, 1e-12)).mean()
                                   for r in ranges.values()]))) if ranges else 1.0
    count = 0
    for layer, found in producers(net):
        if layer.index not in ranges:
            continue
        s = scales(np.asarray(ranges[layer.index], np.float64), strength, target)
        w = out[layer.index]
        w.kernel *= s
        w.bias *= s
        for r in found:
            _scale_inputs(out[r.layer], net.layers[r.layer], r.channels, s)
        count += 1
    return ({i: replace(w, kernel=w.kernel.astype(np.float32), bias=w.bias.astype(np.float32))
             for i, w in out.items()}, count)


def channel_ranges(model, net: Network, tensors: Iterable[np.ndarray]) -> dict[int, np.ndarray]:
    """Per-channel max |value| of every scalable convolution's output (before its
    activation) over the calibration tensors, from the float Keras model."""
    import keras
    wanted = [layer.index for layer, _ in producers(net)]
    if not wanted:
        return {}
    probe = keras.Model(model.inputs[0], [model.get_layer(f"conv_{i}").output for i in wanted])
    result = {i: np.zeros(net.layers[i].shape[2]) for i in wanted}
    for x in tensors:
        outs = probe(x, training=False)
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        for i, o in zip(wanted, outs):
            result[i] = np.maximum(result[i], np.abs(np.asarray(o)).max(axis=(0, 1, 2)))
    return result


RANGE_SAMPLES = 16  # calibration samples the channel ranges are measured on


def equalized(c, images: list[np.ndarray], samples_: int = RANGE_SAMPLES):
    """`c` (a darknet.Converted) with equalized weights and the Keras model rebuilt from
    them: the same float function, evener int8 ranges. Ranges come from the first
    `samples_` calibration samples, fed as the quantizer feeds them."""
    from .calibration import samples
    from .darknet import Converted
    from .keras_model import build_model
    m = c.meta
    tensors = samples(images, samples_, m.width, m.height, stretch=not m.letter_box)
    weights, count = equalize(c.net, c.weights, channel_ranges(c.model, c.net, tensors))
    if not count:
        return c
    model, meta = build_model(c.net, weights, m.leaky, m.names)
    return Converted(c.net, weights, model, meta)
