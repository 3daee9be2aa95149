"""Shared test fixtures: the repo's bundled files and the darknet reference library."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CFG = ROOT / "cfg" / "yolov3-tiny.cfg"
NAMES = ROOT / "cfg" / "coco.names"
WEIGHTS = ROOT / "weights" / "yolov3-tiny.weights"
SAMPLES = ROOT / "samples"
DARKNET_CFG = Path("/usr/share/darknet/cfg")
ALEXEYAB_CFG = ROOT.parent / "shared" / "cfg"  # AlexeyAB's own cfgs (read-only copies)


def require(missing: str | None, what: str) -> None:
    """Skip when `missing` says why `what` is not here; fail in CI, which installs it."""
    if missing and os.environ.get("CI"):
        pytest.fail(f"{what} required in CI: {missing}")
    if missing:
        pytest.skip(missing)


@pytest.fixture(scope="session")
def need_darknet():
    from converters.darknet_ref import available
    require(available(), "darknet reference")


@pytest.fixture(scope="session")
def need_alexeyab():
    """AlexeyAB's darknet library: built once into build/ by `make alexeyab` (~30 s)."""
    from converters import darknet_ref
    if darknet_ref.available(darknet_ref.ALEXEYAB):
        subprocess.run(["make", "-s", "-C", str(ROOT), "alexeyab"], capture_output=True)
    require(darknet_ref.available(darknet_ref.ALEXEYAB), "AlexeyAB darknet reference")
    if not ALEXEYAB_CFG.is_dir():
        pytest.skip(f"{ALEXEYAB_CFG} missing: the shared AlexeyAB cfgs")


@pytest.fixture(scope="session")
def tiny_int8_model(tmp_path_factory) -> Path:
    """The model `make demo` builds: bundled weights, --leaky addrelu, int8, 100 samples."""
    from converters.darknet import convert
    from converters.quantize import quantize
    c = convert(str(CFG), str(WEIGHTS), "addrelu", names=str(NAMES))
    path = tmp_path_factory.mktemp("model") / "yolov3-tiny_int8.tflite"
    path.write_bytes(quantize(c.model, c.meta, "int8", None, 100, progress=False))
    return path


FUZZ_COUNTS: dict[str, int] = {}  # reader -> cases run by tests/test_fuzz.py


def pytest_terminal_summary(terminalreporter):
    """The fuzz suite's case count per reader, in every run's output (not only with -s)."""
    if FUZZ_COUNTS:
        terminalreporter.section("fuzz cases per reader")
        for reader, n in sorted(FUZZ_COUNTS.items()):
            terminalreporter.write_line(f"{reader:<28}{n:>6}")
        terminalreporter.write_line(f"{'total':<28}{sum(FUZZ_COUNTS.values()):>6}")
