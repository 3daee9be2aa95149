"""Darknet `.weights` loader: header, then per convolution biases, BN statistics and kernel.

Batch normalization is folded into the convolution here, with the arithmetic of the darknet
the weights were trained with: pjreddie's normalizes with `(x - mean) / (sqrt(var) + .000001)`
(epsilon outside the root, which no Keras BatchNormalization epsilon reproduces), AlexeyAB's
with `(x - mean) / sqrt(var + .00001)` (its fuse_conv_batchnorm, in double). The two differ
for channels of tiny variance. A folded kernel and bias are exact and leave one op per layer
in the TFLite graph.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .cfg import Network, cfg_line


class WeightsError(ValueError):
    """A weights file that does not fit its cfg: the message names the file and the counts."""


@dataclass
class ConvWeights:
    kernel: np.ndarray  # (size, size, in/groups, filters): the Keras layout
    bias: np.ndarray  # (filters,)


def floats_needed(net: Network) -> int:
    """How many float32 values the cfg's convolutions read from a weights file."""
    total = 0
    in_channels = _input_channels(net)
    for layer in net.layers:
        if layer.kind == "convolutional":
            p = layer.params
            n = p["filters"]
            total += n * (4 if p["batch_normalize"] else 1)
            total += n * in_channels[layer.index] // p["groups"] * p["size"] ** 2
    return total


def _input_channels(net: Network) -> dict[int, int]:
    return {l.index: (net.layers[l.inputs[0]].shape[2] if l.inputs[0] >= 0 else net.channels)
            for l in net.layers}


def _bn_denominator(var: np.ndarray, flavor: str) -> np.ndarray:
    if flavor == "alexeyab":
        return np.sqrt(var + 0.00001)
    return np.sqrt(var) + 0.000001


def read_header(data: bytes, path: str) -> tuple[tuple[int, int, int, int], int]:
    """(major, minor, revision, seen) and the header's length in bytes."""
    if len(data) < 16:
        raise WeightsError(f"{path}: {len(data)} bytes is too short for a darknet weights header")
    major, minor, revision = (int(v) for v in np.frombuffer(data, "<i4", 3))
    # Darknet writes `seen` as size_t (8 bytes) from version 0.2 on, int32 before.
    wide = major * 10 + minor >= 2 and major < 1000 and minor < 1000
    if wide and len(data) < 20:
        raise WeightsError(f"{path}: {len(data)} bytes is too short for a darknet weights "
                           f"header of version {major}.{minor} (20 bytes)")
    seen = int(np.frombuffer(data, "<i8" if wide else "<i4", 1, 12)[0])
    return (major, minor, revision, seen), 20 if wide else 16


def check_values(path: str, net: Network, layer, what: str, values: np.ndarray,
                 variance: bool = False) -> None:
    """Refuse NaN/Inf (and negative batch-norm variances), naming the layer's cfg line:
    darknet would run them and detect nothing, and int8 calibration cannot range them."""
    bad = ~np.isfinite(values)
    problem = "non-finite (NaN or Inf)"
    if not bad.any() and variance:
        bad, problem = values < 0, "negative"
    if bad.any():
        first = int(np.argmax(bad))
        raise WeightsError(
            f"{path}: {int(bad.sum())} {problem} {what} value{'s' * (int(bad.sum()) != 1)} "
            f"(first: index {first}, {values[first]!r}) in the [convolutional] layer "
            f"{layer.index} at {cfg_line(net, layer)}: a damaged weights file")


