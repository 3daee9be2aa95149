"""The doctor from the hardware up, on fake sysfs trees shaped like the kernel's.

Each case runs `python -m yolo_tpu.doctor` as a real process with YOLO_TPU_SYSFS/YOLO_TPU_DEV
pointed at a tree built here (tests/fake_sysfs.py), with no libedgetpu or with the C
stand-in libedgetpu (tests/libedgetpu_standin.c) listing the same devices, and checks the
finding, its fix and the exit code. Who may open a device node is asked of the kernel
(os.access): as root the check runs in a forked child switched to uid/gid 65534 (nobody), so
the node's mode and owner decide, as they do for a user on a Raspberry Pi. The libedgetpu table
(yolo_tpu.edgetpu_builds) is checked row by row.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import fake_sysfs as fs
from conftest import ROOT
from test_edgetpu_runtime import libs  # noqa: F401  (the stand-in libedgetpu, built once)
from yolo_tpu import doctor
from yolo_tpu import edgetpu_builds as eb
from yolo_tpu import hardware as hw

NOBODY = 65534


def run_doctor(sysfs: Path, dev: Path, tmp: Path, lib: Path | str | None = None,
               devices: str = "", *args: str):
    env = {**os.environ, **fs.env(sysfs, dev), "XDG_CACHE_HOME": str(tmp / "cache"),
           "YOLO_TPU_EDGETPU_LIB": str(lib or tmp / "none" / "libedgetpu.so.1"),
           "STANDIN_EDGETPU_DEVICES": devices, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "yolo_tpu.doctor", *args], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    assert "Traceback" not in r.stderr, r.stderr
    return r


def findings(out: str) -> list[str]:
    """The findings block: each finding with its fix/commands/notes joined on one string."""
    if "findings:" not in out:
        return []
    block, current = [], None
    for line in out.split("findings:", 1)[1].splitlines():
        if line.startswith("  - "):
            current = [line[4:]]
            block.append(current)
        elif current is not None and line.startswith("    "):
            current.append(line.strip())
    return ["\n".join(b) for b in block]


def one(out: str, needle: str) -> str:
    hits = [f for f in findings(out) if needle in f]
    assert len(hits) == 1, (needle, out)
    return hits[0]


@pytest.fixture
def machine(tmp_path):
    return fs.machine(tmp_path / "hw")


# --- nothing, USB before and after the firmware, USB2/USB3, two Corals ---------------------


def test_nothing_plugged_in_is_an_error(machine, tmp_path, libs):
    sysfs, dev = machine
    fs.other_usb(sysfs)  # a keyboard and the root hub are not Corals
    r = run_doctor(sysfs, dev, tmp_path)
    assert r.returncode == 1
    assert "Coral  " in r.stdout and f"none in {sysfs}" in r.stdout
    f = one(r.stdout, "no Coral found")
    assert f.startswith("error:") and "fix: plug the USB Accelerator into a USB3 port" in f
    assert findings(r.stdout).index(f) == 0  # hardware first
    # a working libedgetpu that lists no TPU on top: still exit 1, both said
    r = run_doctor(sysfs, dev, tmp_path, libs["ok"], "")
    assert r.returncode == 1
    assert "no Coral found" in r.stdout and "libedgetpu lists none" in r.stdout


def test_usb_before_its_firmware_is_normal_until_opened(machine, tmp_path, libs):
    sysfs, dev = machine
    fs.usb(sysfs, dev, "2-1", fs.BOOT, "480", 2, 2)
    r = run_doctor(sysfs, dev, tmp_path)  # no libedgetpu: nothing opened it yet
    assert r.returncode == 1  # for the missing runtime, not for the boot state
    f = one(r.stdout, "boot state")
    assert f.startswith("note:") and "normal until a program opens it" in f
    assert "firmware did not load" not in r.stdout
    assert "libedgetpu1-std_16.0tf" in one(r.stdout, "no Edge TPU runtime")
    # libedgetpu opened it and it is still 1a6e:089a: the firmware load failed
    r = run_doctor(sysfs, dev, tmp_path, libs["ok"], "usb:/sys/bus/usb/devices/2-1")
    assert r.returncode == 1
    f = one(r.stdout, "firmware did not load")
    assert f.startswith("error:") and "powered hub" in f and "dmesg" in f


@pytest.mark.parametrize("speed, warned", [("5000", False), ("480", True)])
def test_usb_after_its_firmware_on_usb3_and_usb2(machine, tmp_path, libs, speed, warned):
    sysfs, dev = machine
    fs.usb(sysfs, dev, "2-1", fs.READY, speed, 2, 3)
    r = run_doctor(sysfs, dev, tmp_path, libs["ok"], "usb:/sys/bus/usb/devices/2-1")
    assert r.returncode == 0, r.stdout  # USB2 works, slower: a warning, not a failure
    assert f"ready (18d1:9302), {speed} Mb/s, 896mA, /dev/bus/usb/002/003" in r.stdout
    assert "Edge TPU ready" in r.stdout
    if warned:
        f = one(r.stdout, "USB2 (480 Mb/s)")
        assert f.startswith("warning:") and "4x slower" in f and "USB3 port" in f
    else:
        assert findings(r.stdout) == []


def test_two_usb_corals(machine, tmp_path, libs):
    sysfs, dev = machine
    fs.usb(sysfs, dev, "2-1", fs.READY, "5000", 2, 3)
    fs.usb(sysfs, dev, "1-2", fs.READY, "480", 1, 5)
    r = run_doctor(sysfs, dev, tmp_path, libs["ok"],
                   "usb:/sys/bus/usb/devices/2-1,usb:/sys/bus/usb/devices/1-2")
    assert r.returncode == 0, r.stdout
    assert "Coral USB 1-2" in r.stdout and "Coral USB 2-1" in r.stdout
    assert "/dev/bus/usb/001/005" in r.stdout and "/dev/bus/usb/002/003" in r.stdout
    [f] = findings(r.stdout)  # only the one on USB2
    assert f.startswith("warning: Coral USB 1-2: USB2")


# --- PCIe / M.2 ------------------------------------------------------------------------------


def test_pcie_with_its_driver(machine, tmp_path, libs):
    sysfs, dev = machine
    fs.pci(sysfs, dev)
    r = run_doctor(sysfs, dev, tmp_path, libs["ok"], "pci:/dev/apex_0", "--device", "pci:0")
    assert r.returncode == 0, r.stdout
    assert "Coral PCIe 0000:01:00.0" in r.stdout and "driver apex, apex_0" in r.stdout
    assert "gasket loaded, apex loaded" in r.stdout and findings(r.stdout) == []


def test_pcie_without_its_driver(machine, tmp_path):
    sysfs, dev = machine
    fs.pci(sysfs, dev, driver=False)
    r = run_doctor(sysfs, dev, tmp_path)
    assert r.returncode == 1
    assert "driver none, no apex node" in r.stdout and "gasket absent, apex absent" in r.stdout
    f = one(r.stdout, "driver is not loaded")
    assert f.startswith("error: Coral PCIe 0000:01:00.0") and "no gasket and no apex module" in f
    assert "gasket-dkms_1.0-18.4_all.deb" in f and "sudo modprobe apex" in f
    assert "no Coral found" not in r.stdout


def test_pcie_module_loaded_but_not_bound(machine):
    sysfs, dev = machine
    fs.pci(sysfs, dev, driver=False)
    for module in ("gasket", "apex"):
        (sysfs / "module" / module).mkdir()
    [f] = hw.assess(hw.scan(sysfs, dev))
    assert f.level == "error" and "did not bind" in f.what
    assert "sudo modprobe -r apex && sudo modprobe apex" in f.commands


# --- who may open the node ---------------------------------------------------------------------


@pytest.fixture
def shared_root():
    """A tree outside pytest's private tmp (0700) that uid 65534 can read."""
    root = Path(tempfile.mkdtemp(prefix="yolo_tpu_hw_"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def _lock(node: Path) -> bool:
    """Make `node` unopenable for the checking user; True when that user is nobody (as root)."""
    if os.geteuid() == 0:
        os.chown(node, 0, 0)
        node.chmod(0o664)  # the kernel's default for a USB node without the udev rule
        return True
    node.chmod(0o444)
    return False


def assess_as(sysfs: Path, dev: Path, as_nobody: bool) -> list[hw.Finding]:
    """hardware.assess in a forked child that dropped to uid/gid 65534 (as root), else here.

    The interpreter cannot be exec'd as nobody here (it lives under /root), so the child is a
    fork of this process: the kernel then answers os.access for uid 65534.
    """
    if not as_nobody:
        return hw.assess(hw.scan(sysfs, dev))
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            found = [dataclasses.asdict(f) for f in hw.assess(hw.scan(sysfs, dev))]
            os.write(write, json.dumps(found).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        data = json.loads(pipe.read())
    os.waitpid(pid, 0)
    return [hw.Finding(d["level"], d["what"], d["fix"], tuple(d["commands"]), tuple(d["notes"]))
            for d in data]


def test_a_usb_node_the_user_cannot_open(shared_root, capsys):
    sysfs, dev = fs.machine(shared_root / "hw")
    fs.usb(sysfs, dev, "2-1", fs.READY, "5000", 2, 3)
    node = dev / "bus" / "usb" / "002" / "003"
    as_nobody = _lock(node)
    found = assess_as(sysfs, dev, as_nobody)
    [f] = [f for f in found if "may not open" in f.what]
    mode = "0664" if as_nobody else "0444"
    assert f.level == "error" and f.what.startswith(f"Coral USB 2-1: {node} is ")
    assert f" {mode}: " in f.what and ("uid 65534" in f.what or not as_nobody)
    assert "group plugdev" in f.fix and "sudo usermod -aG plugdev $USER" in f.commands
    assert any('ATTRS{idVendor}=="18d1",ATTRS{idProduct}=="9302",GROUP="plugdev"' in c
               for c in f.commands)
    assert doctor.exit_code(found) == 1
    doctor.print_findings(found)  # what the user reads: finding, fix, commands
    out = capsys.readouterr().out
    assert "  - error: Coral USB 2-1:" in out and "    fix: give the node to group plugdev" in out
    # the node given to the user's group, as the udev rule does: no finding about it
    if as_nobody:
        os.chown(node, 0, NOBODY)
    else:
        node.chmod(0o664)
    found = assess_as(sysfs, dev, as_nobody)
    assert not [f for f in found if f.level != "ok"] and doctor.exit_code(found) == 0
    assert any("opens read-write" in f.what for f in found)


def test_a_pcie_node_the_user_cannot_open(shared_root, tmp_path):
    sysfs, dev = fs.machine(shared_root / "hw")
    fs.pci(sysfs, dev)
    as_nobody = _lock(dev / "apex_0")
    [f] = [f for f in assess_as(sysfs, dev, as_nobody) if f.level == "error"]
    assert f.what.startswith("Coral PCIe 0000:01:00.0") and "may not open it read-write" in f.what
    assert "group apex" in f.fix
    assert any("65-apex.rules" in c for c in f.commands)
    assert any("usermod -aG apex $USER" in c for c in f.commands)
    if as_nobody:  # the doctor itself, as root, may open it: no finding (access, not mode bits)
        r = run_doctor(sysfs, dev, tmp_path)
        assert "may not open" not in r.stdout and "Coral PCIe 0000:01:00.0" in r.stdout


def test_a_node_missing_from_dev_is_a_container_without_the_device(machine, tmp_path):
    sysfs, dev = machine
    fs.usb(sysfs, dev, "2-1", fs.READY, "5000", 2, 3, node=False)
    r = run_doctor(sysfs, dev, tmp_path)
    f = one(r.stdout, "does not exist")
    assert r.returncode == 1 and f.startswith("error:") and "--device /dev/bus/usb" in f


def test_detect_says_what_sysfs_shows_when_libedgetpu_lists_none(machine, libs, monkeypatch,
                                                                 tmp_path):
    from yolo_tpu.backends import _no_device_message
    sysfs, dev = machine
    for name, value in {**fs.env(sysfs, dev), "YOLO_TPU_EDGETPU_LIB": str(libs["ok"]),
                        "STANDIN_EDGETPU_DEVICES": "", "XDG_CACHE_HOME": str(tmp_path)}.items():
        monkeypatch.setenv(name, value)
    message = _no_device_message("usb")
    assert message.startswith("no Edge TPU (usb) answered: libedgetpu lists none (no Coral "
                              "found: no USB device 1a6e:089a")
    assert "python -m yolo_tpu.doctor gives the fix" in message and "\n" not in message


# --- the board, no sysfs ------------------------------------------------------------------------


def test_raspberry_pi_power(machine):
    sysfs, dev = machine
    fs.raspberry_pi(sysfs, undervoltage=True)
    fs.usb(sysfs, dev, "1-1", fs.READY, "5000", 1, 2)
    found = hw.assess(hw.scan(sysfs, dev))
    [warning] = [f for f in found if f.level == "warning"]
    assert "under-voltage" in warning.what and "powered USB hub" in warning.fix
    assert any(f.level == "note" and "frigate#7034" in f.what for f in found)
    assert ("board", "Raspberry Pi 4 Model B Rev 1.4") in hw.rows(hw.scan(sysfs, dev))
    (sysfs / "class" / "hwmon" / "hwmon1" / "in0_lcrit_alarm").write_text("0\n")
    assert not [f for f in hw.assess(hw.scan(sysfs, dev)) if f.level == "warning"]


def test_no_sysfs_is_a_note_not_a_guess(tmp_path):
    [f] = hw.assess(hw.scan(tmp_path / "nothing", tmp_path))
    assert f.level == "note" and "not checked" in f.what


# --- which libedgetpu for which Python, board and LiteRT --------------------------------------


def box(python=(3, 11), machine="aarch64", os_id="debian", os_version="bookworm",
        flavour="ai_edge_litert", version="1.2.0") -> eb.Box:
    return eb.Box(python, machine, os_id, os_version, flavour, version)


@pytest.mark.parametrize("the_box, release, name", [
    # Raspberry Pi OS 64-bit, ai-edge-litert 1.2 (TF 2.19)
    (box(), "16.0TF2.19.1-1", "libedgetpu1-std_16.0tf2.19.1-1.bookworm_arm64.deb"),
    # x86-64 bookworm, ai-edge-litert 1.3 (TF 2.20): the newest release below it
    (box(machine="x86_64", version="1.3.0"), "16.0TF2.19.1-1",
     "libedgetpu1-std_16.0tf2.19.1-1.bookworm_amd64.deb"),
    # tflite-runtime 2.17.1 (its version is TF's): Frigate's release
    (box(flavour="tflite_runtime", version="2.17.1"), "16.0TF2.17.1-1",
     "libedgetpu1-std_16.0tf2.17.1-1.bookworm_arm64.deb"),
    (box(flavour="tflite_runtime", version="2.18.0"), "16.0TF2.17.1-1",
     "libedgetpu1-std_16.0tf2.17.1-1.bookworm_arm64.deb"),
    (box(flavour="tflite_runtime", version="2.16.2"), "16.0TF2.16.1-1",
     "libedgetpu1-std_16.0tf2.16.1-1.bookworm_arm64.deb"),
    (box(os_id="debian", os_version="bullseye", flavour="tflite_runtime", version="2.15.0"),
     "v16.0TF2.15.1-1", "libedgetpu1-std_16.0tf2.15.1-1.bullseye_arm64.deb"),
    # Raspberry Pi OS 32-bit (raspbian, armv7l), Debian trixie, Ubuntu 24.04
    (box(machine="armv7l", os_id="raspbian"), "16.0TF2.19.1-1",
     "libedgetpu1-std_16.0tf2.19.1-1.bookworm_armhf.deb"),
    (box(os_version="trixie"), "16.0TF2.19.1-1", "libedgetpu1-std_16.0tf2.19.1-1.trixie_arm64.deb"),
    (box(machine="x86_64", os_id="ubuntu", os_version="24.04"), "16.0TF2.19.1-1",
     "libedgetpu1-std_16.0tf2.19.1-1.ubuntu24.04_amd64.deb"),
])
def test_feranick_release_for_this_box(the_box, release, name):
    advice = eb.advise(the_box)
    assert advice.commands[-2:] == (
        f"wget https://github.com/feranick/libedgetpu/releases/download/{release}/{name}",
        f"sudo apt install ./{name}")
    unseen = [n for n in advice.notes if "was not seen" in n]
    assert bool(unseen) == (name not in eb.SEEN)
    assert any(name.replace("-std_", "-max_") in n for n in advice.notes)


def test_coral_runtime_pair_and_the_ones_nothing_matches():
    # Python 3.9 with Coral's own tflite-runtime 2.5: Coral's libedgetpu 16.0 is its pair
    advice = eb.advise(box(python=(3, 9), flavour="tflite_runtime", version="2.5.0.post1"))
    assert advice.commands[-1] == "sudo apt install libedgetpu1-std"
    assert not any("Python >= 3.10" in n for n in advice.notes)
    # tflite-runtime 2.13 matches no build: replace the runtime, then the newest release
    advice = eb.advise(box(flavour="tflite_runtime", version="2.13.1"))
    assert advice.commands[0] == "pip install ai-edge-litert" and "16.0TF2.19.1-1" in advice.summary
    # no LiteRT at all; Python 3.12 says pycoral is not needed
    advice = eb.advise(box(python=(3, 12), flavour=None, version=None))
    assert advice.commands[0] == "pip install ai-edge-litert"
    assert any("pycoral" in n and "Python >= 3.10" in n for n in advice.notes)
    # a machine with no package (a Pi Zero's armv6l): build from source
    advice = eb.advise(box(machine="armv6l"))
    assert "no libedgetpu package for armv6l" in advice.summary
    # an ai-edge-litert the table does not know: the newest release, and it says so
    advice = eb.advise(box(version="2.3.0"))
    assert "16.0TF2.19.1-1" in advice.summary
    assert any("not in the doctor's table" in n for n in advice.notes)
