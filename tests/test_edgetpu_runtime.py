"""The TPU side without a TPU: compiled models, the doctor, device strings, the crash trial.

Two stand-ins at the boundaries we cannot reach here:
- the compiler: tests/edgetpu_standin.py (what edgetpu_compiler 16 does to a file, checked
  against real outputs in test_edgetpu_real.py), installed as `edgetpu_compiler` on PATH;
- libedgetpu.so.1: tests/libedgetpu_standin.c, compiled here with gcc into a real shared
  library exporting the TFLite delegate plugin entry points and libedgetpu's C API
  (edgetpu_list_devices / edgetpu_free_devices / edgetpu_version), plus variants that
  segfault or refuse. Its delegate claims the edgetpu-custom-op and writes zeros, so a
  compiled model really runs through LiteRT's delegate machinery.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

import edgetpu_standin
import fake_sysfs
from conftest import ROOT, SAMPLES, require
from converters import edgetpu_compile as ecc
from test_edgetpu_check import install_standin_compiler
from yolo_tpu import tflite_file as tm
from yolo_tpu.backends import BackendError, NoDeviceError
from yolo_tpu.detector import Detector, ModelError, read_model_info

TESTS = Path(__file__).resolve().parent
DEVICES = "usb:/sys/bus/usb/devices/2-1,pci:/dev/apex_0"
VARIANTS = {"ok": [], "crash": ["-DCRASH_AT_INVOKE"], "crash_at_create": ["-DCRASH_AT_CREATE"],
            "refuse": ["-DREFUSE"]}


@pytest.fixture(scope="session")
def libs(tmp_path_factory) -> dict[str, Path]:
    """The stand-in libedgetpu.so.1, built from C once per session, one folder per variant."""
    gcc = shutil.which("gcc") or shutil.which("cc")
    require(None if gcc else "no C compiler to build the stand-in libedgetpu (.ci/run "
            "installs gcc)", "gcc")
    out = tmp_path_factory.mktemp("libedgetpu")
    built = {}
    for name, flags in VARIANTS.items():
        folder = out / name
        folder.mkdir()
        lib = folder / "libedgetpu.so.1"
        subprocess.run([gcc, "-shared", "-fPIC", "-O1", *flags, "-o", str(lib),
                        str(TESTS / "libedgetpu_standin.c")], check=True)
        built[name] = lib
    return built


@pytest.fixture(scope="session")
def compiled(tiny_int8_model, tmp_path_factory) -> Path:
    """yolov3-tiny int8 through the compiler stand-in, metadata put back as the wrapper does."""
    folder = tmp_path_factory.mktemp("compiled")
    source = folder / "yolov3-tiny_int8.tflite"
    shutil.copy(tiny_int8_model, source)
    target = folder / "yolov3-tiny_int8_edgetpu.tflite"
    target.write_bytes(edgetpu_standin.compile_like_edgetpu(source.read_bytes()))
    ecc.embed_metadata(source, target)
    return target


@pytest.fixture
def tpu_env(monkeypatch, tmp_path):
    """Point the runtime at a stand-in library with two devices; a private verdict cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("STANDIN_EDGETPU_DEVICES", DEVICES)

    def use(lib: Path | str) -> None:
        monkeypatch.setenv("YOLO_TPU_EDGETPU_LIB", str(lib))
    return use


def one_line(message: str) -> str:
    assert "\n" not in message and "Traceback" not in message
    return message


# --- compiled models load -----------------------------------------------------------------


