"""An Edge TPU interpreter in a child process, so a TPU that stops does not stop the run.

A USB Coral can stop mid-run ("USB transfer error", or an invoke that never returns:
frigate#7764, #6623, #8552), most often from power on a Raspberry Pi. A hung C call cannot
be interrupted in Python, so the interpreter lives in a child process: the input and output
tensors are in shared memory (a memfd the child maps and hands over, so a frame is never
pickled), and the parent sends one byte per invoke over a socket and waits with a bound.

A fault is an invoke that raises (the child reports it), one that does not return within
`max(floor, 20 x the median of the last 50 invokes)` (`floor`: YOLO_TPU_INVOKE_TIMEOUT,
default 1 s; the first invoke of a run gets FIRST_INVOKE_S), or a child that dies. Then the
child is killed, the interpreter rebuilt in a new child and the frame retried; after
`K` failures in a row (YOLO_TPU_INVOKE_RETRIES, default 3) `DeviceStopped` ends the run with
one line naming the likely cause.

`SupervisedInterpreter` has the methods the runtime uses of a LiteRT interpreter
(`get_input_details`, `get_output_details`, `set_tensor`, `invoke`, `get_tensor`,
`allocate_tensors`), plus `retried` (the retries the last invoke needed) and `close()`.
"""
from __future__ import annotations

import logging
import mmap
import os
import pickle
import select
import signal
import socket
import statistics
import struct
import subprocess
import sys
import time
from collections import deque
from typing import Any

import numpy as np

from .backends import BackendError, Device, NoDeviceError

log = logging.getLogger("yolo_tpu")
FIRST_INVOKE_S = 60.0   # the first invoke of a run: libedgetpu uploads the model first
START_S = 120.0         # building the interpreter (the first USB use loads the firmware)
HISTORY = 50            # invoke times the bound is derived from
BOUND_FACTOR = 20.0
CAUSE = ("the Edge TPU stopped answering; on USB this is most often power (on a Raspberry "
         "Pi use a powered USB hub), then the cable or the hub: plug it straight into a USB3 "
         "port with a short cable; `python -m yolo_tpu.doctor` checks the device")
_ERRORS = {"NoDeviceError": NoDeviceError, "BackendError": BackendError,
           "ValueError": ValueError}


class DeviceStopped(BackendError):
    """The Edge TPU failed K invokes in a row, each after a rebuilt interpreter."""


class _Fault(Exception):
    """One failed invoke or start: the message says how (error, no answer, crash)."""


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


def invoke_floor() -> float:
    """The shortest bound on an invoke, seconds (YOLO_TPU_INVOKE_TIMEOUT, default 1)."""
    return max(0.01, _env_float("YOLO_TPU_INVOKE_TIMEOUT", 1.0))


def retries_allowed() -> int:
    """K: failures in a row before the run ends (YOLO_TPU_INVOKE_RETRIES, default 3)."""
    return max(1, int(_env_float("YOLO_TPU_INVOKE_RETRIES", 3)))


# --- messages on the socket: 4-byte length + pickle (start-up only), or one byte --------


def _send_obj(sock: socket.socket, obj: Any, fds: list[int] = ()) -> None:
    data = pickle.dumps(obj)
    head = struct.pack("<I", len(data))
    if fds:
        socket.send_fds(sock, [head], list(fds))
    else:
        sock.sendall(head)
    sock.sendall(data)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    chunks = []
    while n:
        chunk = sock.recv(n)
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _recv_obj(sock: socket.socket) -> tuple[Any, list[int]]:
    head, fds, _, _ = socket.recv_fds(sock, 4, 1)
    if not head:
        raise EOFError
    head += _recv_exact(sock, 4 - len(head))
    (size,) = struct.unpack("<I", head)
    return pickle.loads(_recv_exact(sock, size)), fds


