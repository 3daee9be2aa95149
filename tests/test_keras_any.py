"""Any Keras model to the Edge TPU and to a microcontroller: the guides' small CNN, trained
here on a real data set that needs no download (scikit-learn's 8x8 digits, upsampled to
16x16), through `converters.quantize`, its C array and `yolo_tpu.classify`."""
from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from conftest import ROOT

SIDE = 16


def run(module: str, *args, cwd=ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *map(str, args)],
                          capture_output=True, text=True, cwd=cwd)


def quantize_cli(*args) -> subprocess.CompletedProcess:
    """`python -m converters.quantize ARGS`, run in this process (TensorFlow is imported
    once per test run, not once per call): its exit status, stdout and stderr."""
    from converters.quantize import main
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(list(map(str, args)))
    return subprocess.CompletedProcess(args, status, out.getvalue(), err.getvalue())


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """A CNN trained for a few seconds on the digits' train split, saved with Keras' default
    dynamic batch; the splits as .npy/.npz, pixels 0..1."""
    datasets = pytest.importorskip("sklearn.datasets")
    import keras
    d = datasets.load_digits()
    # 8x8 at 0..16 -> 16x16 at 0..1 (each pixel doubled: what a PNG of it reads back)
    x = np.repeat(np.repeat(d.images, 2, axis=1), 2, axis=2)[..., None] / 16.0
    x = x.astype(np.float32)
    y = d.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(x))
    train, test = order[:1400], order[1400:]
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((SIDE, SIDE, 1)),
        keras.layers.Conv2D(16, 3, activation="relu"),
        keras.layers.Conv2D(32, 3, activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Dropout(0.25),
        keras.layers.Flatten(),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x[train], y[train], epochs=6, batch_size=64, verbose=0)
    folder = tmp_path_factory.mktemp("digits")
    assert model.inputs[0].shape[0] is None  # the dynamic batch a user's model has
    model.save(folder / "cnn.keras")
    np.save(folder / "calib.npy", x[train][:200])
    np.savez(folder / "test.npz", x=x[test], y=y[test])
    float_acc = float((model.predict(x[test], verbose=0).argmax(1) == y[test]).mean())
    assert float_acc > 0.9, float_acc  # a real classifier, or the comparisons mean little
    return {"folder": folder, "model": model, "x": x[test], "y": y[test], "float": float_acc}


@pytest.fixture(scope="module")
def quantized(digits):
    """`python -m converters.quantize cnn.keras -o cnn.tflite --calib calib.npy ...`."""
    f = digits["folder"]
    (f / "digits.names").write_text("".join(f"digit {i}\n" for i in range(10)))
    r = quantize_cli(f / "cnn.keras", "-o", f / "cnn.tflite",
            "--calib", f / "calib.npy", "--preprocess", "0..1", "--labels", f / "digits.names",
            "--eval-npz", f / "test.npz", "--report-json", f / "report.json",
            "--c-array", f / "cnn_model.cc")
    assert r.returncode == 0, r.stderr
    return r, json.loads((f / "report.json").read_text())


def test_every_op_on_the_edge_tpu_after_fixing_the_batch(digits, quantized):
    from converters.edgetpu_check import check
    from yolo_tpu.tflite_file import read_io
    r, report = quantized
    path = digits["folder"] / "cnn.tflite"
    (inp,), (out,) = read_io(str(path))
    assert tuple(inp.shape) == (1, SIDE, SIDE, 1) and inp.dtype == "INT8"  # int8 I/O by default
    assert out.dtype == "INT8"
    c = check(str(path))
    assert c.all_mapped and c.total >= 5, [(o.op, o.reason) for o in c.ops if not o.mapped]
    assert report["edgetpu"] == {"mapped": c.total, "ops": c.total}
    assert f"Predicted: {c.total} of {c.total} operations on the Edge TPU" in r.stdout
    assert "batch fixed to 1" in r.stdout


def test_int8_top1_within_two_points_of_float(digits, quantized):
    r, report = quantized
    ev = report["eval"]
    assert ev["samples"] == len(digits["y"])
    assert ev["float_top1"] == pytest.approx(digits["float"], abs=1e-6)
    assert abs(ev["quant_top1"] - ev["float_top1"]) <= 0.02, ev
    assert f"top-1 float {ev['float_top1']:.4f}, int8 {ev['quant_top1']:.4f}" in r.stdout


