"""Replicas for one stream: `--device DEV+DEV` runs one copy of the model per device, frames in
turn, results in frame order; `--device auto` with several Edge TPUs picks replicas or segments.

`cpu+cpu` runs two real LiteRT interpreters of the real yolov3-tiny int8 model on a real video;
the TPU side runs through the stand-in libedgetpu (listing two devices) and real compiler
outputs (tests/fixtures/edgetpu_real) for the parameter sizes behind `auto`'s choice.
"""
from __future__ import annotations

import shutil
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

import edgetpu_standin
from conftest import SAMPLES
from test_detect_cli import assert_no_traceback, error_lines, json_lines
from test_edgetpu_runtime import libs, tpu_env  # noqa: F401  (fixtures: stand-in libedgetpu)
from test_batch import jsonl, run_batch
from test_video import run_cli, stamped_clip

from converters import edgetpu_compile, segment
from yolo_tpu import detect, replicas
from yolo_tpu.detector import Detector, ModelError
from yolo_tpu.model_trial import load_interpreter
from yolo_tpu.replicas import Replicas, auto_plan, parameter_bytes, replica_devices
from yolo_tpu.tflite_file import custom_payloads, read_model

REAL = Path(__file__).resolve().parent / "fixtures" / "edgetpu_real"
PHOTOS = sorted(SAMPLES.glob("*.jpg"))
TWO_USB = "usb:/sys/bus/usb/devices/2-1,usb:/sys/bus/usb/devices/2-2"


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("video") / "pan.mp4"
    stamped_clip(path, 24, (320, 240), photo="horses.jpg")
    return path


@pytest.fixture(scope="module")
def compiled_with_segments(tiny_int8_model, tmp_path_factory) -> Path:
    """yolov3-tiny int8 compiled whole by the compiler stand-in, and beside it its two
    segments (converters.segment) compiled the same way, as edgetpu_compile writes them."""
    out = tmp_path_factory.mktemp("compiled")
    source = out / "yolov3-tiny_int8.tflite"
    shutil.copy(tiny_int8_model, source)
    whole = out / "yolov3-tiny_int8_edgetpu.tflite"
    whole.write_bytes(edgetpu_standin.compile_like_edgetpu(source.read_bytes()))
    edgetpu_compile.embed_metadata(source, whole)
    cut = tmp_path_factory.mktemp("segments")
    assert segment.main([str(source), "--segments", "2", "-o", str(cut)]) == 0
    for k in range(2):
        part = cut / f"yolov3-tiny_int8_segment_{k}_of_2.tflite"
        shutil.copy(part, out / part.name)
        target = out / f"yolov3-tiny_int8_segment_{k}_of_2_edgetpu.tflite"
        target.write_bytes(edgetpu_standin.compile_like_edgetpu(part.read_bytes()))
        edgetpu_compile.embed_metadata(out / part.name, target)
    return whole


# ---------------------------------------------------------------- cpu+cpu, real model

def test_cpu_plus_cpu_video_json_equals_one_device(tiny_int8_model, clip):
    one = run_cli("--video", str(clip), "--json", "-", "--device", "cpu", model=tiny_int8_model)
    two = run_cli("--video", str(clip), "--json", "-", "--device", "cpu+cpu",
                  model=tiny_int8_model)
    assert one.returncode == 0, one.stderr
    assert two.returncode == 0, two.stderr
    assert "2 replicas: CPU via" in two.stderr
    single, replicated = json_lines(one.stdout), json_lines(two.stdout)
    assert len(single) == 24 and sum(len(r["detections"]) for r in single) > 0
    assert [r["frame"] for r in replicated] == list(range(24))
    assert replicated == single


def test_batch_cpu_plus_cpu_equals_one_device(tiny_int8_model, clip, tmp_path):
    for device in ("cpu", "cpu+cpu"):
        r = run_batch(str(clip), "--out", str(tmp_path / device), "--device", device,
                      model=tiny_int8_model)
        assert r.returncode == 0, r.stderr
    single = jsonl(tmp_path / "cpu" / "pan.jsonl")
    assert len(single) == 24
    assert jsonl(tmp_path / "cpu+cpu" / "pan.jsonl") == single