def test_yolov3_tiny_through_the_compiler_standin(tiny_int8_model, tmp_path, monkeypatch,
                                                  capsys):
    model = tmp_path / "yolov3-tiny_int8.tflite"
    shutil.copy(tiny_int8_model, model)
    install_standin_compiler(tmp_path, monkeypatch)
    code, report = ecc.compile_model(model, tmp_path / "out")
    assert code == 0
    out = capsys.readouterr().out
    assert "The prediction agrees with the compiler on all" in out
    assert "On-chip memory used for caching model parameters: 6.08MiB" in out
    assert "Off-chip memory used for streaming uncached model parameters:" in out
    assert "(yolo_tpu metadata restored)" in out
    target = tmp_path / "out" / "yolov3-tiny_int8_edgetpu.tflite"
    parsed = tm.read_model(target)
    assert [op.custom_code for op in parsed.operators] == ["edgetpu-custom-op"]
    assert not set(parsed.metadata) - {"yolo_tpu"}  # min_runtime_version etc. stay dropped
    assert parsed.metadata["yolo_tpu"] == tm.read_metadata(model)["yolo_tpu"]
    # the conversion summary's memory lines: 8.45 MiB of parameters against the cache
    from converters.edgetpu_memory import summary_lines
    lines = summary_lines(tm.read_model(model), [True] * len(tm.read_model(model).operators),
                          report.memory)
    assert lines[0].startswith("parameters on the Edge TPU: 8.45 MiB against a parameter "
                               "cache of about 6.1-6.9 MiB")
    assert "estimate: 1.58-2.37 MiB streamed over USB/PCIe on every inference" in lines[1]
    assert lines[2:] == ["edgetpu_compiler:",
                         "  On-chip memory used for caching model parameters: 6.08MiB",
                         "  Off-chip memory used for streaming uncached model parameters: 2.37MiB"]
    (_, payload), = tm.custom_payloads(target.read_bytes())
    assert payload.startswith(edgetpu_standin.EXECUTABLE_MARKER)
    meta, is_compiled = read_model_info(str(target))
    assert is_compiled and meta == read_model_info(str(model))[0]
    # Here (no libedgetpu): the only failure is the missing TPU, in one line.
    monkeypatch.setenv("YOLO_TPU_EDGETPU_LIB", str(tmp_path / "no" / "libedgetpu.so.1"))
    with pytest.raises(BackendError) as err:
        Detector(str(target))
    message = one_line(str(err.value))
    assert "is compiled for the Edge TPU, but" in message and "not found" in message
    assert "libedgetpu1-std" in message


def test_compiled_model_without_metadata_reads_it_from_beside_it(tiny_int8_model, tmp_path):
    bare = edgetpu_standin.compile_like_edgetpu(tiny_int8_model.read_bytes())
    assert "yolo_tpu" not in tm.read_metadata(bare)
    expected = read_model_info(str(tiny_int8_model))[0]
    lonely = tmp_path / "alone" / "m_int8_edgetpu.tflite"
    lonely.parent.mkdir()
    lonely.write_bytes(bare)
    with pytest.raises(ModelError) as err:
        read_model_info(str(lonely))
    message = one_line(str(err.value))
    assert "put m_int8.tflite (the model it was compiled from) beside it" in message
    assert f"python -m converters.edgetpu_compile {lonely} --metadata-from" in message
    # the uncompiled model beside it
    shutil.copy(tiny_int8_model, lonely.parent / "m_int8.tflite")
    assert read_model_info(str(lonely)) == (expected, True)
    # a different model under that name is not taken
    (lonely.parent / "m_int8.tflite").write_bytes(
        (TESTS / "fixtures" / "edgetpu_real" / "split_concat.tflite").read_bytes())
    with pytest.raises(ModelError):
        read_model_info(str(lonely))
    # a sidecar
    (lonely.parent / "m_int8_edgetpu.yolo_tpu.json").write_text(expected.to_json())
    assert read_model_info(str(lonely)) == (expected, True)
    # and --metadata-from puts it into the file itself
    (lonely.parent / "m_int8_edgetpu.yolo_tpu.json").unlink()
    assert ecc.main([str(lonely), "--metadata-from", str(tiny_int8_model)]) == 0
    assert tm.read_metadata(lonely)["yolo_tpu"] == tm.read_metadata(tiny_int8_model)["yolo_tpu"]


def test_compiled_model_refuses_the_cpu(compiled):
    with pytest.raises(BackendError, match="cannot run on the CPU"):
        Detector(str(compiled), device="cpu")


