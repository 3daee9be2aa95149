"""yolo_tpu: darknet YOLO models on the Google Coral Edge TPU (or the CPU), without TensorFlow.

    from yolo_tpu import Detector
    detections = Detector("build/yolov3-tiny_int8.tflite")(cv2.imread("samples/dog.jpg"))

The names below are imported on first use (PEP 562), so `import yolo_tpu.meta` (what the
converter needs) does not pay for numba, OpenCV and the interpreter.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> submodule that defines it
_EXPORTS = {
    "Detector": "detector",
    "Classifier": "classifier",
    "ModelError": "detector",
    "Detection": "detections",
    "Detections": "detections",
    "BackendError": "backends",
    "draw_detections": "draw",
}
__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ does the import
    from .backends import BackendError
    from .classifier import Classifier
    from .detections import Detection, Detections
    from .detector import Detector, ModelError
    from .draw import draw_detections


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'yolo_tpu' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
