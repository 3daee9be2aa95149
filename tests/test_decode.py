"""decode_heads() against a plain transcription of darknet's get_yolo_detections."""
from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from yolo_tpu.decode import decode_heads
from yolo_tpu.meta import Head

REPO = Path(__file__).resolve().parents[1]

# tiny-YOLOv3 (yolov3-tiny.cfg): 13x13 head with the big anchors first, then 26x26
TINY_HEADS = (
    Head((3, 4, 5), ((81.0, 82.0), (135.0, 169.0), (344.0, 319.0)), 32),
    Head((0, 1, 2), ((10.0, 14.0), (23.0, 27.0), (37.0, 58.0)), 16),
)


def _logistic(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def darknet_reference(outputs, quant, heads, net_w, net_h, thresh):
    """src/yolo_layer.c get_yolo_box + get_yolo_detections, written out loop by loop.

    Returns (x1, y1, x2, y2, class, prob) rows in input pixels, in darknet's order:
    head, cell (row-major), anchor, class.
    """
    rows = []
    for out, q, head in zip(outputs, quant, heads):
        x = out.astype(np.float64)
        if q is not None:
            scale, zero_point = q
            x = (x - zero_point) * scale
        _, gh, gw, channels = x.shape
        n_anchors = len(head.mask)
        entries = channels // n_anchors
        classes = entries - 5
        for i in range(gw * gh):
            row = i // gw
            col = i % gw
            for n in range(n_anchors):
                p = x[0, row, col, n * entries:(n + 1) * entries]
                objectness = _logistic(p[4])
                if not objectness > thresh:
                    continue
                bx = (col + _logistic(p[0])) / gw
                by = (row + _logistic(p[1])) / gh
                bw = math.exp(p[2]) * head.anchors[n][0] / net_w
                bh = math.exp(p[3]) * head.anchors[n][1] / net_h
                for j in range(classes):
                    prob = objectness * _logistic(p[5 + j])
                    if prob > thresh:
                        rows.append((
                            (bx - bw / 2) * net_w, (by - bh / 2) * net_h,
                            (bx + bw / 2) * net_w, (by + bh / 2) * net_h, j, prob,
                        ))
    return np.array(rows, np.float64).reshape(-1, 6)


def _logits(rng: np.random.Generator, gh: int, gw: int, n_anchors: int, classes: int, hot: int):
    """Float logits shaped like a trained model's: background cells, `hot` confident cells."""
    x = np.empty((gh * gw * n_anchors, 5 + classes), np.float32)
    x[:, :4] = rng.normal(0.0, 1.0, (len(x), 4))
    x[:, 4] = rng.normal(-6.0, 2.5, len(x))
    x[:, 5:] = rng.normal(-4.0, 2.5, (len(x), classes))
    idx = rng.choice(len(x), size=min(hot, len(x)), replace=False)
    x[idx, 4] = rng.uniform(-1.0, 6.0, len(idx))
    x[idx, 5 + rng.integers(0, classes, len(idx))] = rng.uniform(0.0, 6.0, len(idx))
    return x.reshape(1, gh, gw, n_anchors * (5 + classes))


def _quantize(x: np.ndarray, scale: float, zero_point: int, dtype) -> np.ndarray:
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale) + zero_point, info.min, info.max).astype(dtype)


