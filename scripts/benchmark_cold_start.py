"""Cold start of `python -m yolo_tpu.detect --image` with a warm numba cache.

    python scripts/benchmark_cold_start.py [--model build/yolov3-tiny_int8.tflite] [--runs 5]

Wall time of whole processes, interleaved with two peers in the same run, so a busy
machine slows all three alike: `python -c pass` (the interpreter alone) and
`python -c "import numpy, cv2"` (the libraries any OpenCV tool pays for). Target: 1.5 s.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET_S = 1.5


def wall(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=os.path.join(ROOT, "build/yolov3-tiny_int8.tflite"))
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    if not os.path.exists(args.model):
        print(f"error: {args.model}: no model; run `make demo` first", file=sys.stderr)
        return 2
    cmds = {
        "yolo_tpu.detect --image": [sys.executable, "-m", "yolo_tpu.detect", "--model",
                                    args.model, "--image", "samples/dog.jpg"],
        "python -c pass": [sys.executable, "-c", "pass"],
        "import numpy, cv2": [sys.executable, "-c", "import numpy, cv2"],
    }
    wall(cmds["yolo_tpu.detect --image"])  # warm the numba cache and the page cache
    times: dict[str, list[float]] = {k: [] for k in cmds}
    for _ in range(args.runs):
        for name, cmd in cmds.items():
            times[name].append(wall(cmd))
    print(f"{'command':<28}{'median s':>10}{'min s':>8}{'max s':>8}")
    for name, t in times.items():
        print(f"{name:<28}{statistics.median(t):>10.3f}{min(t):>8.3f}{max(t):>8.3f}")
    median = statistics.median(times["yolo_tpu.detect --image"])
    print(f"{'PASS' if median < TARGET_S else 'FAIL'}: cold start {median:.2f} s "
          f"(target < {TARGET_S} s)")
    return 0 if median < TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
