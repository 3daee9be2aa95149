"""The runtime must run where only LiteRT is installed: no module of `yolo_tpu` may import
TensorFlow or Keras, not even while running a detection."""
from __future__ import annotations

import subprocess
import sys

from conftest import ROOT, SAMPLES

CODE = """
import importlib, pkgutil, sys
import cv2
import yolo_tpu
for m in pkgutil.walk_packages(yolo_tpu.__path__, "yolo_tpu."):
    importlib.import_module(m.name)
from yolo_tpu import Detector
dets = Detector(sys.argv[1], "cpu")(cv2.imread(sys.argv[2]))
assert len(dets) > 0
leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tf_keras"))
print("LEAKED", leaked)
"""


def test_runtime_imports_no_tensorflow(tiny_int8_model):
    r = subprocess.run([sys.executable, "-c", CODE, str(tiny_int8_model),
                        str(SAMPLES / "dog.jpg")], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert "LEAKED []" in r.stdout, r.stdout
