"""The Keras model against darknet's own forward pass (libdarknet through ctypes).

yolov3-tiny with the real COCO weights on a real photo; yolov3, yolov3-spp and yolov3-voc
with random weights written in darknet's format. Every head value must agree within
1e-3 * max(1, |darknet|) after the logistic darknet's [yolo] layer applies in place.
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from conftest import CFG, DARKNET_CFG, SAMPLES, WEIGHTS
from converters.cfg import parse_cfg
from converters.darknet import convert
from converters.darknet_ref import cfg_with_size
from converters.weights import write_weights

EXACT_POLICIES = ("keep", "maximum", "addrelu")


def head_errors(model, meta, darknet, image_rgb01) -> list[float]:
    """Largest relative error per head: |ours - darknet| / max(1, |darknet|)."""
    from converters.darknet_ref import head_differences
    from converters.keras_model import predict
    diffs = head_differences(predict(model, image_rgb01), darknet.forward(image_rgb01),
                             [len(h.mask) for h in meta.heads])
    return [rel for _, rel in diffs]


def photo(width: int, height: int) -> np.ndarray:
    img = cv2.imread(str(SAMPLES / "dog.jpg"))[:, :, ::-1]
    return cv2.resize(img, (width, height)).astype(np.float32) / 255


@pytest.mark.parametrize("leaky", EXACT_POLICIES)
def test_tiny_coco_weights_agree_with_darknet(need_darknet, leaky):
    from converters.darknet_ref import Darknet
    c = convert(str(CFG), str(WEIGHTS), leaky)
    with Darknet(str(CFG), str(WEIGHTS)) as dn:
        errors = head_errors(c.model, c.meta, dn, photo(416, 416))
    assert max(errors) <= 1e-3, errors


def test_tiny_relu_policy_differs_from_darknet(need_darknet):
    """The relu policy is not exact for leaky-trained weights; the check must see that."""
    from converters.darknet_ref import Darknet
    c = convert(str(CFG), str(WEIGHTS), "relu")
    with Darknet(str(CFG), str(WEIGHTS)) as dn:
        errors = head_errors(c.model, c.meta, dn, photo(416, 416))
    assert max(errors) > 0.05, errors


# Smaller inputs than the cfgs' own keep the full-size networks quick on two cores; the
# architecture (and every layer's arithmetic) is the same, and --size is exercised too.
@pytest.mark.parametrize("name,size", [("yolov3", 320), ("yolov3-spp", 320),
                                       ("yolov3-voc", 256)])
def test_random_weights_agree_with_darknet(need_darknet, tmp_path, name, size):
    from converters.darknet_ref import Darknet
    cfg = cfg_with_size(str(DARKNET_CFG / f"{name}.cfg"), str(tmp_path / f"{name}.cfg"), size,
                        size)
    weights = str(tmp_path / f"{name}.weights")
    write_weights(weights, parse_cfg(cfg), np.random.default_rng(7))
    image = photo(size, size)
    with Darknet(cfg, weights) as dn:
        for leaky in EXACT_POLICIES:
            c = convert(str(DARKNET_CFG / f"{name}.cfg"), weights, leaky, size=(size, size))
            errors = head_errors(c.model, c.meta, dn, image)
            assert max(errors) <= 1e-3, (leaky, errors)
            # Raw head values of order one: neither vanishing nor saturating the logistic,
            # so the comparison is not won by everything being 0 or 1.
            from converters.keras_model import predict
            raw = predict(c.model, image)[0]
            assert 0.1 < float(raw.std()) < 20, float(raw.std())
