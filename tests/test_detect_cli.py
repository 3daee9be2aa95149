"""`python -m yolo_tpu.detect`: inputs, JSON, annotated copies, bad inputs, exit status.

Most tests run the CLI as a subprocess (its real exit status and streams); the error paths
that never load a model call `main()` in-process, which is faster.
"""
from __future__ import annotations

import ctypes
import json
import struct
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import ROOT, SAMPLES

from yolo_tpu import detect

SAMPLE_NAMES = sorted(p.name for p in SAMPLES.glob("*.jpg"))


def run_cli(*args: str, model: Path | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "yolo_tpu.detect", *args]
    if model is not None:
        cmd += ["--model", str(model)]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


def assert_no_traceback(stderr: str) -> None:
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr


# ---------------------------------------------------------------- inputs and outputs

def test_folder_lists_images_sorted(tiny_int8_model):
    r = run_cli("--image", "samples/", "--json", "-", model=tiny_int8_model)
    assert r.returncode == 0, r.stderr
    lines = json_lines(r.stdout)  # stdout holds JSON only with --json -
    assert [Path(d["source"]).name for d in lines] == SAMPLE_NAMES
    # readable lines and the backend went to stderr
    assert "yolo_tpu: yolov3-tiny_int8.tflite: CPU via" in r.stderr
    assert sum(1 for line in r.stderr.splitlines() if " ms)" in line) == len(SAMPLE_NAMES)
    summary = r.stderr.strip().splitlines()[-1]
    assert summary.startswith(f"yolo_tpu: {len(SAMPLE_NAMES)} images,") and "0 failures" in summary


def test_glob_and_files_readable_lines(tiny_int8_model):
    r = run_cli("--image", "samples/[dg]*.jpg", "samples/kite.jpg", model=tiny_int8_model)
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert [line.split()[0] for line in out] == [
        "samples/dog.jpg", "samples/giraffe.jpg", "samples/kite.jpg"]
    assert out[0].startswith("samples/dog.jpg 768x576: ") and out[0].endswith(" ms)")
    assert "dog 0." in out[0]


def test_json_schema_and_dog(tiny_int8_model, tmp_path):
    out = tmp_path / "dets.jsonl"
    r = run_cli("--image", "samples/dog.jpg", "--json", str(out), model=tiny_int8_model)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("samples/dog.jpg 768x576: ")  # readable lines stay on stdout
    (rec,) = json_lines(out.read_text())
    assert set(rec) == {"source", "frame", "width", "height", "detections"}
    assert ((rec["source"], rec["frame"], rec["width"], rec["height"])
            == ("samples/dog.jpg", 0, 768, 576))
    for d in rec["detections"]:
        assert set(d) == {"class_id", "label", "score", "box"}
        assert isinstance(d["class_id"], int) and isinstance(d["label"], str)
        assert 0.25 < d["score"] <= 1
        x1, y1, x2, y2 = d["box"]
        assert 0 <= x1 < x2 <= 768 and 0 <= y1 < y2 <= 576
    assert rec["detections"] == sorted(rec["detections"], key=lambda d: -d["score"])
    labels = {d["label"] for d in rec["detections"]}
    assert {"dog", "bicycle"} <= labels


def test_cli_json_equals_python_api(tiny_int8_model):
    from yolo_tpu import Detector
    r = run_cli("--image", "samples/", "--json", "-", "--conf", "0.1", "--iou", "0.5",
                "--max-det", "3", model=tiny_int8_model)
    assert r.returncode == 0, r.stderr
    det = Detector(str(tiny_int8_model), device="cpu", conf=0.1, iou=0.5, max_det=3)
    for rec in json_lines(r.stdout):
        assert rec["detections"] == det(cv2.imread(str(ROOT / rec["source"]))).to_dict()
        assert len(rec["detections"]) <= 3


