"""Which Coral Edge TPUs this machine has, read from sysfs, and what stops them being used.

The doctor's first section ("from the hardware up"): the USB Accelerator before its firmware
is loaded (1a6e:089a) and after (18d1:9302), its negotiated speed and power; PCIe/M.2 cards
(PCI 1ac1:089a) with or without their driver (the gasket and apex modules, /sys/class/apex);
whether this user may open the device node; the board's power (a Raspberry Pi's under-voltage
alarm). Each problem is a `Finding`: what is wrong and the fix, with commands to paste.

`YOLO_TPU_SYSFS=DIR` (default /sys) and `YOLO_TPU_DEV=DIR` (default /dev) point it at other
trees: the tests build fake ones shaped like the kernel's. Reads files only; never opens the
device, never loads libedgetpu.
"""
from __future__ import annotations

import grp
import os
import pwd
import stat
from dataclasses import dataclass, field
from pathlib import Path

ENV_SYSFS = "YOLO_TPU_SYSFS"
ENV_DEV = "YOLO_TPU_DEV"

# USB (idVendor, idProduct) -> the Accelerator's state. Before libedgetpu opens it the first
# time it enumerates as Global Unichip's boot loader; libedgetpu loads its firmware and it
# comes back as Google's 18d1:9302 (a new device number on the same port).
USB_STATES = {("1a6e", "089a"): "boot", ("18d1", "9302"): "ready"}
PCI_CORAL = ("0x1ac1", "0x089a")  # vendor, device of the M.2 / mini-PCIe Edge TPU

# negotiated speed (Mb/s, sysfs `speed`), fastest first: (at least, level, finding, fix)
SPEED_ROWS = (
    (5000.0, "ok", "USB3 ({speed:g} Mb/s)", ""),
    (480.0, "warning", "USB2 ({speed:g} Mb/s): expect about 4x slower inference than on USB3 "
                       "(MobileNet v1: 9.5 ms against 2.4 ms, google-coral/edgetpu#151)",
     "plug it into a USB3 port (the blue ones) with the USB3 cable it came with; hubs and "
     "extension cables often fall back to USB2"),
    (0.0, "warning", "USB 1.x ({speed:g} Mb/s): far too slow for the Edge TPU",
     "plug it into a USB3 port (the blue ones) with a USB3 cable"),
)

# (state, opened by libedgetpu in this run?) -> (level, finding, fix)
STATE_ROWS = {
    ("boot", False): ("note", "in its boot state (1a6e:089a, firmware not loaded): normal until "
                              "a program opens it through libedgetpu", ""),
    ("boot", True): ("error", "still in its boot state (1a6e:089a) after libedgetpu opened it: "
                              "the firmware did not load",
                     "unplug it and plug it straight into a USB3 port of the computer, or a "
                     "powered hub (a Raspberry Pi's ports may not supply it); `dmesg | tail` "
                     "shows the USB errors"),
    ("ready", False): ("ok", "firmware loaded (18d1:9302)", ""),
    ("ready", True): ("ok", "firmware loaded (18d1:9302)", ""),
}

# device kind -> (group the packages' udev rules give the node, commands that grant access).
# USB: the rule libedgetpu's Debian package installs (google-coral/libedgetpu,
# debian/edgetpu-accelerator.rules). PCIe: the rule from Coral's M.2/PCIe setup guide.
NODE_ACCESS = {
    "usb": ("plugdev", (
        "sudo usermod -aG plugdev $USER",
        "printf '%s\\n' 'SUBSYSTEM==\"usb\",ATTRS{idVendor}==\"1a6e\",ATTRS{idProduct}==\"089a\","
        "GROUP=\"plugdev\"' 'SUBSYSTEM==\"usb\",ATTRS{idVendor}==\"18d1\",ATTRS{idProduct}=="
        "\"9302\",GROUP=\"plugdev\"' | sudo tee /etc/udev/rules.d/99-edgetpu-accelerator.rules",
        "sudo udevadm control --reload-rules && sudo udevadm trigger  # then replug, log in again",
    )),
    "pci": ("apex", (
        "sudo sh -c \"echo 'SUBSYSTEM==\\\"apex\\\", MODE=\\\"0660\\\", GROUP=\\\"apex\\\"' "
        ">> /etc/udev/rules.d/65-apex.rules\"",
        "sudo groupadd -f apex && sudo usermod -aG apex $USER  # then reboot (or log in again)",
    )),
}
CONTAINER_FIX = {"usb": "docker run --device /dev/bus/usb ...  (or --privileged)",
                 "pci": "docker run --device /dev/apex_0 ...  (one --device per apex_N)"}

