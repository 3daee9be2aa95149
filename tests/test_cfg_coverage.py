"""cfg features darknet runs that the converter used to refuse, each against the darknet that
runs it: dilated convolutions, [local_avgpool], [reorg3d], number lists with a missing comma
and short anchor lists (AlexeyAB's darknet); [shortcut] between layers of different sizes
(pjreddie's darknet, Debian's package: AlexeyAB's asserts against it). Random weights in
darknet's format; every head value within 1e-3 * max(1, |darknet|), and darknet's own boxes
where the anchors matter."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT
from converters.cfg import ConfigError, parse_cfg
from converters.weights import write_weights

ALEXEYAB_CFG = """\
[net]
width=64
height=64
channels=3

# 0: dilated 3x3 (im2col pads pad*dilation): 'same' in TF terms
[convolutional]
batch_normalize=1
filters=8
size=3
stride=1
pad=1
dilation=2
activation=leaky

# 1: dilated depthwise at stride 2: convolved at stride 1, every other output kept
[convolutional]
batch_normalize=1
filters=8
groups=8
size=3
stride=2
pad=1
dilation=3
activation=leaky

# 2: 32x32, TF's 'same' padding
[local_avgpool]
size=3
stride=1

# 3: 16x16, padding 2 (1 on top/left), not TF's 'same': counted per window
[local_avgpool]
size=3
stride=2
padding=2

# 4: 8x8x32, space_to_depth order
[reorg3d]
stride=2

# 5: dilated grouped
[convolutional]
batch_normalize=1
filters=16
groups=2
size=3
pad=1
dilation=2
activation=leaky

# 6: darknet deletes the space: filters=21
[convolutional]
size=1
filters = 2 1
activation=linear

# anchors: darknet reads 10,1423,2737,58 and leaves the last two at 0.5
[yolo]
mask = 0,1,2
anchors = 10,14  23,27 37,58
classes=2
num=3
"""

PJREDDIE_CFG = """\
[net]
width=64
height=64
channels=3

[convolutional]
batch_normalize=1
filters=16
size=3
stride=1
pad=1
activation=leaky

[convolutional]
batch_normalize=1
filters=16
size=3
stride=2
pad=1
activation=leaky

# 2: 64x64 into 32x32: every second pixel (shortcut_cpu's stride)
[shortcut]
from=-2
activation=linear

[convolutional]
batch_normalize=1
filters=8
size=3
stride=2
pad=1
activation=leaky

# 4: 32x32x16 into 16x16x8: stride 2, the first 8 channels
[shortcut]
from=-2
activation=leaky

[convolutional]
batch_normalize=1
filters=16
size=1
stride=1
activation=leaky

[upsample]
stride=2

# 7: 16x16x8 into 32x32x16: each pixel to the top left of its 2x2 block (the sample)
[shortcut]
from=-4
activation=linear

[maxpool]
size=2
stride=2

[convolutional]
size=1
filters=21
activation=linear

