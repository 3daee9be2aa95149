"""Which libedgetpu to install for this Python, architecture, system and LiteRT build.

libedgetpu's delegate is compiled against one TensorFlow Lite; Coral's own package (16.0,
2021) was built against TF 2.5 and crashes newer runtimes (google-coral/edgetpu#812), and
Coral's pycoral / tflite-runtime 2.5 wheels stop at Python 3.9. The community's builds are
feranick's (github.com/feranick/libedgetpu releases): one release per TF version, each in a
`std` and a `max` (full clock, hotter) package for Debian bullseye/bookworm/trixie and Ubuntu
24.04 on amd64, arm64 and armhf; Frigate installs libedgetpu1-max 16.0TF2.17.1-1.

The knowledge is in tables (`RELEASES`, `LITERT_TF`, `SYSTEMS`, `ARCHES`, `RUNTIME_ROWS`);
`advise` picks a row and returns the commands to paste. The file names follow the releases'
naming; `SEEN` lists the ones read in public install scripts (Frigate's Dockerfile and
others), and the advice says when the chosen one is not among them.
"""
from __future__ import annotations

import platform
import sys
from dataclasses import dataclass
from pathlib import Path

RELEASES_URL = "https://github.com/feranick/libedgetpu/releases"

# feranick/libedgetpu releases: (tag, TF version it was built against), oldest first
RELEASES = (
    ("v16.0TF2.15.1-1", (2, 15, 1)),
    ("16.0TF2.16.1-1", (2, 16, 1)),
    ("16.0TF2.17.1-1", (2, 17, 1)),
    ("16.0TF2.19.1-1", (2, 19, 1)),
)

# release assets seen in public install scripts (the rest follow the same naming)
SEEN = frozenset({
    "libedgetpu1-std_16.0tf2.15.1-1.bookworm_arm64.deb",
    "libedgetpu1-std_16.0tf2.15.1-1.bullseye_arm64.deb",
    "libedgetpu1-std_16.0tf2.16.1-1.bookworm_arm64.deb",
    "libedgetpu1-max_16.0tf2.16.1-1.bookworm_arm64.deb",
    "libedgetpu1-std_16.0tf2.17.1-1.bookworm_arm64.deb",
    "libedgetpu1-max_16.0tf2.17.1-1.bookworm_arm64.deb",
    "libedgetpu1-max_16.0tf2.17.1-1.bookworm_amd64.deb",
    "libedgetpu1-std_16.0tf2.19.1-1.bookworm_amd64.deb",
    "libedgetpu1-max_16.0tf2.19.1-1.bookworm_arm64.deb",
    "libedgetpu1-std_16.0tf2.19.1-1.trixie_arm64.deb",
})

# ai-edge-litert version (major.minor) -> the TensorFlow it matches (keras-team/keras#21912:
# 1.3.0 for TF 2.20; PINTO0309/onnx2tf#745: 1.2.0 with TF 2.19). tflite-runtime's version is
# TF's own.
LITERT_TF = {(1, 2): (2, 19), (1, 3): (2, 20)}

# /etc/os-release (ID, VERSION_CODENAME or VERSION_ID) -> the packages' system suffix
SYSTEMS = {
    ("debian", "bullseye"): "bullseye", ("raspbian", "bullseye"): "bullseye",
    ("debian", "bookworm"): "bookworm", ("raspbian", "bookworm"): "bookworm",
    ("debian", "trixie"): "trixie", ("raspbian", "trixie"): "trixie",
    ("ubuntu", "24.04"): "ubuntu24.04",
}

# platform.machine() -> Debian architecture of the packages
ARCHES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
          "armv7l": "armhf", "armv8l": "armhf"}

# the runtime's TF version range [low, high) -> which libedgetpu fits it
RUNTIME_ROWS = (
    ((2, 5), (2, 6), "coral"),       # Coral's libedgetpu1-std 16.0 was built against TF 2.5
    ((2, 6), (2, 15), "upgrade"),    # neither Coral's nor a feranick release matches
    ((2, 15), (99, 0), "feranick"),  # the newest release built at or below the runtime's TF
)


@dataclass(frozen=True)
class Box:
    """What the choice depends on."""
    python: tuple[int, int]
    machine: str
    os_id: str
    os_version: str  # VERSION_CODENAME, or VERSION_ID where there is none (Ubuntu: 24.04)
    flavour: str | None   # "ai_edge_litert", "tflite_runtime" or None (no LiteRT)
    version: str | None


@dataclass(frozen=True)
class Advice:
    summary: str
    commands: tuple[str, ...]
    notes: tuple[str, ...] = ()