def test_c_array_compiles_and_reads_back_the_model(digits, quantized, tmp_path):
    if not shutil.which("g++"):
        pytest.skip("no g++")
    f = digits["folder"]
    cc, header = (f / "cnn_model.cc").read_text(), (f / "cnn_model.h").read_text()
    assert "alignas(16) const unsigned char cnn_tflite[] = {" in cc
    assert "extern const unsigned char cnn_tflite[];" in header
    assert "extern const unsigned int cnn_tflite_len;" in header
    main = tmp_path / "main.cc"
    main.write_text(
        '#include <cstdint>\n#include <cstdio>\n#include "cnn_model.h"\n'
        "int main(int argc, char** argv) {\n"
        "  if (reinterpret_cast<std::uintptr_t>(cnn_tflite) % 16 != 0) return 3;\n"
        '  std::FILE* out = std::fopen(argv[1], "wb");\n'
        "  std::fwrite(cnn_tflite, 1, cnn_tflite_len, out);\n"
        "  return std::fclose(out);\n}\n")
    exe = tmp_path / "dump"
    # two translation units: the array must have external linkage through the header
    build = subprocess.run(["g++", "-std=c++17", "-Wall", "-Werror", "-I", str(f), str(main),
                            str(f / "cnn_model.cc"), "-o", str(exe)],
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    back = tmp_path / "back.tflite"
    assert subprocess.run([str(exe), str(back)]).returncode == 0
    assert back.read_bytes() == (f / "cnn.tflite").read_bytes()


def test_classify_gives_the_float_models_labels(digits, quantized, tmp_path):
    """PNGs of test digits, 4x their 16x16 size: `yolo_tpu.classify` on the int8 model
    (preprocessing and labels from its metadata) names what the float model names."""
    model, x = digits["model"], digits["x"]
    probs = model.predict(x, verbose=0)
    sure = np.flatnonzero(probs.max(1) > 0.95)[:6]  # digits the float model is sure of
    assert len(sure) == 6
    paths = []
    for i in sure:
        png = tmp_path / f"digit_{i}.png"
        pixels = np.round(x[i, :, :, 0] * 255).astype(np.uint8)
        cv2.imwrite(str(png), cv2.resize(pixels, (4 * SIDE, 4 * SIDE),
                                         interpolation=cv2.INTER_NEAREST))
        paths.append(png)
    out = tmp_path / "top.jsonl"
    r = run("yolo_tpu.classify", "--model", digits["folder"] / "cnn.tflite", "--image", *paths,
            "--top", "3", "--device", "cpu", "--json", out)
    assert r.returncode == 0, r.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [rec["source"] for rec in records] == list(map(str, paths))
    assert [rec["top"][0]["class"] for rec in records] == probs[sure].argmax(1).tolist()
    assert all(rec["top"][0]["label"] == f"digit {rec['top'][0]['class']}" for rec in records)
    assert all(len(rec["top"]) == 3 for rec in records)
    assert len(r.stdout.splitlines()) == 6


def test_bad_arrays_and_models_are_one_line_errors(digits, tmp_path):
    f = digits["folder"]
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((4, 8, 8, 1), np.float32))
    cases = [
        ((f / "cnn.keras", "--calib", wrong), "wrong.npy: samples of shape (4, 8, 8, 1)"),
        ((tmp_path / "nope.h5", "--calib", f / "calib.npy"), "nope.h5: no such file"),
        ((f / "cnn.keras",), "cnn.keras: int8 needs calibration samples"),
    ]
    broken = tmp_path / "broken.npy"
    broken.write_bytes(b"not numpy")
    cases.append(((f / "cnn.keras", "--calib", broken), "broken.npy: not a readable NumPy file"))
    # a bad --eval-npz fails before any conversion work, with no model written
    cases.append(((f / "cnn.keras", "--calib", f / "calib.npy", "--eval-npz", wrong),
                  "wrong.npy: samples of shape (4, 8, 8, 1)"))
    for args, message in cases:
        r = quantize_cli(*args, "-o", tmp_path / "x.tflite")
        assert r.returncode == 2 and message in r.stderr, (args, r.stderr)
        assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert not (tmp_path / "x.tflite").exists()


