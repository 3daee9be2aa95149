"""Where the int8 model's error comes from, layer by layer (`python -m converters --explain`).

Both TFLite forms, the float32 and the int8, run on the same images with every
intermediate tensor kept; tensors are matched by name (the int8 converter keeps the float
graph's names). For each darknet layer the relative error of its int8 output,
||int8 - float|| / ||float||, is what the whole int8 path up to it has accumulated; the
layer's own share is that minus the largest relative error among the tensors it reads.
The layers with the largest own share are the ones to look at (their ranges, their
channels) and are what the report names.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

_LAYER = re.compile(r"/([a-z_]+?)_(\d+)(?:_\d+)?/")  # "yolo_1/conv_12_1/BiasAdd" -> conv, 12


@dataclass(frozen=True)
class LayerError:
    layer: int  # darknet layer index
    kind: str  # the Keras layer kind in the tensor's name: conv, leaky, route, ...
    error: float  # relative error of its int8 output against float
    added: float  # error minus the largest error among the earlier layers' outputs
    scale: float  # the int8 output's quantization step
    span: tuple[float, float]  # the float output's min and max on these images

    def describe(self) -> str:
        return (f"layer {self.layer} ({self.kind}): relative error {self.error:.3f} "
                f"(+{self.added:.3f} here), int8 step {self.scale:.4g} over float "
                f"[{self.span[0]:.3g}, {self.span[1]:.3g}]")


def _interpreter(path: str):
    import warnings

    from ai_edge_litert.interpreter import Interpreter

    from yolo_tpu.native_log import native_stderr_captured
    with warnings.catch_warnings(), native_stderr_captured():
        warnings.simplefilter("ignore")  # "preserve_all_tensors is for debugging"
        it = Interpreter(path, experimental_preserve_all_tensors=True, num_threads=2)
    it.allocate_tensors()
    return it


def layer_errors(float_path: str, int8_path: str, tensors: list[np.ndarray],
                 inputs: dict[int, list[int]]) -> list[LayerError]:
    """Per darknet layer (its last tensor in graph order), over `tensors` ((1, H, W, 3)
    float inputs in 0..1), in layer order; `inputs` gives each layer's input layers (the
    cfg's), so a layer is charged only for what it adds to what it reads."""
    fi, qi = _interpreter(float_path), _interpreter(int8_path)
    by_name = {d["name"]: d["index"] for d in fi.get_tensor_details()}
    fin, qin = fi.get_input_details()[0], qi.get_input_details()[0]
    acc: dict[int, list] = {}
    for x in tensors:
        fi.set_tensor(fin["index"], x.astype(np.float32))
        fi.invoke()
        s, z = qin["quantization"]
        qi.set_tensor(qin["index"], np.clip(np.round(x / s + z), *(
            (0, 255) if qin["dtype"] == np.uint8 else (-128, 127))).astype(qin["dtype"]))
        qi.invoke()
        for d in qi.get_tensor_details():
            scale, zero = d["quantization"]
            j = by_name.get(d["name"])
            if j is None or not scale or len(d["shape"]) != 4:
                continue
            ref = fi.get_tensor(j)
            q = qi.get_tensor(d["index"])
            if ref.shape != q.shape:
                continue
            got = (q.astype(np.float32) - zero) * scale
            a = acc.setdefault(d["index"], [d["name"], 0.0, 0.0, scale, np.inf, -np.inf])
            a[1] += float(((got - ref) ** 2).sum())
            a[2] += float((ref ** 2).sum())
            a[4], a[5] = min(a[4], float(ref.min())), max(a[5], float(ref.max()))
    last: dict[int, LayerError] = {}

    def read_error(j: int, depth: int = 0) -> float:
        """The error of layer j's output; a layer without a tensor of its own (a one-input
        route, dropout) passes its input's."""
        if j in last:
            return last[j].error
        if j < 0 or depth > 50:
            return 0.0
        return max((read_error(k, depth + 1) for k in inputs.get(j, [])), default=0.0)

    for index in sorted(acc):  # graph order: a layer's last tensor is its output
        name, err, power, scale, lo, hi = acc[index]
        m = _LAYER.search(name)
        if not m:
            continue
        layer = int(m.group(2))
        error = float(np.sqrt(err / max(power, 1e-12)))
        earlier = max((read_error(k) for k in inputs.get(layer, [])), default=0.0)
        last[layer] = LayerError(layer, m.group(1), error, max(0.0, error - earlier),
                                 float(scale), (lo, hi))
    return [last[k] for k in sorted(last)]


def costliest(errors: list[LayerError], n: int = 5) -> list[LayerError]:
    return sorted(errors, key=lambda e: -e.added)[:n]


def _kind(layer) -> str:
    p = layer.params
    if layer.kind != "convolutional":
        return layer.kind
    depthwise = p["groups"] > 1 and p["groups"] == p["in_channels"]
    return f"{p['size']}x{p['size']} {'depthwise ' if depthwise else ''}conv, {p['activation']}"


def explain(c, int8_path: str, images: list[np.ndarray], n: int = 5,
            samples_: int = 8) -> list[str]:
    """Report lines naming the `n` layers that add the most int8 error, measured on the
    first `samples_` calibration samples of `images` against the float32 TFLite form of
    the same Keras model (`c`: the darknet.Converted that was quantized)."""
    import os
    import tempfile

    from .calibration import samples
    from .quantize import quantize
    m = c.meta
    tensors = list(samples(images, samples_, m.width, m.height, stretch=not m.letter_box))
    with tempfile.TemporaryDirectory() as tmp:
        float_path = os.path.join(tmp, "float32.tflite")
        with open(float_path, "wb") as f:
            f.write(quantize(c.model, m, "float32", progress=False))
        errors = layer_errors(float_path, int8_path, tensors,
                              {layer.index: list(layer.inputs) for layer in c.net.layers})
    from dataclasses import replace
    errors = [replace(e, kind=_kind(c.net.layers[e.layer])) for e in errors
              if e.layer < len(c.net.layers)]
    if not errors:
        return ["int8 error by layer: no layer tensors matched the float model's"]
    worst = max(errors, key=lambda e: e.error)
    lines = [f"int8 error by layer ({len(tensors)} samples): largest {worst.error:.3f} at "
             f"layer {worst.layer}; the layers that add the most:"]
    lines += [f"  {e.describe()}" for e in costliest(errors, n)]
    return lines