def read_os_release(path: Path = Path("/etc/os-release")) -> tuple[str, str]:
    """(ID, VERSION_CODENAME) from os-release; VERSION_ID for Ubuntu's 24.04 row."""
    fields = {}
    try:
        for line in path.read_text().splitlines():
            key, _, value = line.partition("=")
            fields[key.strip()] = value.strip().strip('"')
    except OSError:
        return "", ""
    os_id = fields.get("ID", "")
    if os_id == "ubuntu":
        return os_id, fields.get("VERSION_ID", "")
    return os_id, fields.get("VERSION_CODENAME", "")


def this_box(runtime: dict | None) -> Box:
    """The running interpreter, machine and system, with the LiteRT doctor found (or None)."""
    os_id, os_version = read_os_release()
    return Box(sys.version_info[:2], platform.machine(), os_id, os_version,
               (runtime or {}).get("flavour"), (runtime or {}).get("version"))


def _version(text: str | None) -> tuple[int, ...]:
    parts = []
    for piece in (text or "").split(".")[:3]:
        digits = "".join(c for c in piece if c.isdigit()) if piece[:1].isdigit() else ""
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def runtime_tf(flavour: str | None, version: str | None) -> tuple[int, ...] | None:
    """The TensorFlow version a LiteRT build corresponds to, or None if not known."""
    v = _version(version)
    if flavour == "tflite_runtime" and len(v) >= 2:
        return v
    if flavour == "ai_edge_litert" and len(v) >= 2:
        return LITERT_TF.get(v[:2])
    return None


def _row(tf: tuple[int, ...]) -> str:
    for low, high, kind in RUNTIME_ROWS:
        if low <= tf[:2] < high:
            return kind
    return "upgrade"


def _release(tf: tuple[int, ...] | None) -> tuple[str, tuple[int, int, int]]:
    """The newest feranick release built at or below `tf` (the newest of all if unknown)."""
    fitting = [r for r in RELEASES if tf is None or r[1][:2] <= tf[:2]]
    return (fitting or RELEASES[:1])[-1]


def asset(tag_tf: tuple[int, int, int], clock: str, system: str, arch: str) -> str:
    tf = ".".join(map(str, tag_tf))
    return f"libedgetpu1-{clock}_16.0tf{tf}-1.{system}_{arch}.deb"


def advise(box: Box) -> Advice:
    """The libedgetpu package (and LiteRT) to install for `box`, as commands to paste."""
    arch = ARCHES.get(box.machine)
    system = SYSTEMS.get((box.os_id, box.os_version))
    notes = []
    if box.python >= (3, 10):
        notes.append("Coral's pycoral and tflite-runtime 2.5 have no builds for Python >= 3.10; "
                     "yolo_tpu needs neither (ai-edge-litert loads the delegate)")
    commands: list[str] = []
    tf = runtime_tf(box.flavour, box.version)
    if box.flavour is None:
        commands.append("pip install ai-edge-litert")
        notes.append("no LiteRT installed: ai-edge-litert first, then the libedgetpu below")
    kind = _row(tf) if tf else "feranick"
    if kind == "coral":
        return Advice(f"Coral's libedgetpu1-std 16.0 matches {box.flavour} {box.version} "
                      "(both TF 2.5)",
                      ("# Coral's apt repository: https://coral.ai/software/#debian-packages",
                       "sudo apt install libedgetpu1-std"), tuple(notes))
    if kind == "upgrade":
        commands.append("pip install ai-edge-litert")
        notes.append(f"{box.flavour} {box.version} matches no libedgetpu build (Coral's is TF "
                     "2.5, feranick's start at 2.15): replace it with ai-edge-litert")
        tf = None
    if tf is None and box.flavour == "ai_edge_litert" and kind != "upgrade":
        notes.append(f"ai-edge-litert {box.version}: its TF version is not in the doctor's "
                     "table, so the newest release is the nearest; the trial says if it loads")
    tag, tag_tf = _release(tf)
    if arch is None:
        return Advice(f"no libedgetpu package for {box.machine}: build feranick's sources",
                      tuple(commands) + (f"# {RELEASES_URL} (README: building)",), tuple(notes))
    if system is None:
        notes.append(f"no package for {box.os_id or 'this system'} {box.os_version}: the Debian "
                     "bookworm one is the nearest (Debian-based systems), else build from source")
        system = "bookworm"
    name = asset(tag_tf, "std", system, arch)
    if name not in SEEN:
        notes.append(f"{name} follows the releases' naming but was not seen in a public "
                     f"script: check {RELEASES_URL}/tag/{tag}")
    notes.append(f"libedgetpu1-max ({asset(tag_tf, 'max', system, arch)}) runs the TPU at full "
                 "clock: faster, hotter; Frigate installs libedgetpu1-max 16.0TF2.17.1-1")
    commands += [f"wget {RELEASES_URL}/download/{tag}/{name}",
                 f"sudo apt install ./{name}"]
    return Advice(f"feranick's libedgetpu1-std {tag} (built against TF "
                  f"{'.'.join(map(str, tag_tf))}) for {system} {arch}", tuple(commands),
                  tuple(notes))
