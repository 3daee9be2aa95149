"""A runtime-only install (`pip install .`, no TensorFlow): the converter says what to
install in one line, and `detect` looks for its default model in the current folder, never
inside site-packages.

The project is installed as a wheel into a folder of its own, beside the shared
environment's packages minus TensorFlow and Keras, and run with `python -S` so nothing
else is on the path."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig

import pytest

from conftest import CFG, ROOT, SAMPLES, WEIGHTS

HEAVY = ("tensorflow", "keras", "tf_keras", "tensorboard", "tf-keras")


@pytest.fixture(scope="module")
def runtime_env(tmp_path_factory):
    base = tmp_path_factory.mktemp("runtime-install")
    src, site, deps = base / "src", base / "site", base / "deps"
    src.mkdir()
    for name in ("yolo_tpu", "converters"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                        "--no-build-isolation", "--target", str(site), str(src)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    deps.mkdir()
    purelib = sysconfig.get_paths()["purelib"]
    for entry in os.listdir(purelib):
        if not entry.lower().startswith(HEAVY) and not entry.startswith(("yolo_tpu", "__editable__")):
            os.symlink(os.path.join(purelib, entry), deps / entry)
    env = {**os.environ, "PYTHONPATH": f"{site}{os.pathsep}{deps}"}
    work = base / "work"
    work.mkdir()
    return env, work, site


def run(env, cwd, *args):
    return subprocess.run([sys.executable, "-S", *args], capture_output=True, text=True,
                          env=env, cwd=cwd)


def test_install_has_no_tensorflow(runtime_env):
    env, work, site = runtime_env
    r = run(env, work, "-c", "import importlib.util as u, converters, yolo_tpu; "
            "print(u.find_spec('tensorflow'), converters.__file__)")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("None ") and str(site) in r.stdout


@pytest.mark.parametrize("module", ["converters", "converters.darknet", "converters.quantize"])
def test_converter_without_tensorflow_says_what_to_install(runtime_env, module):
    env, work, _ = runtime_env
    args = {"converters": [str(CFG), str(WEIGHTS)],
            "converters.darknet": [str(CFG), str(WEIGHTS), "-o", "x.keras"],
            "converters.quantize": ["x.keras", "-o", "x.tflite"]}[module]
    r = run(env, work, "-m", module, *args)
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith("error: the converter needs TensorFlow")
    assert "pip install '.[convert]'" in r.stderr
    assert not any(work.iterdir())


NOTICE = "yolo_tpu: compiling the detection kernels once for this install"


def test_detect_in_a_fresh_install(runtime_env, tiny_int8_model, tmp_path):
    """The default model is looked for in the current folder (a one-line error names it,
    never site-packages); the first run with it says it compiles numba's kernels, before
    the first detection so no reported time includes it, and the next run loads them."""
    env, work, _ = runtime_env
    env = {**env, "NUMBA_CACHE_DIR": str(tmp_path / "numba")}  # empty, as after an install
    args = ("-m", "yolo_tpu.detect", "--image", str(SAMPLES / "dog.jpg"))
    r = run(env, work, *args)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1, r.stderr
    assert "build/yolov3-tiny_int8.tflite" in r.stderr and str(work) in r.stderr
    assert "site-packages" not in r.stderr and "--model" in r.stderr
    (work / "build").mkdir()
    shutil.copy(tiny_int8_model, work / "build" / "yolov3-tiny_int8.tflite")
    first = run(env, work, *args)
    assert first.returncode == 0, first.stderr
    assert "dog" in first.stdout
    assert first.stderr.count(NOTICE) == 1, first.stderr
    assert first.stderr.index(NOTICE) < first.stderr.index("yolo_tpu: 1 image")
    second = run(env, work, *args)
    assert second.returncode == 0 and NOTICE not in second.stderr, second.stderr
    timing = re.compile(r"\([\d.]+ ms\)")
    assert timing.sub("", second.stdout) == timing.sub("", first.stdout)
    assert list((tmp_path / "numba").rglob("*.nbi"))  # the cache it loaded from