def test_detector_cpu_plus_cpu_equals_cpu(tiny_int8_model):
    one = Detector(str(tiny_int8_model), device="cpu")
    two = Detector(str(tiny_int8_model), device="cpu+cpu")
    try:
        assert two.in_flight == 4 and two.backend.startswith("2 replicas: CPU via")
        images = [cv2.imread(str(p)) for p in PHOTOS]
        expected = [one(image).to_dict() for image in images]
        assert sum(map(len, expected)) > 0
        assert [two(image).to_dict() for image in images] == expected  # one at a time
        boxes, got = [], []
        for image in images:  # in_flight frames at once: frames in turn, results in order
            tensor, box = two.preprocess(image, reuse=False)
            two.submit(tensor)
            boxes.append(box)
            if len(boxes) == two.in_flight:
                got.append(two.postprocess(two.collect(), boxes.pop(0)).to_dict())
        got += [two.postprocess(two.collect(), box).to_dict() for box in boxes]
        assert got == expected
    finally:
        two.close()


class _Held:
    """A real interpreter whose `invoke` waits until `go` is set: lets a test make replica
    0 finish after replica 1 (an event, not a sleep)."""

    def __init__(self, interpreter, go: threading.Event):
        self._interpreter, self._go = interpreter, go

    def __getattr__(self, name):
        return getattr(self._interpreter, name)

    def invoke(self) -> None:
        assert self._go.wait(60)
        self._interpreter.invoke()


class _Signals(_Held):
    def invoke(self) -> None:
        self._interpreter.invoke()
        self._go.set()


def test_results_in_frame_order_when_a_later_frame_finishes_first(tiny_int8_model):
    go = threading.Event()
    model = str(tiny_int8_model)
    a, _ = load_interpreter(model, "cpu", threads=1)
    b, _ = load_interpreter(model, "cpu", threads=1)
    pair = Replicas([_Held(a, go), _Signals(b, go)], ["held", "first"])
    det = Detector(model, device="cpu")
    tensors = [det.preprocess(cv2.imread(str(p)), reuse=False)[0] for p in PHOTOS[:2]]
    expected = [_outputs(det, t) for t in tensors]
    try:
        for t in tensors:
            pair.submit(t)
        for want in expected:
            got = pair.collect()
            assert all(np.array_equal(g, w) for g, w in zip(got, want))
    finally:
        pair.close()
    assert not np.array_equal(expected[0][0], expected[1][0])  # two different frames


def _outputs(det: Detector, tensor: np.ndarray) -> list[np.ndarray]:
    """All outputs of the single interpreter, in its get_output_details() order."""
    det.interpreter.set_tensor(det.interpreter.get_input_details()[0]["index"], tensor)
    det.interpreter.invoke()
    return [det.interpreter.get_tensor(d["index"]) for d in det.interpreter.get_output_details()]


# ---------------------------------------------------------------- device strings

@pytest.mark.parametrize("device, says", [("usb:0+", "empty device"),
                                          ("+cpu", "empty device"),
                                          ("auto+cpu", "auto cannot be one replica"),
                                          ("cpu+usb:x", "device must be")])
def test_malformed_replica_lists_are_one_line(capsys, tiny_int8_model, device, says):
    status = detect.main(["--image", str(PHOTOS[0]), "--model", str(tiny_int8_model),
                          "--device", device])
    err = capsys.readouterr().err
    assert status == 2 and says in err
    assert len(error_lines(err)) == 1, err
    assert_no_traceback(err)
    with pytest.raises(ValueError, match=says):
        replica_devices(device)


def test_a_replica_device_that_is_not_there_is_one_line(capsys, tiny_int8_model, libs,
                                                        tpu_env):
    tpu_env(libs["ok"])
    status = detect.main(["--image", str(PHOTOS[0]), "--model", str(tiny_int8_model),
                          "--device", "cpu+usb:9"])
    err = capsys.readouterr().err
    assert status == 2, err
    (line,) = error_lines(err)
    assert "no Edge TPU (usb:9) answered" in line and "lists 2" in line
    assert_no_traceback(err)


def test_replicas_of_segments_refused(compiled_with_segments):
    parts = sorted(str(p) for p in compiled_with_segments.parent.glob("*_of_2.tflite"))
    with pytest.raises(ModelError, match="replicas .* run one whole model"):
        Detector(",".join(parts), device="cpu+cpu")


# ---------------------------------------------------------------- auto with several TPUs

