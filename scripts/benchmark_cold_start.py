"""Cold start of `python -m yolo_tpu.detect --image`: the first run after an install (numba
compiles its kernels into an empty cache) and every run after it (the cache is warm).

    python scripts/benchmark_cold_start.py [--model build/yolov3-tiny_int8.tflite] [--runs 5]

The first run is measured with `NUMBA_CACHE_DIR` pointing at a new empty folder each time,
which is what a fresh install has.

Wall time of whole processes, interleaved with two peers in the same run, so a busy
machine slows all three alike: `python -c pass` (the interpreter alone) and
`python -c "import numpy, cv2"` (the libraries any OpenCV tool pays for). Target: 1.5 s.
Then where the time goes, measured inside fresh processes: importing numpy and cv2, then
yolo_tpu's Detector (numba included), constructing the Detector, the first detection (numba
loads its cached machine code) and a second one.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET_S = 1.5


def wall(cmd: list[str], env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env=env)
    return time.perf_counter() - start


def first_run(cmd: list[str]) -> float:
    """The command as after a fresh install: numba's cache is an empty folder."""
    with tempfile.TemporaryDirectory() as cache:
        return wall(cmd, {**os.environ, "NUMBA_CACHE_DIR": cache})


# Run in a fresh interpreter: each phase of a cold start, in seconds, as one JSON line.
PHASES = """
import json, sys, time
t = [time.perf_counter()]
import numpy, cv2
t.append(time.perf_counter())
from yolo_tpu import Detector
t.append(time.perf_counter())
detector = Detector(sys.argv[1])
t.append(time.perf_counter())
image = cv2.imread(sys.argv[2])
t.append(time.perf_counter())
detector(image)
t.append(time.perf_counter())
detector(image)
t.append(time.perf_counter())
names = ["import numpy, cv2", "import Detector", "Detector()", "imread",
         "first detection", "second detection"]
print(json.dumps({n: b - a for n, a, b in zip(names, t, t[1:])}))
"""


def phases(model: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", PHASES, model, "samples/dog.jpg"], check=True,
                         cwd=ROOT, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=os.path.join(ROOT, "build/yolov3-tiny_int8.tflite"))
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--first-runs", type=int, default=2,
                    help="runs with an empty numba cache (each compiles the kernels)")
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
    print(f"load average before the run: {', '.join(f'{x:.1f}' for x in os.getloadavg())} "
          f"on {os.cpu_count()} cores")
    first = [first_run(cmds["yolo_tpu.detect --image"]) for _ in range(args.first_runs)]
    wall(cmds["yolo_tpu.detect --image"])  # warm the numba cache and the page cache
    times: dict[str, list[float]] = {k: [] for k in cmds}
    for _ in range(args.runs):
        for name, cmd in cmds.items():
            times[name].append(wall(cmd))
    print(f"{'command':<28}{'median s':>10}{'min s':>8}{'max s':>8}")
    for name, t in times.items():
        print(f"{name:<28}{statistics.median(t):>10.3f}{min(t):>8.3f}{max(t):>8.3f}")
    runs = [phases(args.model) for _ in range(args.runs)]
    print(f"\n{'phase, in a fresh process':<28}{'median s':>10}{'min s':>8}{'max s':>8}")
    for name in runs[0]:
        t = [r[name] for r in runs]
        print(f"{name:<28}{statistics.median(t):>10.3f}{min(t):>8.3f}{max(t):>8.3f}")
    median = statistics.median(times["yolo_tpu.detect --image"])
    print(f"\nfirst run after install (empty numba cache): median {statistics.median(first):.2f} s "
          f"({min(first):.2f}-{max(first):.2f}, {len(first)} runs); once, with a one-line notice")
    print(f"{'PASS' if median < TARGET_S else 'FAIL'}: cold start {median:.2f} s "
          f"(target < {TARGET_S} s), {median / statistics.median(times['import numpy, cv2']):.1f}x "
          "`import numpy, cv2` in the same run")
    return 0 if median < TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
