"""A model's loading and first inference, tried once in a child process before this one.

LiteRT trusts the flatbuffer it is given: one byte changed in a model can make
`allocate_tensors` free memory twice (glibc aborts the process, exit 134), segfault, loop
for ever, or ask for more memory than the machine has (the OOM killer then ends the run),
and none of that can be caught in Python. So before the runtime loads a model into its
own process, a child process does exactly what the runtime will do (build the
interpreter on the asked-for device, allocate, one inference on zeros), the way
`yolo_tpu.doctor`'s trial does for the Edge TPU delegate, and a native crash becomes one
line naming the model. The child's address space is capped at the machine's RAM, so an
absurd allocation fails in the child instead of starting the OOM killer.

The verdict is remembered by the model file's SHA-256, the LiteRT build and the kind of
device, in `~/.cache/yolo_tpu/model_trials.json`: the cost (one Python start-up and one
inference, see README "Damaged models") is paid once per model, later runs only hash the
file (and not even that while its size and mtime are unchanged).

`YOLO_TPU_TRIAL_TIMEOUT` (seconds, default 120) bounds the child.
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .backends import BackendError, Device, make_interpreter, parse_device
from .edgetpu import runtime_identity, write_cache

DEFAULT_TIMEOUT = 120.0  # seconds: a Raspberry Pi's first inference of a big float model
_EXIT_BACKEND, _EXIT_MODEL = 3, 4  # exit codes of the child (a crash is a signal)
KEPT = ("ok", "crash", "error")  # verdicts that depend on the file alone


class ModelError(ValueError):
    """A model file the runtime cannot use: the message names the file and the problem."""


@dataclass(frozen=True)
class Verdict:
    verdict: str  # ok | crash | error (LiteRT refused it) | backend (device problem) | hang
    detail: str
    seconds: float = 0.0


def trial_timeout() -> float:
    try:
        return max(1.0, float(os.environ.get("YOLO_TPU_TRIAL_TIMEOUT", DEFAULT_TIMEOUT)))
    except ValueError:
        return DEFAULT_TIMEOUT


# --- the child ----------------------------------------------------------------------------


def _cap_memory() -> None:
    """Address space at most the machine's RAM: an absurd allocation fails here."""
    try:
        import resource
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard == resource.RLIM_INFINITY or hard > ram:
            resource.setrlimit(resource.RLIMIT_AS, (ram, hard if hard != resource.RLIM_INFINITY
                                                    else resource.RLIM_INFINITY))
    except (ImportError, ValueError, OSError):
        pass


def _child(model: str, device: str, compiled: bool) -> int:
    """In the child: load, allocate and invoke once; exit 0, or 3/4 with one line on stderr."""
    _cap_memory()
    import numpy as np
    try:
        interpreter, _ = make_interpreter(model, device, compiled, threads=1)
    except BackendError as e:
        print(" ".join(str(e).split()), file=sys.stderr)
        return _EXIT_BACKEND
    except (ValueError, RuntimeError, MemoryError) as e:
        print(" ".join(str(e).split()) or type(e).__name__, file=sys.stderr)
        return _EXIT_MODEL
    try:
        for inp in interpreter.get_input_details():
            interpreter.set_tensor(inp["index"], np.zeros(inp["shape"], inp["dtype"]))
        interpreter.invoke()
    except (ValueError, RuntimeError, MemoryError) as e:
        print("the first inference failed: " + (" ".join(str(e).split()) or type(e).__name__),
              file=sys.stderr)
        return _EXIT_MODEL
    print("loaded, one inference ran")
    return 0


def _native_hint(stderr: str) -> str:
    """glibc's or LiteRT's last words before the crash, if any (e.g. 'double free')."""
    lines = [l.strip() for l in stderr.splitlines() if l.strip()
             and not l.startswith("INFO: Created TensorFlow Lite")]
    return f": {lines[-1][:160]}" if lines else ""


def device_text(device: Device) -> str:
    """The --device text `parse_device` reads back as `device`."""
    where = device.delegate_device
    if not where:
        return device.kind
    return f"tpu{where}" if where.startswith(":") else where


def run_trial(model: str, device: Device, compiled: bool) -> Verdict:
    """Load `model` on `device` and invoke it once, in a child process."""
    cmd = [sys.executable, "-m", "yolo_tpu.model_trial", model, device_text(device),
           str(int(compiled))]
    timeout = trial_timeout()
    started = time.monotonic()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace",
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return Verdict("hang", f"loading it and one inference did not finish in {timeout:g} s",
                       time.monotonic() - started)
    took = time.monotonic() - started
    last = (proc.stderr.strip().splitlines() or [""])[-1].strip()
    if proc.returncode < 0:
        try:
            name = signal.Signals(-proc.returncode).name
        except ValueError:
            name = f"signal {-proc.returncode}"
        return Verdict("crash", f"{name}{_native_hint(proc.stderr)}", took)
    if proc.returncode == 0:
        return Verdict("ok", "", took)
    if proc.returncode == _EXIT_BACKEND:
        return Verdict("backend", last, took)
    return Verdict("error", last or f"exit status {proc.returncode}", took)


# --- the verdict cache --------------------------------------------------------------------


