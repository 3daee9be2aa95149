"""The cost per frame of running the Edge TPU interpreter in a child process (supervised).

    python scripts/benchmark_supervised.py [--model build/yolov3-tiny_int8.tflite]
                                           [--invokes 500] [--rounds 5]

The model is compiled with the edgetpu_compiler stand-in (tests/edgetpu_standin.py) and run
on the stand-in libedgetpu (tests/libedgetpu_standin.c, built here with gcc), whose invoke
costs next to nothing, so what is measured is the boundary itself. Round after round, in one
process, the same frame goes through what `Detector.infer` does (set_tensor, invoke,
get_tensor of every output):
- in-process: the LiteRT interpreter with the delegate, in this process;
- supervised: `yolo_tpu.supervised.SupervisedInterpreter` (tensors in shared memory, one
  byte each way on a socket per invoke).
Prints the median ms per invoke of each (min-max over rounds) and the difference, against
the target of 0.3 ms per frame at 416x416.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))  # the stand-ins at the TPU boundary

TARGET_MS = 0.3


def build_standins(model: str, folder: str) -> str:
    """The stand-in libedgetpu and the compiled model (metadata kept); the model's path."""
    import edgetpu_standin
    from converters.edgetpu_compile import embed_metadata
    gcc = shutil.which("gcc") or shutil.which("cc")
    if not gcc:
        sys.exit("no C compiler (gcc) to build the stand-in libedgetpu")
    lib = os.path.join(folder, "libedgetpu.so.1")
    subprocess.run([gcc, "-shared", "-fPIC", "-O1", "-o", lib,
                    os.path.join(ROOT, "tests", "libedgetpu_standin.c")], check=True)
    os.environ.update(YOLO_TPU_EDGETPU_LIB=lib, STANDIN_EDGETPU_DEVICES="usb:/bench",
                      XDG_CACHE_HOME=os.path.join(folder, "cache"))
    source = os.path.join(folder, os.path.basename(model))
    shutil.copy(model, source)
    target = source[:-len(".tflite")] + "_edgetpu.tflite"
    with open(source, "rb") as f, open(target, "wb") as out:
        out.write(edgetpu_standin.compile_like_edgetpu(f.read()))
    embed_metadata(Path(source), Path(target))
    return target


def per_invoke_ms(interpreter, tensor: np.ndarray, n: int) -> float:
    """Mean ms of set_tensor + invoke + get_tensor (every output), as Detector.infer."""
    index = interpreter.get_input_details()[0]["index"]
    outputs = [d["index"] for d in interpreter.get_output_details()]
    t0 = time.perf_counter()
    for _ in range(n):
        interpreter.set_tensor(index, tensor)
        interpreter.invoke()
        for i in outputs:
            interpreter.get_tensor(i)
    return (time.perf_counter() - t0) * 1e3 / n


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=os.path.join(ROOT, "build", "yolov3-tiny_int8.tflite"),
                   help="an int8 model (default: what `make demo` builds)")
    p.add_argument("--invokes", type=int, default=500)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    if not os.path.exists(args.model):
        sys.exit(f"{args.model}: no such model (build it with `make demo`)")
    with tempfile.TemporaryDirectory() as folder:
        compiled = build_standins(args.model, folder)
        from yolo_tpu.backends import make_interpreter, parse_device
        from yolo_tpu.supervised import SupervisedInterpreter
        inproc, label = make_interpreter(compiled, "usb:0", compiled=True)
        supervised = SupervisedInterpreter(compiled, parse_device("usb:0"), True)
        detail = inproc.get_input_details()[0]
        _, h, w, _ = detail["shape"]
        rng = np.random.default_rng(0)
        tensor = rng.integers(0, 255, detail["shape"], dtype=np.uint8).astype(detail["dtype"])
        for interpreter in (inproc, supervised):  # warm up
            per_invoke_ms(interpreter, tensor, 20)
        times: dict[str, list[float]] = {"in-process": [], "supervised": []}
        for _ in range(args.rounds):
            times["in-process"].append(per_invoke_ms(inproc, tensor, args.invokes))
            times["supervised"].append(per_invoke_ms(supervised, tensor, args.invokes))
        supervised.close()
    print(f"{os.path.basename(compiled)} {w}x{h}, {label} (stand-in library), "
          f"{args.rounds} rounds of {args.invokes} invokes")
    for name, ms in times.items():
        print(f"  {name:<11} {statistics.median(ms):.3f} ms per invoke "
              f"({min(ms):.3f}-{max(ms):.3f})")
    diff = statistics.median(times["supervised"]) - statistics.median(times["in-process"])
    print(f"  boundary    {diff:+.3f} ms per frame (target < {TARGET_MS} ms): "
          f"{'PASS' if diff < TARGET_MS else 'FAIL'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
