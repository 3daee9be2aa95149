"""libedgetpu from Python: where it is, its version and devices, and a trial run in a child.

Coral's libedgetpu 16.0 was built against TensorFlow Lite 2.5; loaded into a much newer
TFLite runtime it is reported to segfault (google-coral/edgetpu issue #812), and a segfault
cannot be caught in Python. So before the runtime loads the delegate into its own process,
a child process loads it, builds the interpreter and runs one inference; the verdict for
that library pair (this libedgetpu file, this LiteRT build) is remembered in
`~/.cache/yolo_tpu/delegate_trials.json`, so a known-bad pair is refused at once with the
fix, and a good pair costs nothing after the first time.

libedgetpu's C API (edgetpu_c.h): `edgetpu_version()` -> const char*,
`edgetpu_list_devices(size_t*)` -> struct edgetpu_device {enum type; const char* path}[],
`edgetpu_free_devices(struct edgetpu_device*)`; type 0 = PCIe, 1 = USB.

`YOLO_TPU_EDGETPU_LIB` names another libedgetpu (a path) instead of `libedgetpu.so.1`.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .interpreters import (  # noqa: F401 (the probe's names, re-exported for doctor)
    LibraryInfo,
    library_name,
    probe_library,
    runtime_identity,
)

ENV_LIB = "YOLO_TPU_EDGETPU_LIB"
TRIAL_TIMEOUT = 120.0  # seconds: the first USB use uploads the TPU's firmware
# Exit codes of the trial child (a crash is a signal, not a code).
_EXIT_NO_DEVICE, _EXIT_ERROR = 3, 4
FIX_CRASH = ("Coral's libedgetpu 16 was built against TensorFlow Lite 2.5: run it with the "
             "runtime built for it (tflite-runtime 2.5.0.post1 from Coral's pycoral releases, "
             "Python <= 3.9), or install a libedgetpu built for your LiteRT version (see "
             "google-coral/edgetpu issue #812); until then use --device cpu with the "
             "uncompiled model")


# --- the trial ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Trial:
    verdict: str  # "ok", "crash", "no_device", "error"
    detail: str
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.verdict == "ok"


def run_trial(model: str, device: str | None, lib: str | None = None) -> Trial:
    """Load the delegate, build the interpreter and invoke once, in a child process."""
    cmd = [sys.executable, "-m", "yolo_tpu.edgetpu", "trial", model, device or ""]
    env = dict(os.environ)
    if lib:
        env[ENV_LIB] = lib
    started = time.monotonic()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env,
                              timeout=TRIAL_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        return Trial("error", f"the trial did not finish in {TRIAL_TIMEOUT:.0f} s",
                     time.monotonic() - started)
    took = time.monotonic() - started
    last = (proc.stderr.strip().splitlines() or [""])[-1]
    if proc.returncode < 0:
        try:
            name = signal.Signals(-proc.returncode).name
        except ValueError:
            name = f"signal {-proc.returncode}"
        return Trial("crash", f"the trial process was killed by {name}", took)
    if proc.returncode == 0:
        return Trial("ok", proc.stdout.strip() or "one inference ran", took)
    if proc.returncode == _EXIT_NO_DEVICE:
        return Trial("no_device", last, took)
    return Trial("error", last or f"exit status {proc.returncode}", took)


def _trial_child(model: str, device: str) -> int:
    """In the child: what the runtime does, once. Exit 0, or 3/4 with one line on stderr."""
    import numpy as np

    from .interpreters import BackendError, NoDeviceError, parse_device, tpu_interpreter_unchecked
    try:
        dev = parse_device(f"tpu{device}" if device.startswith(":") else (device or "tpu"))
        interpreter, _ = tpu_interpreter_unchecked(model, dev)
        interpreter.allocate_tensors()
        for inp in interpreter.get_input_details():
            interpreter.set_tensor(inp["index"], np.zeros(inp["shape"], inp["dtype"]))
        interpreter.invoke()
    except NoDeviceError as e:
        print(str(e), file=sys.stderr)
        return _EXIT_NO_DEVICE
    except (BackendError, ValueError, RuntimeError, OSError) as e:
        print(" ".join(str(e).split()), file=sys.stderr)
        return _EXIT_ERROR
    print("delegate loaded, one inference ran")
    return 0


# --- the verdict cache --------------------------------------------------------------------


def cache_file() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "yolo_tpu" / "delegate_trials.json"


def pair_key(lib_path: str, runtime: dict) -> str:
    """One library pair: this libedgetpu file and this LiteRT build (path, size, mtime)."""
    def ident(path: str) -> str:
        try:
            st = os.stat(path)
            return f"{path}:{st.st_size}:{st.st_mtime_ns}"
        except OSError:
            return path
    return f"{ident(lib_path)}|{runtime['flavour']} {runtime['version']}|{ident(runtime['file'])}"


def read_verdicts() -> dict:
    try:
        data = json.loads(cache_file().read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def remember(key: str, trial: Trial, lib: LibraryInfo | None, runtime: dict) -> None:
    """Keep an ok or crash verdict (others depend on what is plugged in, so are not kept)."""
    if trial.verdict not in ("ok", "crash"):
        return
    verdicts = read_verdicts()
    verdicts[key] = {**asdict(trial), "libedgetpu": lib.path if lib else None,
                     "libedgetpu_version": lib.version if lib else None, "runtime": runtime,
                     "when": time.strftime("%Y-%m-%dT%H:%M:%S")}
    write_cache(cache_file(), verdicts)


def write_cache(path: Path, data: dict) -> None:
    """A trial cache written whole via a temporary name (never half a file, even with two
    runs at once); a read-only home is no error: the trial simply runs again next time."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.")
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1)
        os.replace(tmp, path)
    except OSError:
        pass


def crash_message(lib_path: str, runtime: dict, detail: str) -> str:
    return (f"{lib_path} crashed in a trial with {runtime['flavour']} {runtime['version']} "
            f"({detail}), so it is not loaded (`python -m yolo_tpu.doctor` says more); "
            f"{FIX_CRASH}")


def checked_pair(lib_path: str, model: str, device: str | None) -> Trial:
    """The trial verdict for this library pair: cached, or run now (and kept)."""
    runtime = runtime_identity()
    key = pair_key(lib_path, runtime)
    cached = read_verdicts().get(key)
    if cached and cached.get("verdict") in ("ok", "crash"):
        return Trial(cached["verdict"], cached.get("detail", ""), 0.0)
    trial = run_trial(model, device, lib_path)
    remember(key, trial, LibraryInfo(lib_path, None, ()), runtime)
    return trial


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "trial":
        return _trial_child(argv[1], argv[2])
    if len(argv) == 1 and argv[0] == "probe":
        try:
            info = probe_library()
        except OSError as e:
            print(json.dumps({"error": str(e)}))
            return 0
        print(json.dumps(asdict(info)))
        return 0
    print("usage: python -m yolo_tpu.edgetpu trial MODEL DEVICE | probe", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