[yolo]
mask=0,1,2
anchors=6,8, 12,10, 20,24
classes=2
num=3
"""


def photo(size: int) -> np.ndarray:
    import cv2
    img = cv2.imread(str(ROOT / "samples" / "dog.jpg"))[:, :, ::-1]
    return cv2.resize(img, (size, size)).astype(np.float32) / 255


@pytest.fixture(scope="module")
def alexeyab_case(tmp_path_factory, need_alexeyab):
    folder = tmp_path_factory.mktemp("coverage")
    cfg = folder / "features.cfg"
    cfg.write_text(ALEXEYAB_CFG)
    net = parse_cfg(str(cfg))
    weights = folder / "features.weights"
    write_weights(str(weights), net, np.random.default_rng(3), scale=1.5,
                  head_bias={"objectness": -1.0, "classes": -1.0, "wh": -2.0})
    return cfg, weights, net


def test_alexeyab_features_agree_with_alexeyab_darknet(alexeyab_case):
    from converters.darknet import convert
    from converters.darknet_ref import ALEXEYAB, Darknet, head_differences
    from converters.keras_model import predict
    cfg, weights, net = alexeyab_case
    assert net.flavor == "alexeyab"
    assert [l.shape for l in net.layers] == [(64, 64, 8), (32, 32, 8), (32, 32, 8),
                                            (16, 16, 8), (8, 8, 32), (8, 8, 16), (8, 8, 21),
                                            (8, 8, 21)]
    assert net.heads[0].params["anchors"] == [(10, 1423), (2737, 58), (0.5, 0.5)]
    assert any("10,1423,2737,58" in w for w in net.warnings)
    assert any("at 0.5" in w for w in net.warnings)
    image = photo(64)
    with Darknet(str(cfg), str(weights), ALEXEYAB) as dn:
        ref = dn.forward(image)
    for leaky in ("keep", "addrelu"):
        c = convert(str(cfg), str(weights), leaky)
        diffs = head_differences(predict(c.model, image), ref, c.meta.heads)
        assert max(r for _, r in diffs) <= 1e-3, (leaky, diffs)
    assert float(np.abs(ref[0]).std()) > 0.05


def test_alexeyab_anchors_as_darknet_reads_them(alexeyab_case, tmp_path):
    """The boxes of the merged and defaulted anchors: darknet's get_network_boxes + NMS on
    the same input tensor."""
    from converters.darknet import convert
    from converters.darknet_ref import ALEXEYAB, Darknet
    from converters.quantize import quantize
    from test_alexeyab import assert_same_detections, detections
    from yolo_tpu.detector import Detector
    import cv2
    cfg, weights, _ = alexeyab_case
    c = convert(str(cfg), str(weights), "keep")
    model = tmp_path / "features.tflite"
    model.write_bytes(quantize(c.model, c.meta, "float32", progress=False))
    found = 0
    with Darknet(str(cfg), str(weights), ALEXEYAB) as dn:
        for name in ("dog.jpg", "person.jpg"):
            image = cv2.imread(str(ROOT / "samples" / name))
            probe = Detector(str(model), "cpu", conf=0.001, max_det=10000)
            tensor, box = probe.preprocess(image)
            low = dn.detect_input(tensor[0], image.shape[1], image.shape[0], False, 0.001)
            scores = sorted(d.score for d in low)
            conf = (scores[-20] + scores[-21]) / 2  # 20 boxes, none at the threshold
            det = Detector(str(model), "cpu", conf=conf, max_det=10000)
            ref = detections(dn.detect_input(tensor[0], image.shape[1], image.shape[0],
                                             False, conf))
            ours = det(image)
            found += len(ref)
            assert_same_detections(ours, ref, 0.05)
    assert found >= 3


def test_shortcut_across_sizes_agrees_with_pjreddie_darknet(tmp_path, need_darknet):
    from converters.darknet import convert
    from converters.darknet_ref import DEBIAN, Darknet, head_differences
    from converters.keras_model import predict
    cfg = tmp_path / "shortcuts.cfg"
    cfg.write_text(PJREDDIE_CFG)
    net = parse_cfg(str(cfg))
    assert net.flavor == "pjreddie"
    assert [l.params["resample"] for l in net.layers if l.kind == "shortcut"] == [
        [(2, 1, 32, 32)], [(2, 1, 16, 16)], [(1, 2, 16, 16)]]
    weights = tmp_path / "shortcuts.weights"
    write_weights(str(weights), net, np.random.default_rng(4), scale=1.5)
    image = photo(64)
    with Darknet(str(cfg), str(weights), DEBIAN) as dn:
        ref = dn.forward(image)
    for leaky in ("keep", "addrelu"):
        c = convert(str(cfg), str(weights), leaky)
        diffs = head_differences(predict(c.model, image), ref, c.meta.heads)
        assert max(r for _, r in diffs) <= 1e-3, (leaky, diffs)
    assert float(np.abs(ref[0]).std()) > 0.05


def test_shortcut_across_sizes_is_refused_for_alexeyab_as_it_aborts(tmp_path, need_alexeyab):
    """AlexeyAB's parse_shortcut asserts equal sizes: its darknet aborts loading the cfg, and
    the converter says so (with the way out) instead of guessing."""
    cfg = tmp_path / "shortcuts.cfg"
    cfg.write_text(PJREDDIE_CFG)
    weights = tmp_path / "shortcuts.weights"
    write_weights(str(weights), parse_cfg(str(cfg)), np.random.default_rng(4))
    with pytest.raises(ConfigError, match=r"shortcuts.cfg:\d+: .*asserts equal sizes.*"
                                          "--darknet pjreddie"):
        parse_cfg(str(cfg), flavor="alexeyab")
    r = subprocess.run([sys.executable, "-c",
                        "import sys; from converters.darknet_ref import ALEXEYAB, Darknet; "
                        "Darknet(sys.argv[1], sys.argv[2], ALEXEYAB)", str(cfg), str(weights)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "Assertion" in r.stderr, (r.returncode, r.stderr[-500:])


@pytest.mark.parametrize("text,match", [
    ("mask = 0,1 2", r"mask entry 12 is outside num=3 anchors: darknet reads its anchor "
                     r"table .* out of bounds"),
    ("mask = 3,4,5", r"mask entry 3 is outside num=3"),
])
def test_mask_beyond_the_anchors_is_refused_with_the_reason(tmp_path, text, match):
    cfg = tmp_path / "mask.cfg"
    cfg.write_text(PJREDDIE_CFG.replace("mask=0,1,2", text))
    with pytest.raises(ConfigError, match=match):
        parse_cfg(str(cfg))


@pytest.mark.parametrize("text", [ALEXEYAB_CFG, PJREDDIE_CFG], ids=["alexeyab", "pjreddie"])
def test_new_features_map_every_op_to_the_edge_tpu(tmp_path, text):
    """Dilated CONV_2D/DEPTHWISE_CONV_2D, the stride as a 1x1 MAX_POOL_2D (the Edge TPU runs
    no strided STRIDED_SLICE), AVERAGE_POOL_2D + MUL, SPACE_TO_DEPTH, the sample as
    RESIZE_NEAREST_NEIGHBOR x a 0/1 mask: every op predicted on the Edge TPU in int8."""
    from converters.darknet import convert, tpu_blockers
    from converters.edgetpu_check import check
    from converters.quantize import quantize
    cfg = tmp_path / "features.cfg"
    cfg.write_text(text)
    net = parse_cfg(str(cfg))
    weights = tmp_path / "features.weights"
    write_weights(str(weights), net, np.random.default_rng(3), scale=1.5)
    c = convert(str(cfg), str(weights), "addrelu")
    report = check(quantize(c.model, c.meta, "int8", None, 4, progress=False))
    assert report.all_mapped, report.table_rows()
    assert not tpu_blockers(c.net)
    ops = {row[0] for row in report.table_rows()}
    assert ("SPACE_TO_DEPTH" in ops) if "reorg3d" in text else ("RESIZE_NEAREST_NEIGHBOR" in ops)
