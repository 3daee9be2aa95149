"""`python -m yolo_tpu.detect --image` on real photos and real broken files."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from conftest import ROOT, SAMPLES


def detect(model, *args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "yolo_tpu.detect", "--model", str(model),
                           *map(str, args)], capture_output=True, text=True, cwd=cwd)


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_folder_json_and_saved_images(tiny_int8_model, tmp_path):
    out = tmp_path / "out"
    r = detect(tiny_int8_model, "--image", SAMPLES, "--json", "-", "--save", out)
    assert r.returncode == 0, r.stderr
    records = json_lines(r.stdout)
    assert [rec["source"].rsplit("/", 1)[1] for rec in records] == sorted(
        p.name for p in SAMPLES.glob("*.jpg"))
    dog = next(rec for rec in records if rec["source"].endswith("dog.jpg"))
    assert (dog["width"], dog["height"], dog["frame"]) == (768, 576, 0)
    labels = {d["label"] for d in dog["detections"]}
    assert {"dog", "bicycle"} <= labels
    for d in dog["detections"]:
        x1, y1, x2, y2 = d["box"]
        assert 0 <= x1 < x2 <= 768 and 0 <= y1 < y2 <= 576
        assert set(d) == {"class_id", "label", "score", "box"} and 0.25 < d["score"] <= 1
    for p in SAMPLES.glob("*.jpg"):
        saved = cv2.imread(str(out / p.name))
        assert saved is not None and saved.shape == cv2.imread(str(p)).shape
    # readable lines go to stderr when stdout carries JSON
    assert "dog.jpg 768x576:" in r.stderr


def test_cli_equals_python_api(tiny_int8_model):
    from yolo_tpu import Detector
    r = detect(tiny_int8_model, "--image", SAMPLES / "person.jpg", "--json", "-")
    (record,) = json_lines(r.stdout)
    api = Detector(str(tiny_int8_model), "cpu")(cv2.imread(str(SAMPLES / "person.jpg")))
    assert record["detections"] == api.to_dict()


def test_glob_and_readable_lines(tiny_int8_model):
    r = detect(tiny_int8_model, "--image", str(SAMPLES / "d*.jpg"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(str(SAMPLES / "dog.jpg")) or "dog.jpg 768x576:" in r.stdout


def test_broken_images_are_reported_and_the_rest_processed(tiny_int8_model, tmp_path):
    shutil.copy(SAMPLES / "dog.jpg", tmp_path / "a_dog.jpg")
    (tmp_path / "b_noise.jpg").write_bytes(np.random.default_rng(0).bytes(5000))
    data = (SAMPLES / "kite.jpg").read_bytes()
    (tmp_path / "c_truncated.jpg").write_bytes(data[: len(data) // 2])
    shutil.copy(SAMPLES / "eagle.jpg", tmp_path / "d_eagle.jpg")
    jsonl = tmp_path / "dets.jsonl"
    r = detect(tiny_int8_model, "--image", tmp_path, "--json", jsonl)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    for name in ("b_noise.jpg", "c_truncated.jpg"):
        lines = [l for l in r.stderr.splitlines() if name in l]
        assert len(lines) == 1, r.stderr
    sources = [rec["source"].rsplit("/", 1)[1] for rec in json_lines(jsonl.read_text())]
    assert sources == ["a_dog.jpg", "d_eagle.jpg"]


def test_grey_and_bgra_images(tiny_int8_model, tmp_path):
    image = cv2.imread(str(SAMPLES / "dog.jpg"))
    cv2.imwrite(str(tmp_path / "grey.png"), cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))
    cv2.imwrite(str(tmp_path / "bgra.png"), cv2.cvtColor(image, cv2.COLOR_BGR2BGRA))
    r = detect(tiny_int8_model, "--image", tmp_path / "grey.png", tmp_path / "bgra.png",
               "--json", "-")
    assert r.returncode == 0, r.stderr
    grey, bgra = json_lines(r.stdout)
    assert "dog" in {d["label"] for d in bgra["detections"]}
    assert grey["width"] == 768 and len(grey["detections"]) > 0


@pytest.mark.parametrize("args,message", [
    (("--device", "gpu"), "device"),
    (("--device", "tpu"), "libedgetpu"),
])
def test_bad_device_is_one_line(tiny_int8_model, args, message):
    r = detect(tiny_int8_model, "--image", SAMPLES / "dog.jpg", *args)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr


def test_missing_model_and_missing_input(tmp_path, tiny_int8_model):
    r = detect(tmp_path / "none.tflite", "--image", SAMPLES / "dog.jpg")
    assert r.returncode == 2 and "none.tflite" in r.stderr and "Traceback" not in r.stderr
    (tmp_path / "notes.tflite").write_text("not a model")
    r = detect(tmp_path / "notes.tflite", "--image", SAMPLES / "dog.jpg")
    assert r.returncode == 2 and "notes.tflite" in r.stderr and "Traceback" not in r.stderr
    r = detect(tiny_int8_model, "--image", tmp_path / "nothing*.jpg")
    assert r.returncode != 0 and "nothing*.jpg" in r.stderr and "Traceback" not in r.stderr
