"""This CPU's int8 ceiling: a model of nothing but large int8 3x3 convolutions, invoke
only, and the multiply-accumulates of a model's convolutions.
"""
from __future__ import annotations

import json
import os

from .common import BENCH_DIR, CEILING_CONVS, CEILING_SHAPE, one_line, say, timed
from .tflite import is_fresh


class CeilingRunner:
    """The int8 convolution model that measures this CPU's int8 peak: invoke only."""

    modes = ("invoke",)

    def __init__(self, spec: dict):
        from yolo_tpu.backends import make_interpreter
        self.interpreter, self.threads = make_interpreter(spec["model"], "cpu")
        self.thread_count = os.cpu_count()
        self.runs = len(spec["images"])  # as many invokes as the others do photos
        inp = self.interpreter.get_input_details()[0]
        import numpy as np
        self.interpreter.set_tensor(inp["index"], np.ones(inp["shape"], inp["dtype"]))

    def time(self, mode: str) -> list[float]:
        return timed(lambda _: self.interpreter.invoke(), list(range(self.runs)))

    def detect(self, conf: float) -> list:
        return []

    @staticmethod
    def versions() -> dict[str, str]:
        return {}


def conv_macs(path: str) -> int:
    """Multiply-accumulates of a TFLite model's CONV_2D ops per invoke, from its tensors."""
    from ai_edge_litert.interpreter import Interpreter
    interpreter = Interpreter(model_path=path)
    shapes = {t["index"]: t["shape"] for t in interpreter.get_tensor_details()}
    macs = 0
    for op in interpreter._get_ops_details():
        if op["op_name"] == "CONV_2D":
            _, kh, kw, cin = shapes[op["inputs"][1]]
            _, h, w, cout = shapes[op["outputs"][0]]
            macs += int(h) * int(w) * int(cout) * int(kh) * int(kw) * int(cin)
    return macs


def build_ceiling() -> str | None:
    """build/bench/int8_conv_ceiling.tflite: CEILING_CONVS int8 3x3 convolutions, built
    once with TensorFlow (random weights, calibrated on random inputs: speed only)."""
    path = os.path.join(BENCH_DIR, "int8_conv_ceiling.tflite")
    key = f"ceiling {CEILING_SHAPE} {CEILING_CONVS}"
    if is_fresh(path, key):
        return path
    say(f"building the int8 ceiling model ({CEILING_CONVS} x conv 3x3 "
        f"{CEILING_SHAPE[2]}->{CEILING_SHAPE[2]} on {CEILING_SHAPE[0]}x{CEILING_SHAPE[1]}) ...")
    try:
        import keras
        import numpy as np

        from converters.quantize import to_tflite, write
        rng = np.random.default_rng(0)
        x = inputs = keras.Input(CEILING_SHAPE, batch_size=1)
        for _ in range(CEILING_CONVS):
            x = keras.layers.Conv2D(CEILING_SHAPE[2], 3, padding="same", activation="relu")(x)
        model = keras.Model(inputs, x)

        def feed():
            for _ in range(8):
                yield [rng.standard_normal((1, *CEILING_SHAPE)).astype(np.float32)]
        write(path, to_tflite(model, "int8", "int8", feed))
    except Exception as e:  # noqa: BLE001 - one line; the ceiling target is then skipped
        say(f"  skipped: cannot build the ceiling model: {one_line(e)}")
        return None
    with open(path + ".json", "w") as f:
        json.dump({"key": key}, f)
    return path
