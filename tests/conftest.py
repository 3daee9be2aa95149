"""Shared test fixtures: the repo's bundled files and the darknet reference library."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CFG = ROOT / "cfg" / "yolov3-tiny.cfg"
NAMES = ROOT / "cfg" / "coco.names"
WEIGHTS = ROOT / "weights" / "yolov3-tiny.weights"
SAMPLES = ROOT / "samples"
DARKNET_CFG = Path("/usr/share/darknet/cfg")


def darknet_skip_reason() -> str | None:
    """Why the darknet oracle cannot run here; CI installs it, so there it always runs."""
    from converters.darknet_ref import available
    reason = available()
    if reason and os.environ.get("CI"):
        pytest.fail(f"darknet reference required in CI: {reason}")
    return reason


@pytest.fixture(scope="session")
def need_darknet():
    reason = darknet_skip_reason()
    if reason:
        pytest.skip(reason)
