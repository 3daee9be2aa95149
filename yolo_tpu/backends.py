"""Interpreter backends: the Edge TPU through its delegate, or LiteRT on the CPU.

Import order is the user's install, best first: Google's pycoral (from Coral's package
repository; the PyPI project of that name is unrelated), then `ai_edge_litert` (LiteRT,
the maintained successor of tflite-runtime), then `tflite_runtime`, and only as a last
resort `tensorflow.lite`. Nothing here imports TensorFlow unless nothing else is installed.
"""
from __future__ import annotations

import ctypes
import logging
import os
import re
from dataclasses import dataclass

from .native_log import native_stderr_captured

log = logging.getLogger("yolo_tpu")

EDGETPU_LIB = "libedgetpu.so.1"
INSTALL_LIBEDGETPU = ("install the Edge TPU runtime (libedgetpu1-std from Coral's apt "
                      "repository, https://coral.ai/software/#debian-packages) and plug in "
                      "the accelerator")


def library_name() -> str:
    """libedgetpu to load: $YOLO_TPU_EDGETPU_LIB (a path) or libedgetpu.so.1."""
    return os.environ.get("YOLO_TPU_EDGETPU_LIB") or EDGETPU_LIB


class BackendError(RuntimeError):
    """The asked-for device cannot run this model: the message says what is missing."""


@dataclass(frozen=True)
class Device:
    kind: str  # "auto", "cpu" or "tpu"
    delegate_device: str | None = None  # libedgetpu's 'device' option: "usb:0", "pci", ":1"

    @property
    def label(self) -> str:
        return self.kind if not self.delegate_device else f"tpu ({self.delegate_device})"


def parse_device(text: str) -> Device:
    """auto | cpu | tpu | tpu:N | usb | usb:N | pci | pci:N."""
    m = re.fullmatch(r"(auto|cpu|tpu|usb|pci)(?::(\d+))?", text.strip().lower())
    if not m or (m.group(2) and m.group(1) in ("auto", "cpu")):
        raise ValueError(f"device must be auto, cpu, tpu, tpu:N, usb, usb:N, pci or pci:N; "
                         f"got {text!r}")
    kind, index = m.groups()
    if kind in ("auto", "cpu"):
        return Device(kind)
    if kind == "tpu":
        return Device("tpu", f":{index}" if index else None)
    return Device("tpu", f"{kind}:{index}" if index else kind)


def _interpreter_module():
    """(Interpreter, load_delegate, name) from the best installed LiteRT flavour."""
    try:
        from ai_edge_litert.interpreter import Interpreter, load_delegate
        return Interpreter, load_delegate, "ai_edge_litert"
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter, load_delegate
        return Interpreter, load_delegate, "tflite_runtime"
    except ImportError:
        pass
    try:
        import tensorflow as tf  # last resort: a workstation with only TensorFlow
        return tf.lite.Interpreter, tf.lite.experimental.load_delegate, "tensorflow.lite"
    except ImportError:
        raise BackendError("no TFLite interpreter installed: pip install ai-edge-litert") from None


def _pycoral_make_interpreter():
    """Google's pycoral `make_interpreter`, or None (absent, or the unrelated PyPI package)."""
    try:
        from pycoral.utils.edgetpu import make_interpreter
        return make_interpreter
    except ImportError:
        return None


class NoDeviceError(BackendError):
    """libedgetpu loaded, but no Edge TPU matching the device string answered."""


def _no_device_message(where: str) -> str:
    """Which Edge TPUs libedgetpu lists (asked through its C API), for the error line."""
    from .edgetpu import probe_library
    try:
        listed = probe_library().devices
    except OSError:
        listed = ()
    if not listed:
        from .hardware import first_error
        seen = first_error()  # what sysfs says, e.g. no Coral plugged in, a node we may not open
        return (f"no Edge TPU ({where}) answered: libedgetpu lists none"
                f"{f' ({seen}; python -m yolo_tpu.doctor gives the fix)' if seen else ''}; "
                f"{INSTALL_LIBEDGETPU}")
    names = ", ".join(f"{kind} {path}" for kind, path in listed)
    return (f"no Edge TPU ({where}) answered: libedgetpu lists {len(listed)} ({names}); "
            f"use --device usb, usb:N, pci, pci:N or tpu:N among those, or check that no "
            f"other process holds it")


