"""`--explain` on the real tiny-YOLOv3: it names the layer whose int8 output costs most.

The int8 model's per-layer error is measured against its float32 form; to know which layer
really is the costliest, the test makes one: it widens one convolution's int8 output step
16-fold in the flatbuffer (the kernels derive their requantization from the scales, so that
layer alone rounds 16 times coarser) and checks that the report names that layer first,
where the undamaged model's report does not."""
from __future__ import annotations

import re

import pytest

from conftest import CFG, NAMES, WEIGHTS

DAMAGED = 8  # yolov3-tiny's 3x3 conv, 256 filters, leaky: not the undamaged costliest
SMALL_NUM = 16


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(Converted, int8 path, calibration images, damaged int8 path)."""
    from tensorflow.lite.tools import flatbuffer_utils

    from converters.calibration import DEFAULT_CALIB, load_images
    from converters.darknet import convert
    from converters.quantize import quantize
    c = convert(str(CFG), str(WEIGHTS), "addrelu", names=str(NAMES))
    images = load_images(list(DEFAULT_CALIB))
    folder = tmp_path_factory.mktemp("explain")
    path = folder / "int8.tflite"
    path.write_bytes(quantize(c.model, c.meta, "int8", None, SMALL_NUM, progress=False,
                              images=images))
    model = flatbuffer_utils.read_model(str(path))
    graph = model.subgraphs[0]
    name = f"conv_{DAMAGED}_1/BiasAdd".encode()
    outputs = {int(o) for op in graph.operators for o in op.outputs}
    hits = [t for k, t in enumerate(graph.tensors) if name in t.name and k in outputs]
    assert len(hits) == 1, [t.name for t in hits]
    hits[0].quantization.scale = [s * 16 for s in hits[0].quantization.scale]
    damaged = folder / "damaged.tflite"
    flatbuffer_utils.write_model(model, str(damaged))
    return c, path, images, damaged


def named(lines: list[str]) -> list[int]:
    """The layer indices the report lists, costliest first."""
    return [int(m.group(1)) for line in lines[1:] if (m := re.match(r"\s+layer (\d+) ", line))]


def test_explain_names_the_costliest_layer(tiny):
    from converters.explain import explain
    c, path, images, damaged = tiny
    clean = explain(c, str(path), images)
    assert clean[0].startswith("int8 error by layer (8 samples)")
    assert len(named(clean)) == 5 and named(clean)[0] != DAMAGED
    lines = explain(c, str(damaged), images)
    assert named(lines)[0] == DAMAGED, lines
    assert f"layer {DAMAGED} (3x3 conv, leaky)" in lines[1]


def test_layer_errors_charge_a_layer_only_for_what_it_adds(tiny):
    """Downstream of the damage every layer inherits its error: the accumulated error stays
    high after layer 8, but none of those layers is charged as much as layer 8 itself."""
    import os
    import tempfile

    from converters.calibration import samples
    from converters.explain import layer_errors
    from converters.quantize import quantize
    c, path, images, damaged = tiny
    m = c.meta
    x = list(samples(images, 4, m.width, m.height, stretch=not m.letter_box))
    with tempfile.TemporaryDirectory() as tmp:
        f32 = os.path.join(tmp, "f32.tflite")
        with open(f32, "wb") as f:
            f.write(quantize(c.model, m, "float32", progress=False))
        inputs = {layer.index: list(layer.inputs) for layer in c.net.layers}
        clean = {e.layer: e for e in layer_errors(f32, str(path), x, inputs)}
        hurt = {e.layer: e for e in layer_errors(f32, str(damaged), x, inputs)}
    assert hurt[DAMAGED].error > 2 * clean[DAMAGED].error
    after = [k for k in hurt if k > DAMAGED and k in clean]
    assert after and all(hurt[k].error > clean[k].error for k in after if k < 13)
    assert max(hurt[k].added for k in after) < hurt[DAMAGED].added
