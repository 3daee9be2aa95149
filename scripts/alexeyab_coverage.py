"""Which of AlexeyAB's cfgs convert, how much of each maps to the Edge TPU, and how close the
converted model comes to AlexeyAB's darknet; then what the converter still refuses.

    make alexeyab && python scripts/alexeyab_coverage.py [--cfg-dir ../shared/cfg]
                                                         [--out docs/alexeyab_coverage.md]

Each cfg runs at the small input size and with the random weights (darknet's format) that
tests/test_alexeyab.py uses (converters.darknet_ref.RANDOM_WEIGHTS). Head difference: the
largest |ours - darknet| of any head value on samples/dog.jpg, after darknet's in-place
[yolo]/[region] activations, over `--leaky keep` and `--leaky addrelu`. Edge TPU: the int8
model (`--leaky addrelu`, 8 calibration samples) through converters.edgetpu_check.
"""
from __future__ import annotations

import argparse
import glob
import os
import sys
import tempfile

import cv2
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from converters.cfg import SECTIONS, ConfigError, parse_cfg  # noqa: E402
from converters.darknet import convert, tpu_blockers  # noqa: E402
from converters.darknet_ref import (ALEXEYAB, RANDOM_WEIGHTS, Darknet, available,  # noqa: E402
                                    cfg_with_size, head_differences, write_random_weights)

# What the parser refuses inside sections it otherwise builds (see converters/cfg.py).
REFUSED_KEYS = [
    "[convolutional] binary, xnor, bin_output, flipped, antialiasing, share_index, "
    "deformable (sway, rotate, stretch, stretch_sway), coordconv; dilation whose padding is not size/2 (darknet's im2col then fills the wrong grid)",
    "[maxpool] maxpool_depth, out_channels, antialiasing; windows wholly outside the image",
    "[shortcut] weights_type (weighted shortcuts); pjreddie's alpha/beta other than 1",
    "[scale_channels] scale_wh=1; [reorg] and [reorg3d] reverse=1; [shortcut] between sizes under AlexeyAB's darknet (it asserts equal sizes; pjreddie's strides/samples and converts); [yolo] mask past num (darknet reads undefined memory)",
    "[region] tree (YOLO9000), classfix, coords other than 4, softmax=0",
    "[yolo]/[region] heads mixed in one cfg; dontload=1 or dontloadscales=1 in any layer",
    "activations elu, selu, gelu, relie, ramp, plse, stair, hardtan, lhtan, loggy, "
    "revleaky, normalize_channels*",
]


def row(cfg_path: str, tmp: str, image: np.ndarray) -> list[str]:
    from converters.edgetpu_check import check
    from converters.keras_model import predict
    from converters.quantize import quantize
    name = os.path.splitext(os.path.basename(cfg_path))[0]
    if name not in RANDOM_WEIGHTS:
        return [name, "-", "not measured (no random-weight settings)", "-", "-"]
    size = RANDOM_WEIGHTS[name][0]
    cfg = cfg_with_size(cfg_path, os.path.join(tmp, f"{name}.cfg"), size, size)
    try:
        net = parse_cfg(cfg, flavor="alexeyab")
    except ConfigError as e:
        return [name, "no", str(e), "-", "-"]
    weights = os.path.join(tmp, f"{name}.weights")
    write_random_weights(weights, net, name)
    sized = cv2.resize(image, (size, size)).astype(np.float32) / 255
    with Darknet(cfg, weights, ALEXEYAB) as dn:
        ref = dn.forward(sized)
    worst = 0.0
    for leaky in ("keep", "addrelu"):
        c = convert(cfg, weights, leaky, flavor="alexeyab")
        diffs = head_differences(predict(c.model, sized), ref, c.meta.heads)
        worst = max(worst, max(d for d, _ in diffs))
    report = check(quantize(c.model, c.meta, "int8", None, 8, progress=False))
    # "cfg:line: layer N [kind] what (and k more layers): why" -> "what ... (cfg:line)"
    blockers = "; ".join("{1} ({0})".format(*b.split(": ", 2)) for b in tpu_blockers(net))
    blockers = blockers or "-"
    return [f"{name} {size}x{size}", "yes", f"{report.tpu_count} of {report.total}",
            f"{worst:.1e}", blockers]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cfg-dir", default=os.path.join(ROOT, "..", "shared", "cfg"))
    ap.add_argument("--out", help="also write the markdown here")
    args = ap.parse_args(argv)
    reason = available(ALEXEYAB)
    if reason:
        print(f"error: {reason}", file=sys.stderr)
        return 2
    image = cv2.imread(os.path.join(ROOT, "samples", "dog.jpg"))[:, :, ::-1]
    lines = ["| cfg (test input) | converts | Edge TPU ops (int8, addrelu) | largest head "
             "difference vs darknet | kept off the Edge TPU by |", "|---|---|---:|---:|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for path in sorted(glob.glob(os.path.join(args.cfg_dir, "*.cfg"))):
            cells = row(path, tmp, image)
            lines.append("| " + " | ".join(cells) + " |")
            print(lines[-1], flush=True)
    sections = ", ".join(f"[{k}]" for k, v in SECTIONS.items() if v is None)
    lines += ["", "Still refused, each with a one-line error naming the cfg line:", "",
              f"- sections darknet reads but no converted detector uses: {sections}"]
    lines += [f"- {item}" for item in REFUSED_KEYS]
    text = "\n".join(lines) + "\n"
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
