"""Calibration ranges at the cost of a float forward pass per sample.

TensorFlow's calibrator runs every sample through an unaccelerated, single-threaded
interpreter that logs each op: measured 1.3-2.2 s a sample for yolov4-tiny at 416-960 px,
about ten float forward passes. The ranges it records are plain minima and maxima of each
activation tensor over the samples. Here the calibrator sees one sample (so it writes the
calibrated model, with a min/max slot on every tensor it quantizes), then the remaining
samples run through that same float model in LiteRT's ordinary interpreter (XNNPACK, two
threads, intermediate tensors kept) and the slots get the minima and maxima over all of
them. The quantizer that follows is TensorFlow's own, unchanged.

The calibrator logs an op's inputs after the op ran, and an ADD that TFLite runs in place
has overwritten its first input by then: the 0.1 x branch of every addrelu leaky gets the
ADD's range, ten times its own. Measured on the real models, each tensor's own range gave
int8 no closer to darknet (yolo-fastest 0.969 against 0.985, custom10 0.925 against
0.928), so the calibrator's figures are kept (`_as_logged_in_place`).

If TensorFlow's internals differ from what this expects, or a tensor cannot be read, the
stock calibrator runs instead.
"""
from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator

import numpy as np


def _tensors_with_ranges(model) -> list:
    """The calibrated model's tensors that carry a min/max slot (subgraph 0)."""
    tensors = model.subgraphs[0].tensors
    return [(i, t) for i, t in enumerate(tensors)
            if t.quantization is not None and t.quantization.min is not None
            and len(t.quantization.min) == 1]


def measured(calibrated: bytes, samples: Iterator[list[np.ndarray]]) -> bytes | None:
    """`calibrated` with each min/max slot set to the tensor's range over `samples` (run
    through the float model); None when a tensor cannot be read."""
    import warnings

    from ai_edge_litert.interpreter import Interpreter
    from tensorflow.lite.tools import flatbuffer_utils

    from yolo_tpu.native_log import native_stderr_captured
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(calibrated))
    slots = _tensors_with_ranges(model)
    with warnings.catch_warnings(), native_stderr_captured():
        warnings.simplefilter("ignore")  # "preserve_all_tensors is for debugging"
        it = Interpreter(model_content=calibrated, num_threads=2,
                         experimental_preserve_all_tensors=True)
    it.allocate_tensors()
    inputs = [d["index"] for d in it.get_input_details()]
    # not started from the calibrator's own figures for its one sample: those are wrong
    # for the inputs of in-place ops (see the module docstring)
    lo = {i: np.inf for i, _ in slots}
    hi = {i: -np.inf for i, _ in slots}
    for sample in samples:
        for index, value in zip(inputs, sample):
            it.set_tensor(index, np.asarray(value, np.float32))
        it.invoke()
        for i, _ in slots:
            try:
                v = it.get_tensor(i)
            except ValueError:
                return None
            lo[i], hi[i] = min(lo[i], float(v.min())), max(hi[i], float(v.max()))
    _as_logged_in_place(model, lo, hi)
    for i, t in slots:
        t.quantization.min, t.quantization.max = [lo[i]], [hi[i]]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


IN_PLACE = {0}  # tflite BuiltinOperator.ADD


def _as_logged_in_place(model, lo: dict, hi: dict) -> None:
    """Widen the first input of each in-place ADD to the ADD's output range, as TensorFlow's
    calibrator records it (see the module docstring): measured on the real models, these
    ranges gave int8 at least as close to darknet (README, "Real trained models")."""
    graph = model.subgraphs[0]
    readers: dict[int, int] = {}
    for op in graph.operators:
        for i in op.inputs:
            readers[i] = readers.get(i, 0) + 1
    codes = [max(oc.builtinCode, oc.deprecatedBuiltinCode) for oc in model.operatorCodes]
    for op in graph.operators:
        if codes[op.opcodeIndex] not in IN_PLACE or not len(op.inputs):
            continue
        src, dst = int(op.inputs[0]), int(op.outputs[0])
        shape = lambda k: list(graph.tensors[k].shape)  # noqa: E731
        if src in lo and dst in lo and readers.get(src) == 1 and shape(src) == shape(dst):
            lo[src], hi[src] = min(lo[src], lo[dst]), max(hi[src], hi[dst])


@contextlib.contextmanager
def fast_calibration():
    """Within it, TFLiteConverter.convert() calibrates through `measured`."""
    try:
        from tensorflow.lite.python import lite
        stock = lite._calibrator.Calibrator
        stock.calibrate  # noqa: B018 (the method this replaces must exist)
    except (ImportError, AttributeError):
        yield
        return

    class Calibrator(stock):
        def calibrate(self, dataset_gen):
            feed = iter(dataset_gen())
            first = next(feed, None)
            if first is None:
                return super().calibrate(dataset_gen)
            calibrated = super().calibrate(lambda: iter([first]))
            # a repeated sample leaves minima and maxima as they are
            return measured(calibrated, itertools.chain([first], feed)) \
                or super().calibrate(dataset_gen)

    lite._calibrator.Calibrator = Calibrator
    try:
        yield
    finally:
        lite._calibrator.Calibrator = stock