# Google's gasket-dkms (Coral's apt repository) no longer builds on recent kernels; feranick's
# fork publishes a package (github.com/feranick/gasket-driver releases, tag 1.0-18.4).
GASKET_DKMS = "https://github.com/feranick/gasket-driver/releases/download/1.0-18.4/" \
              "gasket-dkms_1.0-18.4_all.deb"
INSTALL_DRIVER = (
    "sudo apt install dkms linux-headers-$(uname -r)",
    f"wget {GASKET_DKMS}",
    "sudo apt install ./gasket-dkms_1.0-18.4_all.deb",
    "sudo modprobe apex  # or reboot; then /dev/apex_0 appears",
)

# board (devicetree model prefix) -> what to know about powering a Coral from it
BOARD_NOTES = (
    ("Raspberry Pi", "a USB Coral that stops (\"USB transfer error\", detection stuck) on a "
                     "Raspberry Pi is most often power: use the official supply, or a powered "
                     "USB hub for the Coral (frigate#7034)"),
)


@dataclass(frozen=True)
class Finding:
    """One thing the doctor found: level ok/note/warning/error, what, the fix, commands."""
    level: str
    what: str
    fix: str = ""
    commands: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class UsbCoral:
    name: str           # sysfs name, the port path: "2-1"
    state: str          # "boot" or "ready" (USB_STATES)
    speed: float | None  # Mb/s
    max_power: str
    busnum: int
    devnum: int
    product: str

    @property
    def node(self) -> str:
        """The node libusb opens, relative to the dev root."""
        return f"bus/usb/{self.busnum:03d}/{self.devnum:03d}"


@dataclass(frozen=True)
class PciCoral:
    address: str           # "0000:01:00.0"
    driver: str | None     # the bound driver's name (apex), if any
    apex: tuple[str, ...]  # its /sys/class/apex entries: ("apex_0",)


@dataclass
class Hardware:
    sysfs: Path
    dev: Path
    linux: bool
    usb: list[UsbCoral] = field(default_factory=list)
    pci: list[PciCoral] = field(default_factory=list)
    apex: list[str] = field(default_factory=list)  # every /sys/class/apex entry
    modules: dict[str, bool] = field(default_factory=dict)
    board: str | None = None
    undervoltage: bool | None = None


def roots() -> tuple[Path, Path]:
    """(sysfs root, dev root) from YOLO_TPU_SYSFS / YOLO_TPU_DEV."""
    return (Path(os.environ.get(ENV_SYSFS) or "/sys"), Path(os.environ.get(ENV_DEV) or "/dev"))


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace").strip().strip("\x00")
    except OSError:
        return None


def _number(text: str | None, cast: type = int) -> float | int | None:
    try:
        return cast(text) if text is not None else None
    except ValueError:
        return None


def _usb(devices: Path) -> list[UsbCoral]:
    found = []
    for entry in sorted(devices.iterdir()) if devices.is_dir() else ():
        ids = (_read(entry / "idVendor") or "").lower(), (_read(entry / "idProduct") or "").lower()
        if ids not in USB_STATES:
            continue
        found.append(UsbCoral(entry.name, USB_STATES[ids], _number(_read(entry / "speed"), float),
                              _read(entry / "bMaxPower") or "?",
                              _number(_read(entry / "busnum")) or 0,
                              _number(_read(entry / "devnum")) or 0,
                              _read(entry / "product") or ""))
    return found


