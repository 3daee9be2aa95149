"""AlexeyAB's darknet family against AlexeyAB's darknet itself (libdarknet built from
../shared/reference by `make alexeyab`), on the eight real cfgs in ../shared/cfg.

Random weights in darknet's format at small input sizes keep this fast. Their scales are
chosen per cfg so the heads are informative: objectness logits that vary by about one
across cells (not all 0.5, not saturated), and objectness/class biases that leave tens of
boxes per photo instead of thousands at 0.25 (see `CASES`).
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import ALEXEYAB_CFG, ROOT, SAMPLES
from converters.cfg import SECTIONS, parse_cfg
from converters.darknet import convert, tpu_blockers
from converters.weights import write_weights
from converters.darknet_ref import (RANDOM_WEIGHTS, cfg_with_size, head_activate,
                                   write_random_weights)
from yolo_tpu.detections import Detections
from yolo_tpu.metrics import map50

CASES = RANDOM_WEIGHTS  # cfg: (input size, kernel scale, objectness bias)
EXACT_POLICIES = ("keep", "addrelu")  # darknet's leaky as is, and the Edge TPU form
IMAGES = sorted(str(p) for p in SAMPLES.glob("*.jpg"))


def custom_cfg(path: Path) -> Path:
    """yolov4-tiny-custom as a user edits it: 3 classes, filters=(3+5)*3, own anchors."""
    text = (ALEXEYAB_CFG / "yolov4-tiny-custom.cfg").read_text()
    text = text.replace("classes=80", "classes=3").replace("filters=255", "filters=24")
    text = re.sub(r"(?m)^anchors\s*=.*$", "anchors = 8,12, 20,30, 33,21, 45,60, 70,44, "
                  "96,120", text)
    path.write_text(text)
    return path


class Case:
    """One cfg at its test size with its random weights, converted once per session."""

    def __init__(self, name: str, folder: Path, letter_box: int | None = None):
        size = CASES.get(name, CASES["yolov4-tiny-custom"])[0]
        src = custom_cfg(folder / f"{name}-src.cfg") if name == "custom-3" else \
            ALEXEYAB_CFG / f"{name}.cfg"
        keys = {} if letter_box is None else {"letter_box": letter_box}
        self.name, self.size = name, size
        self.cfg = cfg_with_size(str(src), str(folder / f"{name}.cfg"), size, size, keys)
        self.net = parse_cfg(self.cfg, flavor="alexeyab")
        self.weights = str(folder / f"{name}.weights")
        write_random_weights(self.weights, self.net,
                             name if name in CASES else "yolov4-tiny-custom")
        self._models: dict[str, object] = {}

    def converted(self, leaky: str):
        if leaky not in self._models:
            self._models[leaky] = convert(self.cfg, self.weights, leaky, flavor="alexeyab")
        return self._models[leaky]


@pytest.fixture(scope="session")
def cases(tmp_path_factory, need_alexeyab):
    folder = tmp_path_factory.mktemp("alexeyab")
    made: dict[tuple, Case] = {}

    def get(name: str, letter_box: int | None = None) -> Case:
        if (name, letter_box) not in made:
            sub = folder / f"{name}-{letter_box}"
            sub.mkdir()
            made[name, letter_box] = Case(name, sub, letter_box)
        return made[name, letter_box]
    return get


def photo(size: int) -> np.ndarray:
    img = cv2.imread(str(SAMPLES / "dog.jpg"))[:, :, ::-1]
    return cv2.resize(img, (size, size)).astype(np.float32) / 255


@pytest.mark.parametrize("name", sorted(CASES))
def test_heads_agree_with_alexeyab_darknet(cases, name):
    """Every head value within 1e-3 * max(1, |darknet|), for leaky kept and in its TPU form."""
    from converters.darknet_ref import ALEXEYAB, Darknet, head_differences
    from converters.keras_model import predict
    case = cases(name)
    image = photo(case.size)
    with Darknet(case.cfg, case.weights, ALEXEYAB) as dn:
        ref = dn.forward(image)
    for leaky in EXACT_POLICIES:
        c = case.converted(leaky)
        ours = predict(c.model, image)
        diffs = head_differences(ours, ref, c.meta.heads)
        assert max(rel for _, rel in diffs) <= 1e-3, (leaky, diffs)
    # informative heads: activated objectness spread over (0, 1), not all 0.5 or all 0/1
    objectness = np.concatenate([
        head_activate(o[0], h).reshape(-1, len(h.mask), o.shape[-1] // len(h.mask))[..., 4]
        .ravel() for o, h in zip(ours, c.meta.heads)])
    assert 0.02 < objectness.std() < 0.45, objectness.std()


def detections(dets) -> Detections:
    return Detections.from_arrays(np.array([d.box for d in dets], np.float32).reshape(-1, 4),
                                  np.array([d.score for d in dets], np.float32),
                                  np.array([d.class_id for d in dets], np.int32))


def conf_for(case: Case, count: int = 40) -> float:
    """A threshold leaving about `count` candidate boxes on a photo (random heads)."""
    from converters.keras_model import predict
    c = case.converted("keep")
    scores = []
    for out, head in zip(predict(c.model, photo(case.size)), c.meta.heads):
        v = head_activate(out[0], head)
        v = v.reshape(-1, len(head.mask), v.shape[-1] // len(head.mask))
        scores.append((v[..., 4:5] * v[..., 5:]).ravel())
    return float(np.sort(np.concatenate(scores))[-count])


def assert_same_detections(ours: Detections, ref: Detections, box_tol: float) -> None:
    """The same (class, score, box) set, up to float rounding and `box_tol` pixels."""
    assert len(ours) == len(ref), (len(ours), len(ref))
    key = lambda d: np.lexsort((-np.asarray(d.scores), np.asarray(d.class_ids)))  # noqa: E731
    a, b = key(ours), key(ref)
    np.testing.assert_array_equal(np.asarray(ours.class_ids)[a], np.asarray(ref.class_ids)[b])
    np.testing.assert_allclose(np.asarray(ours.scores)[a], np.asarray(ref.scores)[b], atol=1e-4)
    np.testing.assert_allclose(np.asarray(ours.xyxy)[a], np.asarray(ref.xyxy)[b], atol=box_tol)


# (cfg, letter_box): stretch and letterbox, default IoU NMS, greedynms (DIoU), diounms with
# new_coords, a [region] head, three heads, and a user's own classes and anchors.
DETECT_CASES = [("yolov4-tiny", 0), ("yolov4-tiny", 1), ("yolov7-tiny", 0),
                ("yolov2-tiny", 1), ("yolov3-tiny-prn", 0), ("custom-3", 0)]


@pytest.mark.parametrize("name,letter_box", DETECT_CASES)
def test_detections_are_alexeyab_darknets(cases, tmp_path, name, letter_box):
    """The runtime's detections on the sample photos against darknet's get_network_boxes +
    the cfg's NMS: exactly on the same input tensor, and mAP@0.5 >= 0.98 against darknet's
    whole `detector test` pipeline (its own image loader and resize)."""
    from converters.darknet_ref import ALEXEYAB, Darknet
    from converters.quantize import quantize
    from yolo_tpu.detector import Detector
    case = cases(name, letter_box)
    c = case.converted("keep")
    assert c.meta.letter_box == bool(letter_box)
    model = tmp_path / f"{name}.tflite"
    model.write_bytes(quantize(c.model, c.meta, "float32", progress=False))
    conf = conf_for(case)
    exact = Detector(str(model), "cpu", conf=conf, max_det=10000)
    candidates = Detector(str(model), "cpu", conf=conf / 2, max_det=10000)
    whole, ours, found = [], [], 0
    with Darknet(case.cfg, case.weights, ALEXEYAB) as dn:
        assert dn.letter_box == bool(letter_box)
        for path in IMAGES:
            image = cv2.imread(path)
            tensor, box = exact.preprocess(image)
            same_input = detections(dn.detect_input(tensor[0], image.shape[1], image.shape[0],
                                                    bool(letter_box), conf))
            # darknet maps letterboxed boxes back with a float pad, (net - new) / 2, where
            # the image sits at the integer pad: half an input pixel
            assert_same_detections(exact(image), same_input, 0.51 / min(box.scale_x, box.scale_y))
            found += len(same_input)
            whole.append(detections(dn.detect(path, conf)))
            ours.append(candidates(image))
    assert found >= 3 * len(IMAGES)
    assert map50(ours, whole) >= 0.98


def test_custom_classes_detect_cli(cases, tmp_path):
    """A user's 3-class yolov4-tiny-custom, converted and run by `python -m yolo_tpu.detect`."""
    from converters.darknet_ref import ALEXEYAB, Darknet
    from converters.quantize import quantize
    case = cases("custom-3", 0)
    names = tmp_path / "custom.names"
    names.write_text("cat\ncar\ncup\n")
    c = convert(case.cfg, case.weights, "addrelu", names=str(names), flavor="alexeyab")
    assert c.meta.classes == 3 and c.meta.heads[0].anchors == ((45.0, 60.0), (70.0, 44.0), (96.0, 120.0))
    model = tmp_path / "custom.tflite"
    model.write_bytes(quantize(c.model, c.meta, "float32", progress=False))
    conf = conf_for(case, 20)
    out = tmp_path / "dets.jsonl"
    r = subprocess.run([sys.executable, "-m", "yolo_tpu.detect", "--model", str(model),
                        "--image", *IMAGES, "--json", str(out), "--conf", f"{conf / 2:.6f}",
                        "--max-det", "10000"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    ours = [Detections.from_arrays(
        np.array([d["box"] for d in rec["detections"]], np.float32).reshape(-1, 4),
        np.array([d["score"] for d in rec["detections"]], np.float32),
        np.array([d["class_id"] for d in rec["detections"]], np.int32), ("cat", "car", "cup"))
        for rec in lines]
    assert {d["label"] for rec in lines for d in rec["detections"]} <= {"cat", "car", "cup"}
    with Darknet(case.cfg, case.weights, ALEXEYAB) as dn:
        truth = [detections(dn.detect(p, conf)) for p in IMAGES]
    assert sum(map(len, truth)) >= len(IMAGES)
    assert map50(ours, truth) >= 0.98


@pytest.mark.parametrize("name", ["yolov4-tiny", "yolov7-tiny"])
def test_int8_maps_every_op_to_the_edge_tpu(cases, name):
    from converters.edgetpu_check import check
    from converters.quantize import quantize
    c = cases(name).converted("addrelu")
    report = check(quantize(c.model, c.meta, "int8", None, 4, progress=False))
    assert report.all_mapped, report.table_rows()
    assert not tpu_blockers(c.net)


def test_mish_converts_for_the_cpu_and_names_its_cfg_lines(cases):
    case = cases("yolov4")
    blockers = tpu_blockers(case.net)
    assert blockers and all("activation=mish" in b for b in blockers)
    assert blockers[0].startswith("yolov4.cfg:") and "yolov4-leaky" in blockers[0]


def _parser_keys() -> dict[str, set[str]]:
    """Keys each parse_* function of AlexeyAB's src/parser.c reads, by our section name."""
    src = (ROOT / "build" / "darknet-alexeyab" / "src" / "parser.c").read_text()
    functions = {"parse_convolutional": "convolutional", "parse_maxpool": "maxpool",
                 "parse_avgpool": "avgpool", "parse_route": "route",
                 "parse_shortcut": "shortcut", "parse_upsample": "upsample",
                 "parse_dropout": "dropout", "parse_sam": "sam",
                 "parse_scale_channels": "scale_channels", "parse_activation": "activation",
                 "parse_yolo": "yolo", "parse_region": "region", "parse_reorg_old": "reorg",
                 "parse_net_options": "net", "parse_network_cfg_custom": "*"}
    starts = [(m.start(), m.group(1)) for m in re.finditer(r"\n\w[\w \*]*?\b(\w+)\s*\([^;{]*\)\s*\{", src)]
    keys: dict[str, set[str]] = {}
    for (start, name), (end, _) in zip(starts, starts[1:] + [(len(src), "")]):
        if name in functions:
            found = re.findall(r'option_find\w*\(\s*\w+\s*,\s*"([^"]+)"', src[start:end])
            keys[functions[name]] = {k.lower() for k in found}
    return keys


def test_key_table_covers_alexeyab_parser(need_alexeyab):
    """Every key AlexeyAB's parser reads in a section we build is in that section's table."""
    keys = _parser_keys()
    assert len(keys) == 15 and "scale_x_y" in keys["yolo"]
    for section, read in keys.items():
        targets = [s for s, v in SECTIONS.items() if v is not None and s != "net"] \
            if section == "*" else [section]
        if section == "*":  # read from [net]'s options before the layer loop
            read = read - {"show_receptive_field"}
        for target in targets:
            missing = read - SECTIONS[target].all
            assert not missing, (target, sorted(missing))


def test_alexeyab_batch_norm_arithmetic(need_alexeyab, tmp_path):
    """AlexeyAB normalizes with sqrt(var + 1e-5); with tiny variances that is not pjreddie's
    sqrt(var) + 1e-6, and only the right one agrees with darknet."""
    from converters.darknet_ref import ALEXEYAB, Darknet, head_differences
    from converters.keras_model import predict
    case = Case("yolov4-tiny", tmp_path)
    raw = np.fromfile(case.weights, "<f4", offset=20)
    n = 32  # layer 0: 32 filters with batch norm: biases, scales, means, variances
    raw[n:2 * n] = np.float32(np.sqrt(2e-5))  # scale ~ sqrt(var): outputs of order one
    raw[3 * n:4 * n] = np.float32(2e-5)
    with open(case.weights, "r+b") as f:
        f.seek(20)
        f.write(raw.tobytes())
    image = photo(case.size)
    with Darknet(case.cfg, case.weights, ALEXEYAB) as dn:
        ref = dn.forward(image)
    errors = {}
    for flavor in ("alexeyab", "pjreddie"):
        c = convert(case.cfg, case.weights, "keep", flavor=flavor)
        errors[flavor] = max(r for _, r in head_differences(predict(c.model, image), ref,
                                                              c.meta.heads))
    assert errors["alexeyab"] <= 1e-3 < errors["pjreddie"], errors


SYNTHETIC_CFG = """\
[net]
width=64
height=64
channels=3
letter_box=0

# 0: 64x64x8
[convolutional]
batch_normalize=1
filters=8
size=3
stride=1
pad=1
activation=swish

# 1: 32x32x8, darknet pads 1 on top/left where TF 'same' pads 0: edges repeated
[maxpool]
size=3
stride=2

# 2: grouped convolution (not depthwise): SPLIT + CONV_2D x2 + CONCATENATION
[convolutional]
batch_normalize=1
filters=16
groups=2
size=3
stride=1
pad=1
activation=hard_mish

# 3: depthwise, stride 2: 16x16x16
[convolutional]
batch_normalize=1
filters=16
groups=16
size=3
stride=2
pad=1
activation=mish

# 4-6: squeeze and excitation
[avgpool]

[convolutional]
filters=16
size=1
activation=logistic

[scale_channels]
from=-3

# 7: spatial attention
[sam]
from=-4

[dropout]
probability=.1

# 9: 8x8x64 in darknet's reorg order
[reorg]
stride=2

# 10
[convolutional]
batch_normalize=1
filters=24
size=3
pad=1
activation=tanh

# 11: 16x16x24, scaled
[upsample]
stride=2
scale=0.5

# 12: layer 6's 16 channels added into the first 16 of layer 11's 24 (yolov3-tiny-prn
# has the other direction: more channels in `from`, the extra ones dropped)
[shortcut]
from=-6
activation=leaky

# 13: the same after a leaky
[shortcut]
from=-7
activation=linear

# 14
[route]
layers=-1,-8
groups=2
group_id=1

# 15: 8x8
[maxpool]
size=2
stride=2

[convolutional]
filters=24
size=1
activation=linear

[yolo]
mask=0,1,2
anchors=6,8, 12,10, 20,24
classes=3
num=3
scale_x_y=1.1
"""


def test_every_layer_kind_agrees_with_alexeyab_darknet(need_alexeyab, tmp_path):
    """One small cfg with every section type and activation the converter builds beyond
    the eight real cfgs: maxpool padding, grouped/depthwise convs, swish, hard_mish, mish,
    tanh, avgpool, scale_channels, sam, dropout, reorg, upsample scale, shortcut across
    channel counts, route groups over two layers."""
    from converters.darknet_ref import ALEXEYAB, Darknet, head_differences
    from converters.keras_model import predict
    cfg = tmp_path / "every.cfg"
    cfg.write_text(SYNTHETIC_CFG)
    net = parse_cfg(str(cfg))
    assert net.flavor == "alexeyab" and [l.shape for l in net.layers][9] == (8, 8, 64)
    weights = str(tmp_path / "every.weights")
    write_weights(weights, net, np.random.default_rng(1), scale=1.5)
    image = photo(64)
    with Darknet(str(cfg), weights, ALEXEYAB) as dn:
        ref = dn.forward(image)
    for leaky in EXACT_POLICIES:
        c = convert(str(cfg), weights, leaky)
        diffs = head_differences(predict(c.model, image), ref, c.meta.heads)
        assert max(r for _, r in diffs) <= 1e-3, (leaky, diffs)
    assert float(np.abs(ref[0]).std()) > 0.05  # not a constant head
