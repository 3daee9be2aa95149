"""`python -m converters` as a user runs it: right by default, honest in its report.

The bundled weights were trained with leaky ReLU: with no flag the conversion must give
darknet's detections, a form that loses them (`--leaky relu`) must exit non-zero with the
figure, and bad arguments must fail before any work, leaving nothing behind."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

from conftest import CFG, ROOT, SAMPLES, WEIGHTS

NOISE = ("oneDNN", "fully_quantize", "XNNPACK", "absl::InitializeLog", "Traceback")


def convert_cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "converters", str(CFG), str(WEIGHTS), *args],
                          capture_output=True, text=True, cwd=cwd)


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("default")
    return out, convert_cli("--out-dir", str(out))


def test_default_conversion_gives_darknets_detections(default_run, need_darknet):
    """Acceptance: no flag but --out-dir -> addrelu, exit 0, darknet's detections."""
    from converters.fidelity import agreement, darknet_detections
    out, r = default_run
    assert r.returncode == 0, r.stdout + r.stderr
    assert "--leaky addrelu" in r.stderr and "warning: --leaky relu" not in r.stderr
    assert re.search(r"fidelity 1\.00 against the exact float model on 3 held-out images .*"
                     r"6 of 6 reference detections matched at conf 0.25, 0 extra", r.stdout), r.stdout
    model = out / "yolov3-tiny_int8.tflite"
    images = sorted(str(p) for p in SAMPLES.glob("*.jpg"))
    truths = darknet_detections(str(CFG), str(WEIGHTS), images)
    assert agreement(str(model), truths, images) >= 0.97


def test_conversion_output_has_no_library_noise(default_run):
    _, r = default_run
    for noise in NOISE:
        assert noise not in r.stdout + r.stderr, noise
    # the few-images warning has a line of its own, not the progress bar's
    warning = next(line for line in r.stderr.splitlines() if "calibration images" in line)
    assert warning.startswith("warning: 3 calibration images"), warning


def test_relu_on_leaky_weights_fails_with_the_figure(tmp_path):
    r = convert_cli("--out-dir", str(tmp_path), "--leaky", "relu", "--num", "8")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "warning: --leaky relu replaces the leaky activations" in r.stderr
    assert "0 of 6 reference detections matched" in r.stdout, r.stdout
    assert re.search(r"^error: fidelity 0\.00 is below --min-fidelity 0\.9: the int8 model "
                     r"loses 6 of the exact float model's 6 detections", r.stderr, re.M), r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("args, message", [
    (["--num", "0"], "--num: must be at least 1, got 0"),
    (["--min-fidelity", "1.5"], "--min-fidelity: must be in [0, 1], got 1.5"),
    (["--calib", "/nonexistent"], "/nonexistent: no such file or directory"),
    (["--eval", "/nonexistent/*.jpg"], "pattern matches no files"),
])
def test_bad_arguments_fail_before_any_work(tmp_path, args, message):
    out = tmp_path / "out"
    r = convert_cli("--out-dir", str(out), *args)
    assert r.returncode == 2, r.stdout + r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr
    assert "[1/" not in r.stderr  # no stage started
    assert not out.exists() or not any(out.iterdir())


def test_help_shows_defaults():
    r = subprocess.run([sys.executable, "-m", "converters", "--help"], capture_output=True,
                       text=True, cwd=ROOT)
    text = " ".join(r.stdout.split())
    for default in ("(default: addrelu)", "(default: 100)", "(default: 0.9)", "(default: build)",
                    "(default: uint8)"):
        assert default in text, default


def test_darknet_cli_without_names_warns_about_numeric_labels(tmp_path):
    r = subprocess.run([sys.executable, "-m", "converters.darknet", str(CFG),
                        str(tmp_path / "missing.weights"), "-o", str(tmp_path / "m.keras")],
                       capture_output=True, text=True, cwd=ROOT)
    assert "warning: no --names: labels will be class numbers" in r.stderr
    assert r.returncode == 2 and "missing.weights" in r.stderr


def test_fidelity_counts_what_the_user_sees():
    """608x352 --leaky maximum (measured): every reference object still ranks first, but
    only 1 of 7 stays above conf 0.25. mAP alone said 0.900; fidelity must not."""
    import numpy as np

    from converters.accuracy import Fidelity, count_extra, count_matched
    from yolo_tpu.detections import Detections
    boxes = np.array([[10, 10, 50, 50], [60, 60, 120, 120], [0, 0, 30, 90]], np.float32)
    reference = Detections.from_arrays(boxes, np.array([0.9, 0.6, 0.3]), np.array([1, 2, 2]))
    shifted = boxes + 2  # IoU > 0.8 with the reference
    found = Detections.from_arrays(shifted, np.array([0.8, 0.2, 0.1]), np.array([1, 2, 2]))
    shown = found[found.scores > 0.25]
    assert count_matched(shown, reference) == 1
    wrong_class = Detections.from_arrays(shifted, np.array([0.8, 0.7, 0.6]), np.array([2, 1, 1]))
    assert count_matched(wrong_class, reference) == 0
    f = Fidelity(("a.jpg",), reference=7, candidates=1, matched=1, map50=0.9)
    assert f.score == pytest.approx(0.25)
    assert "1 of 7 reference detections matched" in f.describe()
    empty = Fidelity(("a.jpg",), reference=0, candidates=0, matched=0, map50=1.0)
    assert empty.score is None and "cannot score" in empty.describe()
    # a candidate whose score merely crossed 0.25 (the reference has it at 0.2) is not extra;
    # one the reference lacks even at EXTRA_CONF is
    low = Detections.from_arrays(boxes, np.array([0.9, 0.2, 0.05]), np.array([1, 2, 2]))
    crossed = Detections.from_arrays(shifted, np.array([0.8, 0.3, 0.3]), np.array([1, 2, 2]))
    assert count_extra(crossed, low) == 1 and count_extra(crossed, low[low.scores > 0.25]) == 2
    f = Fidelity(("a.jpg",), reference=1, candidates=3, matched=1, map50=1.0, extra=1)
    assert f.score == pytest.approx(2 / 3) and "1 of 1 reference detections matched at conf " \
        "0.25, 1 extra" in f.describe()
