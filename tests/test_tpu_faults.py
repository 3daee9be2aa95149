"""A TPU that stops does not stop the run (yolo_tpu/supervised.py), with the stand-in
libedgetpu's run-time faults: an invoke that hangs, fails (USB transfer error) or crashes at
invoke N, for one invoke or for good. The invokes are counted in a file across the rebuilt
interpreters' processes. Outputs are compared with a fault-free run's, line by line.

The hang bound is its floor, YOLO_TPU_INVOKE_TIMEOUT (1 s): a hung invoke costs that, no sleep.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, SAMPLES
from media import pan_zoom_frames, write_video
from test_edgetpu_runtime import DEVICES, compiled, libs  # noqa: F401 - fixtures

FRAMES = 40  # per video; the fault at invoke 50 falls in the second one (or past the first)
FAULT_AT = 50
NEVER = 10_000  # a device that never comes back


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("fault_videos")
    paths = [folder / "a.mp4", folder / "b.mp4"]
    for path, photo in zip(paths, ("dog.jpg", "horses.jpg")):
        assert write_video(path, pan_zoom_frames(SAMPLES / photo, (160, 120), FRAMES)) == FRAMES
    return paths


@pytest.fixture(scope="module")
def long_video(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("fault_long") / "long.mp4"
    assert write_video(path, pan_zoom_frames(SAMPLES / "kite.jpg", (160, 120), 70)) == 70
    return path


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """One trial cache for the module: the delegate and model trials run once."""
    return tmp_path_factory.mktemp("fault_cache")


def env(tmp_path: Path, lib: Path, cache: Path, fault: str = "", count: int = 1) -> dict:
    return {**os.environ, "YOLO_TPU_EDGETPU_LIB": str(lib), "STANDIN_EDGETPU_DEVICES": DEVICES,
            "XDG_CACHE_HOME": str(cache), "STANDIN_EDGETPU_FAULT": fault,
            "STANDIN_EDGETPU_FAULT_AT": str(FAULT_AT), "STANDIN_EDGETPU_FAULT_COUNT": str(count),
            "STANDIN_EDGETPU_COUNTER": str(tmp_path / "invokes"), "YOLO_TPU_INVOKE_TIMEOUT": "1",
            "PYTHONPATH": str(ROOT)}


def run(module: str, *args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def errors(stderr: str) -> list[str]:
    assert "Traceback" not in stderr, stderr
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


def detect_video(tmp_path, video, compiled, lib, cache, fault="", count=1, name="out"):
    out = tmp_path / f"{name}.jsonl"
    r = run("yolo_tpu.detect", "--model", str(compiled), "--video", str(video), "--device",
            "usb:0", "--json", str(out), env=env(tmp_path, lib, cache, fault, count))
    return r, lines(out) if out.exists() else []


@pytest.fixture(scope="module")
def baseline(long_video, compiled, libs, cache, tmp_path_factory):  # noqa: F811
    """The fault-free run's lines."""
    tmp = tmp_path_factory.mktemp("fault_free")
    r, records = detect_video(tmp, long_video, compiled, libs["ok"], cache)
    assert r.returncode == 0, r.stderr
    assert len(records) == 70 and not any("retried" in rec for rec in records)
    return records


def without_retried(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in rec.items() if k != "retried"} for rec in records]


@pytest.mark.parametrize("fault", ["hang", "error", "crash"])
def test_detect_video_survives_one_fault(tmp_path, long_video, compiled, libs, cache,  # noqa: F811
                                         baseline, fault):
    r, records = detect_video(tmp_path, long_video, compiled, libs["ok"], cache, fault)
    assert r.returncode == 0, r.stderr
    assert errors(r.stderr) == []
    assert "rebuilding the interpreter and retrying the frame" in r.stderr
    retried = [rec["frame"] for rec in records if rec.get("retried")]
    assert len(retried) == 1 and records[retried[0]]["retried"] == 1
    assert without_retried(records) == baseline  # no frame lost, none changed


def test_detect_video_with_a_tpu_that_never_comes_back(tmp_path, long_video, compiled,  # noqa: F811
                                                      libs, cache, baseline):
    r, records = detect_video(tmp_path, long_video, compiled, libs["ok"], cache, "hang", NEVER)
    assert r.returncode == 1
    (line,) = errors(r.stderr)
    assert "3 invokes in a row failed (last: no answer in 1.00 s)" in line
    assert "powered USB hub" in line and "yolo_tpu.doctor" in line
    # every frame before the fault is in the file, whole and as the fault-free run's
    assert 40 <= len(records) < 70 and records == baseline[:len(records)]


def batch(tmp_path, videos, compiled, lib, cache, fault="", count=1):
    tmp_path.mkdir(exist_ok=True)
    out = tmp_path / "out"
    r = run("yolo_tpu.batch", *map(str, videos), "--out", str(out), "--model", str(compiled),
            "--device", "usb:0", env=env(tmp_path, lib, cache, fault, count))
    return r, out


def test_batch_survives_a_crash_and_ends_in_one_line_when_the_tpu_is_gone(
        tmp_path, videos, compiled, libs, cache):  # noqa: F811
    r, out = batch(tmp_path / "free", videos, compiled, libs["ok"], cache)
    assert r.returncode == 0, r.stderr
    free = {v.stem: lines(out / f"{v.stem}.jsonl") for v in videos}
    assert [len(free[v.stem]) for v in videos] == [FRAMES, FRAMES]

    r, out = batch(tmp_path / "crash", videos, compiled, libs["ok"], cache, "crash")
    assert r.returncode == 0, r.stderr
    crashed = {v.stem: lines(out / f"{v.stem}.jsonl") for v in videos}
    assert [rec.get("retried", 0) for v in videos for rec in crashed[v.stem]].count(1) == 1
    assert {k: without_retried(v) for k, v in crashed.items()} == free

    r, out = batch(tmp_path / "gone", videos, compiled, libs["ok"], cache, "error", NEVER)
    assert r.returncode == 1
    (line,) = errors(r.stderr)
    assert "invokes in a row failed" in line and "1 of 2 videos done and kept" in line
    assert "power" in line and "run again with --resume" in line
    # the first video is complete and as before; the second, cut short, is not left at all
    assert lines(out / "a.jsonl") == free["a"]
    assert not (out / "b.jsonl").exists()
    assert not [p.name for p in out.iterdir() if "partial" in p.name or p.name.startswith(".b")]