# --- the runtime on a stand-in libedgetpu ---------------------------------------------------


@pytest.mark.parametrize("device, label", [("usb:0", "usb:0"), ("pci", "pci"), ("tpu:1", ":1"),
                                           ("auto", "")])
def test_device_strings_reach_libedgetpu(compiled, libs, tpu_env, device, label):
    tpu_env(libs["ok"])
    det = Detector(str(compiled), device=device)
    assert det.backend == f"Edge TPU {label}".strip() + " via ai_edge_litert"
    dets = det(cv2.imread(str(SAMPLES / "dog.jpg")))
    assert len(dets) == 0  # the stand-in's executable writes zeros: nothing clears conf


@pytest.mark.parametrize("device", ["usb:1", "pci:1", "tpu:2"])
def test_device_that_is_not_there_is_one_line(compiled, libs, tpu_env, device):
    tpu_env(libs["ok"])
    with pytest.raises(NoDeviceError) as err:
        Detector(str(compiled), device=device)
    message = one_line(str(err.value))
    assert "no Edge TPU" in message and "lists 2 (usb /sys/bus/usb/devices/2-1, pci " in message


def test_no_device_listed(compiled, libs, tpu_env, monkeypatch):
    tpu_env(libs["ok"])
    monkeypatch.setenv("STANDIN_EDGETPU_DEVICES", "")
    with pytest.raises(BackendError) as err:
        Detector(str(compiled))
    message = one_line(str(err.value))
    assert "libedgetpu lists none" in message and "plug in the accelerator" in message


def test_refusing_library(compiled, libs, tpu_env):
    tpu_env(libs["refuse"])
    with pytest.raises(NoDeviceError, match="other process holds it"):
        Detector(str(compiled), device="usb")


def test_good_pair_is_tried_once(compiled, libs, tpu_env, monkeypatch):
    from yolo_tpu import edgetpu
    tpu_env(libs["ok"])
    Detector(str(compiled), device="usb:0")
    verdicts = list(edgetpu.read_verdicts().values())
    assert [v["verdict"] for v in verdicts] == ["ok"]

    def no_second_trial(*args, **kwargs):
        raise AssertionError("the trial ran again for a known pair")
    monkeypatch.setattr(edgetpu, "run_trial", no_second_trial)
    Detector(str(compiled), device="pci")


@pytest.mark.parametrize("variant", ["crash", "crash_at_create"])
def test_crashing_library_never_takes_the_process_down(compiled, libs, tpu_env, monkeypatch,
                                                       variant):
    from yolo_tpu import edgetpu
    tpu_env(libs[variant])
    with pytest.raises(BackendError) as err:
        Detector(str(compiled), device="usb:0")
    message = one_line(str(err.value))
    assert "crashed in a trial" in message and "SIGSEGV" in message
    assert "tflite-runtime 2.5.0.post1" in message and "--device cpu" in message
    # the verdict is kept: the next start refuses at once, without another trial
    monkeypatch.setattr(edgetpu, "run_trial", lambda *a, **k: pytest.fail("trial re-run"))
    with pytest.raises(BackendError, match="crashed in a trial"):
        Detector(str(compiled), device="usb:0")


def _run(module: str, *args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def _env(tmp_path: Path, lib: Path | str, devices: str = DEVICES) -> dict:
    return {**os.environ, "YOLO_TPU_EDGETPU_LIB": str(lib), "STANDIN_EDGETPU_DEVICES": devices,
            "XDG_CACHE_HOME": str(tmp_path / "cache"), **_hardware(tmp_path)}


def _hardware(tmp_path: Path) -> dict:
    """A fake sysfs with the stand-in's two TPUs (USB 2-1 on USB3, PCIe apex_0) for the doctor."""
    sysfs, dev = tmp_path / "hw" / "sys", tmp_path / "hw" / "dev"
    if not sysfs.exists():
        fake_sysfs.machine(tmp_path / "hw")
        fake_sysfs.usb(sysfs, dev, "2-1", fake_sysfs.READY, "5000", 2, 3)
        fake_sysfs.pci(sysfs, dev)
    return fake_sysfs.env(sysfs, dev)


def test_detect_cli_with_a_crashing_library_is_one_line(compiled, libs, tmp_path):
    env = _env(tmp_path, libs["crash"])
    r = _run("yolo_tpu.detect", "--model", str(compiled), "--image", "samples/dog.jpg",
             "--device", "usb:0", env=env)
    assert r.returncode == 2 and r.stdout == ""
    errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "crashed in a trial" in errors[0]
    assert "Traceback" not in r.stderr and "Segmentation" not in r.stderr
    r = _run("yolo_tpu.detect", "--model", str(compiled), "--image", "samples/dog.jpg",
             "--device", "usb:0", "--json", "-", env=_env(tmp_path, libs["ok"]))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.splitlines()[0])["detections"] == []