def _check(outputs, quant, heads, net_w, net_h, conf) -> int:
    boxes, scores, class_ids = decode_heads(outputs, quant, heads, (net_w, net_h), conf)
    ref = darknet_reference(outputs, quant, heads, net_w, net_h, conf)
    assert boxes.dtype == np.float32 and boxes.shape == (len(ref), 4)
    assert scores.dtype == np.float32 and class_ids.dtype == np.int32
    # same rows in the same (head, cell, anchor, class) order
    np.testing.assert_array_equal(class_ids, ref[:, 4].astype(np.int32))
    np.testing.assert_allclose(scores, ref[:, 5], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(boxes, ref[:, :4], rtol=1e-4, atol=1e-3)  # pixels, float32
    return len(ref)


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("dtype", ["int8", "uint8", "float32"])
def test_tiny_yolo_heads_match_darknet(seed: int, dtype: str) -> None:
    rng = np.random.default_rng(seed)
    conf = [0.25, 0.5, 0.05, 0.001][seed % 4]
    logits = [_logits(rng, 13, 13, 3, 80, 30), _logits(rng, 26, 26, 3, 80, 60)]
    if dtype == "float32":
        outputs, quant = logits, [None, None]
    else:
        # realistic output quantization: scale ~0.1-0.2, zero point anywhere in range
        dt = np.dtype(dtype)
        quant = []
        for _ in logits:
            scale = float(rng.uniform(0.08, 0.2))
            zp = int(rng.integers(-40, 40)) + (128 if dt == np.uint8 else 0)
            quant.append((scale, zp))
        outputs = [_quantize(x, s, z, dt) for x, (s, z) in zip(logits, quant)]
    n = _check(outputs, quant, TINY_HEADS, 416, 416, conf)
    assert n > 0


@pytest.mark.parametrize("seed", range(4))
def test_non_square_input_and_few_classes(seed: int) -> None:
    # 320x192 input: grids 10x6 and 20x12, gw != gh; 2 anchors per head, 3 classes
    rng = np.random.default_rng(100 + seed)
    heads = (
        Head((2, 3), ((90.0, 60.0), (200.0, 150.0)), 32),
        Head((0, 1), ((12.0, 20.0), (30.0, 40.0)), 16),
    )
    logits = [_logits(rng, 6, 10, 2, 3, 10), _logits(rng, 12, 20, 2, 3, 20)]
    quant = [(0.15, -3), (0.11, 7)]
    outputs = [_quantize(x, s, z, np.int8) for x, (s, z) in zip(logits, quant)]
    assert _check(outputs, quant, heads, 320, 192, 0.2) > 0
    assert _check(logits, [None, None], heads, 320, 192, 0.2) > 0


def test_known_cell_gives_the_anchor_box() -> None:
    # One cell with tx=ty=tw=th=0: centre is the cell centre, size is the anchor.
    head = Head((0,), ((40.0, 20.0),), 32)
    out = np.full((1, 4, 4, 5 + 2), -20.0, np.float32)
    out[0, 2, 1, :4] = 0.0
    out[0, 2, 1, 4] = 20.0  # objectness ~1
    out[0, 2, 1, 5 + 1] = 20.0  # class 1
    boxes, scores, class_ids = decode_heads([out], [None], [head], (128, 128), 0.5)
    assert class_ids.tolist() == [1]
    cx, cy = (1 + 0.5) * 32, (2 + 0.5) * 32
    np.testing.assert_allclose(boxes[0], [cx - 20, cy - 10, cx + 20, cy + 10], atol=1e-4)
    assert scores[0] == pytest.approx(1.0, abs=1e-6)


def test_one_box_can_give_several_classes() -> None:
    head = Head((0,), ((10.0, 10.0),), 8)
    out = np.full((1, 1, 1, 5 + 3), -20.0, np.float32)
    out[0, 0, 0, 4] = 20.0
    out[0, 0, 0, 5] = 2.0  # sigmoid 0.88
    out[0, 0, 0, 7] = 1.0  # sigmoid 0.73
    boxes, scores, class_ids = decode_heads([out], [None], [head], (8, 8), 0.5)
    assert class_ids.tolist() == [0, 2]
    np.testing.assert_array_equal(boxes[0], boxes[1])


def test_thresholds_are_strict_and_nothing_passes_conf_one() -> None:
    rng = np.random.default_rng(5)
    out = _quantize(_logits(rng, 13, 13, 3, 80, 30), 0.15, 0, np.int8)
    boxes, scores, _ = decode_heads([out], [(0.15, 0)], TINY_HEADS[:1], (416, 416), 1.0)
    assert boxes.shape == (0, 4) and scores.shape == (0,)
    # objectness exactly at the threshold is dropped (darknet: objectness > thresh)
    head = Head((0,), ((10.0, 10.0),), 8)
    q = np.zeros((1, 1, 1, 6), np.uint8)  # every logit (0 - 0) * s = 0 -> sigmoid 0.5
    q[0, 0, 0, 5] = 200  # class logit large -> prob ~0.5, just under objectness
    assert len(decode_heads([q], [(0.1, 0)], [head], (8, 8), 0.5)[0]) == 0
    assert len(decode_heads([q], [(0.1, 0)], [head], (8, 8), 0.49)[0]) == 1


def test_empty_when_no_cell_passes() -> None:
    out = np.full((1, 13, 13, 255), -128, np.int8)
    boxes, scores, class_ids = decode_heads([out], [(0.1, 0)], TINY_HEADS[:1], (416, 416), 0.25)
    assert boxes.shape == (0, 4) and scores.shape == (0,) and class_ids.shape == (0,)


def test_bad_inputs_raise() -> None:
    out = np.zeros((1, 13, 13, 255), np.int8)
    with pytest.raises(ValueError):
        decode_heads([out], [None], TINY_HEADS[:1], (416, 416), 0.25)  # quantized without params
    with pytest.raises(ValueError):
        decode_heads([np.zeros((1, 13, 13, 254), np.int8)], [(0.1, 0)], TINY_HEADS[:1], (416, 416), 0.25)
    with pytest.raises(ValueError):
        decode_heads([out, out], [(0.1, 0)], TINY_HEADS, (416, 416), 0.25)
    with pytest.raises(TypeError):
        decode_heads([out.astype(np.int16)], [(0.1, 0)], TINY_HEADS[:1], (416, 416), 0.25)


_CHILD = """
import numpy as np
from yolo_tpu.decode import decode_heads, _decode_quantized
from yolo_tpu.meta import Head
head = Head((0,), ((10.0, 10.0),), 32)
out = np.zeros((1, 13, 13, 6), np.int8)
decode_heads([out], [(0.1, 0)], [head], (416, 416), 0.25)
print(_decode_quantized.stats.cache_hits and 'hit' or 'miss', len(_decode_quantized.signatures))
"""


def _child(env_extra: dict[str, str]) -> str:
    env = {**os.environ, **env_extra}
    env.pop("NUMBA_DISABLE_JIT", None)
    res = subprocess.run([sys.executable, "-c", _CHILD], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    return res.stdout.split()[0]


def test_second_process_loads_the_compiled_kernel_from_cache() -> None:
    _child({})  # compiles and writes the cache, unless an earlier run did
    assert _child({}) == "hit"


def test_works_when_numba_has_nowhere_to_cache() -> None:
    # With no usable cache locator numba refuses cache=True at import; we fall back to a
    # plain per-process compile rather than failing to import.
    assert _child({"NUMBA_CACHE_LOCATOR_CLASSES": "IPythonCacheLocator"}) == "miss"


def test_pipeline_to_source_pixels_and_detections() -> None:
    """decode -> nms -> Letterbox.to_source -> Detections, on a frame with one known object."""
    from yolo_tpu.detections import Detection, Detections
    from yolo_tpu.nms import nms
    from yolo_tpu.preprocess import letterbox_geometry

    box = letterbox_geometry(640, 480, 416, 416)  # image at 416x312, 52 px bars top and bottom
    head = Head((0,), ((64.0, 32.0),), 32)
    out = np.full((1, 13, 13, 5 + 3), -30.0, np.float32)
    # the same object (centre (208, 208), 64x32 in input pixels) from two neighbouring cells
    out[0, 6, 6, :4] = 0.0
    out[0, 6, 6, 4] = 4.0
    out[0, 6, 6, 5 + 2] = 4.0
    out[0, 6, 7, :4] = (-30.0, 0.0, 0.0, 0.0)  # sigmoid(-30) ~ 0: centre at this cell's left edge
    out[0, 6, 7, 4] = 2.0
    out[0, 6, 7, 5 + 2] = 4.0
    q = [(0.25, 0)]
    qout = np.round(out / 0.25).clip(-128, 127).astype(np.int8)
    boxes, scores, class_ids = decode_heads([qout], q, [head], (416, 416), 0.25)
    assert len(boxes) == 2
    keep = nms(boxes, scores, class_ids, 0.45)
    dets = Detections.from_arrays(box.to_source(boxes[keep]), scores[keep], class_ids[keep],
                                  names=("person", "bicycle", "car"))
    assert len(dets) == 1
    (d,) = list(dets)
    assert isinstance(d, Detection) and d.label == "car" and d.class_id == 2
    # input (176, 192, 240, 224) -> source: x / 0.65, (y - 52) / 0.65
    np.testing.assert_allclose(d.box, [176 / 0.65, 140 / 0.65, 240 / 0.65, 172 / 0.65], rtol=1e-5)
    assert d.score == pytest.approx(_logistic(4.0) ** 2, rel=1e-6)
    assert dets.to_dict() == [{"class_id": 2, "label": "car", "score": round(_logistic(4.0) ** 2, 4),
                               "box": [round(176 / 0.65, 2), round(140 / 0.65, 2), round(240 / 0.65, 2),
                                       round(172 / 0.65, 2)]}]
    assert len(dets[dets.scores > 0.99]) == 0 and len(dets[0]) == 1 and len(Detections.empty()) == 0


@pytest.mark.parametrize("kind,new_coords,scale_x_y", [("yolo", False, 1.05),
                                                       ("yolo", True, 2.0),
                                                       ("region", False, 1.0)])
@pytest.mark.parametrize("dtype", ["uint8", "int8"])
def test_quantized_decoding_of_new_head_kinds_equals_float(kind, new_coords, scale_x_y, dtype):
    """The table-driven int8 path decodes scale_x_y, new_coords and [region] heads exactly as
    the float path decodes the same dequantized values."""
    rng = np.random.default_rng(5)
    head = Head((0, 1, 2), ((10.0, 14.0), (23.0, 27.0), (37.0, 58.0)), 16, kind, scale_x_y,
                new_coords)
    info = np.iinfo(dtype)
    q = rng.integers(info.min, info.max + 1, (1, 8, 8, 3 * 9)).astype(dtype)
    scale, zero_point = (1 / 255, 0 if dtype == "uint8" else -128) if new_coords else (0.08, 3)
    real = ((q.astype(np.float64) - zero_point) * scale).astype(np.float32)
    # new_coords scores are products of multiples of 1/255: a threshold half way between two
    # of them keeps float32 rounding away from the comparison
    conf = 13005.5 / 255**2
    a = decode_heads([q], [(scale, zero_point)], [head], (128, 128), conf)
    b = decode_heads([real], [None], [head], (128, 128), conf)
    assert len(a[1]) > 10
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-4)
    # [region]: class probabilities are objectness x softmax, so per box they sum to <= obj
    if kind == "region":
        assert a[1].max() < 1.0
