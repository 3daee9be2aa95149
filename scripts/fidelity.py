"""Each model form of the bundled tiny-YOLOv3 against darknet's own detections.

    python scripts/fidelity.py [--out docs/fidelity.md] [--num 100] [--size WxH]
                               [--forms int8:addrelu,int8:maximum,...]

Builds every form from cfg/ and weights/ (int8 per --leaky policy, float16, dynamic,
float32), runs darknet's `detector test` pipeline through libdarknet on the sample photos
as ground truth, and prints per form: file size, ops the Edge TPU static check maps, and
mAP@0.5 against darknet (all six photos) and against the float model (the three photos
not used for calibration), and the fidelity `python -m converters` reports (F1 of the exact
float model's detections matched at conf 0.25) with its counts.
"""
from __future__ import annotations

import argparse
import glob
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from converters.accuracy import measure  # noqa: E402
from converters.calibration import DEFAULT_EVAL  # noqa: E402
from converters.cfg import parse_size  # noqa: E402
from converters.darknet import convert  # noqa: E402
from converters.edgetpu_check import check  # noqa: E402
from converters.fidelity import agreement, darknet_detections  # noqa: E402
from converters.quantize import quantize  # noqa: E402

CFG = os.path.join(ROOT, "cfg/yolov3-tiny.cfg")
WEIGHTS = os.path.join(ROOT, "weights/yolov3-tiny.weights")
FORMS = [("int8", "addrelu"), ("int8", "maximum"), ("int8", "relu"), ("int8", "keep"), ("int8", "prelu"),
         ("float16", "maximum"), ("dynamic", "maximum"), ("float32", "keep")]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", help="also write the markdown table here")
    ap.add_argument("--num", type=int, default=100, help="int8 calibration samples")
    ap.add_argument("--size", type=parse_size, help="input size N or WxH (default: the cfg's)")
    ap.add_argument("--forms", help="comma-separated mode:leaky (default: all of FORMS)")
    args = ap.parse_args()
    forms = [tuple(f.split(":")) for f in args.forms.split(",")] if args.forms else FORMS
    images = sorted(glob.glob(os.path.join(ROOT, "samples/*.jpg")))
    truths = darknet_detections(CFG, WEIGHTS, images)
    print(f"darknet: {sum(map(len, truths))} detections on {len(images)} photos", flush=True)
    size = f"{args.size[0]}x{args.size[1]}" if args.size else "the cfg's size"
    print(f"input: {size}; darknet runs at the cfg's size", flush=True)
    rows = ["| form | `--leaky` | size (MB) | Edge TPU ops mapped | mAP@0.5 vs darknet "
            "| mAP@0.5 vs float (held-out) | fidelity (held-out) |",
            "|---|---|---:|---:|---:|---:|---:|"]
    with tempfile.TemporaryDirectory() as tmp:
        models = {"keep": convert(CFG, WEIGHTS, "keep", args.size)}
        reference = models["keep"]  # the exact float model: darknet's arithmetic
        for mode, leaky in forms:
            if leaky not in models:
                models[leaky] = convert(CFG, WEIGHTS, leaky, args.size)
            c = models[leaky]
            path = os.path.join(tmp, f"{mode}_{leaky}.tflite")
            with open(path, "wb") as f:
                f.write(quantize(c.model, c.meta, mode, None, args.num, progress=False))
            report = check(path)
            fid = measure(reference.model, reference.meta, path, list(DEFAULT_EVAL))
            # darknet's detections are at the cfg's size: compared only at that size
            vs_darknet = "-" if args.size else f"{agreement(path, truths, images):.3f}"
            row = (f"| {mode} | {leaky} | {os.path.getsize(path) / 1e6:.2f} | "
                   f"{report.tpu_count}/{report.total} | {vs_darknet} "
                   f"| {fid.map50:.3f} | {fid.score:.2f} ({fid.matched} of {fid.reference}) |")
            print(row, flush=True)
            rows.append(row)
    table = "\n".join(rows)
    print(table)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
