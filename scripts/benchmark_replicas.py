"""Throughput of replicas (`--device cpu+cpu`) against one interpreter, on the CPU.

    python scripts/benchmark_replicas.py [--model build/yolov3-tiny_int8.tflite]
                                         [--replicas 2] [--frames 120] [--rounds 5]

Alternates, round after round in one process, on the same letterboxed sample photos:
- one: one interpreter with every core (`Detector.infer`, one frame after the other);
- replicas: N interpreters, each with its share of the cores and its own thread, frames
  in turn and kept in flight (`Detector.submit` / `collect`), as the video loop drives it.
Prints frames per second (median of the rounds, min-max) and the ratio. On a CPU the
replicas share the same cores, so expect little; on N Edge TPUs each replica has a device
of its own. No target: a figure for the README.
"""
from __future__ import annotations

import argparse
import glob
import os
import statistics
import sys

import cv2

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "scripts"))

from benchmark_segments import pipeline_fps, whole_fps  # noqa: E402
from yolo_tpu.detector import Detector  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=os.path.join(ROOT, "build", "yolov3-tiny_int8.tflite"))
    ap.add_argument("--replicas", type=int, default=2)
    ap.add_argument("--frames", type=int, default=120)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    if not os.path.exists(args.model):
        print(f"error: {args.model}: no such model (run `make demo` first)", file=sys.stderr)
        return 2
    one = Detector(args.model, device="cpu")
    many = Detector(args.model, device="+".join(["cpu"] * args.replicas))
    photos = sorted(glob.glob(os.path.join(ROOT, "samples", "*.jpg")))
    tensors = [one.preprocess(cv2.imread(p), reuse=False)[0] for p in photos]
    tensors = (tensors * (args.frames // len(tensors) + 1))[:args.frames]
    whole_fps(one, tensors[:10])  # warm-up: first invokes pay one-off costs
    pipeline_fps(many, tensors[:10])
    rounds = {"one": [], "replicas": []}
    for _ in range(args.rounds):
        rounds["one"].append(whole_fps(one, tensors))
        rounds["replicas"].append(pipeline_fps(many, tensors))
    many.close()
    ratios = [r / o for r, o in zip(rounds["replicas"], rounds["one"])]
    print(f"model: {os.path.basename(args.model)}, {args.frames} frames x {args.rounds} rounds, "
          f"{os.cpu_count()} cores")
    for name, det in (("one", one), ("replicas", many)):
        print(f"{name} ({det.backend}): {statistics.median(rounds[name]):.1f} FPS "
              f"({min(rounds[name]):.1f}-{max(rounds[name]):.1f})")
    print(f"replicas / one: {statistics.median(ratios):.2f}x (median of the rounds' ratios)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
