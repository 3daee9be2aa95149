"""Issue 20's newcomer's list: what a new user meets first, each without a traceback or a
late failure."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import ROOT, SAMPLES


@pytest.mark.parametrize("module", ["yolo_tpu.detect", "yolo_tpu.batch"])
def test_outside_the_venv_one_line_names_the_environment(module):
    """A Python without the runtime's packages (-S: no site-packages, as the system python3
    after `make demo`): one line naming the missing module and .venv, no traceback."""
    proc = subprocess.run([sys.executable, "-S", "-m", module, "--help"], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
    assert "missing module numpy" in proc.stderr and "cv2" in proc.stderr
    assert f".venv/bin/python -m {module}" in proc.stderr


def test_the_runtime_still_imports_as_a_library_without_the_hint():
    """Imported (not run), a missing dependency stays an ImportError for the caller."""
    proc = subprocess.run([sys.executable, "-S", "-c", "import yolo_tpu.detect"], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "ModuleNotFoundError" in proc.stderr


def test_readme_says_how_to_run_inside_the_venv():
    text = (ROOT / "README.md").read_text()
    two_commands = text[text.index("## Two commands"):text.index("## Layout")]
    assert ".venv/bin/python" in two_commands and "source .venv/bin/activate" in two_commands


def test_image_timing_leaves_one_time_work_out(capsys, tiny_int8_model):
    """`detect --image`: loading and the first inference are reported once, as "model ready",
    before the first image's line, so the per-image figures are the model's."""
    from yolo_tpu import detect
    assert detect.main(["--model", str(tiny_int8_model), "--device", "cpu",
                        "--image", str(SAMPLES / "dog.jpg")]) == 0
    captured = capsys.readouterr()
    assert captured.err.count("model ready in ") == 1
    assert "dog.jpg" in captured.out  # the image's line comes after the model is ready


def test_show_without_a_display_fails_before_model_and_source(capsys, monkeypatch, tmp_path):
    """No display: --show fails first (the model named here does not even exist, the video
    is not opened), and names --serve as the headless way to watch."""
    from yolo_tpu import detect
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    code = detect.main(["--model", str(tmp_path / "none.tflite"), "--show",
                        "--video", str(tmp_path / "none.mp4")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("error: --show:") and "--serve PORT" in err
    assert "none.tflite" not in err and "none.mp4" not in err


def test_gui_backend_from_opencv_build_information():
    """The GUI line of a headless build says NONE; this venv's OpenCV is read the same way."""
    import cv2

    from yolo_tpu.display import gui_backend
    headless = "  Video I/O:\n    FFMPEG:   YES\n\n  GUI:                           NONE\n"
    assert gui_backend(headless) is None
    assert gui_backend("  GUI:                           QT5\n    QT:   YES\n") == "QT5"
    real = cv2.getBuildInformation()  # this venv's OpenCV: whichever wheel it is
    assert (gui_backend(real) is None) == ("GUI:                           NONE" in real)


def test_runtime_depends_on_headless_opencv():
    """`pip install .` pulls no GUI libraries: opencv-python-headless, not opencv-python."""
    import configparser
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    requires = [r.strip() for r in cfg["options"]["install_requires"].splitlines() if r.strip()]
    names = [r.split(">")[0].split("=")[0].split("<")[0].strip() for r in requires]
    assert "opencv-python-headless" in names and "opencv-python" not in names