def test_save_writes_annotated_copies(tiny_int8_model, tmp_path):
    out = tmp_path / "annotated"
    r = run_cli("--image", "samples/", "--save", str(out), model=tiny_int8_model)
    assert r.returncode == 0, r.stderr
    assert "XNNPACK" not in r.stderr  # LiteRT's INFO line, written past Python
    assert sorted(p.name for p in out.iterdir()) == SAMPLE_NAMES
    for name in SAMPLE_NAMES:
        original = cv2.imread(str(SAMPLES / name))
        annotated = cv2.imread(str(out / name))
        assert annotated is not None and annotated.shape == original.shape
    # the dog photo has detections: something was drawn on it
    drawn = cv2.absdiff(cv2.imread(str(out / "dog.jpg")), cv2.imread(str(SAMPLES / "dog.jpg")))
    assert drawn.max() > 100


def test_save_refuses_the_input_folder(tiny_int8_model, tmp_path):
    image = tmp_path / "dog.jpg"
    image.write_bytes((SAMPLES / "dog.jpg").read_bytes())
    r = run_cli("--image", str(image), "--save", str(tmp_path), model=tiny_int8_model)
    assert r.returncode == 2
    assert "overwrite" in r.stderr and image.read_bytes() == (SAMPLES / "dog.jpg").read_bytes()


def test_save_one_image_to_a_file(capsys, tiny_int8_model, tmp_path):
    out = tmp_path / "sub" / "dog_annotated.jpg"
    argv = ["--model", str(tiny_int8_model), "--image", "samples/dog.jpg", "--save", str(out)]
    assert detect.main(argv) == 0, capsys.readouterr().err
    assert out.is_file()
    assert cv2.imread(str(out)).shape == cv2.imread(str(SAMPLES / "dog.jpg")).shape


@pytest.mark.parametrize("case", ["existing-file", "several-images"])
def test_save_target_that_cannot_work_is_explained(capsys, tiny_int8_model, tmp_path, case):
    if case == "existing-file":
        target = tmp_path / "notes"
        target.write_text("mine\n")
        images, why = ["samples/dog.jpg"], "is an existing file, not a folder"
    else:
        target = tmp_path / "out.jpg"
        images, why = ["samples/dog.jpg", "samples/kite.jpg"], "names one image file, but 2"
    argv = ["--model", str(tiny_int8_model), "--image", *images, "--save", str(target)]
    assert detect.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: --save {target}: ") and why in err
    assert not (tmp_path / "out.jpg").exists()
    if case == "existing-file":
        assert target.read_text() == "mine\n"


def test_counts_are_worded_in_the_singular_for_one():
    from collections import Counter

    from yolo_tpu.stream import Stats
    assert detect._summary([12.0], 1, 1).startswith("1 image, 1 detection, 1 failure, ")
    assert detect._summary([1.0, 2.0], 2, 0).startswith("2 images, 2 detections, 0 failures, ")
    s = Stats(frames=1, decode_errors=1, reconnects=1, per_class=Counter(dog=1)).summary()
    assert s.startswith("1 frame, 0 dropped, 1 decode error, 1 detection, ")
    assert s.endswith(", 1 reconnect")


@pytest.mark.parametrize("kwargs, message", [
    ({"conf": 2}, "conf must be in (0, 1], got 2"),
    ({"conf": 0}, "conf must be in (0, 1], got 0"),
    ({"iou": -0.1}, "iou must be in (0, 1], got -0.1"),
    ({"max_det": 0}, "max_det must be a positive integer, got 0"),
])
def test_detector_rejects_meaningless_thresholds(tiny_int8_model, kwargs, message):
    from yolo_tpu import Detector
    with pytest.raises(ValueError) as e:
        Detector(str(tiny_int8_model), "cpu", **kwargs)
    assert str(e.value) == message


# ---------------------------------------------------------------- image kinds

