"""Throughput of a model cut into segments and run as a CPU pipeline, against the whole model.

    python scripts/benchmark_segments.py [--model build/yolov3-tiny_int8.tflite]
                                         [--segments 2] [--frames 120] [--rounds 5]

Cuts the model with `converters.segment` (into a temporary folder), then alternates, round
after round in one process, on the same letterboxed sample photos:
- whole: one interpreter with every core (`Detector.infer`, one frame after the other);
- pipeline: one interpreter per segment, each with its share of the cores and its own
  thread, frames kept in flight (`Detector.submit` / `collect`), which is how the video loop
  drives it.
Prints frames per second (median of the rounds, min-max) and the ratio. On a CPU the
segments share the same cores, so expect little; on N Edge TPUs each segment has its own
device and its weights stay in that device's cache. No target: a figure for the README.
"""
from __future__ import annotations

import argparse
import glob
import os
import statistics
import sys
import tempfile
import time

import cv2

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from converters.segment import write_segments  # noqa: E402
from yolo_tpu.detector import Detector  # noqa: E402


def whole_fps(detector: Detector, tensors: list) -> float:
    t0 = time.perf_counter()
    for tensor in tensors:
        detector.infer(tensor)
    return len(tensors) / (time.perf_counter() - t0)


def pipeline_fps(detector: Detector, tensors: list) -> float:
    t0 = time.perf_counter()
    pending = 0
    for tensor in tensors:
        detector.submit(tensor)
        pending += 1
        if pending >= detector.in_flight:
            detector.collect()
            pending -= 1
    for _ in range(pending):
        detector.collect()
    return len(tensors) / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=os.path.join(ROOT, "build", "yolov3-tiny_int8.tflite"))
    ap.add_argument("--segments", type=int, default=2)
    ap.add_argument("--frames", type=int, default=120)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    if not os.path.exists(args.model):
        print(f"error: {args.model}: no such model (run `make demo` first)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        parts = write_segments(args.model, args.segments, tmp)
        whole = Detector(args.model, device="cpu")
        piped = Detector([p.path for p in parts], device="cpu")
        photos = sorted(glob.glob(os.path.join(ROOT, "samples", "*.jpg")))
        tensors = [whole.preprocess(cv2.imread(p), reuse=False)[0] for p in photos]
        tensors = (tensors * (args.frames // len(tensors) + 1))[:args.frames]
        whole_fps(whole, tensors[:10])  # warm-up: first invokes pay one-off costs
        pipeline_fps(piped, tensors[:10])
        rounds = {"whole": [], "pipeline": []}
        for _ in range(args.rounds):
            rounds["whole"].append(whole_fps(whole, tensors))
            rounds["pipeline"].append(pipeline_fps(piped, tensors))
        piped.close()
    ratios = [p / w for p, w in zip(rounds["pipeline"], rounds["whole"])]
    print(f"model: {os.path.basename(args.model)}, {args.frames} frames x {args.rounds} rounds, "
          f"{os.cpu_count()} cores")
    print(f"whole model ({whole.backend}): {statistics.median(rounds['whole']):.1f} FPS "
          f"({min(rounds['whole']):.1f}-{max(rounds['whole']):.1f})")
    print(f"{args.segments}-segment pipeline ({piped.backend}): "
          f"{statistics.median(rounds['pipeline']):.1f} FPS "
          f"({min(rounds['pipeline']):.1f}-{max(rounds['pipeline']):.1f})")
    print(f"pipeline / whole: {statistics.median(ratios):.2f}x (median of the rounds' ratios)")
    for p in parts:
        print(f"  {os.path.basename(p.path)}: {p.parameter_bytes / 2**20:.2f} MiB parameters")
    return 0


if __name__ == "__main__":
    sys.exit(main())
