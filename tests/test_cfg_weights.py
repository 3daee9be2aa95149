"""cfg parser, weights loader and converter CLI: darknet's dialect and every malformed case."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from conftest import CFG, DARKNET_CFG, NAMES, ROOT, WEIGHTS
from converters.cfg import ConfigError, parse_cfg
from converters.darknet import convert, read_names
from converters.weights import WeightsError, floats_needed, load_weights, write_weights

TINY_CFG = """\
[net]
# a comment
width = 64 ; trailing comment
height=64
channels=3

[convolutional]
batch_normalize=1
filters=8
size=3
stride=1
pad=1
activation=leaky

[maxpool]
size=2
stride=2

[convolutional]
filters=16
size=3
stride=2
pad=1
activation=leaky

[maxpool]
size=2
stride=1

[convolutional]
filters=18
size=1
stride=1
pad=1
activation=linear

[yolo]
mask = 0,1
anchors = 10,14,  23,27, 37,58
classes=4
num=3
"""


def write(tmp_path, text: str, name: str = "net.cfg") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_dialect_and_shapes(tmp_path):
    net = parse_cfg(write(tmp_path, TINY_CFG.replace("[net]", "[network]")))
    assert (net.width, net.height) == (64, 64)
    assert [l.kind for l in net.layers] == ["convolutional", "maxpool", "convolutional",
                                           "maxpool", "convolutional", "yolo"]
    # stride-2 conv halves, size-2/stride-1 maxpool keeps the size (darknet's padding)
    assert [l.shape for l in net.layers] == [(64, 64, 8), (32, 32, 8), (16, 16, 16),
                                            (16, 16, 16), (16, 16, 18), (16, 16, 18)]
    yolo = net.yolo_layers[0].params
    assert yolo["mask"] == [0, 1] and yolo["anchors"][2] == (37.0, 58.0)


def test_size_override(tmp_path):
    net = parse_cfg(write(tmp_path, TINY_CFG), size=(96, 32))
    assert (net.width, net.height) == (96, 32)
    assert net.layers[-1].shape == (8, 24, 18)


def test_all_debian_yolov3_cfgs_parse():
    for name in ("yolov3-tiny", "yolov3", "yolov3-spp", "yolov3-voc", "yolov3-openimages"):
        path = DARKNET_CFG / f"{name}.cfg"
        if not path.exists():
            pytest.skip(f"{path} missing: install Debian's darknet package")
        net = parse_cfg(str(path))
        assert len(net.yolo_layers) in (2, 3)


@pytest.mark.parametrize("name", ["yolov3", "yolov3-spp", "yolov3-openimages"])
def test_full_cfgs_build(tmp_path, name):
    path = DARKNET_CFG / f"{name}.cfg"
    if not path.exists():
        pytest.skip(f"{path} missing: install Debian's darknet package")
    net = parse_cfg(str(path), size=(128, 128))
    weights = str(tmp_path / "w.weights")
    write_weights(weights, net, np.random.default_rng(0))
    c = convert(str(path), weights, "maximum", size=(128, 128))
    assert [tuple(o.shape) for o in c.model.outputs] == [
        (1, *l.shape) for l in net.yolo_layers]


BAD_CFGS = [
    ("[net]\nwidth=64\nheight=64\n[bogus]\nx=1\n", r"net\.cfg:4: unknown section \[bogus\]"),
    (TINY_CFG.replace("filters=8", "filters=8\nfliters=9"), r"net\.cfg:10: unknown key 'fliters'"),
    (TINY_CFG.replace("activation=leaky", "activation=swsh", 1),
     r"net\.cfg:13: unsupported activation 'swsh' \(did you mean 'swish'\?\)"),
    (TINY_CFG.replace("filters=8", "filters=8\nfliters=9"),
     r"net\.cfg:10: unknown key 'fliters' in \[convolutional\]: darknet does not read it "
     r"\(did you mean 'filters'\?\)"),
    (TINY_CFG.replace("[maxpool]\nsize=2\nstride=2", "[convolutinal]\nsize=2\nstride=2"),
     r"net\.cfg:15: unknown section \[convolutinal\] \(did you mean 'convolutional'\?\)"),
    (TINY_CFG.replace("[maxpool]\nsize=2\nstride=2", "[lstm]\noutput=2"),
     r"net\.cfg:15: \[lstm\] is a darknet layer yolo_tpu does not convert"),
    (TINY_CFG.replace("num=3", "num=3\nscale_xy=1.05"),
     r"net\.cfg:\d+: unknown key 'scale_xy' in \[yolo\].*did you mean 'scale_x_y'"),
    (TINY_CFG.replace("num=3", "num=3\nnms_kind=diounm"),
     r"nms_kind=diounm \(did you mean 'diounms'\?\)"),
    (TINY_CFG.replace("[yolo]", "[route]\nlayers=-1\ngroups=2\ngroup_id=2\n\n[yolo]"),
     r"net\.cfg:\d+: \[route\] group_id=2 must be in 0..groups-1"),
    (TINY_CFG.replace("[yolo]", "[route]\nlayers=-1\ngroups=4\n\n[yolo]"),
     r"\[route\] groups=4 does not divide the 18 channels of layer 4"),
    # weights_normalization: AlexeyAB's key, and AlexeyAB's darknet asserts equal sizes
    (TINY_CFG.replace("[yolo]", "[shortcut]\nfrom=0\nweights_normalization=none\n\n[yolo]"),
     r"\[shortcut\] adds layer 0 of size 64x64 to size 16x16: AlexeyAB's darknet asserts"),
    (TINY_CFG.replace("filters=16", "filters=16\ngroups=3"), r"groups=3 must divide the 8 input"),
    (TINY_CFG.replace("[maxpool]\nsize=2\nstride=2", "[maxpool]\nsize=2\nstride=2\n"
                      "maxpool_depth=1"), r"maxpool_depth=1: max over channels is not supported"),
    (TINY_CFG.replace("width = 64", "width = 100"), r"net\.cfg:1: .*100x64 .*multiple of 32"),
    (TINY_CFG.replace("filters=18", "filters=20"),
     r"net\.cfg:\d+: the layer before \[yolo\] .* has 20 filters, but mask \[0, 1\] and "
     r"classes=4 need 2 \* \(5 \+ 4\) = 18"),
    (TINY_CFG.replace("classes=4", "classes=5"), r"need 2 \* \(5 \+ 5\) = 20"),
    (TINY_CFG.replace("[yolo]", "[route]\nlayers=-9\n\n[yolo]"),
     r"net\.cfg:\d+: route to layer -9 from layer 5: no such layer"),
    (TINY_CFG.replace("[yolo]", "[route]\nlayers=7\n\n[yolo]"), r"route to layer 7"),
    (TINY_CFG.replace("mask = 0,1", "mask = 0,3"), r"mask entry 3 is outside num=3 anchors"),
    (TINY_CFG.replace("size=3\nstride=2", "size=three\nstride=2"),
     r"'size' must be an integer, got 'three'"),
    ("width=64\n[net]\n", r"net\.cfg:1: 'key=value' before the first \[section\]"),
    ("", r"net\.cfg: no sections"),
    (TINY_CFG.replace("[maxpool]\nsize=2\nstride=2", "[maxpool\nsize=2"), r"malformed section"),
]


@pytest.mark.parametrize("text,message", BAD_CFGS)
def test_bad_cfg_is_a_config_error_naming_file_and_line(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        parse_cfg(write(tmp_path, text))


def test_bad_size_override(tmp_path):
    with pytest.raises(ConfigError, match=r"--size: input size 100x64 is not a multiple of 32"):
        parse_cfg(write(tmp_path, TINY_CFG), size=(100, 64))


def test_missing_cfg(tmp_path):
    with pytest.raises(ConfigError, match=r"nope\.cfg: cannot read cfg"):
        parse_cfg(str(tmp_path / "nope.cfg"))


def test_weights_count_checked_both_ways(tmp_path):
    net = parse_cfg(write(tmp_path, TINY_CFG))
    path = str(tmp_path / "w.weights")
    write_weights(path, net, np.random.default_rng(0))
    assert len(load_weights(path, net)) == 3
    data = open(path, "rb").read()
    needed = floats_needed(net)
    for name, blob, held in (("short", data[:-40], needed - 10), ("long", data + b"\0" * 8,
                                                                   needed + 2)):
        p = tmp_path / f"{name}.weights"
        p.write_bytes(blob)
        with pytest.raises(WeightsError, match=rf"{name}\.weights: .*net\.cfg needs {needed} "
                                               rf"floats after the header, the file holds {held} floats"):
            load_weights(str(p), net)
    p = tmp_path / "odd.weights"
    p.write_bytes(data[:-2])
    with pytest.raises(WeightsError, match="stray bytes"):
        load_weights(str(p), net)
    p.write_bytes(data[:10])
    with pytest.raises(WeightsError, match="too short for a darknet weights header"):
        load_weights(str(p), net)


def test_old_header_with_int32_seen(tmp_path):
    """Weights of version 0.1 store `seen` in 4 bytes; the rest must load identically."""
    net = parse_cfg(write(tmp_path, TINY_CFG))
    new, old = str(tmp_path / "new.weights"), str(tmp_path / "old.weights")
    write_weights(new, net, np.random.default_rng(3), header=(0, 2, 0))
    write_weights(old, net, np.random.default_rng(3), header=(0, 1, 0))
    assert len(open(new, "rb").read()) == len(open(old, "rb").read()) + 4
    a, b = load_weights(new, net), load_weights(old, net)
    for k in a:
        np.testing.assert_array_equal(a[k].kernel, b[k].kernel)


def test_bn_folding_uses_darknets_epsilon(tmp_path):
    """Darknet divides by sqrt(var) + 1e-6; with a tiny variance that differs from Keras'."""
    net = parse_cfg(write(tmp_path, TINY_CFG))
    path = str(tmp_path / "w.weights")
    write_weights(path, net, np.random.default_rng(0))
    raw = np.fromfile(path, "<f4", offset=20)
    n = 8
    bias, scales, mean = raw[:n], raw[n:2 * n], raw[2 * n:3 * n]
    var = np.full(n, 1e-8, np.float32)
    raw[3 * n:4 * n] = var
    with open(path, "r+b") as f:
        f.seek(20)
        f.write(raw.tobytes())
    w = load_weights(path, net)[0]
    factor = scales / (np.sqrt(var) + 1e-6)
    np.testing.assert_allclose(w.bias, bias - mean * factor, rtol=1e-5)
    kernel0 = raw[4 * n:4 * n + 27].reshape(3, 3, 3)  # filter 0: (in, h, w)
    np.testing.assert_allclose(w.kernel[..., 0], kernel0.transpose(1, 2, 0) * factor[0],
                               rtol=1e-5)


