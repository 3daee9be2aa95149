"""Interpreter backends: the Edge TPU through its delegate, or LiteRT on the CPU.

The one call the runtime makes (`make_interpreter`): for the Edge TPU, the delegate's crash
trial first (edgetpu), then the interpreter (interpreters, which says which LiteRT flavour is
used). Nothing here imports TensorFlow unless nothing else is installed.
"""
from __future__ import annotations

import ctypes
import logging
import os

from .edgetpu import checked_pair, crash_message
from .interpreters import (  # noqa: F401 (the backend's public names, re-exported)
    INSTALL_LIBEDGETPU,
    BackendError,
    Device,
    NoDeviceError,
    interpreter_module,
    library_name,
    loaded_path,
    parse_device,
    runtime_identity,
    tpu_interpreter_unchecked,
)
from .native_log import native_stderr_captured

log = logging.getLogger("yolo_tpu")


def _tpu_interpreter(model_path: str, device: Device):
    """The Edge TPU interpreter, after a child process has shown this library pair works."""
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
    Interpreter, _, name = interpreter_module()
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