def _layout(details: list[dict]) -> dict[int, tuple[int, tuple, str]]:
    """tensor index -> (offset, shape, dtype) in the shared block, 64-byte aligned."""
    offset, table = 0, {}
    for d in details:
        dtype = np.dtype(d["dtype"])
        table[int(d["index"])] = (offset, tuple(int(x) for x in d["shape"]), dtype.str)
        offset += -(-int(np.prod(d["shape"])) * dtype.itemsize // 64) * 64
    return table


def _views(block: mmap.mmap, layout: dict) -> dict[int, np.ndarray]:
    return {i: np.ndarray(shape, np.dtype(dt), buffer=block, offset=off)
            for i, (off, shape, dt) in layout.items()}


# --- the child --------------------------------------------------------------------------


def _follow_parent() -> None:
    """Ctrl-C is the parent's to handle; the child dies with the parent (Linux prctl)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        import ctypes
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _child(fd: int, model: str, device: str, compiled: bool) -> int:
    """Build the interpreter, hand over the shared block, then invoke on each b"i"."""
    from .backends import make_interpreter, parse_device
    _follow_parent()
    sock = socket.socket(fileno=fd)
    try:
        interpreter, label = make_interpreter(model, parse_device(device), compiled)
    except Exception as e:  # noqa: BLE001 - reported to the parent, raised there
        _send_obj(sock, {"error": (type(e).__name__, " ".join(str(e).split()))})
        return 3
    inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
    layout = _layout(inputs + outputs)
    size = max(64, sum(-(-int(np.prod(s)) * np.dtype(t).itemsize // 64) * 64
                       for _, s, t in layout.values()))
    mfd = os.memfd_create("yolo_tpu-tensors")
    os.ftruncate(mfd, size)
    block = mmap.mmap(mfd, size)
    views = _views(block, layout)
    _send_obj(sock, {"label": label, "inputs": inputs, "outputs": outputs, "layout": layout,
                     "size": size}, [mfd])
    in_idx = [int(d["index"]) for d in inputs]
    out_idx = [int(d["index"]) for d in outputs]
    while True:
        try:
            op = sock.recv(1)
        except OSError:
            return 0
        if op != b"i":
            return 0
        try:
            for i in in_idx:
                interpreter.set_tensor(i, views[i])
            interpreter.invoke()
            for i in out_idx:
                np.copyto(views[i], interpreter.tensor(i)())
        except Exception as e:  # noqa: BLE001 - LiteRT's RuntimeError: reported, not raised
            message = " ".join(str(e).split()).encode()[:4000]
            sock.sendall(b"e" + struct.pack("<I", len(message)) + message)
            continue
        sock.sendall(b"k")


# --- the parent -------------------------------------------------------------------------


def _device_text(device: Device) -> str:
    where = device.delegate_device
    if not where:
        return device.kind
    return f"tpu{where}" if where.startswith(":") else where


class SupervisedInterpreter:
    """The Edge TPU interpreter of `model` on `device`, run in a child process (see above)."""

    def __init__(self, model: str, device: Device, compiled: bool = True):
        self.model, self.device, self.compiled = model, device, compiled
        self.retried = 0
        self.rebuilds = 0
        self._times: deque[float] = deque(maxlen=HISTORY)
        self._proc: subprocess.Popen | None = None
        self._sock: socket.socket | None = None
        self._block: mmap.mmap | None = None
        self._views: dict[int, np.ndarray] = {}
        try:
            self._start()
        except _Fault as e:  # the first start: no device yet is the user's problem to fix
            self._stop_child()
            raise BackendError(f"the Edge TPU interpreter for {model} could not start: {e}") \
                from None

    # the LiteRT interpreter's methods the runtime uses
    def allocate_tensors(self) -> None:
        """Done in the child (kept for the interpreter's interface)."""

    def get_input_details(self) -> list[dict]:
        return self._inputs

    def get_output_details(self) -> list[dict]:
        return self._outputs

    def set_tensor(self, index: int, value: np.ndarray) -> None:
        np.copyto(self._views[index], value, casting="no")

    def get_tensor(self, index: int) -> np.ndarray:
        return self._views[index].copy()

    def invoke(self) -> None:
        """One invoke; on a fault rebuild the child and retry (`retried` counts them),
        DeviceStopped after K faults in a row."""
        self.retried = 0
        while True:
            try:
                if self._proc is None:
                    self._restart()
                started = time.perf_counter()
                self._invoke_once(self.bound())
                self._times.append(time.perf_counter() - started)
                return
            except _Fault as e:
                self._stop_child()
                self.retried += 1
                if self.retried >= retries_allowed():
                    raise DeviceStopped(f"{self.label}: {self.retried} invokes in a row failed "
                                        f"(last: {e}); {CAUSE}") from None
                log.warning("%s: invoke failed (%s); rebuilding the interpreter and retrying "
                            "the frame", self.label, e)

    def bound(self) -> float:
        """Seconds an invoke may take before it counts as hung."""
        if not self._times:
            return max(invoke_floor(), _env_float("YOLO_TPU_FIRST_INVOKE_TIMEOUT",
                                                  FIRST_INVOKE_S))
        return max(invoke_floor(), BOUND_FACTOR * statistics.median(self._times))

    def close(self) -> None:
        """End the child (it also ends by itself when this process goes)."""
        self._stop_child()

    def __del__(self) -> None:
        try:
            self._stop_child()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    # the child's life
    def _restart(self) -> None:
        """`_start` after a fault: any failure to build is one more fault."""
        try:
            self._start()
        except (BackendError, ValueError, RuntimeError) as e:
            raise _Fault(f"rebuilding the interpreter failed: {e}") from None

    def _start(self) -> None:
        """A new child with the interpreter built; its shared block mapped here."""
        ours, theirs = socket.socketpair()
        cmd = [sys.executable, "-m", "yolo_tpu.supervised", str(theirs.fileno()), self.model,
               _device_text(self.device), str(int(self.compiled))]
        # its stdout goes to stderr: `--json -` keeps stdout to the JSON lines
        self._proc = subprocess.Popen(cmd, pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL,
                                      stdout=2)
        theirs.close()
        self._sock = ours
        if not select.select([ours], [], [], _env_float("YOLO_TPU_START_TIMEOUT", START_S))[0]:
            raise _Fault("building the interpreter did not finish")
        try:
            header, fds = _recv_obj(ours)
        except (EOFError, OSError, pickle.UnpicklingError):
            raise _Fault(self._death("building the interpreter")) from None
        if "error" in header:
            kind, message = header["error"]
            self._stop_child()
            raise _ERRORS.get(kind, RuntimeError)(message)
        block = mmap.mmap(fds[0], header["size"])
        os.close(fds[0])
        views = _views(block, header["layout"])
        if self._views:  # a rebuild: the frame's inputs move to the new block
            for d in header["inputs"]:
                np.copyto(views[d["index"]], self._views[d["index"]])
            self.rebuilds += 1
        self._block, self._views = block, views
        self._inputs, self._outputs = header["inputs"], header["outputs"]
        self.label = header["label"]

    def _invoke_once(self, bound: float) -> None:
        sock = self._sock
        try:
            sock.sendall(b"i")
        except OSError:
            raise _Fault(self._death("invoke")) from None
        if not select.select([sock], [], [], bound)[0]:
            raise _Fault(f"no answer in {bound:.2f} s")
        try:
            answer = sock.recv(1)
            if answer == b"k":
                return
            if answer == b"e":
                (size,) = struct.unpack("<I", _recv_exact(sock, 4))
                raise _Fault(_recv_exact(sock, size).decode(errors="replace"))
        except (EOFError, OSError):
            pass
        raise _Fault(self._death("invoke"))

    def _death(self, during: str) -> str:
        """How the child ended (a signal is a crash), waiting briefly for it to exit."""
        try:
            code = self._proc.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            return f"the interpreter process stopped answering during {during}"
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return f"the interpreter process was killed by {name} during {during}"
        return f"the interpreter process exited with status {code} during {during}"

    def _stop_child(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.wait()
            self._proc = None


if __name__ == "__main__":
    if len(sys.argv) != 5:
        print("usage: python -m yolo_tpu.supervised FD MODEL DEVICE COMPILED(0|1)",
              file=sys.stderr)
        sys.exit(2)
    sys.exit(_child(int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4] == "1"))