def test_classify_video_and_errors(digits, quantized, tmp_path):
    """--video: one record per frame; a missing model or video is one line, exit 2."""
    x = digits["x"]
    video = tmp_path / "digits.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (64, 64))
    for i in range(4):
        grey = cv2.resize(np.round(x[i, :, :, 0] * 255).astype(np.uint8), (64, 64),
                          interpolation=cv2.INTER_NEAREST)
        writer.write(cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR))
    writer.release()
    model = digits["folder"] / "cnn.tflite"
    r = run("yolo_tpu.classify", "--model", model, "--video", video, "--json", "-", "--top", "1")
    assert r.returncode == 0, r.stderr
    records = [json.loads(line) for line in r.stdout.splitlines()]
    assert [rec["frame"] for rec in records] == [0, 1, 2, 3]
    assert all(rec["top"][0]["label"].startswith("digit ") for rec in records)
    for args, message in (((tmp_path / "no.tflite", "--image", video), "no.tflite: no such model"),
                          ((model, "--video", tmp_path / "no.mp4"), "no.mp4: no such file")):
        r = run("yolo_tpu.classify", "--model", args[0], *args[1:])
        assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_classifier_metadata_is_strict_and_apart_from_the_detectors():
    from yolo_tpu.meta import ClassifierMeta, ModelMeta
    text = ClassifierMeta(127.5, 127.5, ("a", "b")).to_json()
    assert ClassifierMeta.from_json(text) == ClassifierMeta(127.5, 127.5, ("a", "b"))
    with pytest.raises(ValueError, match="yolo_tpu.classify"):
        ModelMeta.from_json(text)
    d = json.loads(text)
    for change, message in (({"std": 0}, "'std' must be a number"),
                            ({"extra": 1}, "unknown field 'extra'"),
                            ({"names": [1]}, "'names' must be a list of strings"),
                            ({"format": "yolo_tpu/1"}, "detector's metadata"),
                            ({"mean": None}, "'mean' must be a number")):
        with pytest.raises(ValueError, match=message):
            ClassifierMeta.from_json(json.dumps(d | change))
    del d["std"]
    with pytest.raises(ValueError, match="'mean' and 'std' come together"):
        ClassifierMeta.from_json(json.dumps(d))
    assert ClassifierMeta.from_json(ClassifierMeta(names=("a",)).to_json()).mean is None


def test_preprocessing_without_metadata_spans_the_input_range():
    """No stored preprocessing: pixels 0..255 fill the quantized input (uint8 as is, int8
    minus 128); with one, (pixel - mean) / std is quantized by the input's own scale."""
    from yolo_tpu.classifier import input_lut, parse_preprocess
    assert input_lut(np.dtype(np.int8), 0.1, 3, None).tolist() == list(range(-128, 128))
    assert input_lut(np.dtype(np.uint8), 0.1, 3, None).tolist() == list(range(256))
    lut = input_lut(np.dtype(np.int8), 2 / 255, 0, parse_preprocess("-1..1"))
    assert lut[0] == -128 and lut[255] == 127 and abs(int(lut[128])) <= 1
    assert input_lut(np.dtype(np.float32), 0, 0, parse_preprocess("raw"))[200] == 200
    assert parse_preprocess("123.5,58") == (123.5, 58.0)
    with pytest.raises(ValueError, match="MEAN,STD"):
        parse_preprocess("1..2")


def test_classifier_on_the_edge_tpu_path(digits, quantized, tmp_path, monkeypatch):
    """The detector's Edge TPU path: a `*_edgetpu.tflite` (compiler stand-in) takes its
    metadata from the model beside it and runs through libedgetpu (stand-in library,
    which writes zeros); the CPU refuses it in one line."""
    import edgetpu_standin
    from test_edgetpu_runtime import DEVICES  # the devices the stand-in library lists
    from yolo_tpu.backends import BackendError
    from yolo_tpu.classifier import Classifier
    gcc = shutil.which("gcc") or shutil.which("cc")
    if not gcc:
        pytest.skip("no C compiler for the stand-in libedgetpu")
    lib = tmp_path / "libedgetpu.so.1"
    subprocess.run([gcc, "-shared", "-fPIC", "-O1", "-o", str(lib),
                    str(ROOT / "tests" / "libedgetpu_standin.c")], check=True)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("STANDIN_EDGETPU_DEVICES", DEVICES)
    monkeypatch.setenv("YOLO_TPU_EDGETPU_LIB", str(lib))
    source = tmp_path / "cnn.tflite"
    shutil.copy(digits["folder"] / "cnn.tflite", source)
    compiled = tmp_path / "cnn_edgetpu.tflite"
    compiled.write_bytes(edgetpu_standin.compile_like_edgetpu(source.read_bytes()))
    c = Classifier(str(compiled), device="usb:0")
    assert c.compiled and c.backend.startswith("Edge TPU usb:0 via ")
    assert c.names[3] == "digit 3" and c.preprocessing == (0.0, 255.0)  # from cnn.tflite
    top = c(np.zeros((32, 32, 3), np.uint8), top=2)
    assert len(top) == 2 and top[0].label.startswith("digit ")
    with pytest.raises(BackendError, match="cannot run on the CPU"):
        Classifier(str(compiled), device="cpu")