def tpu_interpreter_unchecked(model_path: str, device: Device):
    """The Edge TPU interpreter, loaded in this process without the crash trial."""
    make = _pycoral_make_interpreter()
    if make is not None:
        try:
            return make(model_path, device=device.delegate_device), "pycoral"
        except ValueError:
            raise NoDeviceError(_no_device_message(device.delegate_device or "any")) from None
    Interpreter, load_delegate, name = _interpreter_module()
    options = {"device": device.delegate_device} if device.delegate_device else {}
    try:
        # Load the library ourselves first: when it is missing, LiteRT's load_delegate
        # fails half-way and its Delegate.__del__ then prints a stray traceback.
        ctypes.CDLL(library_name())
    except OSError:
        raise BackendError(f"{library_name()} not found; {INSTALL_LIBEDGETPU}") from None
    try:
        delegate = load_delegate(library_name(), options)
    except (ValueError, OSError, RuntimeError):
        # libedgetpu's plugin refuses without a message when no device matches
        raise NoDeviceError(_no_device_message(device.delegate_device or "any")) from None
    return Interpreter(model_path=model_path, experimental_delegates=[delegate]), name


def _tpu_interpreter(model_path: str, device: Device):
    """The Edge TPU interpreter, after a child process has shown this library pair works."""
    from .edgetpu import checked_pair, crash_message, loaded_path, runtime_identity
    lib = library_name()
    try:
        lib_path = loaded_path(ctypes.CDLL(lib))
    except (OSError, AttributeError):
        raise BackendError(f"{lib} not found; {INSTALL_LIBEDGETPU}") from None
    trial = checked_pair(lib_path, model_path, device.delegate_device)
    if trial.verdict == "crash":  # nothing more of the library is called in this process
        raise BackendError(crash_message(lib_path, runtime_identity(), trial.detail))
    if trial.verdict == "no_device":
        raise NoDeviceError(trial.detail)
    if trial.verdict != "ok":
        raise BackendError(f"the Edge TPU delegate failed in a trial run: {trial.detail}")
    return tpu_interpreter_unchecked(model_path, device)


def _cpu_interpreter(model_path: str, threads: int | None = None):
    Interpreter, _, name = _interpreter_module()
    return Interpreter(model_path=model_path, num_threads=threads or os.cpu_count() or 1), name


def make_interpreter(model_path: str, device: str | Device = "auto", compiled: bool = False,
                     threads: int | None = None):
    """An allocated interpreter for `model_path` on `device`, and a one-line description.

    `compiled` says the model holds the `edgetpu-custom-op` (edgetpu_compiler's output):
    such a model cannot run without a TPU, and `auto` prefers the TPU for it. `threads`:
    CPU threads (default: every core; a pipeline of N segments gives each a share).
    """
    dev = parse_device(device) if isinstance(device, str) else device
    if dev.kind == "cpu" and compiled:
        raise BackendError(f"{model_path} is compiled for the Edge TPU and cannot run on the "
                           "CPU; use the model before edgetpu_compiler, or --device tpu")
    if dev.kind == "tpu" or (dev.kind == "auto" and compiled):
        try:
            interpreter, name = _tpu_interpreter(model_path, dev)
        except BackendError as e:
            if compiled:
                raise type(e)(f"{model_path} is compiled for the Edge TPU, but {e}") from None
            raise
        label = f"Edge TPU {dev.delegate_device or ''}".strip() + f" via {name}"
    else:
        threads = threads or os.cpu_count() or 1
        interpreter, name = _cpu_interpreter(model_path, threads)
        label = f"CPU via {name}, {threads} thread{'s' * (threads != 1)}"
        with native_stderr_captured():  # LiteRT's "INFO: Created ... XNNPACK delegate" line
            interpreter.allocate_tensors()
        return interpreter, label
    interpreter.allocate_tensors()  # the TPU's messages stay visible: they may explain a crash
    return interpreter, label
