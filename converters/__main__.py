"""`python -m converters CFG WEIGHTS --out-dir build/`: cfg -> Keras -> int8 TFLite -> Edge TPU check.

Runs every stage in one go (and `edgetpu_compiler` where installed) and ends with a short
report: ops mapped, sizes, fidelity to the exact float model, files written. Exit 0 only
when every op maps to the Edge TPU and the int8 model keeps the float model's detections
(fidelity at least --min-fidelity).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys

from . import missing_tensorflow
from .calibration import CalibrationError
from .cfg import ConfigError, parse_cfg, parse_size
from .cfg import FLAVORS
from .darknet_data import DataError
from .darknet import DARKNET_HELP, NO_NAMES_WARNING
from .leaky import DEFAULT_LEAKY, LEAKY_HELP, LEAKY_POLICIES
from .weights import WeightsError
from .cli import HelpFormatter, fidelity_ok, positive_int


def default_names(cfg: str, size: tuple[int, int] | None) -> str | None:
    """`<cfg>.names` or `coco.names` beside the cfg, if present with one name per class."""
    folder, stem = os.path.dirname(os.path.abspath(cfg)), os.path.splitext(os.path.basename(cfg))[0]
    classes = parse_cfg(cfg, size).classes
    for name in (f"{stem}.names", "coco.names"):
        path = os.path.join(folder, name)
        try:
            with open(path, encoding="utf-8") as f:
                if sum(1 for line in f if line.strip()) == classes:
                    return path
        except OSError:
            continue
    return None


def stage(n: int, total: int, text: str) -> None:
    print(f"[{n}/{total}] {text}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from .quantize import add_calibration_args
    ap = argparse.ArgumentParser(prog="python -m converters", description=__doc__.split("\n")[0],
                                 formatter_class=HelpFormatter)
    ap.add_argument("cfg", help="darknet .cfg")
    ap.add_argument("weights", help="darknet .weights")
    ap.add_argument("--out-dir", default="build", help="where to write the models")
    ap.add_argument("--names", help="class names, one per line (default: <cfg>.names or "
                                    "coco.names beside the cfg, if its count matches)")
    ap.add_argument("--size", type=parse_size,
                    help="input size N or WxH, a multiple of 32 (default: the cfg's [net])")
    ap.add_argument("--leaky", choices=LEAKY_POLICIES, default=DEFAULT_LEAKY, help=LEAKY_HELP)
    ap.add_argument("--darknet", choices=FLAVORS, help=DARKNET_HELP)
    add_calibration_args(ap)
    ap.add_argument("--data", metavar="OBJ.DATA",
                    help="a darknet project (classes, train, valid, names): calibrate on "
                         "--num images of its train list (unless --calib) and report "
                         "mAP@0.5 on its valid list's labels as `darknet detector map` "
                         "computes it, for the exact float model and for int8")
    ap.add_argument("--explain", action="store_true",
                    help="also name the layers that add the most int8 error (int8 against "
                         "float intermediate tensors on calibration samples)")
    ap.add_argument("--report-json", metavar="FILE",
                    help="also write the report (Edge TPU ops, fidelity; map50 with --data) "
                         "as JSON")
    ap.add_argument("--segments", type=positive_int, default=1, metavar="N",
                    help="also cut the int8 model into N segments with balanced parameters, "
                         "one per Edge TPU, run as a pipeline (1: no segments)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if os.path.exists(args.out_dir) and not os.path.isdir(args.out_dir):
        print(f"error: --out-dir {args.out_dir}: is an existing file, not a folder",
              file=sys.stderr)
        return 2
    if problem := missing_tensorflow():
        print(f"error: {problem}", file=sys.stderr)
        return 2
    stem = os.path.splitext(os.path.basename(args.cfg))[0]
    keras_path = os.path.join(args.out_dir, f"{stem}.keras")
    tflite_path = os.path.join(args.out_dir, f"{stem}_int8.tflite")
    total = 4 if shutil.which("edgetpu_compiler") else 3
    try:
        # Everything that can be checked cheaply is checked before TensorFlow loads and
        # before any file is written.
        names = args.names or default_names(args.cfg, args.size)
        if not names:
            print(NO_NAMES_WARNING, file=sys.stderr)
        from .accuracy import is_coco, split_images
        from .calibration import load_images
        from .darknet import read_names
        classes = parse_cfg(args.cfg, args.size).classes
        coco = is_coco(read_names(names, classes) if names else (), classes)
        project = calib_paths = valid_paths = None
        if args.data:
            from .darknet_data import image_list, read_project, sample
            from .map50 import validation_set
            project = read_project(args.data)
            valid_paths = validation_set(project, classes)[0]
            if not args.calib:
                calib_paths = sample(image_list(project, "train"), args.num)
        calib_files, eval_paths = split_images(args.calib or calib_paths,
                                               args.eval or valid_paths, coco)
        calib_images = load_images(calib_files)

        stage(1, total, f"darknet -> Keras ({args.cfg}, --leaky {args.leaky})")
        from .darknet import convert, exact_reference, has_leaky, summary
        c = convert(args.cfg, args.weights, args.leaky, args.size, names, args.darknet)
        leaky_layers = has_leaky(c.net)
        auto = args.leaky == "auto" and leaky_layers
        print(summary(c, f"{c.meta.leaky} (auto)" if auto else c.meta.leaky))

        stage(2, total, f"Keras -> full-int8 TFLite ({args.num} calibration samples)")
        from .equalize import equalized
        from .quantize import quantize, write

        def int8(c):
            q = equalized(c, calib_images)  # same float function, evener int8 ranges
            return q, quantize(q.model, q.meta, "int8", None, args.num, args.io,
                               images=calib_images)
        choice = None
        if auto:
            from .leaky_choice import choice_images, choose
            choice = choose(c, int8, lambda form: convert(args.cfg, args.weights, form,
                                                          args.size, names, args.darknet),
                            choice_images(calib_files, eval_paths))
            c, q, data = choice.trial.converted, choice.trial.equalized, choice.trial.data
        else:
            q, data = int8(c)
    except (ConfigError, WeightsError, CalibrationError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    write(tflite_path, data)
    from .keras_model import save_model
    save_model(c.model, c.meta, keras_path)

    stage(3, total, "Edge TPU op check (prediction)")
    from .edgetpu_check import check_model, format_report
    from .edgetpu_memory import summary_lines
    from yolo_tpu.tflite_file import read_model
    parsed = read_model(tflite_path)
    report = check_model(parsed, tflite_path)
    print(format_report(report))
    segments = []
    if args.segments > 1:
        from .segment import SegmentError, report as segment_report, write_segments
        try:
            segments = write_segments(tflite_path, args.segments, args.out_dir)
        except SegmentError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(segment_report(segments))
    compiled_ok, compiler_report = True, None
    if total == 4:
        stage(4, total, "edgetpu_compiler")
        from pathlib import Path
        from .edgetpu_compile import compile_model
        code, compiler_report = compile_model(Path(tflite_path), Path(args.out_dir))
        compiled_ok = code == 0
        for seg in segments:  # each on its own: its parameters fill one TPU's cache
            compiled_ok = compile_model(Path(seg.path), Path(args.out_dir))[0] == 0 \
                and compiled_ok

    from .accuracy import measure, no_fidelity_reason, size_line
    fidelity = measure(exact_reference(c), c.meta, tflite_path, eval_paths) if eval_paths else None
    print("\nsummary")
    print(f"  ops on the Edge TPU (predicted): {report.tpu_count} of {report.total}"
          + ("" if report.all_mapped else "  (NOT all mapped: see the table above)"))
    print(f"  {fidelity.describe() if fidelity else no_fidelity_reason(args.calib, coco)}")
    if choice is not None:
        print(f"  {choice.describe()}")
    map_result = None
    if project is not None:
        from .map50 import describe, evaluate, keras_runner, tflite_runner
        try:
            map_result = evaluate(project, c.meta, {
                "float": keras_runner(exact_reference(c), c.meta),
                "int8": tflite_runner(tflite_path)})
        except DataError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        for line in describe(map_result):
            print(f"  {line}")
    from .darknet import tpu_blockers
    for line in tpu_blockers(c.net):  # the cfg line that keeps it off, and what instead
        print(f"  not for the Edge TPU: {line}")
    sizes = compiler_report.memory if compiler_report is not None else None
    for line in summary_lines(parsed, [op.mapped for op in report.ops], sizes):
        print(f"  {line}")
    print(f"  {size_line(tflite_path, keras_path)}")
    print(f"  wrote {keras_path} and {tflite_path}")
    if args.segments > 1:
        print(f"  and {args.segments} segments: "
              + ",".join(s.path for s in segments))
    if args.explain:
        from .explain import explain
        for line in explain(q, tflite_path, calib_images):
            print(f"  {line}")
    if args.report_json:
        from .report import build_report, write_report
        extra = {"map50": map_result} if map_result else {}
        extra["leaky"] = choice.to_json() if choice else {
            "form": c.meta.leaky if leaky_layers else None, "auto": False}
        write_report(args.report_json, build_report(report, fidelity, **extra))
        print(f"  wrote {args.report_json}")
    faithful = fidelity_ok(fidelity, args.min_fidelity, args.leaky)
    return 0 if report.all_mapped and compiled_ok and faithful else 1


if __name__ == "__main__":
    sys.exit(main())
