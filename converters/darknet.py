"""`python -m converters.darknet CFG WEIGHTS -o OUT.keras`: darknet cfg + weights -> Keras.

Parses and checks the cfg, reads every float of the weights, builds the Keras model with
the `--leaky` policy, prints a per-layer summary and saves the model with its metadata.
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass


from .cfg import ConfigError, Network, parse_cfg, parse_size
from .weights import ConvWeights, WeightsError, load_weights

# Kept here (not in keras_model) so the CLIs can parse arguments without TensorFlow.
LEAKY_POLICIES = ("relu", "maximum", "addrelu", "prelu", "keep")
LEAKY_HELP = ("how leaky ReLU is expressed: relu (Edge TPU; only for ReLU-trained weights), "
              "maximum (exact, Edge TPU: MUL+MAXIMUM), addrelu (exact, Edge TPU: "
              "0.1x + relu(0.9x), best int8 accuracy), prelu (exact, Edge TPU, slow on CPU), "
              "keep (LEAKY_RELU, CPU only)")


@dataclass
class Converted:
    net: Network
    weights: dict[int, ConvWeights]
    model: object  # keras.Model; typed loosely so importing this module stays cheap
    meta: object  # yolo_tpu.meta.ModelMeta


def read_names(path: str, classes: int) -> tuple[str, ...]:
    """Class names, one per line; the count must match the cfg's classes."""
    try:
        with open(path, encoding="utf-8") as f:
            names = tuple(line.strip() for line in f if line.strip())
    except OSError as e:
        raise ConfigError(f"{path}: cannot read names: {e.strerror or e}") from None
    if len(names) != classes:
        raise ConfigError(f"{path}: {len(names)} names, but the cfg's [yolo] layers have "
                          f"classes={classes}")
    return names


def convert(cfg: str, weights: str, leaky: str = "relu", size: tuple[int, int] | None = None,
            names: str | None = None) -> Converted:
    """cfg + weights -> Keras model and metadata; raises ConfigError / WeightsError."""
    net = parse_cfg(cfg, size)
    classes = net.yolo_layers[0].params["classes"]
    labels = read_names(names, classes) if names else ()
    conv_weights = load_weights(weights, net)
    if leaky == "relu" and any(l.params.get("activation") == "leaky" for l in net.layers):
        print(f"warning: --leaky relu replaces the leaky activations of {os.path.basename(cfg)} with "
             "ReLU: right only for weights trained with ReLU. For weights trained with leaky "
             "(darknet's own, the COCO releases) use --leaky maximum or --leaky addrelu: both "
             "exact and Edge TPU ops; addrelu keeps darknet's detections after int8 "
             "quantization.", file=sys.stderr)
    from .keras_model import build_model  # TensorFlow loads here, after the cheap checks
    model, meta = build_model(net, conv_weights, leaky, labels)
    return Converted(net, conv_weights, model, meta)


_SHORT = {"convolutional": "conv", "shortcut": "add"}


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
        elif layer.kind == "route":
            detail = ",".join(map(str, layer.inputs))
        elif layer.kind == "shortcut":
            detail = str(layer.inputs[1])  # inputs[0] is the previous layer
        kind = f"{_SHORT.get(layer.kind, layer.kind)} {detail}".strip()
        rows.append(f"{layer.index:>4}  {kind:<14}{str(layer.shape):<20}{params:>10,}  {act}")
    heads = ", ".join(f"{h.shape[1]}x{h.shape[0]}x{h.shape[2]}" for h in c.net.yolo_layers)
    rows.append(f"input 1x{c.net.height}x{c.net.width}x3, {len(c.net.layers)} layers, "
                f"{total:,} parameters (batch norm folded), {len(c.net.yolo_layers)} heads: "
                f"{heads}, leaky policy: {leaky}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m converters.darknet", description=__doc__.split("\n")[0])
    ap.add_argument("cfg", help="darknet .cfg")
    ap.add_argument("weights", help="darknet .weights")
    ap.add_argument("-o", "--output", required=True, help="output .keras file")
    ap.add_argument("--names", help="class names, one per line (e.g. cfg/coco.names)")
    ap.add_argument("--size", type=parse_size, help="input size N or WxH (multiple of 32); default from [net]")
    ap.add_argument("--leaky", choices=LEAKY_POLICIES, default="relu", help=LEAKY_HELP)
    args = ap.parse_args(argv)
    try:
        c = convert(args.cfg, args.weights, args.leaky, args.size, args.names)
    except (ConfigError, WeightsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(summary(c, args.leaky))
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
