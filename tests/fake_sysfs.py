"""Fake sysfs and /dev trees shaped like the kernel's, for the doctor's hardware section.

Layout as Linux has it: /sys/bus/usb/devices/<port>/{idVendor,idProduct,speed,busnum,devnum,
bMaxPower,product}; a PCI function at /sys/devices/pci0000:00/<addr> linked from
/sys/bus/pci/devices/<addr>, with {vendor,device}, a `driver` link into
/sys/bus/pci/drivers/apex and its class device <addr>/apex/apex_N linked from
/sys/class/apex/apex_N; loaded modules as /sys/module/<name>; a Raspberry Pi's devicetree
model and its `rpi_volt` hwmon. Device nodes are plain files in the fake /dev (libusb and
libedgetpu only open them; the doctor only checks access).
"""
from __future__ import annotations

import os
from pathlib import Path

BOOT = ("1a6e", "089a")   # Coral USB before its firmware is loaded
READY = ("18d1", "9302")  # after


def usb(sysfs: Path, dev: Path, port: str, ids: tuple[str, str], speed: str, busnum: int,
        devnum: int, max_power: str = "896mA", node_mode: int = 0o664,
        node: bool = True) -> Path:
    """One USB device (and its /dev/bus/usb/BBB/DDD node unless node=False)."""
    d = sysfs / "bus" / "usb" / "devices" / port
    d.mkdir(parents=True)
    product = "" if ids == BOOT else "Google Inc."
    for name, value in {"idVendor": ids[0], "idProduct": ids[1], "speed": speed,
                        "busnum": str(busnum), "devnum": str(devnum), "bMaxPower": max_power,
                        "product": product}.items():
        (d / name).write_text(value + "\n")
    (d.parent / f"{port}:1.0").mkdir()  # its interface: no idVendor, not a device
    if node:
        path = dev / "bus" / "usb" / f"{busnum:03d}" / f"{devnum:03d}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
        path.chmod(node_mode)
    return d


def other_usb(sysfs: Path, port: str = "1-1") -> None:
    """A non-Coral device (a keyboard) and the root hub, which the doctor must ignore."""
    for name, ids in ((port, ("046d", "c31c")), ("usb1", ("1d6b", "0002"))):
        d = sysfs / "bus" / "usb" / "devices" / name
        d.mkdir(parents=True)
        (d / "idVendor").write_text(ids[0] + "\n")
        (d / "idProduct").write_text(ids[1] + "\n")
        (d / "speed").write_text("12\n")


def pci(sysfs: Path, dev: Path, address: str = "0000:01:00.0", driver: bool = True,
        index: int = 0, node_mode: int = 0o660) -> Path:
    """A PCIe Edge TPU; with driver=True the apex module bound it (class device, node)."""
    real = sysfs / "devices" / "pci0000:00" / address
    real.mkdir(parents=True)
    (real / "vendor").write_text("0x1ac1\n")
    (real / "device").write_text("0x089a\n")
    link = sysfs / "bus" / "pci" / "devices" / address
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(os.path.relpath(real, link.parent))
    if driver:
        drv = sysfs / "bus" / "pci" / "drivers" / "apex"
        drv.mkdir(parents=True, exist_ok=True)
        (real / "driver").symlink_to(os.path.relpath(drv, real))
        cls = real / "apex" / f"apex_{index}"
        cls.mkdir(parents=True)
        (cls / "dev").write_text(f"120:{index}\n")
        entry = sysfs / "class" / "apex" / f"apex_{index}"
        entry.parent.mkdir(parents=True, exist_ok=True)
        entry.symlink_to(os.path.relpath(cls, entry.parent))
        for module in ("gasket", "apex"):
            (sysfs / "module" / module).mkdir(parents=True, exist_ok=True)
        node = dev / f"apex_{index}"
        node.parent.mkdir(parents=True, exist_ok=True)
        node.write_bytes(b"")
        node.chmod(node_mode)
    return real


def machine(root: Path) -> tuple[Path, Path]:
    """An empty Linux machine: (sysfs, dev) with the usual top-level folders."""
    sysfs, dev = root / "sys", root / "dev"
    for sub in ("bus/usb/devices", "bus/pci/devices", "class", "module", "devices"):
        (sysfs / sub).mkdir(parents=True, exist_ok=True)
    dev.mkdir(parents=True, exist_ok=True)
    return sysfs, dev


def raspberry_pi(sysfs: Path, undervoltage: bool = False) -> None:
    model = sysfs / "firmware" / "devicetree" / "base" / "model"
    model.parent.mkdir(parents=True)
    model.write_bytes(b"Raspberry Pi 4 Model B Rev 1.4\x00")
    hwmon = sysfs / "class" / "hwmon" / "hwmon1"
    hwmon.mkdir(parents=True)
    (hwmon / "name").write_text("rpi_volt\n")
    (hwmon / "in0_lcrit_alarm").write_text("1\n" if undervoltage else "0\n")


def env(sysfs: Path, dev: Path) -> dict[str, str]:
    return {"YOLO_TPU_SYSFS": str(sysfs), "YOLO_TPU_DEV": str(dev)}