def load_weights(path: str, net: Network) -> dict[int, ConvWeights]:
    """Read every float of `path` into per-convolution kernels with BN folded in.

    The file must hold exactly what the cfg needs: the classic mismatch is weights trained
    for another class count, and loading a prefix of them would give garbage detections.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise WeightsError(f"{path}: cannot read weights: {e.strerror or e}") from None
    _, offset = read_header(data, path)
    body = len(data) - offset
    needed = floats_needed(net)
    if body % 4 or body // 4 != needed:
        held = f"{body // 4} floats" + (f" and {body % 4} stray bytes" if body % 4 else "")
        raise WeightsError(
            f"{path}: {net.path} needs {needed} floats after the header, the file holds "
            f"{held} (weights for another cfg or class count, or a truncated download?)")
    values = np.frombuffer(data, "<f4", needed, offset)
    in_channels = _input_channels(net)
    result: dict[int, ConvWeights] = {}
    pos = 0

    def take(n: int) -> np.ndarray:
        nonlocal pos
        pos += n
        return values[pos - n:pos]

    for layer in net.layers:
        if layer.kind != "convolutional":
            continue
        p = layer.params
        n, size, c = p["filters"], p["size"], in_channels[layer.index] // p["groups"]
        bias = take(n).astype(np.float64)
        check_values(path, net, layer, "bias", bias)
        if p["batch_normalize"]:
            scales, mean, var = take(n), take(n), take(n)
            check_values(path, net, layer, "batch-norm scale", scales)
            check_values(path, net, layer, "batch-norm mean", mean)
            check_values(path, net, layer, "batch-norm variance", var, variance=True)
            factor = scales.astype(np.float64) / _bn_denominator(var.astype(np.float64),
                                                                 net.flavor)
            bias = bias - mean * factor
        else:
            factor = np.ones(n)
        kernel = take(n * c * size * size)
        check_values(path, net, layer, "kernel", kernel)
        kernel = kernel.reshape(n, c, size, size).astype(np.float64)
        kernel = kernel * factor[:, None, None, None]
        result[layer.index] = ConvWeights(
            kernel=np.ascontiguousarray(kernel.transpose(2, 3, 1, 0), dtype=np.float32),
            bias=bias.astype(np.float32))
    return result


_HEAD_ENTRIES = {"xy": lambda n: (0, 1), "wh": lambda n: (2, 3), "objectness": lambda n: (4,),
                 "classes": lambda n: range(5, n)}


def write_weights(path: str, net: Network, rng: np.random.Generator, scale: float = 1.0,
                  header: tuple[int, int, int] = (0, 2, 0), head_scale: float | None = None,
                  head_bias: dict[str, float] | None = None) -> None:
    """Write random weights for `net` in darknet's format (tests, benchmarks).

    Kernels are scaled by 1/sqrt(fan_in) and BN variances kept near one so activations stay
    of order one through deep networks; `scale` multiplies the kernels. For detections that
    mean something (a few confident boxes, not thousands at 0.25), `head_scale` multiplies
    the kernels of the convolutions feeding the heads and `head_bias` sets their biases per
    entry: {"xy": .., "wh": .., "objectness": .., "classes": ..}.
    """
    in_channels = _input_channels(net)
    feeds_head = {h.index - 1: h for h in net.heads}
    chunks = []
    for layer in net.layers:
        if layer.kind != "convolutional":
            continue
        p = layer.params
        n, size, c = p["filters"], p["size"], in_channels[layer.index] // p["groups"]
        head = feeds_head.get(layer.index)
        bias = rng.normal(0, 0.1, n)
        if head is not None and head_bias:
            entries = n // len(head.params["mask"])
            for name, value in head_bias.items():
                for k in _HEAD_ENTRIES[name](entries):
                    bias[k::entries] = value
        chunks.append(bias)
        if p["batch_normalize"]:
            chunks += [rng.uniform(0.5, 1.5, n), rng.normal(0, 0.1, n), rng.uniform(0.5, 2, n)]
        fan_in = c * size * size
        gain = head_scale if head is not None and head_scale is not None else scale
        chunks.append(rng.normal(0, gain / np.sqrt(fan_in), n * fan_in))
    major, minor, revision = header
    with open(path, "wb") as f:
        f.write(np.array([major, minor, revision], "<i4").tobytes())
        wide = major * 10 + minor >= 2 and major < 1000 and minor < 1000
        f.write(np.array([0], "<i8" if wide else "<i4").tobytes())
        f.write(np.concatenate(chunks).astype("<f4").tobytes())