def _exif_rotated_jpeg(image: np.ndarray) -> bytes:
    """A JPEG whose EXIF orientation (6) says: rotate 90 degrees clockwise to display."""
    raw = cv2.imencode(".jpg", image)[1].tobytes()
    tiff = (b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1)
            + struct.pack("<HHII", 0x0112, 3, 1, 6) + struct.pack("<I", 0))
    app1 = b"Exif\x00\x00" + tiff
    return raw[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + raw[2:]


def test_grey_alpha_16bit_and_rotated_images(tiny_int8_model, tmp_path):
    bgr = cv2.imread(str(SAMPLES / "dog.jpg"))
    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    bgra = cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA)
    bgra[..., 3] = 200
    cv2.imwrite(str(tmp_path / "a_grey.png"), grey)
    cv2.imwrite(str(tmp_path / "b_bgra.png"), bgra)
    cv2.imwrite(str(tmp_path / "c_grey16.png"), grey.astype(np.uint16) * 257)
    (tmp_path / "d_rotated.jpg").write_bytes(_exif_rotated_jpeg(bgr))
    r = run_cli("--image", str(tmp_path), "--json", "-", "--save", str(tmp_path / "out"),
                model=tiny_int8_model)
    assert r.returncode == 0, r.stderr
    recs = {Path(d["source"]).name: d for d in json_lines(r.stdout)}
    assert sorted(recs) == ["a_grey.png", "b_bgra.png", "c_grey16.png", "d_rotated.jpg"]
    for name in ["a_grey.png", "b_bgra.png", "c_grey16.png"]:
        assert (recs[name]["width"], recs[name]["height"]) == (768, 576)
    assert (recs["d_rotated.jpg"]["width"], recs["d_rotated.jpg"]["height"]) == (576, 768)
    # the grey image gives what the API gives for it; 16 bit keeps the top byte, so the same
    from yolo_tpu import Detector
    expected = Detector(str(tiny_int8_model))(grey).to_dict()
    assert recs["a_grey.png"]["detections"] == expected
    assert recs["c_grey16.png"]["detections"] == expected
    # alpha is ignored: the same detections as the colour photo
    assert recs["b_bgra.png"]["detections"] == Detector(str(tiny_int8_model))(bgr).to_dict()
    assert cv2.imread(str(tmp_path / "out" / "a_grey.png")).shape == (576, 768, 3)


# ---------------------------------------------------------------- bad inputs

