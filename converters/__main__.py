"""`python -m converters CFG WEIGHTS --out-dir build/`: cfg -> Keras -> int8 TFLite -> Edge TPU check.

Runs every stage in one go (and `edgetpu_compiler` where installed) and ends with a short
report: ops mapped, sizes, quantization cost, files written. Exit 0 only when every op
maps to the Edge TPU.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys

from .calibration import CalibrationError
from .cfg import ConfigError, parse_cfg, parse_size
from .cfg import FLAVORS
from .darknet import DARKNET_HELP, LEAKY_HELP, LEAKY_POLICIES
from .weights import WeightsError


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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m converters", description=__doc__.split("\n")[0])
    ap.add_argument("cfg")
    ap.add_argument("weights")
    ap.add_argument("--out-dir", default="build", help="where to write the models (default build/)")
    ap.add_argument("--names", help="class names (default: <cfg>.names or coco.names beside the cfg)")
    ap.add_argument("--size", type=parse_size, help="input size N or WxH (multiple of 32)")
    ap.add_argument("--leaky", choices=LEAKY_POLICIES, default="relu", help=LEAKY_HELP)
    ap.add_argument("--darknet", choices=FLAVORS, help=DARKNET_HELP)
    ap.add_argument("--calib", nargs="+", metavar="PATH", help="calibration images/videos")
    ap.add_argument("--num", type=int, default=100, help="calibration samples (default 100)")
    ap.add_argument("--io", choices=("uint8", "int8"), default="uint8")
    ap.add_argument("--segments", type=int, default=1, metavar="N",
                    help="also cut the int8 model into N segments with balanced parameters, "
                         "one per Edge TPU, run as a pipeline (default 1: no segments)")
    args = ap.parse_args(argv)

    from .darknet import convert, summary
    stem = os.path.splitext(os.path.basename(args.cfg))[0]
    keras_path = os.path.join(args.out_dir, f"{stem}.keras")
    tflite_path = os.path.join(args.out_dir, f"{stem}_int8.tflite")
    total = 4 if shutil.which("edgetpu_compiler") else 3
    try:
        stage(1, total, f"darknet -> Keras ({args.cfg}, --leaky {args.leaky})")
        names = args.names or default_names(args.cfg, args.size)
        c = convert(args.cfg, args.weights, args.leaky, args.size, names, args.darknet)
        print(summary(c, args.leaky))
        from .keras_model import save_model
        os.makedirs(args.out_dir, exist_ok=True)
        save_model(c.model, c.meta, keras_path)

        stage(2, total, f"Keras -> full-int8 TFLite ({args.num} calibration samples)")
        from .quantize import quantize, write
        write(tflite_path, quantize(c.model, c.meta, "int8", args.calib, args.num, args.io))
    except (ConfigError, WeightsError, CalibrationError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

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

    from .accuracy import report_quantization_cost
    cost = report_quantization_cost(c.model, c.meta, tflite_path, keras_path, args.calib, None)
    print("\nsummary")
    print(f"  ops on the Edge TPU (predicted): {report.tpu_count} of {report.total}"
          + ("" if report.all_mapped else "  (NOT all mapped: see the table above)"))
    from .darknet import tpu_blockers
    for line in tpu_blockers(c.net):  # the cfg line that keeps it off, and what instead
        print(f"  not for the Edge TPU: {line}")
    sizes = compiler_report.memory if compiler_report is not None else None
    for line in summary_lines(parsed, [op.mapped for op in report.ops], sizes):
        print(f"  {line}")
    print(f"  {cost}")
    print(f"  wrote {keras_path} and {tflite_path}")
    if args.segments > 1:
        print(f"  and {args.segments} segments: "
              + ",".join(s.path for s in segments))
    return 0 if report.all_mapped and compiled_ok else 1


if __name__ == "__main__":
    sys.exit(main())
