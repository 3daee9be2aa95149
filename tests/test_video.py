"""`python -m yolo_tpu.detect --video`: every frame in order, outputs that match the source,
damaged and unreadable files, clean stop on SIGTERM.

The videos are written here by OpenCV from the sample photos (pans and zooms, frame indices
stamped in the corner), then damaged on purpose where a test needs it.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest

from conftest import ROOT, SAMPLES
from media import corrupt_middle, pan_zoom_frames, read_frames, read_stamp, stamp_frame, \
    truncate_file, write_video

from test_detect_cli import assert_no_traceback, error_lines, json_lines

from yolo_tpu import detect


def run_cli(*args: str, model: Path, timeout: float = 180) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "yolo_tpu.detect", *args, "--model", str(model)]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def stamped_clip(path: Path, n: int, size: tuple[int, int], photo: str = "dog.jpg",
                 fps: float = 15.0) -> int:
    """A pan/zoom clip whose frame k carries the stamp k."""
    frames = (stamp_frame(f, k) for k, f in
              enumerate(pan_zoom_frames(SAMPLES / photo, size, n)))
    return write_video(path, frames, fps=fps)


def video_props(path: Path) -> tuple[int, float, int, int]:
    cap = cv2.VideoCapture(str(path))
    props = (int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), cap.get(cv2.CAP_PROP_FPS),
             int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    cap.release()
    return props


def no_partials(folder: Path) -> bool:
    return not [p for p in os.listdir(folder) if ".partial" in p]


@pytest.fixture(scope="module")
def odd_clip(tmp_path_factory) -> Path:
    """45 frames at an odd size (VideoWriter stores 332x250), stamped."""
    path = tmp_path_factory.mktemp("video") / "pan odd.mp4"
    stamped_clip(path, 45, (333, 251))
    return path


def test_every_frame_in_order_json_and_saved_video(tiny_int8_model, odd_clip, tmp_path):
    out_video, out_json = tmp_path / "annotated.mp4", tmp_path / "frames.jsonl"
    r = run_cli("--video", str(odd_clip), "--json", str(out_json), "--save", str(out_video),
                model=tiny_int8_model)
    assert r.returncode == 0, r.stderr
    assert_no_traceback(r.stderr)
    source = read_frames(odd_clip)
    lines = json_lines(out_json.read_text())
    assert [d["frame"] for d in lines] == list(range(len(source))) and len(source) == 45
    h, w = source[0].shape[:2]
    assert all((d["width"], d["height"]) == (w, h) for d in lines)
    assert all(d["source"] == str(odd_clip) for d in lines)
    # stream time: frame k of a 15 FPS file is at k / 15 s
    assert [d["t_ms"] for d in lines] == pytest.approx([k * 1000 / 15 for k in range(45)], abs=1)
    assert sum(len(d["detections"]) for d in lines) > 0
    count, fps, vw, vh = video_props(out_video)
    assert (count, vw, vh) == (len(source), w, h) and fps == pytest.approx(15.0)
    # the annotated frame k is the source's frame k: its stamp reads back as k (top-left
    # corner; the overlay sits bottom-left; a box drawn over the stamp makes it unreadable)
    stamps = [read_stamp(f) for f in read_frames(out_video)]
    assert sum(s is not None for s in stamps) >= 15
    assert all(s == k for k, s in enumerate(stamps) if s is not None)
    summary = r.stderr.strip().splitlines()[-2]
    assert "45 frames, 0 dropped, 0 decode errors" in summary and "inference ms p50" in summary
    assert no_partials(tmp_path)


def test_frame_k_detections_equal_image_mode(tiny_int8_model, odd_clip, tmp_path):
    r = run_cli("--video", str(odd_clip), "--json", "-", model=tiny_int8_model)
    assert r.returncode == 0, r.stderr
    lines = json_lines(r.stdout)
    frames = read_frames(odd_clip)
    found = [d["frame"] for d in lines if d["detections"]]
    assert len(found) >= 10
    picks = [found[0], found[len(found) // 2], found[-1]]
    for k in picks:
        cv2.imwrite(str(tmp_path / f"frame{k:03d}.png"), frames[k])  # lossless
    r = run_cli("--image", str(tmp_path), "--json", "-", model=tiny_int8_model)
    assert r.returncode == 0, r.stderr
    images = json_lines(r.stdout)
    assert len(images) == len(picks)
    for k, image in zip(picks, images):
        assert lines[k]["frame"] == k
        assert lines[k]["detections"] == image["detections"], f"frame {k}"


def test_save_into_a_folder_names_the_video_after_the_source(tiny_int8_model, odd_clip,
                                                             tmp_path):
    r = run_cli("--video", str(odd_clip), "--save", str(tmp_path), "--max-frames", "5",
                model=tiny_int8_model)
    assert r.returncode == 0, r.stderr
    assert video_props(tmp_path / "pan odd.mp4")[0] == 5
    # without --json or --save... a readable line per frame on stdout
    r = run_cli("--video", str(odd_clip), "--max-frames", "3", model=tiny_int8_model)
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 3
    assert r.stdout.startswith("frame 0 t=0.00s: ")


def test_corrupt_middle_is_skipped_and_counted(tiny_int8_model, tmp_path):
    clip = tmp_path / "damaged.mp4"
    n = stamped_clip(clip, 90, (320, 240))
    corrupt_middle(clip, start_fraction=0.45, length=0.1)
    out_json, out_video = tmp_path / "d.jsonl", tmp_path / "d.mp4"
    r = run_cli("--video", str(clip), "--json", str(out_json), "--save", str(out_video),
                model=tiny_int8_model)
    assert_no_traceback(r.stderr)
    assert r.returncode == 1, r.stderr
    errors = error_lines(r.stderr)
    assert len(errors) == 1 and str(clip) in errors[0] and "undecodable frames skipped" in errors[0]
    lines = json_lines(out_json.read_text())
    skipped = int(errors[0].split(": ")[2].split()[0])
    indices = [d["frame"] for d in lines]
    assert skipped > 0 and len(lines) + skipped == n
    # frames after the damage keep their true position in the file
    assert indices == sorted(indices) and indices[-1] == n - 1
    assert f"{len(lines)} frames, 0 dropped, {skipped} decode errors" in r.stderr
    assert video_props(out_video)[0] == len(lines)  # outputs cover every decoded frame


def test_truncated_avi_keeps_what_decoded(tiny_int8_model, tmp_path):
    clip = tmp_path / "cut.avi"
    n = stamped_clip(clip, 60, (320, 240))
    truncate_file(clip, 0.5)
    out_json, out_video = tmp_path / "cut.jsonl", tmp_path / "cut_annotated.avi"
    r = run_cli("--video", str(clip), "--json", str(out_json), "--save", str(out_video),
                model=tiny_int8_model)
    assert r.returncode == 1, r.stderr
    assert_no_traceback(r.stderr)
    (error,) = error_lines(r.stderr)
    lines = json_lines(out_json.read_text())
    assert 10 < len(lines) < n
    assert f"video ends early: {len(lines)} of {n} frames decoded" in error and str(clip) in error
    assert [d["frame"] for d in lines] == list(range(len(lines)))
    assert video_props(out_video)[0] == len(lines)


@pytest.mark.parametrize("damage, reason", [
    ("truncated mp4", "truncated or unfinished MP4: no 'moov' index"),
    ("text", "cannot open as a video"),
    ("missing", "no such file"),
    ("folder", "is a folder"),
])
def test_unreadable_videos_one_line(capsys, tiny_int8_model, odd_clip, tmp_path, damage, reason):
    path = tmp_path / "clip.mp4"
    if damage == "truncated mp4":
        shutil.copy(odd_clip, path)
        truncate_file(path, 0.7)
    elif damage == "text":
        path.write_text("not a video\n")
    elif damage == "folder":
        path = tmp_path
    out = tmp_path / "out.jsonl"
    status = detect.main(["--video", str(path), "--model", str(tiny_int8_model),
                          "--json", str(out)])
    err = capsys.readouterr().err
    assert status == 2
    assert error_lines(err) == [f"error: {path}: {reason}" + error_lines(err)[0].split(reason, 1)[1]]
    assert "Traceback" not in err and "moov atom" not in err  # FFmpeg's own noise is off


@pytest.mark.parametrize("save, reason", [
    ("out.gif", "cannot write video of type '.gif'"),
    ("SOURCE", "is the input video; it would be overwritten"),
])
def test_bad_save_target(capsys, tiny_int8_model, odd_clip, save, reason):
    save = str(odd_clip) if save == "SOURCE" else save
    status = detect.main(["--video", str(odd_clip), "--model", str(tiny_int8_model),
                          "--save", save])
    (error,) = error_lines(capsys.readouterr().err)
    assert status == 2 and reason in error and error.startswith("error: --save ")


@pytest.mark.parametrize("display", [None, ":99"])
def test_show_without_a_display_is_one_line(capsys, tiny_int8_model, odd_clip, tmp_path,
                                            monkeypatch, display):
    # OpenCV's Qt would abort the process; we say why instead, before any output is written
    if display is None:
        monkeypatch.delenv("DISPLAY", raising=False)
    elif os.path.exists(f"/tmp/.X11-unix/X{display[1:]}"):
        pytest.skip(f"an X server runs on {display}")
    else:
        monkeypatch.setenv("DISPLAY", display)
    out = tmp_path / "frames.jsonl"
    status = detect.main(["--video", str(odd_clip), "--model", str(tiny_int8_model),
                          "--show", "--json", str(out)])
    (error,) = error_lines(capsys.readouterr().err)
    assert status == 2 and error.startswith("error: --show: no display")
    assert not out.exists()


def test_image_only_flags_rejected_for_images(capsys, tiny_int8_model):
    status = detect.main(["--image", str(SAMPLES / "dog.jpg"), "--model", str(tiny_int8_model),
                          "--max-frames", "3"])
    assert status == 2
    assert error_lines(capsys.readouterr().err) == [
        "error: --max-frames applies to --video, --cam and --source only"]


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_stops_cleanly_with_finalized_outputs(tiny_int8_model, tmp_path, sig, code):
    clip = tmp_path / "long.mp4"
    write_video(clip, pan_zoom_frames(SAMPLES / "horses.jpg", (320, 240), 2000), fps=25)
    out_json, out_video = tmp_path / "long.jsonl", tmp_path / "long_annotated.mp4"
    cmd = [sys.executable, "-m", "yolo_tpu.detect", "--video", str(clip), "--model",
           str(tiny_int8_model), "--json", str(out_json), "--save", str(out_video)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # wait until frames are flowing
            if out_json.exists() and len(out_json.read_text().splitlines()) >= 20:
                break
            time.sleep(0.05)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == code, err
    assert_no_traceback(err)
    assert error_lines(err) == []  # a requested stop is not an error, nor "ends early"
    lines = json_lines(out_json.read_text())  # every line complete
    assert 20 <= len(lines) < 2000
    assert [d["frame"] for d in lines] == list(range(len(lines)))
    assert video_props(out_video)[0] == len(lines)  # finalized, playable, same frames
    assert f"{len(lines)} frames, 0 dropped" in err
    assert no_partials(tmp_path)