def _pci(devices: Path) -> list[PciCoral]:
    found = []
    for entry in sorted(devices.iterdir()) if devices.is_dir() else ():
        ids = (_read(entry / "vendor") or "").lower(), (_read(entry / "device") or "").lower()
        if ids != PCI_CORAL:
            continue
        driver = entry / "driver"
        name = os.path.basename(os.readlink(driver)) if driver.is_symlink() else None
        # its class devices: <device>/apex/apex_N, which /sys/class/apex/apex_N links to
        apex = tuple(sorted(p.name for p in (entry / "apex").iterdir())) \
            if (entry / "apex").is_dir() else ()
        found.append(PciCoral(entry.name, name, apex))
    return found


def _undervoltage(sysfs: Path) -> bool | None:
    """A Raspberry Pi's firmware under-voltage alarm (hwmon `rpi_volt`, in0_lcrit_alarm)."""
    hwmon = sysfs / "class" / "hwmon"
    for entry in sorted(hwmon.iterdir()) if hwmon.is_dir() else ():
        if _read(entry / "name") == "rpi_volt":
            return _read(entry / "in0_lcrit_alarm") == "1"
    return None


def scan(sysfs: Path | None = None, dev: Path | None = None) -> Hardware:
    """Read the Corals and their driver state from sysfs (files only)."""
    default_sysfs, default_dev = roots()
    sysfs, dev = sysfs or default_sysfs, dev or default_dev
    hw = Hardware(sysfs, dev, linux=(sysfs / "bus").is_dir())
    if not hw.linux:
        return hw
    hw.usb = _usb(sysfs / "bus" / "usb" / "devices")
    hw.pci = _pci(sysfs / "bus" / "pci" / "devices")
    apex_class = sysfs / "class" / "apex"
    hw.apex = sorted(p.name for p in apex_class.iterdir()) if apex_class.is_dir() else []
    hw.modules = {name: (sysfs / "module" / name).is_dir() for name in ("gasket", "apex")}
    hw.board = _read(sysfs / "firmware" / "devicetree" / "base" / "model")
    hw.undervoltage = _undervoltage(sysfs)
    return hw


# --- who may open a node ---------------------------------------------------------------------


def may_open(path: Path) -> bool:
    """Can this process open `path` read-write? The kernel's own answer (effective ids)."""
    effective = os.access in os.supports_effective_ids
    return os.access(path, os.R_OK | os.W_OK, effective_ids=effective)


def _owner(path: Path) -> str:
    st = path.stat()
    try:
        user = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        user = str(st.st_uid)
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    return f"{user}:{group} {stat.S_IMODE(st.st_mode):04o}"


def _who() -> str:
    uid = os.geteuid()
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def node_finding(dev: Path, node: str, kind: str, label: str) -> Finding:
    """The device node `dev/node` exists and this user may open it, or why not and the fix."""
    path = dev / node
    shown = f"/dev/{node}" if dev == Path("/dev") else str(path)
    if not path.exists():
        return Finding("error", f"{label}: {shown} does not exist although sysfs lists the "
                                "device (a container without the device passed in?)",
                       "pass the device into the container, or run on the host",
                       (CONTAINER_FIX[kind],))
    if may_open(path):
        return Finding("ok", f"{label}: {shown} opens read-write for {_who()}")
    group, commands = NODE_ACCESS[kind]
    return Finding("error", f"{label}: {shown} is {_owner(path)}: {_who()} may not open it "
                            "read-write",
                   f"give the node to group {group} with a udev rule and join that group:",
                   commands)


# --- findings --------------------------------------------------------------------------------


def _speed_finding(coral: UsbCoral, label: str) -> Finding:
    if coral.speed is None:
        return Finding("note", f"{label}: speed unknown (no sysfs `speed`)")
    for least, level, what, fix in SPEED_ROWS:
        if coral.speed >= least:
            return Finding(level, f"{label}: {what.format(speed=coral.speed)}", fix)
    raise AssertionError("SPEED_ROWS ends at 0")


def _usb_findings(hw: Hardware, coral: UsbCoral, opened: bool) -> list[Finding]:
    label = f"Coral USB {coral.name}"
    level, what, fix = STATE_ROWS[(coral.state, opened)]
    found = [Finding(level, f"{label}: {what}", fix)]
    found.append(_speed_finding(coral, label))
    found.append(node_finding(hw.dev, coral.node, "usb", label))
    return found


