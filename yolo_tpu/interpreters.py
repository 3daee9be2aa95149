"""Loading a TFLite interpreter, on the CPU or through libedgetpu, and asking libedgetpu
what it is: the bottom of the runtime's interpreter stack, imported by edgetpu (the trial in a
child process) and backends (the trial first, then the interpreter), importing neither.

Import order is the user's install, best first: Google's pycoral (from Coral's package
repository; the PyPI project of that name is unrelated), then `ai_edge_litert` (LiteRT,
the maintained successor of tflite-runtime), then `tflite_runtime`, and only as a last
resort `tensorflow.lite`. Nothing here imports TensorFlow unless nothing else is installed.
"""
from __future__ import annotations

import ctypes
import os
import re
import sys
from dataclasses import dataclass

DEVICE_TYPES = {0: "pci", 1: "usb"}  # libedgetpu's enum edgetpu_device_type

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


def interpreter_module():
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
    Interpreter, load_delegate, name = interpreter_module()
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


class _DlInfo(ctypes.Structure):
    _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p),
                ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p)]


def loaded_path(lib: ctypes.CDLL, symbol: str = "tflite_plugin_create_delegate") -> str:
    """The file a loaded library came from (dladdr on one of its symbols)."""
    try:
        dladdr = ctypes.CDLL(None).dladdr
    except AttributeError:  # glibc < 2.34 keeps dladdr in libdl
        dladdr = ctypes.CDLL("libdl.so.2").dladdr
    dladdr.argtypes = [ctypes.c_void_p, ctypes.POINTER(_DlInfo)]
    info = _DlInfo()
    address = ctypes.cast(getattr(lib, symbol), ctypes.c_void_p)
    if dladdr(address, ctypes.byref(info)) and info.dli_fname:
        return os.path.realpath(info.dli_fname.decode())
    return lib._name


@dataclass(frozen=True)
class LibraryInfo:
    path: str
    version: str | None
    devices: tuple[tuple[str, str], ...]  # (usb|pci, path) in enumeration order


def probe_library(name: str | None = None) -> LibraryInfo:
    """Load libedgetpu in this process and ask its C API. OSError if it cannot be loaded."""
    lib = ctypes.CDLL(name or library_name())
    version = None
    if hasattr(lib, "edgetpu_version"):
        lib.edgetpu_version.restype = ctypes.c_char_p
        raw = lib.edgetpu_version()
        version = raw.decode(errors="replace") if raw else None
    devices: list[tuple[str, str]] = []
    if hasattr(lib, "edgetpu_list_devices"):

        class Device(ctypes.Structure):
            _fields_ = [("type", ctypes.c_int), ("path", ctypes.c_char_p)]

        lib.edgetpu_list_devices.restype = ctypes.POINTER(Device)
        lib.edgetpu_list_devices.argtypes = [ctypes.POINTER(ctypes.c_size_t)]
        count = ctypes.c_size_t(0)
        listed = lib.edgetpu_list_devices(ctypes.byref(count))
        for i in range(count.value):
            devices.append((DEVICE_TYPES.get(listed[i].type, str(listed[i].type)),
                            (listed[i].path or b"").decode(errors="replace")))
        if listed and hasattr(lib, "edgetpu_free_devices"):
            lib.edgetpu_free_devices.argtypes = [ctypes.POINTER(Device)]
            lib.edgetpu_free_devices(listed)
    return LibraryInfo(loaded_path(lib), version, tuple(devices))


def runtime_identity() -> dict:
    """The LiteRT build the delegate would be loaded into: flavour, version, its file."""
    Interpreter, _, flavour = interpreter_module()
    module = sys.modules.get(Interpreter.__module__)
    version = "?"
    top = sys.modules.get(flavour.split(".")[0])
    for source in (module, top):
        version = getattr(source, "__version__", None) or version
    if version == "?":
        try:
            from importlib.metadata import version as dist_version
            version = dist_version({"ai_edge_litert": "ai-edge-litert",
                                    "tflite_runtime": "tflite-runtime"}.get(flavour, flavour))
        except Exception:
            pass
    return {"flavour": flavour, "version": str(version),
            "file": os.path.realpath(getattr(module, "__file__", "") or "")}
