"""`python -m converters.darknet CFG WEIGHTS -o OUT.keras`: darknet cfg + weights -> Keras.

Parses and checks the cfg, reads every float of the weights, builds the Keras model with
the `--leaky` policy, prints a per-layer summary and saves the model with its metadata.
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass


from .cfg import FLAVORS, ConfigError, Network, cfg_line, parse_cfg, parse_size
from .weights import ConvWeights, WeightsError, load_weights

from .leaky import DEFAULT_LEAKY, EXACT_LEAKY, LEAKY_HELP, LEAKY_POLICIES, keras_form


DARKNET_HELP = ("which darknet trained the weights: alexeyab (batch norm sqrt(var + 1e-5), "
                "stretched input unless [net] letter_box=1) or pjreddie (sqrt(var) + 1e-6, "
                "letterboxed input); default: alexeyab if the cfg uses anything only it reads")

# Activations with no Edge TPU form, and what to train instead.
_CPU_ONLY_ACTIVATIONS = {
    "mish": "mish needs EXP and LOG (softplus), which the Edge TPU does not run; the cfg's "
            "leaky or swish variant (e.g. yolov4-leaky, yolov4-csp-swish) maps every op",
}


def tpu_blockers(net: Network) -> list[str]:
    """One line per reason the model stays off the Edge TPU: the first cfg line, how many
    layers share it, and what to use instead."""
    found: dict[str, list] = {}
    for layer in net.layers:
        act = layer.params.get("activation", "")
        if act in _CPU_ONLY_ACTIVATIONS:
            found.setdefault(f"activation={act}", []).append((layer, "activation",
                                                              _CPU_ONLY_ACTIVATIONS[act]))
        if layer.kind == "reorg":
            found.setdefault("[reorg]", []).append(
                (layer, None, "darknet's channel order needs rank-4 TRANSPOSE ops the Edge "
                              "TPU may leave on the CPU"))
    lines = []
    for what, hits in found.items():
        layer, key, why = hits[0]
        more = f" (and {len(hits) - 1} more layers)" if len(hits) > 1 else ""
        lines.append(f"{cfg_line(net, layer, key)}: layer {layer.index} [{layer.kind}] "
                     f"{what}{more}: {why}")
    return lines


@dataclass
class Converted:
    net: Network
    weights: dict[int, ConvWeights]
    model: object  # keras.Model; typed loosely so importing this module stays cheap
    meta: object  # yolo_tpu.meta.ModelMeta


NAMES_MAX_BYTES = 4 << 20  # 9,000 classes (yolo9000) take ~100 KiB


def read_names(path: str, classes: int) -> tuple[str, ...]:
    """Class names, one per line; the count must match the cfg's classes. A file that is
    not text (NUL bytes, not UTF-8, megabytes long: a weights file or an image passed by
    mistake) is one line naming it, not a traceback or a list of garbage labels."""
    try:
        with open(path, "rb") as f:
            data = f.read(NAMES_MAX_BYTES + 1)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read names: {e.strerror or e}") from None
    why = None
    if len(data) > NAMES_MAX_BYTES:
        why = f"larger than {NAMES_MAX_BYTES >> 20} MiB"
    elif (nul := data.find(b"\0")) >= 0:
        why = f"a NUL byte at offset {nul}"
    else:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            why = f"not UTF-8 at byte {e.start}"
    if why is not None:
        raise ConfigError(f"{path}: not a text file of class names ({why})")
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if len(names) != classes:
        raise ConfigError(f"{path}: {len(names)} names, but the cfg's [yolo] layers have "
                          f"classes={classes}")
    return names


def has_leaky(net: Network) -> bool:
    return any(layer.params.get("activation") == "leaky" for layer in net.layers)


def convert(cfg: str, weights: str, leaky: str = DEFAULT_LEAKY, size: tuple[int, int] | None = None,
            names: str | None = None, flavor: str | None = None) -> Converted:
    """cfg + weights -> Keras model and metadata; raises ConfigError / WeightsError.
    `leaky` auto builds its first form (converters.leaky_choice may replace it in int8)."""
    leaky = keras_form(leaky)
    net = parse_cfg(cfg, size, flavor)
    classes = net.classes
    labels = read_names(names, classes) if names else ()
    conv_weights = load_weights(weights, net)
    if leaky == "relu" and has_leaky(net):
        print(f"warning: --leaky relu replaces the leaky activations of {os.path.basename(cfg)} with "
              "ReLU: right only for weights trained with ReLU. For weights trained with leaky "
              "(darknet's own, the COCO releases) leave --leaky at its default (auto): exact, "
              "Edge TPU ops, and darknet's detections after int8 quantization.", file=sys.stderr)
    from .progress import step
    if "tensorflow" not in sys.modules:
        step("loading TensorFlow")
    from .keras_model import build_model  # TensorFlow loads here, after the cheap checks
    step(f"building the Keras model ({len(net.layers)} layers)")
    model, meta = build_model(net, conv_weights, leaky, labels)
    return Converted(net, conv_weights, model, meta)


def exact_reference(c: Converted):
    """The float model with darknet's arithmetic: `c.model` itself unless its leaky policy
    (relu) changed the arithmetic, else the same weights with leaky kept exact."""
    if c.meta.leaky in EXACT_LEAKY or not has_leaky(c.net):
        return c.model
    from .keras_model import build_model
    return build_model(c.net, c.weights, "keep", c.meta.names)[0]


NO_NAMES_WARNING = ("warning: no --names: labels will be class numbers (0, 1, ...); pass the "
                    "names file the model was trained with (one name per line)")


_SHORT = {"convolutional": "conv", "shortcut": "add", "scale_channels": "scale"}


def summary(c: Converted, leaky: str) -> str:
    """Per-layer table: index, type, output shape, parameters, activation; then totals."""
    rows = [f"{'#':>4}  {'layer':<14}{'output (h, w, c)':<20}{'params':>10}  activation"]
    total = 0
    for layer in c.net.layers:
        params = 0
        if layer.index in c.weights:
            w = c.weights[layer.index]
            params = w.kernel.size + w.bias.size
        total += params
        act = layer.params.get("activation", "")
        if act == "leaky":
            act = f"leaky -> {leaky}"
        p = layer.params
        detail = ""
        if layer.kind in ("convolutional", "maxpool"):
            detail = f"{p['size']}x{p['size']}/{p['stride']}"
            if p.get("groups", 1) > 1:
                detail += f" g{p['groups']}"
        elif layer.kind == "route":
            detail = ",".join(map(str, layer.inputs))
            if p["groups"] > 1:
                detail += f" {p['group_id']}/{p['groups']}"
        elif layer.kind in ("shortcut", "sam", "scale_channels"):
            detail = ",".join(map(str, layer.inputs[1:]))  # inputs[0] is the previous layer
        kind = f"{_SHORT.get(layer.kind, layer.kind)} {detail}".strip()
        rows.append(f"{layer.index:>4}  {kind:<14}{str(layer.shape):<20}{params:>10,}  {act}")
    heads = ", ".join(f"{h.shape[1]}x{h.shape[0]}x{h.shape[2]}" for h in c.net.heads)
    rows.append(f"input 1x{c.net.height}x{c.net.width}x3, {len(c.net.layers)} layers, "
                f"{total:,} parameters (batch norm folded), {len(c.net.heads)} heads: "
                f"{heads}, leaky policy: {leaky}")
    m = c.meta
    rows.append(f"darknet: {c.net.flavor} ({c.net.flavor_reason}); input "
                f"{'letterboxed' if m.letter_box else 'stretched'}; NMS {m.nms_kind}"
                + (f" (beta {m.beta_nms})" if m.nms_kind == "diounms" else ""))
    for line in tpu_blockers(c.net):
        rows.append(f"not for the Edge TPU: {line}")
    for line in c.net.warnings:  # read as darknet reads it, which may not be what was meant
        rows.append(f"warning: {line}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    from .cli import HelpFormatter
    ap = argparse.ArgumentParser(prog="python -m converters.darknet", description=__doc__.split("\n")[0],
                                 formatter_class=HelpFormatter)
    ap.add_argument("cfg", help="darknet .cfg")
    ap.add_argument("weights", help="darknet .weights")
    ap.add_argument("-o", "--output", required=True, help="output .keras file")
    ap.add_argument("--names", help="class names, one per line (e.g. cfg/coco.names)")
    ap.add_argument("--size", type=parse_size, help="input size N or WxH (multiple of 32); default from [net]")
    ap.add_argument("--leaky", choices=LEAKY_POLICIES, default=DEFAULT_LEAKY, help=LEAKY_HELP)
    ap.add_argument("--darknet", choices=FLAVORS, help=DARKNET_HELP)
    args = ap.parse_args(argv)
    from . import missing_tensorflow
    if problem := missing_tensorflow():
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if not args.names:
        print(NO_NAMES_WARNING, file=sys.stderr)
    try:
        c = convert(args.cfg, args.weights, args.leaky, args.size, args.names, args.darknet)
    except (ConfigError, WeightsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(summary(c, c.meta.leaky))
    from .keras_model import save_model
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    try:
        save_model(c.model, c.meta, args.output)
    except OSError as e:
        print(f"error: {args.output}: cannot write: {e.strerror or e}", file=sys.stderr)
        return 2
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
