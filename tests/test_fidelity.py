"""Acceptance: the runtime's detections against darknet's own (libdarknet, letterboxed input)
on the darknet sample photos. float32 (`--leaky keep`) mAP@0.5 >= 0.98; int8
`--leaky maximum` >= 0.9; and the int8 `--leaky addrelu` model `make demo` builds."""
from __future__ import annotations

import pytest

from conftest import CFG, NAMES, SAMPLES, WEIGHTS


@pytest.fixture(scope="module")
def darknet_truth(need_darknet):
    from converters.fidelity import darknet_detections
    images = sorted(str(p) for p in SAMPLES.glob("*.jpg"))
    truths = darknet_detections(str(CFG), str(WEIGHTS), images)
    assert sum(map(len, truths)) >= 15  # darknet finds ~24 objects on these photos
    return images, truths


def test_float32_matches_darknet(darknet_truth, tmp_path):
    from converters.darknet import convert
    from converters.fidelity import agreement
    from converters.quantize import quantize
    images, truths = darknet_truth
    c = convert(str(CFG), str(WEIGHTS), "keep", names=str(NAMES))
    path = tmp_path / "float32.tflite"
    path.write_bytes(quantize(c.model, c.meta, "float32", progress=False))
    assert agreement(str(path), truths, images) >= 0.98


def test_int8_maximum_matches_darknet(darknet_truth, tmp_path):
    from converters.darknet import convert
    from converters.fidelity import agreement
    from converters.quantize import quantize
    images, truths = darknet_truth
    c = convert(str(CFG), str(WEIGHTS), "maximum", names=str(NAMES))
    path = tmp_path / "maximum_int8.tflite"
    path.write_bytes(quantize(c.model, c.meta, "int8", None, 100, progress=False))
    assert agreement(str(path), truths, images) >= 0.9


def test_demo_model_matches_darknet(darknet_truth, tiny_int8_model):
    from converters.fidelity import agreement
    images, truths = darknet_truth
    assert agreement(str(tiny_int8_model), truths, images) >= 0.98


def test_detections_at_default_threshold_are_darknets(darknet_truth, tiny_int8_model):
    """What a user sees at conf 0.25: the same objects darknet reports on dog.jpg."""
    import cv2

    from yolo_tpu import Detector
    images, truths = darknet_truth
    k = next(i for i, p in enumerate(images) if p.endswith("dog.jpg"))
    ours = Detector(str(tiny_int8_model), "cpu")(cv2.imread(images[k]))
    assert {16, 1} <= set(ours.class_ids.tolist()) <= set(truths[k].class_ids.tolist())