def test_parameter_sizes_of_real_compiler_outputs():
    """The parameters libedgetpu caches, read from the executables of real compiled models:
    at least the uncompiled model's constants (the compiler lays them out in tiles), less
    than the whole executable (which also holds instructions); all fit the 8 MiB cache."""
    pairs = [p for p in sorted(REAL.rglob("*_edgetpu.tflite"))
             if (p.parent / p.name.replace("_edgetpu", "")).exists()]
    assert len(pairs) >= 8
    for compiled in pairs:
        size = parameter_bytes(str(compiled))
        raw = compiled.read_bytes()
        payload = sum(len(data) for _, data in custom_payloads(raw))
        constants = sum(len(t.data or b"") for t in
                        read_model(compiled.parent / compiled.name.replace("_edgetpu", "")).tensors
                        if t.is_constant)
        assert constants <= size < payload, compiled.name
        plan = auto_plan(str(compiled), 2)
        assert plan.kind == "replicas" and plan.device == "tpu:0+tpu:1", compiled.name
        assert "fit the Edge TPU's 8 MiB cache" in plan.message
    yolov8n = parameter_bytes(str(REAL / "yolov8n" / "yolov8n_full_integer_quant_edgetpu.tflite"))
    assert yolov8n == 3492544  # the parameter-caching executable's blob (the one in the file)


def test_yolov3_tiny_does_not_fit(tiny_int8_model, compiled_with_segments):
    """tiny-YOLOv3 holds 8.5 MiB of int8 parameters: more than the cache, so no replicas."""
    assert 8.4 < parameter_bytes(str(tiny_int8_model)) / 2**20 < 8.8
    assert auto_plan(str(tiny_int8_model), 2).kind == "one"
    plan = auto_plan(str(compiled_with_segments), 2)
    assert plan.kind == "segments" and plan.paths == [
        str(compiled_with_segments.parent / f"yolov3-tiny_int8_segment_{k}_of_2_edgetpu.tflite")
        for k in range(2)]
    assert auto_plan(str(compiled_with_segments), 3).kind == "segments"  # 2 of 3 TPUs


def test_auto_on_two_tpus_runs_segments_when_the_model_does_not_fit(
        compiled_with_segments, libs, tpu_env, monkeypatch, caplog):
    tpu_env(libs["ok"])
    monkeypatch.setenv("STANDIN_EDGETPU_DEVICES", TWO_USB)
    with caplog.at_level("INFO", logger="yolo_tpu"):
        det = Detector(str(compiled_with_segments), device="auto")
    try:
        assert det.backend == ("segment 0: Edge TPU :0 via ai_edge_litert; "
                               "segment 1: Edge TPU :1 via ai_edge_litert")
        assert len(det(cv2.imread(str(PHOTOS[0])))) == 0  # the stand-in writes zeros
    finally:
        det.close()
    said = [r.getMessage() for r in caplog.records if "cache" in r.getMessage()]
    assert len(said) == 1 and "exceed the Edge TPU's 8 MiB cache: its 2 compiled segments" \
        in said[0]


def test_auto_on_two_tpus_runs_replicas_when_the_model_fits(
        compiled_with_segments, libs, tpu_env, monkeypatch, caplog):
    """The same files with a cache taken as 16 MiB: the whole model now fits, so one copy
    per TPU, frames in turn."""
    tpu_env(libs["ok"])
    monkeypatch.setenv("STANDIN_EDGETPU_DEVICES", TWO_USB)
    monkeypatch.setattr(replicas, "CACHE_BYTES", 16 * 2**20)
    with caplog.at_level("INFO", logger="yolo_tpu"):
        det = Detector(str(compiled_with_segments), device="auto")
    try:
        assert det.backend == ("2 replicas: Edge TPU :0 via ai_edge_litert; "
                               "Edge TPU :1 via ai_edge_litert")
        assert det.in_flight == 4
        assert len(det(cv2.imread(str(PHOTOS[0])))) == 0
    finally:
        det.close()
    assert any("one replica on each of the 2 TPUs" in r.getMessage() for r in caplog.records)


def test_auto_with_one_tpu_is_as_before(compiled_with_segments, libs, tpu_env, monkeypatch,
                                        caplog):
    tpu_env(libs["ok"])
    monkeypatch.setenv("STANDIN_EDGETPU_DEVICES", "usb:/sys/bus/usb/devices/2-1")
    with caplog.at_level("INFO", logger="yolo_tpu"):
        det = Detector(str(compiled_with_segments), device="auto")
    assert det.backend == "Edge TPU via ai_edge_litert"
    assert not any("cache" in r.getMessage() for r in caplog.records)