def test_names_count_must_match(tmp_path):
    assert len(read_names(str(NAMES), 80)) == 80
    with pytest.raises(ConfigError, match=r"coco\.names: 80 names, but .* classes=20"):
        read_names(str(NAMES), 20)


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "converters.darknet", *args],
                          capture_output=True, text=True, cwd=ROOT)


def test_cli_bad_inputs_are_one_line_errors(tmp_path):
    bad_cfg = write(tmp_path, TINY_CFG.replace("activation=leaky", "activation=elu", 1))
    cases = [
        ((bad_cfg, str(WEIGHTS)), "unsupported activation 'elu'"),
        ((str(CFG), str(tmp_path / "missing.weights")), "missing.weights: cannot read"),
        ((str(DARKNET_CFG / "yolov3-voc.cfg"), str(WEIGHTS)), "needs"),
        ((str(CFG), str(WEIGHTS), "--names", str(tmp_path / "none.names")), "none.names"),
    ]
    for args, message in cases:
        if not DARKNET_CFG.exists() and "yolov3-voc" in args[0]:
            continue
        r = run_cli(*args, "-o", str(tmp_path / "o.keras"))
        assert r.returncode == 2, r.stderr
        lines = [l for l in r.stderr.splitlines() if l.startswith("error:")]
        assert len(lines) == 1 and message in lines[0], r.stderr
        assert "Traceback" not in r.stderr
        assert not (tmp_path / "o.keras").exists()


def test_cli_converts_leaky_exactly_by_default(tmp_path):
    """No --leaky: the exact Edge TPU form (addrelu), so no ReLU warning (issue 13; the
    warning for an explicit --leaky relu is checked in test_convert_cli.py)."""
    out = tmp_path / "tiny.keras"
    r = run_cli(str(CFG), str(WEIGHTS), "-o", str(out), "--names", str(NAMES))
    assert r.returncode == 0, r.stderr
    assert "warning" not in r.stderr
    assert "8,849,182 parameters" in r.stdout and "(13, 13, 255)" in r.stdout
    from converters.keras_model import load_model
    model, meta = load_model(str(out))
    assert meta.names[16] == "dog" and meta.leaky == "addrelu" and meta.classes == 80
    assert [h.stride for h in meta.heads] == [32, 16]
    assert meta.heads[0].anchors[0] == (81.0, 82.0)
    assert [tuple(o.shape) for o in model.outputs] == [(1, 13, 13, 255), (1, 26, 26, 255)]
