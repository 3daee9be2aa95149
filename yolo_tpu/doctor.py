"""`python -m yolo_tpu.doctor`: can this machine run a compiled model on an Edge TPU?

From the hardware up: first the Corals sysfs shows (yolo_tpu.hardware: USB before/after its
firmware, bus speed, PCIe driver, may this user open the node), then Python, numpy, the
TFLite runtime (LiteRT flavour and version), which libedgetpu is found (path, and version
through its C API), the Edge TPUs it lists, and the result of a trial: the delegate loaded
and one inference run *in a child process*, so a library that crashes the interpreter
(Coral's libedgetpu 16 with a much newer LiteRT) becomes a finding
with the fix instead of a dead process. Everything that touches libedgetpu runs in a child.

Each finding is a level (error, warning, note), what, and the fix with commands to paste; where
the runtime is missing or crashes, which libedgetpu to install for this Python, machine and
LiteRT (yolo_tpu.edgetpu_builds). Exit 0 when the trial ran an inference on an Edge TPU and
no finding is an error (USB2 and under-voltage are warnings), 1 otherwise: the doctor is
always asked about an Edge TPU, so no Coral plugged in is an error.
The trial's verdict for the library pair is remembered like the runtime's (see
yolo_tpu.edgetpu), so `detect`/`batch` skip their own trial afterwards.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from importlib import resources

from . import edgetpu_builds, hardware
from .backends import BackendError, parse_device
from .hardware import Finding
from .edgetpu import (
    FIX_CRASH,
    LibraryInfo,
    Trial,
    cache_file,
    library_name,
    pair_key,
    read_verdicts,
    remember,
    run_trial,
    runtime_identity,
)


def trial_model() -> str:
    """A tiny real compiled model shipped with the package (Coral's split_concat, 58 KB)."""
    return str(resources.files("yolo_tpu") / "data" / "edgetpu_trial.tflite")


def _probe() -> tuple[LibraryInfo | None, str | None]:
    """libedgetpu's path, version and devices, asked in a child process."""
    proc = subprocess.run([sys.executable, "-m", "yolo_tpu.edgetpu", "probe"],
                          capture_output=True, text=True, check=False, timeout=60)
    if proc.returncode < 0:
        return None, f"loading {library_name()} killed the probe process (signal {-proc.returncode})"
    try:
        data = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None, f"the probe of {library_name()} failed: {proc.stderr.strip()[-200:]}"
    if "error" in data:
        return None, None
    return LibraryInfo(data["path"], data["version"], tuple(map(tuple, data["devices"]))), None


def _with_install(what: str, runtime: dict | None) -> Finding:
    """An error whose fix is the libedgetpu (and LiteRT) for this Python, machine and system."""
    advice = edgetpu_builds.advise(edgetpu_builds.this_box(runtime))
    return Finding("error", what, f"install {advice.summary}:", advice.commands, advice.notes)


def diagnose(device: str | None, model: str) -> tuple[list[tuple[str, str]], list[Finding], bool]:
    """(report rows, findings, whether a trial opened an Edge TPU through libedgetpu)."""
    import numpy

    rows = [("Python", f"{platform.python_version()} ({sys.executable}, "
                       f"{platform.machine()})"),
            ("numpy", numpy.__version__)]
    try:
        runtime = runtime_identity()
        rows.append(("LiteRT", f"{runtime['flavour']} {runtime['version']} ({runtime['file']})"))
    except BackendError as e:
        rows.append(("LiteRT", "none"))
        return rows, [_with_install(str(e), None)], False
    lib, problem = _probe()
    if problem:
        rows.append(("libedgetpu", f"{library_name()}: cannot be loaded"))
        return rows, [_with_install(f"{problem}; {FIX_CRASH}", runtime)], False
    if lib is None:
        rows.append(("libedgetpu", f"not found ({library_name()})"))
        rows.append(("Edge TPUs", "-"))
        rows.append(("trial", "skipped: no libedgetpu"))
        return rows, [_with_install(f"no Edge TPU runtime ({library_name()} not found); until "
                                    "then uncompiled models run on the CPU (--device cpu)",
                                    runtime)], False
    rows.append(("libedgetpu", f"{lib.path}"))
    rows.append(("  version", lib.version or "unknown (no edgetpu_version)"))
    rows.append(("Edge TPUs", ", ".join(f"{kind} {path}" for kind, path in lib.devices)
                 if lib.devices else "none listed"))
    key = pair_key(lib.path, runtime)
    cached = read_verdicts().get(key)
    if cached:
        rows.append(("remembered", f"{cached['verdict']} ({cached.get('when', '?')}, "
                                   f"{cache_file()})"))
    trial: Trial = run_trial(model, device, lib.path)
    remember(key, trial, lib, runtime)
    findings: list[Finding] = []
    where = device or "any"
    rows.append(("trial", f"{trial.verdict}: {trial.detail} ({trial.seconds:.1f} s, "
                          f"device {where}, {os.path.basename(model)})"))
    if trial.verdict == "crash":
        findings.append(_with_install(f"{lib.path} ({lib.version}) crashes {runtime['flavour']} "
                                      f"{runtime['version']} ({trial.detail}); detect and batch "
                                      f"will refuse the TPU with this pair. {FIX_CRASH}",
                                      runtime))
    elif trial.verdict == "no_device":
        findings.append(Finding("error", trial.detail))
    elif trial.verdict != "ok":
        findings.append(Finding("error", f"the delegate loaded but the trial failed: "
                                         f"{trial.detail}"))
    return rows, findings, trial.verdict != "no_device"


def exit_code(findings: list[Finding]) -> int:
    """1 when a finding is an error; warnings (USB2, under-voltage) and notes do not fail."""
    return 1 if any(f.level == "error" for f in findings) else 0


def print_findings(findings: list[Finding]) -> None:
    """Each finding in one or two lines, its commands indented beneath to paste."""
    print("\nfindings:")
    for f in findings:
        print(f"  - {f.level}: {f.what}")
        if f.fix:
            print(f"    fix: {f.fix}")
        for command in f.commands:
            print(f"      {command}")
        for note in f.notes:
            print(f"    note: {note}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m yolo_tpu.doctor", description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="tpu",
                    help="Edge TPU to try: tpu, tpu:N, usb, usb:N, pci, pci:N (default: any)")
    ap.add_argument("--model", help="compiled model for the trial (default: a tiny bundled one)")
    args = ap.parse_args(argv)
    try:
        dev = parse_device(args.device)
    except ValueError as e:
        print(f"doctor: {e}", file=sys.stderr)
        return 2
    if dev.kind != "tpu":
        print("doctor: --device must name an Edge TPU (tpu, usb, pci, ...)", file=sys.stderr)
        return 2
    model = args.model or trial_model()
    if not os.path.isfile(model):
        print(f"doctor: {model}: no such model file", file=sys.stderr)
        return 2
    runtime_rows, runtime_findings, opened = diagnose(dev.delegate_device, model)
    hw = hardware.scan()  # after the trial: a USB Coral it opened has its firmware by now
    rows = hardware.rows(hw) + runtime_rows
    findings = [f for f in hardware.assess(hw, opened) if f.level != "ok"] + runtime_findings
    width = max(len(name) for name, _ in rows) + 2
    for name, value in rows:
        print(f"{name:<{width}}{value}")
    if findings:
        print_findings(findings)
    if exit_code(findings):
        return 1
    print("\nEdge TPU ready: the delegate loaded and ran an inference in a trial process.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