def test_h5_from_images_and_a_savedmodel(digits, tmp_path):
    """The other forms: an .h5 calibrated on PNGs (resized, --preprocess 0..1, uint8 I/O;
    the preprocessing is stored), and a SavedModel folder scored by output error (an
    --eval-npz without labels)."""
    from yolo_tpu.classifier import read_classifier_info
    from yolo_tpu.tflite_file import read_io
    model, x = digits["model"], digits["x"]
    model.save(tmp_path / "cnn.h5")
    pngs = tmp_path / "calib"
    pngs.mkdir()
    for i in range(40):
        cv2.imwrite(str(pngs / f"{i}.png"), cv2.resize(np.round(x[i, :, :, 0] * 255)
                    .astype(np.uint8), (48, 48), interpolation=cv2.INTER_NEAREST))
    r = quantize_cli(tmp_path / "cnn.h5", "-o", tmp_path / "h5.tflite", "--calib", pngs,
                     "--io", "uint8", "--eval-npz", digits["folder"] / "test.npz")
    assert r.returncode == 0, r.stderr
    assert "calibrating on 40 samples (images, --preprocess 0..1)" in r.stdout
    (inp,), _ = read_io(str(tmp_path / "h5.tflite"))
    assert inp.dtype == "UINT8"
    meta, _ = read_classifier_info(str(tmp_path / "h5.tflite"))
    assert (meta.mean, meta.std) == (0.0, 255.0)
    top1 = re.search(r"top-1 float ([0-9.]+), int8 ([0-9.]+)", r.stdout)
    assert abs(float(top1[1]) - float(top1[2])) <= 0.02, r.stdout
    model.export(str(tmp_path / "saved"), verbose=False)
    np.savez(tmp_path / "x_only.npz", x=x[:50])
    r = quantize_cli(tmp_path / "saved", "-o", tmp_path / "sm.tflite", "--calib",
                     digits["folder"] / "calib.npy", "--eval-npz", tmp_path / "x_only.npz")
    assert r.returncode == 0, r.stderr
    error = re.search(r"int8 output error against float: mean ([0-9.]+), max ([0-9.]+)", r.stdout)
    assert error and float(error[1]) < 0.01 and float(error[2]) < 0.1, r.stdout
    assert re.search(r"Predicted: (\d+) of \1 operations on the Edge TPU", r.stdout), r.stdout


def test_detector_points_a_classifier_to_classify(digits, quantized):
    from yolo_tpu.detector import Detector, ModelError
    with pytest.raises(ModelError, match="run the model with `python -m yolo_tpu.classify`"):
        Detector(str(digits["folder"] / "cnn.tflite"), device="cpu")


def test_fuzz_classifier_metadata():
    """Seeded mutations of classifier metadata: each parses to sane values or is a
    ValueError, never another exception."""
    from yolo_tpu.meta import ClassifierMeta
    good = {"format": "yolo_tpu.classifier/1", "mean": 0.0, "std": 255.0, "names": ["a", "b"]}
    values = [None, True, 0, -1, 1e308, float("nan"), "", "x", [], [1], {}, ["a"] * 3]
    rng = np.random.default_rng(20)
    fixed = ["null", "[" * 100000 + "]" * 100000, "{" * 5000, "\xff", "", "[]"]
    payloads = [t.encode("utf-8", "surrogateescape") for t in fixed]
    for _ in range(300):
        d = dict(good)
        key = list(good)[int(rng.integers(len(good)))]
        if rng.random() < 0.2:
            del d[key]
        else:
            d[key] = values[int(rng.integers(len(values)))]
        payloads.append(json.dumps(d).encode())
    parsed = 0
    for payload in payloads:
        try:
            meta = ClassifierMeta.from_json(payload)
        except ValueError:
            continue
        parsed += 1
        assert (meta.mean is None) == (meta.std is None)
        assert meta.std is None or 0 < meta.std <= 1e6
        assert all(isinstance(n, str) for n in meta.names)
    assert 0 < parsed < len(payloads)