def cache_file() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "yolo_tpu" / "model_trials.json"


def _read_cache() -> dict:
    try:
        data = json.loads(cache_file().read_text())
    except (OSError, ValueError, RecursionError):
        return {"files": {}, "verdicts": {}}
    if not isinstance(data, dict):
        data = {}
    for part in ("files", "verdicts"):
        if not isinstance(data.get(part), dict):
            data[part] = {}
    return data


def _write_cache(data: dict) -> None:
    write_cache(cache_file(), data)


def file_sha256(path: str, cache: dict) -> str:
    """The file's SHA-256, memoised by (path, size, mtime) in `cache['files']`."""
    st = os.stat(path)
    ident = f"{os.path.realpath(path)}:{st.st_size}:{st.st_mtime_ns}"
    known = cache["files"].get(ident)
    if isinstance(known, str):
        return known
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    cache["files"][ident] = digest.hexdigest()
    return cache["files"][ident]


def trial_key(sha: str, device: Device) -> str:
    runtime = runtime_identity()
    return f"{sha}|{runtime['flavour']} {runtime['version']}|{device.kind}"


def checked(model: str, device: Device, compiled: bool) -> Verdict:
    """The verdict for this model file on this kind of device: remembered, or tried now."""
    cache = _read_cache()
    try:
        key = trial_key(file_sha256(model, cache), device)
    except OSError as e:
        raise ModelError(f"{model}: cannot read model: {e.strerror or e}") from None
    known = cache["verdicts"].get(key)
    if isinstance(known, dict) and known.get("verdict") in KEPT:
        return Verdict(known["verdict"], str(known.get("detail", "")))
    verdict = run_trial(model, device, compiled)
    if verdict.verdict in KEPT:
        cache["verdicts"][key] = {"verdict": verdict.verdict, "detail": verdict.detail,
                                  "seconds": round(verdict.seconds, 2), "model": model,
                                  "when": time.strftime("%Y-%m-%dT%H:%M:%S")}
    _write_cache(cache)
    return verdict


def refusal(model: str, verdict: Verdict) -> ModelError | None:
    """The one-line error for a model that failed its trial, or None."""
    if verdict.verdict == "crash":
        return ModelError(f"{model}: the TFLite runtime crashes loading or running this model "
                          f"({verdict.detail}); the file is damaged or was not written by a "
                          "TFLite converter: convert or copy it again")
    if verdict.verdict == "hang":
        return ModelError(f"{model}: {verdict.detail} (a damaged model, or set "
                          "YOLO_TPU_TRIAL_TIMEOUT higher for a slow machine)")
    if verdict.verdict == "error":
        return ModelError(f"{model}: the TFLite runtime cannot load or run it: {verdict.detail}")
    return None


def supervised_tpu() -> bool:
    """Edge TPU interpreters run in a child process (`supervised`) where memfd exists."""
    return hasattr(os, "memfd_create") and os.environ.get("YOLO_TPU_SUPERVISE", "1") != "0"


def load_interpreter(model_path: str, device: str | Device = "auto", compiled: bool = False,
                     threads: int | None = None):
    """`backends.make_interpreter`, after the model passed its trial in a child process
    (an Edge TPU one supervised in a child of its own); LiteRT's own errors
    (allocate_tensors, RuntimeError) become ModelError."""
    dev = parse_device(device) if isinstance(device, str) else device
    if not (dev.kind == "cpu" and compiled):  # that one is refused without loading anything
        tried = Device("tpu" if dev.kind == "tpu" or (dev.kind == "auto" and compiled)
                       else "cpu", dev.delegate_device)
        if problem := refusal(model_path, checked(model_path, tried, compiled)):
            raise problem
    try:
        if (dev.kind == "tpu" or (dev.kind == "auto" and compiled)) and supervised_tpu():
            from .supervised import SupervisedInterpreter  # a TPU that stops: see there
            interpreter = SupervisedInterpreter(model_path, dev, compiled)
            return interpreter, interpreter.label
        return make_interpreter(model_path, dev, compiled, threads)
    except RuntimeError as e:
        if isinstance(e, BackendError):
            raise
        raise ModelError(f"{model_path}: the TFLite runtime cannot load it: "
                         f"{' '.join(str(e).split())}") from None


if __name__ == "__main__":
    if len(sys.argv) != 4:
        print("usage: python -m yolo_tpu.model_trial MODEL DEVICE COMPILED(0|1)", file=sys.stderr)
        sys.exit(2)
    sys.exit(_child(sys.argv[1], sys.argv[2], sys.argv[3] == "1"))


def model_summary(path: str) -> tuple[dict[str, bytes], bool]:
    """The model's metadata entries and whether edgetpu_compiler compiled it (read from
    the flatbuffer, no interpreter); a file that is missing or not TFLite is a ModelError
    naming it."""
    from .tflite_file import EDGETPU_CUSTOM_CODE, NotTfliteError, read_summary
    try:
        metadata, custom_codes = read_summary(path)
    except OSError as e:
        raise ModelError(f"{path}: cannot read model: {e.strerror or e}") from None
    except NotTfliteError as e:
        raise ModelError(f"{path}: not a TFLite model ({e})") from None
    return metadata, EDGETPU_CUSTOM_CODE in custom_codes