def test_corrupt_and_truncated_images_are_skipped(tiny_int8_model, tmp_path):
    # seeded bytes; the first one is not 'P'/'B'/'G'/... so no decoder claims them
    noise = b"\x00" + np.random.default_rng(0).bytes(4095)
    (tmp_path / "x.jpg").write_bytes(noise)
    dog = (SAMPLES / "dog.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(dog[: len(dog) // 2])
    (tmp_path / "notes.png").write_text("not a picture\n")
    good = [str(SAMPLES / "dog.jpg"), str(SAMPLES / "kite.jpg")]
    r = run_cli("--image", good[0], str(tmp_path / "x.jpg"), str(tmp_path / "cut.jpg"),
                str(tmp_path / "notes.png"), good[1], "--json", "-", model=tiny_int8_model)
    assert r.returncode == 1
    assert_no_traceback(r.stderr)
    assert [d["source"] for d in json_lines(r.stdout)] == good
    errors = error_lines(r.stderr)
    assert len(errors) == 3, r.stderr
    assert errors[0].startswith(f"error: {tmp_path / 'x.jpg'}: not an image")
    assert errors[1].startswith(f"error: {tmp_path / 'cut.jpg'}: truncated JPEG")
    assert errors[2].startswith(f"error: {tmp_path / 'notes.png'}: not an image")
    assert "3 failures" in r.stderr.splitlines()[-1]


def test_unmatched_paths_are_named(tiny_int8_model):
    r = run_cli("--image", "samples/dog.jpg", "no/such.jpg", "samples/*.png",
                "--json", "-", model=tiny_int8_model)
    assert r.returncode == 1
    assert error_lines(r.stderr) == ["error: no/such.jpg: no such file or directory",
                                     "error: samples/*.png: pattern matches no files"]
    assert [d["source"] for d in json_lines(r.stdout)] == ["samples/dog.jpg"]


def test_nothing_to_do_exits_2(capsys, tiny_int8_model):
    assert detect.main(["--model", str(tiny_int8_model), "--image", "no/such.jpg"]) == 2
    assert capsys.readouterr().err == "error: no/such.jpg: no such file or directory\n"


# ---------------------------------------------------------------- model, device, arguments

def test_missing_model_one_line(capsys, tmp_path):
    missing = str(tmp_path / "none.tflite")
    assert detect.main(["--model", missing, "--image", "samples/dog.jpg"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {tmp_path / 'none.tflite'}: ")
    assert "make demo" in err


def test_missing_compiled_model_says_compile_it(capsys, tmp_path):
    """A missing *_edgetpu.tflite beside its int8 model: compiling is the missing step."""
    int8 = tmp_path / "m_int8.tflite"
    int8.write_bytes(b"not read: only its presence matters here")
    assert detect.main(["--model", str(tmp_path / "m_int8_edgetpu.tflite"),
                        "--image", "samples/dog.jpg"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"python -m converters.edgetpu_compile {int8}" in err and "make demo" not in err


def test_missing_default_model_says_make_demo(capsys, monkeypatch, tmp_path):
    from yolo_tpu import cli
    monkeypatch.setattr(cli, "DEFAULT_MODEL", str(tmp_path / "yolov3-tiny_int8.tflite"))
    assert detect.main(["--image", "samples/dog.jpg"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "yolov3-tiny_int8.tflite" in err and "make demo" in err


def test_not_a_model_one_line(capsys):
    assert detect.main(["--model", "samples/dog.jpg", "--image", "samples/dog.jpg"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a TFLite model" in err


def test_bad_device_one_line(capsys, tiny_int8_model):
    argv = ["--model", str(tiny_int8_model), "--image", "samples/dog.jpg", "--device", "gpu"]
    assert detect.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: --device: ") and "'gpu'" in err


def _have_libedgetpu() -> bool:
    try:
        ctypes.CDLL("libedgetpu.so.1")
        return True
    except OSError:
        return False


@pytest.mark.skipif(_have_libedgetpu(), reason="libedgetpu is installed here")
def test_tpu_without_libedgetpu(tiny_int8_model):
    r = run_cli("--image", "samples/dog.jpg", "--device", "tpu", model=tiny_int8_model)
    assert r.returncode == 2
    assert_no_traceback(r.stderr)
    (line,) = error_lines(r.stderr)
    assert "libedgetpu" in line and r.stdout == ""


@pytest.mark.parametrize("flag,value", [("--conf", "0"), ("--conf", "1.5"), ("--iou", "-0.1"),
                                        ("--iou", "x"), ("--max-det", "0"),
                                        ("--max-det", "1e26"), ("--max-det", "10000000000000"),
                                        ("--timeout", "inf"), ("--timeout", "1e10"),
                                        ("--timeout", "nan"), ("--serve-fps", "1e-10"),
                                        ("--serve-fps", "-1")])
def test_out_of_range_arguments(capsys, flag, value):
    with pytest.raises(SystemExit) as e:
        detect.main(["--image", "samples/dog.jpg", flag, value])
    assert e.value.code == 2 and f"argument {flag}" in capsys.readouterr().err


@pytest.mark.parametrize("args, env", [(["--serve-token", ""], {}),
                                       (["--serve-token", "  "], {}),
                                       ([], {"YOLO_TPU_SERVE_TOKEN": ""})])
def test_empty_serve_token_is_refused(capsys, monkeypatch, args, env):
    """An empty token is not 'no token': it would turn authentication off silently."""
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    code = detect.main(["--model", "tests/fixtures/none.tflite", "--video",
                        "samples/photos.mp4", "--serve", "0", *args])
    err = capsys.readouterr().err
    assert code == 2 and "empty" in err and "Traceback" not in err
    assert len([line for line in err.splitlines() if line.strip()]) == 1


# ---------------------------------------------------------------- Python API

def test_python_api(tiny_int8_model):
    import yolo_tpu
    from yolo_tpu import Detections, Detector
    assert yolo_tpu.__version__
    dets = Detector(str(tiny_int8_model), conf=0.05)(cv2.imread(str(SAMPLES / "dog.jpg")))
    assert isinstance(dets, Detections)
    assert "dog" in dets.labels and dets.xyxy.shape == (len(dets), 4)
