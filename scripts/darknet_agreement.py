"""Agreement of the converted Keras models with darknet's own forward pass, as a table.

    python scripts/darknet_agreement.py [--out docs/darknet_agreement.md]

yolov3-tiny with the bundled COCO weights on samples/dog.jpg; yolov3, yolov3-spp and
yolov3-voc (Debian's cfgs) with random weights written in darknet's format. For each cfg
and --leaky policy: the largest absolute difference of any head value from darknet's,
after the logistic darknet's [yolo] layer applies in place.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

import cv2
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from converters.cfg import parse_cfg  # noqa: E402
from converters.darknet import convert  # noqa: E402
from converters.darknet_ref import Darknet, cfg_with_size, head_differences  # noqa: E402
from converters.keras_model import predict  # noqa: E402
from converters.weights import write_weights  # noqa: E402

DEBIAN_CFG = "/usr/share/darknet/cfg"
POLICIES = ("keep", "maximum", "addrelu", "prelu", "relu")


def cases(tmp: str):
    """(label, cfg, weights, size): the real tiny weights, then random weights."""
    yield ("yolov3-tiny (COCO weights)", os.path.join(ROOT, "cfg/yolov3-tiny.cfg"),
           os.path.join(ROOT, "weights/yolov3-tiny.weights"), 416)
    for name, size in (("yolov3", 320), ("yolov3-spp", 320), ("yolov3-voc", 256)):
        cfg = cfg_with_size(os.path.join(DEBIAN_CFG, f"{name}.cfg"),
                            os.path.join(tmp, f"{name}.cfg"), size, size)
        weights = os.path.join(tmp, f"{name}.weights")
        write_weights(weights, parse_cfg(cfg), np.random.default_rng(7))
        yield f"{name} {size}x{size} (random weights)", cfg, weights, size


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", help="also write the markdown table to this file")
    args = ap.parse_args()
    image = cv2.imread(os.path.join(ROOT, "samples/dog.jpg"))[:, :, ::-1]
    rows = ["| cfg | " + " | ".join(f"`--leaky {p}`" for p in POLICIES) + " |",
            "|---|" + "---:|" * len(POLICIES)]
    with tempfile.TemporaryDirectory() as tmp:
        for label, cfg, weights, size in cases(tmp):
            x = cv2.resize(image, (size, size)).astype(np.float32) / 255
            cells = []
            with Darknet(cfg, weights) as dn:
                ref = dn.forward(x)
                for policy in POLICIES:
                    c = convert(cfg, weights, policy)
                    diffs = head_differences(predict(c.model, x), ref,
                                             [len(h.mask) for h in c.meta.heads])
                    cells.append(f"{max(d for d, _ in diffs):.1e}")
                    print(f"{label:<36} {policy:<8} max |diff| {cells[-1]}", flush=True)
            rows.append(f"| {label} | " + " | ".join(cells) + " |")
    table = "\n".join(rows)
    print(table)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            f.write(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
