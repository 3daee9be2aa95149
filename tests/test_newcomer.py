"""Issue 20's newcomer's list: what a new user meets first, each without a traceback or a
late failure."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import ROOT, SAMPLES


@pytest.mark.parametrize("module", ["yolo_tpu.detect", "yolo_tpu.batch"])
def test_outside_the_venv_one_line_names_the_environment(module):
    """A Python without the runtime's packages (-S: no site-packages, as the system python3
    after `make demo`): one line naming the missing module and .venv, no traceback."""
    proc = subprocess.run([sys.executable, "-S", "-m", module, "--help"], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
    assert "missing module numpy" in proc.stderr and "cv2" in proc.stderr
    assert f".venv/bin/python -m {module}" in proc.stderr


def test_the_runtime_still_imports_as_a_library_without_the_hint():
    """Imported (not run), a missing dependency stays an ImportError for the caller."""
    proc = subprocess.run([sys.executable, "-S", "-c", "import yolo_tpu.detect"], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "ModuleNotFoundError" in proc.stderr


def test_readme_says_how_to_run_inside_the_venv():
    text = (ROOT / "README.md").read_text()
    two_commands = text[text.index("## Two commands"):text.index("## Layout")]
    assert ".venv/bin/python" in two_commands and "source .venv/bin/activate" in two_commands
