"""Workstation side of yolo_tpu: darknet cfg/weights -> Keras -> int8 TFLite -> Edge TPU check.

Needs TensorFlow (the `convert` extra); may import `yolo_tpu`, never the reverse.
"""
import os

# TensorFlow's C++ start-up chatter (oneDNN, CPU features) buries the converter's own output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def missing_tensorflow() -> str | None:
    """The one-line error for a runtime-only install (`pip install .`), or None.

    Checked by each converter CLI after its arguments parse, before any work: without it a
    user sees `No module named 'keras'` at the bottom of a traceback.
    """
    from importlib.util import find_spec
    missing = [m for m in ("tensorflow", "keras") if find_spec(m) is None]
    if not missing:
        return None
    return (f"the converter needs TensorFlow ({' and '.join(missing)} not installed: this is "
            "a runtime-only install); install the convert extra: pip install '.[convert]' "
            "from a clone, or pip install 'yolo_tpu[convert]'")
