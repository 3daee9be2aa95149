"""The first-run notice looks for machine code for THIS CPU in numba's cache: numba keys
each cached entry by CPU, so an install copied to another board compiles everything again.

A copy of the runtime in a temporary folder gets a cache of its own (numba caches beside
the module); its index entries are then re-keyed to another CPU with numba's own index
writer, as a cache made on another machine would be.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

KERNELS = ["_greedy", "_group_by_class"]
COMPILE = "from yolo_tpu import nms; nms.compile_kernels()"
MISSING = (f"import json; from yolo_tpu import nms; "
           f"print(json.dumps(sorted(nms.uncompiled_kernels(set({KERNELS!r})))))")
REKEY = """
from yolo_tpu import nms
for k in nms.KERNELS:
    if k.py_func.__name__ in {names!r}:
        cache = k._cache._cache_file
        index = cache._load_index()
        assert index, k.py_func.__name__
        other = {{(key[0], (key[1][0], "cortex-a76", "+neon"), *key[2:]): f
                 for key, f in index.items()}}
        cache._save_index(other)
"""


def _python(folder: Path, code: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(folder)}
    env.pop("NUMBA_CACHE_DIR", None)
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, check=True, cwd=folder)
    return proc.stdout


@pytest.fixture(scope="module")
def runtime_copy(tmp_path_factory) -> Path:
    """The runtime's sources in a fresh folder, its kernels compiled (cached) once."""
    folder = tmp_path_factory.mktemp("install")
    shutil.copytree(ROOT / "yolo_tpu", folder / "yolo_tpu",
                    ignore=shutil.ignore_patterns("__pycache__"))
    assert json.loads(_python(folder, MISSING)) == KERNELS  # nothing cached yet
    _python(folder, COMPILE)
    return folder


def test_cache_for_this_cpu_needs_no_notice(runtime_copy):
    assert json.loads(_python(runtime_copy, MISSING)) == []


def test_cache_for_another_cpu_counts_as_uncompiled(runtime_copy, tmp_path):
    """A full cache made on another CPU: the kernels are reported as about to compile."""
    copied = tmp_path / "board"
    shutil.copytree(runtime_copy, copied)  # the install, its numba cache and all
    _python(copied, REKEY.format(names=KERNELS))
    index = sorted(p.name for p in (copied / "yolo_tpu" / "__pycache__").glob("nms.*.nbi"))
    assert index  # the cache is there, not empty...
    assert json.loads(_python(copied, MISSING)) == KERNELS  # ...but not for this CPU


def test_cached_for_reads_the_cpu_key():
    from yolo_tpu.nms import cached_for
    mine, theirs = ("x86_64", "znver5", "+avx2"), ("aarch64", "cortex-a53", "+neon")
    assert cached_for({("sig", mine, ("code", "cells")): "f.nbc"}, mine)
    assert not cached_for({("sig", theirs, ("code", "cells")): "f.nbc"}, mine)
    assert not cached_for({}, mine)
    assert cached_for({None: None}, mine)  # unknown numba internals: no false notice
