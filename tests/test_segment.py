"""`converters.segment` and the segment pipeline: the bundled tiny-YOLOv3 (int8, addrelu) cut
into 2 and 3 segments, run as a CPU pipeline, against the whole model, bit for bit.

The parameter bytes are counted here from the written files (constant tensors' buffers, read
back with `yolo_tpu.tflite_file`), not taken from the segmenter's own report. ~15 s on 2
cores, plus the session's model fixture.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import ROOT, SAMPLES
from media import pan_zoom_frames, write_video

from converters import segment
from yolo_tpu import Detector
from yolo_tpu.backends import BackendError, NoDeviceError
from yolo_tpu.detector import ModelError
from yolo_tpu.meta import METADATA_KEY
from yolo_tpu.pipeline import SEGMENT_KEY
from yolo_tpu.tflite_file import read_model
from test_edgetpu_runtime import libs, tpu_env  # noqa: F401  (fixtures: stand-in libedgetpu)

PHOTOS = sorted(SAMPLES.glob("*.jpg"))


@pytest.fixture(scope="module")
def segments(tiny_int8_model, tmp_path_factory) -> dict[int, list[Path]]:
    """N -> the segment files, written by the CLI (N = 2, 3)."""
    out = tmp_path_factory.mktemp("segments")
    result = {}
    for n in (2, 3):
        assert segment.main([str(tiny_int8_model), "--segments", str(n), "-o", str(out)]) == 0
        result[n] = [out / f"yolov3-tiny_int8_segment_{i}_of_{n}.tflite" for i in range(n)]
    return result


@pytest.fixture(scope="module")
def whole(tiny_int8_model) -> Detector:
    return Detector(str(tiny_int8_model), device="cpu")


def parameter_bytes(path: Path) -> int:
    return sum(len(t.data) for t in read_model(path).tensors if t.is_constant)


@pytest.mark.parametrize("n", [2, 3])
def test_pipeline_equals_the_whole_model_bit_for_bit(segments, whole, n):
    pipeline = Detector([str(p) for p in segments[n]], device="cpu")
    try:
        assert pipeline.in_flight == n
        tensors = [whole.preprocess(cv2.imread(str(p)), reuse=False)[0] for p in PHOTOS]
        for t in tensors:  # every photo in flight at once: outputs come back in order
            pipeline.submit(t)
        piped = [pipeline.collect() for _ in tensors]
        total = 0
        for photo, t, heads in zip(PHOTOS, tensors, piped):
            expected = whole.infer(t)
            assert len(heads) == len(expected) == 2
            for a, b in zip(heads, expected):
                assert a.dtype == b.dtype and np.array_equal(a, b), photo.name
            assert pipeline.infer(t)[0].tobytes() == expected[0].tobytes()  # one at a time
            image = cv2.imread(str(photo))
            dets = pipeline(image)
            assert dets.to_dict() == whole(image).to_dict(), photo.name
            total += len(dets)
        assert total >= 15  # real detections on the photos: the comparison bites
    finally:
        pipeline.close()


@pytest.mark.parametrize("n", [2, 3])
def test_segments_are_balanced_standalone_models(segments, tiny_int8_model, n):
    files = segments[n]
    sizes = [parameter_bytes(p) for p in files]
    assert max(sizes) <= 1.25 * min(sizes), sizes
    whole_bytes = parameter_bytes(tiny_int8_model)
    assert whole_bytes <= sum(sizes) <= whole_bytes * 1.01  # nothing lost, little repeated
    from ai_edge_litert.interpreter import Interpreter
    for k, path in enumerate(files):
        Interpreter(model_path=str(path)).allocate_tensors()  # each loads on its own
        model = read_model(path)
        info = json.loads(model.metadata[SEGMENT_KEY])
        assert (info["index"], info["count"], info["source"]) == (k, n, tiny_int8_model.name)
        assert info["inputs"] == [model.tensor(i).name for i in model.inputs]
        assert info["outputs"] == [model.tensor(i).name for i in model.outputs]
        assert (METADATA_KEY in model.metadata) == (k == n - 1)  # the heads: the last only
    first = read_model(files[0])
    assert [first.tensor(i).name for i in first.inputs] == info["model_inputs"]


def test_cuts_between_ops_alone_cannot_balance_tiny_yolov3(tiny_int8_model, tmp_path):
    """Why a convolution is split: 3x3x512x1024 holds over half the weights (measured)."""
    assert segment.main([str(tiny_int8_model), "--segments", "2", "--no-split",
                         "-o", str(tmp_path)]) == 0
    sizes = [parameter_bytes(p) for p in sorted(tmp_path.glob("*_of_2.tflite"))]
    assert max(sizes) > 2 * min(sizes), sizes


def test_detect_cli_pipeline_on_a_video(segments, tiny_int8_model, tmp_path):
    """`detect --video --model seg0,seg1 --device cpu,cpu`: the whole model's JSON lines."""
    video = tmp_path / "clip.mp4"
    assert write_video(video, pan_zoom_frames(SAMPLES / "dog.jpg", (320, 240), 24), 15.0) == 24
    lines = {}
    for name, model, device in [("whole", str(tiny_int8_model), "cpu"),
                                ("piped", ",".join(map(str, segments[2])), "cpu,cpu")]:
        out = tmp_path / f"{name}.jsonl"
        r = subprocess.run([sys.executable, "-m", "yolo_tpu.detect", "--video", str(video),
                            "--model", model, "--device", device, "--json", str(out)],
                           cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        lines[name] = out.read_text().splitlines()
    assert len(lines["piped"]) == 24 and lines["piped"] == lines["whole"]
    assert sum(len(json.loads(x)["detections"]) for x in lines["whole"]) > 24


def test_wrong_segments_are_one_line_errors(segments, tmp_path):
    two, three = segments[2], segments[3]
    cases = [
        ([two[1], two[0]], "cpu", "is segment 1 of 2, given as segment 0"),
        ([three[0], three[1]], "cpu", "is segment 0 of 3, given as segment 0 of 2"),
        ([two[0]], "cpu", "is segment 0 of 2 of yolov3-tiny_int8.tflite; pass all"),
        (two, "cpu,cpu,cpu", "--device lists 3 devices for 2 segments"),
        ([two[0], tmp_path / "gone.tflite"], "cpu", "gone.tflite: no such model file"),
    ]
    for models, device, why in cases:
        with pytest.raises(ModelError, match=why.replace(".", r"\.").replace("-", r"\-")):
            Detector([str(m) for m in models], device=device)
    r = subprocess.run([sys.executable, "-m", "yolo_tpu.detect", "--image", str(PHOTOS[0]),
                        "--model", f"{two[1]},{two[0]}", "--device", "cpu"],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    errors = [x for x in r.stderr.splitlines() if x.startswith("error: ")]
    assert len(errors) == 1 and "list the segments in order" in errors[0]


def test_segmenter_needs_no_tensorflow(segments):
    code = ("import sys, converters.segment, yolo_tpu.pipeline; "
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_bad_arguments(tiny_int8_model, tmp_path, capsys):
    assert segment.main([str(tmp_path / "none.tflite"), "--segments", "2"]) == 2
    assert "none.tflite: cannot read" in capsys.readouterr().err
    text = tmp_path / "text.tflite"
    text.write_text("not a model")
    assert segment.main([str(text), "--segments", "2"]) == 2
    assert "not a TFLite model" in capsys.readouterr().err
    assert segment.main([str(tiny_int8_model), "--segments", "0", "-o", str(tmp_path)]) == 2
    assert "at least 1" in capsys.readouterr().err


def test_coral_compiled_segments_chain_by_name():
    """Coral's own `--num_segments 2` output (real compiler files, no metadata left): the
    runtime's plan finds the image input, the post-processing outputs, and refuses the
    reversed order."""
    from yolo_tpu.pipeline import SegmentsError, chain_plan
    folder = ROOT.parent / "shared" / "edgetpu"
    files = [folder / f"ssd_mobilenet_v2_coco_quant_postprocess_segment_{k}_of_2_edgetpu.tflite"
             for k in range(2)]
    if not all(f.exists() for f in files):
        pytest.skip(f"{folder}: Coral's compiled segments not here")
    stages = []
    for f in files:
        m = read_model(f)
        assert not m.metadata  # the compiler dropped it: names are all there is
        stages.append((str(f), [m.tensor(i).name for i in m.inputs],
                       [m.tensor(i).name for i in m.outputs]))
    image, outputs, keep = chain_plan(stages)
    assert image == "normalized_input_image_tensor"
    assert outputs == ["TFLite_Detection_PostProcess"] + [
        f"TFLite_Detection_PostProcess:{k}" for k in (1, 2, 3)]
    assert keep[0] == set(stages[1][1]) | set(outputs)  # segment 0 hands on what 1 reads
    with pytest.raises(SegmentsError, match="takes 3 tensors, not an image"):
        chain_plan(stages[::-1])


def test_one_device_per_segment():
    from yolo_tpu.pipeline import SegmentsError, segment_devices
    assert segment_devices("usb:0,usb:1", 2) == ["usb:0", "usb:1"]
    assert segment_devices("usb", 2) == ["usb:0", "usb:1"]  # one TPU per segment
    assert segment_devices("tpu", 3) == ["tpu:0", "tpu:1", "tpu:2"]
    assert segment_devices("cpu", 3) == ["cpu"] * 3
    assert segment_devices("usb:1", 2) == ["usb:1"] * 2  # asked for: both on that one
    with pytest.raises(SegmentsError, match="lists 2 devices for 3 segments"):
        segment_devices("usb:0,usb:1", 3)


def test_compiled_segments_run_on_two_tpus(segments, tmp_path, monkeypatch, capsys, libs,
                                           tpu_env):
    """The README's two-accelerator path through the stand-ins: `edgetpu_compile` compiles
    each segment (the compiler stand-in), puts the segment and head metadata back, and the
    runtime opens one TPU per segment through the stand-in libedgetpu (which writes zeros:
    nothing is detected, but every tensor name has to chain through the compiled files)."""
    from converters import edgetpu_compile
    from test_edgetpu_check import install_standin_compiler
    install_standin_compiler(tmp_path, monkeypatch)
    out = tmp_path / "compiled"
    assert edgetpu_compile.main([*map(str, segments[2]), "-o", str(out)]) == 0
    assert capsys.readouterr().out.count("(yolo_tpu metadata restored)") == 2
    compiled = [out / f"yolov3-tiny_int8_segment_{k}_of_2_edgetpu.tflite" for k in range(2)]
    for k, path in enumerate(compiled):
        model = read_model(path)
        assert [op.custom_code for op in model.operators] == ["edgetpu-custom-op"]
        assert json.loads(model.metadata[SEGMENT_KEY])["index"] == k
        assert (METADATA_KEY in model.metadata) == (k == 1)
    tpu_env(libs["ok"])
    monkeypatch.setenv("STANDIN_EDGETPU_DEVICES",
                       "usb:/sys/bus/usb/devices/2-1,usb:/sys/bus/usb/devices/2-2")
    detector = Detector([str(p) for p in compiled], device="usb:0,usb:1")
    try:
        assert detector.backend == ("segment 0: Edge TPU usb:0 via ai_edge_litert; "
                                    "segment 1: Edge TPU usb:1 via ai_edge_litert")
        assert len(detector(cv2.imread(str(PHOTOS[0])))) == 0
    finally:
        detector.close()
    with pytest.raises(BackendError, match="cannot run on the CPU"):
        Detector([str(p) for p in compiled], device="cpu")
    with pytest.raises(NoDeviceError, match="no Edge TPU"):
        Detector([str(p) for p in compiled], device="usb:0,usb:2")
