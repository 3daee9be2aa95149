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
    return out, convert_cli("--out-dir", str(out), "--report-json", str(out / "report.json"))


def test_default_conversion_gives_darknets_detections(default_run, need_darknet):
    """Acceptance: no flag but --out-dir -> --leaky auto keeps addrelu, exit 0, darknet's
    detections."""
    from converters.fidelity import agreement, darknet_detections
    out, r = default_run
    assert r.returncode == 0, r.stdout + r.stderr
    assert "--leaky auto" in r.stderr and "warning: --leaky relu" not in r.stderr
    assert re.search(r"leaky: addrelu \(auto: mAP@0\.5 against the float model on \d+ of your "
                     r"photos, calibration ones included: addrelu 1\.000\)", r.stdout), r.stdout
    assert re.search(r"fidelity 1\.00 against the exact float model on 3 held-out images .*"
                     r"6 of 6 reference detections matched at conf 0.25, 0 extra", r.stdout), r.stdout
    model = out / "yolov3-tiny_int8.tflite"
    images = sorted(str(p) for p in SAMPLES.glob("*.jpg"))
    truths = darknet_detections(str(CFG), str(WEIGHTS), images)
    assert agreement(str(model), truths, images) >= 0.97


def test_report_json_says_what_the_summary_says(default_run):
    import json
    out, r = default_run
    report = json.loads((out / "report.json").read_text())
    assert report["edgetpu"] == {"mapped": 57, "ops": 57}
    # addrelu kept its float model's detections: auto tried no other form
    assert report["leaky"]["form"] == "addrelu" and report["leaky"]["auto"] is True
    assert list(report["leaky"]["map50"]) == ["addrelu"] and report["leaky"]["images"] > 3
    assert "ops on the Edge TPU (predicted): 57 of 57" in r.stdout
    fid = report["fidelity"]
    assert (fid["matched"], fid["reference"], fid["extra"]) == (6, 6, 0) and fid["score"] == 1.0
    assert [p.rsplit("/", 1)[-1] for p in fid["images"]] == ["kite.jpg", "eagle.jpg", "giraffe.jpg"]
    # 6 reference detections are too few to judge a model by: the report says so
    assert fid["judged"] is False and "too few to judge (6 reference detections" in r.stdout


def test_conversion_output_has_no_library_noise(default_run):
    _, r = default_run
    for noise in NOISE:
        assert noise not in r.stdout + r.stderr, noise
    # the few-images warning has a line of its own, not the progress bar's
    warning = next(line for line in r.stderr.splitlines() if "calibration images" in line)
    assert warning.startswith("warning: 3 calibration images"), warning


def test_conversion_has_no_silent_stretch_and_logs_plain_progress(default_run):
    """Each slow step is announced before it starts, and with stderr a pipe (a log file)
    the calibration progress is a line per tenth, not carriage-return redraws."""
    _, r = default_run
    for announced in ("loading TensorFlow ...", "building the Keras model",
                      "converting to int8 TFLite", "scoring the int8 model"):
        assert announced in r.stderr, announced
    assert "\r" not in r.stderr
    calibrating = [line for line in r.stderr.splitlines() if line.startswith("calibrating")]
    assert 1 <= len(calibrating) <= 10 and calibrating[-1].endswith("(100%)"), calibrating


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


def test_out_dir_that_is_a_file_fails_before_any_work(tmp_path):
    out = tmp_path / "out"
    out.write_text("a file the user has")
    r = convert_cli("--out-dir", str(out))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"--out-dir {out}: is an existing file, not a folder" in r.stderr
    assert "[1/" not in r.stderr and out.read_text() == "a file the user has"


def test_help_shows_defaults():
    r = subprocess.run([sys.executable, "-m", "converters", "--help"], capture_output=True,
                       text=True, cwd=ROOT)
    text = " ".join(r.stdout.split())
    for default in ("(default: auto)", "(default: 100)", "(default: 0.9)", "(default: build)",
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


def test_own_photos_judge_and_too_few_detections_only_warn(tmp_path):
    """--calib without --eval: every 4th of the user's photos is held out of calibration and
    judges the model; the bundled COCO photos judge only a COCO model."""
    from converters.accuracy import HOLD_OUT, is_coco, split_images
    from converters.calibration import DEFAULT_CALIB, DEFAULT_EVAL
    photos = []
    for i in range(7):
        photos.append(tmp_path / f"p{i}.jpg")
        photos[-1].write_bytes((SAMPLES / "dog.jpg").read_bytes())
    calib, held = split_images([str(tmp_path)], None, coco=False)
    assert HOLD_OUT == 4 and held == [str(photos[0]), str(photos[4])]
    assert not set(calib) & set(held) and len(calib) + len(held) == 7
    assert split_images(None, None, coco=False) == (list(DEFAULT_CALIB), [])
    assert split_images(None, None, coco=True) == (list(DEFAULT_CALIB), list(DEFAULT_EVAL))
    assert split_images([str(photos[0])], [str(photos[1])], coco=False)[1] == [str(photos[1])]
    coco = tuple((ROOT / "cfg" / "coco.names").read_text().split("\n")[:80])
    assert is_coco(coco, 80) and is_coco((), 80)
    assert not is_coco(("body",), 1) and not is_coco(coco[:79] + ("mask",), 80)


def test_fidelity_fails_only_beyond_doubt():
    from converters.accuracy import MIN_REFERENCE, Fidelity
    # the face-mask case: the one reference detection found, plus one extra
    one = Fidelity(("a.png",), reference=1, candidates=2, matched=1, map50=1.0, extra=1)
    assert one.score < 0.9 and not one.judged and not one.fails(0.9)
    assert "too few to judge (1 reference detections" in one.describe()
    # --leaky relu on leaky weights: all 6 lost, a failure even on 6
    relu = Fidelity(("a.png",), reference=6, candidates=0, matched=0, map50=0.0, extra=0)
    assert relu.fails(0.9)
    # enough reference detections: the score decides
    many = Fidelity(("a.png",), reference=MIN_REFERENCE, candidates=16, matched=16,
                    map50=0.9, extra=0)
    assert many.judged and many.fails(0.9) and not many.fails(0.85)


def test_too_few_detections_warn_and_pass():
    """A model judged on too few detections warns with what it lost and added, exit 0."""
    import contextlib
    import io

    from converters.cli import fidelity_ok
    from converters.accuracy import Fidelity
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        ok = fidelity_ok(Fidelity(("a.png",), 1, 2, 1, 1.0, 1), 0.9, "addrelu")
    assert ok and err.getvalue().startswith("warning: fidelity 0.67 is below --min-fidelity")
    assert "loses 0 of the exact float model's 1 detections and adds 1" in err.getvalue()
