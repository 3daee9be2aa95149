"""Each model form of the bundled tiny-YOLOv3 against darknet's own detections.

    python scripts/fidelity.py [--out docs/fidelity.md] [--num 100]

Builds every form from cfg/ and weights/ (int8 per --leaky policy, float16, dynamic,
float32), runs darknet's `detector test` pipeline through libdarknet on the sample photos
as ground truth, and prints per form: file size, ops the Edge TPU static check maps, and
mAP@0.5 against darknet (all six photos) and against the float model (the three photos
not used for calibration).
"""
from __future__ import annotations

import argparse
import glob
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from converters.accuracy import quantization_cost  # noqa: E402
from converters.calibration import DEFAULT_EVAL  # noqa: E402
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
    args = ap.parse_args()
    images = sorted(glob.glob(os.path.join(ROOT, "samples/*.jpg")))
    truths = darknet_detections(CFG, WEIGHTS, images)
    print(f"darknet: {sum(map(len, truths))} detections on {len(images)} photos", flush=True)
    rows = ["| form | `--leaky` | size (MB) | Edge TPU ops mapped | mAP@0.5 vs darknet "
            "| mAP@0.5 vs float (held-out) |", "|---|---|---:|---:|---:|---:|"]
    with tempfile.TemporaryDirectory() as tmp:
        models = {"maximum": convert(CFG, WEIGHTS, "maximum")}
        reference = models["maximum"]
        for mode, leaky in FORMS:
            if leaky not in models:
                models[leaky] = convert(CFG, WEIGHTS, leaky)
            c = models[leaky]
            path = os.path.join(tmp, f"{mode}_{leaky}.tflite")
            with open(path, "wb") as f:
                f.write(quantize(c.model, c.meta, mode, None, args.num, progress=False))
            report = check(path)
            # The float reference is the exact (maximum) float model: darknet's arithmetic.
            vs_float, _, _ = quantization_cost(reference.model, reference.meta, path,
                                               list(DEFAULT_EVAL))
            row = (f"| {mode} | {leaky} | {os.path.getsize(path) / 1e6:.2f} | "
                   f"{report.tpu_count}/{report.total} | {agreement(path, truths, images):.3f} "
                   f"| {vs_float:.3f} |")
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