def _pci_findings(hw: Hardware, card: PciCoral) -> list[Finding]:
    label = f"Coral PCIe {card.address}"
    if card.apex:
        return [Finding("ok", f"{label}: driver {card.driver or 'apex'} bound, "
                              f"{', '.join(card.apex)}")] + \
            [node_finding(hw.dev, name, "pci", label) for name in card.apex]
    if not hw.modules.get("apex"):
        missing = [m for m in ("gasket", "apex") if not hw.modules.get(m)]
        return [Finding("error", f"{label}: the Edge TPU is on the PCIe bus but its driver is "
                                 f"not loaded (no {' and no '.join(missing)} module)",
                        "install the gasket driver (feranick's gasket-dkms; Google's package "
                        "fails to build on recent kernels) and load it:", INSTALL_DRIVER)]
    return [Finding("error", f"{label}: the apex module is loaded but did not bind the card "
                             "(no /sys/class/apex entry)",
                    "reload it and read the kernel's reason:",
                    ("sudo modprobe -r apex && sudo modprobe apex", "sudo dmesg | grep -i apex"))]


def assess(hw: Hardware, opened: bool = False) -> list[Finding]:
    """Findings for the scanned hardware; `opened`: libedgetpu opened a TPU in this run."""
    if not hw.linux:
        return [Finding("note", f"no sysfs at {hw.sysfs} (not Linux?): the hardware was not "
                                "checked, only the runtime")]
    found: list[Finding] = []
    for coral in hw.usb:
        found += _usb_findings(hw, coral, opened)
    for card in hw.pci:
        found += _pci_findings(hw, card)
    listed = {name for card in hw.pci for name in card.apex}
    for name in hw.apex:  # apex entries without a matching PCI device dir (other layouts)
        if name not in listed:
            found.append(node_finding(hw.dev, name, "pci", f"Coral PCIe {name}"))
    if not (hw.usb or hw.pci or hw.apex):
        found.append(Finding("error", f"no Coral found: no USB device 1a6e:089a or 18d1:9302 and "
                                      f"no PCIe device 1ac1:089a in {hw.sysfs}",
                             "plug the USB Accelerator into a USB3 port; for an M.2/PCIe card "
                             "check it is seated and `lspci -nn | grep 089a` lists it"))
    for prefix, note in BOARD_NOTES:
        if hw.board and hw.board.startswith(prefix) and hw.usb:
            found.append(Finding("note", f"{hw.board}: {note}"))
    if hw.undervoltage:
        found.append(Finding("warning", "the board reports under-voltage now: a USB Coral may "
                                        "drop off the bus (USB transfer errors)",
                             "use the board's official power supply, or a powered USB hub "
                             "for the Coral"))
    return found


def rows(hw: Hardware) -> list[tuple[str, str]]:
    """Report rows: one per Coral, the PCIe driver modules, the board."""
    out = []
    for coral in hw.usb:
        speed = f"{coral.speed:g} Mb/s" if coral.speed is not None else "speed ?"
        ids = next(":".join(ids) for ids, state in USB_STATES.items() if state == coral.state)
        out.append((f"Coral USB {coral.name}",
                    f"{coral.state} ({ids}), {speed}, {coral.max_power}, /dev/{coral.node}"))
    for card in hw.pci:
        out.append((f"Coral PCIe {card.address}",
                    f"driver {card.driver or 'none'}, {', '.join(card.apex) or 'no apex node'}"))
    if hw.linux and not (hw.usb or hw.pci or hw.apex):
        out.append(("Coral", f"none in {hw.sysfs}"))
    if hw.pci or hw.apex:
        out.append(("modules", ", ".join(f"{m} {'loaded' if on else 'absent'}"
                                         for m, on in hw.modules.items())))
    if hw.board:
        out.append(("board", hw.board))
    return out


def first_error() -> str | None:
    """The first hardware error on this machine, for a one-line device error elsewhere."""
    try:
        errors = [f.what for f in assess(scan()) if f.level == "error"]
    except OSError:
        return None
    return errors[0] if errors else None