# --- the doctor ----------------------------------------------------------------------------


def doctor(tmp_path: Path, lib: Path | str, *args: str, devices: str = DEVICES):
    r = _run("yolo_tpu.doctor", *args, env=_env(tmp_path, lib, devices))
    assert "Traceback" not in r.stderr
    rows = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in r.stdout.splitlines()
                if line and not line.startswith((" ", "findings", "Edge TPU ready")))
    return r, rows


def test_doctor_here_without_libedgetpu(tmp_path):
    r, rows = doctor(tmp_path, tmp_path / "none" / "libedgetpu.so.1")
    assert r.returncode == 1
    assert rows["Python"].startswith(sys.version.split()[0])
    assert rows["numpy"] and rows["LiteRT"].startswith("ai_edge_litert ")
    assert rows["libedgetpu"].startswith("not found")
    assert "findings:" in r.stdout and "libedgetpu1-std" in r.stdout


def test_doctor_with_a_working_library(tmp_path, libs):
    r, rows = doctor(tmp_path, libs["ok"], "--device", "usb:0")
    assert r.returncode == 0, r.stdout
    assert rows["libedgetpu"] == str(libs["ok"])
    assert "RuntimeVersion(14)" in r.stdout  # edgetpu_version() through the C API
    assert rows["Edge TPUs"] == "usb /sys/bus/usb/devices/2-1, pci /dev/apex_0"
    assert rows["trial"].startswith("ok: delegate loaded, one inference ran")
    assert "Edge TPU ready" in r.stdout
    r, rows = doctor(tmp_path, libs["ok"], "--device", "pci:0")
    assert r.returncode == 0 and rows["remembered"].startswith("ok ")


@pytest.mark.parametrize("variant", ["crash", "crash_at_create"])
def test_doctor_turns_a_crash_into_a_finding(tmp_path, libs, variant):
    r, rows = doctor(tmp_path, libs[variant])
    assert r.returncode == 1
    assert rows["trial"].startswith("crash: the trial process was killed by SIGSEGV")
    finding = r.stdout.split("findings:")[1]
    assert "crashes ai_edge_litert" in finding and "tflite-runtime 2.5.0.post1" in finding
    verdicts = json.loads((tmp_path / "cache" / "yolo_tpu" / "delegate_trials.json").read_text())
    assert [v["verdict"] for v in verdicts.values()] == ["crash"]


def test_doctor_with_a_refusing_library_and_without_devices(tmp_path, libs):
    r, rows = doctor(tmp_path, libs["refuse"], "--device", "usb")
    assert r.returncode == 1 and rows["trial"].startswith("no_device")
    assert "lists 2 (usb /sys/bus/usb/devices/2-1, pci /dev/apex_0)" in r.stdout
    r, rows = doctor(tmp_path, libs["ok"], devices="")
    assert r.returncode == 1
    assert rows["Edge TPUs"] == "none listed"
    assert "libedgetpu lists none" in r.stdout


def test_doctor_rejects_a_cpu_device(tmp_path):
    r = _run("yolo_tpu.doctor", "--device", "cpu", env=dict(os.environ))
    assert r.returncode == 2 and r.stderr.count("\n") == 1
