"""`python -m yolo_tpu.batch`: many videos in, one JSON lines file (and annotated video) out
per input, a table and summary.json; broken inputs, SIGKILL then --resume, SIGINT/SIGTERM.

The CLI runs as a subprocess on real videos written here (pan/zoom clips over samples/*.jpg,
odd sizes, 30-60 frames), and every output is read back: JSON lines frame by frame, annotated
videos frame-counted with cv2.VideoCapture. Argument errors that never load a model call
`main()` in-process. ~20 s on 2 cores, plus the session's model fixture (~25 s).
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import cv2
import pytest

from conftest import ROOT, SAMPLES
from media import corrupt_middle, pan_zoom_frames, truncate_file, video_info, write_video


def frame_count(path: Path) -> int:
    return video_info(path)[0]

from yolo_tpu import batch

FPS = 15.0


# ---------------------------------------------------------------- helpers

def batch_cmd(*args: str, model: Path) -> list[str]:
    return [sys.executable, "-m", "yolo_tpu.batch", *args, "--model", str(model)]


def run_batch(*args: str, model: Path) -> subprocess.CompletedProcess:
    return subprocess.run(batch_cmd(*args, model=model), cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def clip(path: Path, photo: str, n: int, size: tuple[int, int] = (320, 240)) -> Path:
    """A pan/zoom video of `n` frames over samples/<photo> (mp4v for .mp4, MJPG otherwise)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    assert write_video(path, pan_zoom_frames(SAMPLES / photo, size, n), FPS) == n
    return path


def read_frame(path: Path, k: int):
    """Frame k, read in order (no seeking, so exactly the frame the batch decodes)."""
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    for _ in range(k + 1):
        ok, image = cap.read()
        assert ok, (path, k)
    cap.release()
    return image


def jsonl(path: Path) -> list[dict]:
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n"), f"{path}: last line incomplete"
    return [json.loads(line) for line in text.splitlines()]


def per_class(records: list[dict]) -> dict[str, int]:
    return dict(Counter(d["label"] for r in records for d in r["detections"]))


def partials(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".partial" in p.name)


def assert_complete(out: Path, stem: str, source: Path, n: int, every: int = 1) -> list[dict]:
    """`stem.jsonl` holds frames 0, every, 2*every, ... < n, once each and in order, and
    `stem.mp4` (when it exists) has as many frames."""
    records = jsonl(out / f"{stem}.jsonl")
    assert [r["frame"] for r in records] == list(range(0, n, every)), stem
    assert {r["source"] for r in records} == {str(source)}
    video = out / f"{stem}.mp4"
    if video.exists():
        assert frame_count(video) == len(records), stem
    return records


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


def assert_no_traceback(stderr: str) -> None:
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr


def table_rows(stdout: str) -> list[list[str]]:
    """The table's rows (header first), split into its columns (two or more spaces apart)."""
    return [re.split(r"\s{2,}", line.strip()) for line in stdout.splitlines() if line.strip()]


def mtimes(out: Path, stem: str) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in out.glob(f"{stem}.*")}


def start_batch(*args: str, model: Path, logs: Path) -> subprocess.Popen:
    """The batch in the background, its streams to files (a full pipe must not block it)."""
    with open(logs / "stdout", "w") as out, open(logs / "stderr", "w") as err:
        return subprocess.Popen(batch_cmd(*args, model=model), cwd=ROOT, stdout=out,
                                stderr=err, text=True)


def wait_for(path: Path, proc: subprocess.Popen, logs: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            pytest.fail(f"batch exited ({proc.returncode}) before {path.name} appeared:\n"
                        + (logs / "stderr").read_text())
        if time.monotonic() > deadline:
            pytest.fail(f"{path.name} did not appear within {timeout:g} s")
        time.sleep(0.01)


def wait_for_partial(out: Path, stem: str, proc: subprocess.Popen, logs: Path,
                     timeout: float = 60.0) -> Path:
    """The partial video of `stem` (`.stem.partial.TAG.mp4`, tagged per run) once it exists."""
    deadline = time.monotonic() + timeout
    while not (found := list(out.glob(f".{stem}.partial.*.mp4"))):
        if proc.poll() is not None:
            pytest.fail(f"batch exited ({proc.returncode}) before {stem}'s partial video "
                        "appeared:\n" + (logs / "stderr").read_text())
        if time.monotonic() > deadline:
            pytest.fail(f"{stem}'s partial video did not appear within {timeout:g} s")
        time.sleep(0.01)
    return found[0]


def finish(proc: subprocess.Popen, logs: Path, timeout: float = 60.0) -> tuple[int, str, str]:
    try:
        rc = proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return rc, (logs / "stdout").read_text(), (logs / "stderr").read_text()


# ---------------------------------------------------------------- a folder, a glob and a file

@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    """Five videos under three kinds of input; same base name `clip` in two folders."""
    root = tmp_path_factory.mktemp("clips")
    c = {
        "birds": clip(root / "a" / "birds.avi", "eagle.jpg", 30),
        "clip": clip(root / "a" / "clip.mp4", "dog.jpg", 36, (333, 251)),
        "clip_2": clip(root / "b" / "clip.mp4", "horses.jpg", 30, (160, 120)),
        "zoo": clip(root / "b" / "zoo.mp4", "giraffe.jpg", 32, (256, 144)),
        "single": clip(root / "single.mkv", "person.jpg", 30, (321, 239)),
    }
    (root / "a" / "notes.txt").write_text("not a video\n")
    clip(root / "b" / "skip.avi", "kite.jpg", 30)  # not matched by the glob b/*.mp4
    return c


@pytest.fixture(scope="module")
def full_run(clips, tiny_int8_model, tmp_path_factory):
    """One batch over a folder, a glob and a file, with --save-video."""
    out = tmp_path_factory.mktemp("out")
    root = clips["single"].parent
    r = run_batch(str(root / "a"), str(root / "b" / "*.mp4"), str(root / "single.mkv"),
                  "--out", str(out), "--save-video", model=tiny_int8_model)
    return r, out


def test_folder_glob_and_file(clips, full_run):
    r, out = full_run
    assert r.returncode == 0, r.stderr
    assert_no_traceback(r.stderr)
    assert error_lines(r.stderr) == []
    stems = list(clips)  # input order: folder (sorted), glob (sorted), file
    # one jsonl and one mp4 per input, nothing else: no .partial left, notes.txt and skip.avi
    # not taken, and the two clip.mp4 get distinct names
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{s}.jsonl" for s in stems] + [f"{s}.mp4" for s in stems] + ["summary.json"]
        + [f".{s}.settings.json" for s in stems] + [".yolo_tpu.lock"])

    counts, totals = {}, Counter()
    for stem, source in clips.items():
        n, size, _ = video_info(source)
        counts[stem] = n
        records = assert_complete(out, stem, source, n)
        assert {(r["width"], r["height"]) for r in records} == {size}
        vn, vsize, vfps = video_info(out / f"{stem}.mp4")
        assert (vn, vsize, vfps) == (n, size, FPS), stem
        assert all(b["t_ms"] > a["t_ms"] for a, b in zip(records, records[1:]))
        totals.update(per_class(records))
    assert counts == {"birds": 30, "clip": 36, "clip_2": 30, "zoo": 32, "single": 30}
    assert sum(totals.values()) > 50  # real scenes, real detections: the checks below bite

    summary = json.loads((out / "summary.json").read_text())
    assert (summary["inputs"], summary["ok"], summary["failed"]) == (5, 5, [])
    assert summary["frames"] == sum(counts.values()) and summary["every"] == 1
    assert summary["detections"] == dict(sorted(totals.items()))
    assert [v["input"] for v in summary["videos"]] == [str(p) for p in clips.values()]
    for stem, v in zip(clips, summary["videos"]):
        assert v["status"] == "ok" and v["error"] is None
        assert v["outputs"] == [str(out / f"{stem}.jsonl"), str(out / f"{stem}.mp4")]
        assert v["frames"] == counts[stem] and v["fps"] > 0
        assert v["detections"] == per_class(jsonl(out / f"{stem}.jsonl"))

    header, *rows = table_rows(r.stdout)
    assert header == ["file", "frames", "FPS", "detections", "status"]
    assert [row[0] for row in rows] == [p.name for p in clips.values()]
    for stem, row in zip(clips, rows):
        name, frames, fps, dets, status = row
        assert int(frames) == counts[stem] and float(fps) > 0 and status == "ok"
        found = per_class(jsonl(out / f"{stem}.jsonl"))
        items = dets.split(", ")
        if len(found) > 4:
            assert items.pop() == f"+{len(found) - 4} classes"
        assert len(items) == min(len(found), 4)
        for item in items:  # "traffic light 3": the count is the last word
            label, count = item.rsplit(" ", 1)
            assert found[label] == int(count), (stem, item)
    assert "5 of 5 videos done, 0 failed" in r.stderr


def test_frames_match_detect_on_the_same_image(clips, full_run, tiny_int8_model, tmp_path):
    """Frame k of the jsonl == `detect --image` on frame k saved losslessly."""
    _, out = full_run
    picks = [("clip", 0), ("clip", 23), ("birds", 11), ("single", 29)]
    frames = tmp_path / "frames"
    frames.mkdir()
    for stem, k in picks:
        cv2.imwrite(str(frames / f"{stem}_{k:03d}.png"), read_frame(clips[stem], k))
    r = subprocess.run([sys.executable, "-m", "yolo_tpu.detect", "--image", str(frames),
                        "--json", "-", "--model", str(tiny_int8_model)],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    single = {Path(d["source"]).stem: d for d in map(json.loads, r.stdout.splitlines())}
    assert len(single) == len(picks)
    for stem, k in picks:
        line = jsonl(out / f"{stem}.jsonl")[k]
        image = single[f"{stem}_{k:03d}"]
        assert line["frame"] == k
        assert (line["width"], line["height"]) == (image["width"], image["height"])
        assert line["detections"] == image["detections"], (stem, k)
    assert sum(len(d["detections"]) for d in single.values()) >= 4


def test_every_third_frame(clips, full_run, tiny_int8_model, tmp_path):
    """--every 3: frames 0, 3, 6, ... with their source index and time, the detections of
    the full run's same frames; the annotated video has that many frames at FPS / 3."""
    _, full = full_run
    r = run_batch(str(clips["zoo"]), str(clips["clip"]), "--every", "3", "--out",
                  str(tmp_path), "--save-video", model=tiny_int8_model)
    assert r.returncode == 0, r.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["every"] == 3
    for stem, v in zip(["zoo", "clip"], summary["videos"]):
        n = frame_count(clips[stem])
        records = assert_complete(tmp_path, stem, clips[stem], n, every=3)
        assert len(records) == v["frames"] == (n + 2) // 3  # zoo: 32 frames -> 11
        every_frame = jsonl(full / f"{stem}.jsonl")
        for rec in records:
            assert rec == every_frame[rec["frame"]]  # same frame index, time and detections
        vn, _, vfps = video_info(tmp_path / f"{stem}.mp4")
        assert vn == len(records) and vfps == pytest.approx(FPS / 3)
    assert partials(tmp_path) == []


def test_log_lines_when_not_on_a_terminal(clips, tiny_int8_model, tmp_path):
    """stderr to a file or pipe: no bars, but a line as each video starts and ends, and
    progress lines in between (--log-every)."""
    r = run_batch(str(clips["zoo"]), str(clips["clip"]), "--out", str(tmp_path),
                  "--log-every", "0.05", model=tiny_int8_model)
    assert r.returncode == 0, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.startswith("yolo_tpu: [")]
    assert lines[0] == "yolo_tpu: [1/2] zoo.mp4: started (32 frames)"
    assert "yolo_tpu: [1/2] zoo.mp4: ok, 32 frames, " in "\n".join(lines)
    assert "yolo_tpu: [2/2] clip.mp4: started (36 frames)" in lines
    assert re.match(r"yolo_tpu: \[2/2\] clip\.mp4: ok, 36 frames, [\d.]+ FPS$", lines[-1])
    ticks = [line for line in lines if "overall" in line]
    assert ticks, r.stderr
    assert re.search(r": \d+/\d+ frames; overall \d+/68 frames, [\d.]+ frames/s", ticks[0])


def test_resume_redoes_inputs_made_with_other_settings(clips, tiny_int8_model, tmp_path):
    """--resume after a change of --every, --conf or the model: those outputs are redone,
    saying why; with the same settings they are kept."""
    out = tmp_path / "out"
    base = (str(clips["zoo"]), "--out", str(out))
    assert run_batch(*base, model=tiny_int8_model).returncode == 0
    settings = json.loads((out / ".zoo.settings.json").read_text())
    assert settings["every"] == 1 and settings["conf"] == 0.25 and settings["model_sha256"]
    assert json.loads((out / "summary.json").read_text())["videos"][0]["settings"] == {
        k: v for k, v in settings.items() if k != "outputs"}  # beside: what each output holds
    assert settings["outputs"]["zoo.jsonl"]["lines"] == 32

    same = run_batch(*base, "--resume", model=tiny_int8_model)
    assert "yolo_tpu: resume: 1 of 1 input already done" in same.stderr.splitlines()

    r = run_batch(*base, "--resume", "--every", "3", model=tiny_int8_model)
    assert r.returncode == 0, r.stderr
    assert f"yolo_tpu: resume: {clips['zoo']}: redoing, --every was 1, now 3" \
        in r.stderr.splitlines()
    assert "yolo_tpu: resume: 0 of 1 input already done" in r.stderr.splitlines()
    assert [d["frame"] for d in jsonl(out / "zoo.jsonl")] == list(range(0, 32, 3))

    r = run_batch(*base, "--resume", "--every", "3", "--conf", "0.5", model=tiny_int8_model)
    assert "redoing, --conf was 0.25, now 0.5" in r.stderr
    other = tmp_path / "other.tflite"
    other.write_bytes(tiny_int8_model.read_bytes() + b"\0")  # another file, same model
    r = run_batch(*base, "--resume", "--every", "3", "--conf", "0.5", model=other)
    assert f"redoing, made with another model ({tiny_int8_model})" in r.stderr, r.stderr


# ---------------------------------------------------------------- broken inputs

def test_broken_inputs_are_listed_and_the_batch_goes_on(tiny_int8_model, tmp_path):
    src = tmp_path / "in"
    good1 = clip(src / "good1.mp4", "dog.jpg", 30, (333, 251))
    short = clip(src / "short.avi", "horses.jpg", 60)
    truncate_file(short, 0.5)  # the header survives: opens, ends early
    holes = clip(src / "holes.mp4", "eagle.jpg", 60)
    corrupt_middle(holes, 0.45, 0.1)
    cut = clip(src / "cut.mp4", "kite.jpg", 30)
    truncate_file(cut, 0.6)  # no moov index: cannot be opened at all
    text = src / "text.mp4"
    text.write_text("this is not a video\n")
    gone = src / "gone.mp4"
    good2 = clip(src / "good2.avi", "giraffe.jpg", 30)
    out = tmp_path / "out"
    inputs = [good1, short, holes, gone, cut, text, good2]
    r = run_batch(*map(str, inputs), "--out", str(out), "--save-video", model=tiny_int8_model)
    assert r.returncode == 1, r.stderr
    assert_no_traceback(r.stderr)

    # the good inputs are complete
    assert_complete(out, "good1", good1, 30)
    assert_complete(out, "good2", good2, 30)
    # a damaged file keeps every frame that decodes
    k = frame_count(short)
    assert 10 < k < 60
    assert_complete(out, "short", short, k)
    holey = jsonl(out / "holes.jsonl")
    frames = [rec["frame"] for rec in holey]
    assert frames == sorted(set(frames)) and 30 < len(frames) < 60 and frames[-1] == 59
    assert frame_count(out / "holes.mp4") == len(frames)
    # nothing for the unopenable ones, nothing half-written
    assert sorted(p.name for p in out.iterdir()) == sorted([
        "good1.jsonl", "good1.mp4", "good2.jsonl", "good2.mp4", "holes.jsonl", "holes.mp4",
        "short.jsonl", "short.mp4", "summary.json"]
        + [f".{s}.settings.json" for s in ("good1", "good2", "holes", "short")]
        + [".yolo_tpu.lock"])

    # the failures are the last lines, one each, naming the file and the problem
    tail = r.stderr.splitlines()
    done = next(i for i, line in enumerate(tail) if " videos done, " in line)
    assert "2 of 6 videos done, 4 failed, 1 input not found" in tail[done]
    problems = {gone: "no such file", short: f"{k} of 60 frames", holes: "undecodable",
                cut: "moov", text: "cannot open as a video"}
    listed = tail[done + 1:]
    assert len(listed) == len(problems) and all(e.startswith("error: ") for e in listed), listed
    for path, why in problems.items():
        (line,) = [e for e in listed if e.startswith(f"error: {path}: ")]
        assert why in line, line

    summary = json.loads((out / "summary.json").read_text())
    assert (summary["inputs"], summary["ok"]) == (6, 2)
    assert summary["failed"] == [str(short), str(holes), str(cut), str(text)]
    assert any(str(gone) in e for e in summary["not_found"])
    videos = {v["input"]: v for v in summary["videos"]}
    for path, why in problems.items():
        if path != gone:
            assert videos[str(path)]["status"] == "failed"
            assert why in videos[str(path)]["error"]
    assert videos[str(holes)]["frames"] == len(frames)
    assert videos[str(holes)]["frames"] + videos[str(holes)]["decode_errors"] == 60
    statuses = {row[0]: row[-1] for row in table_rows(r.stdout)[1:]}
    assert statuses == {"good1.mp4": "ok", "short.avi": "failed", "holes.mp4": "failed",
                        "cut.mp4": "failed", "text.mp4": "failed", "good2.avi": "ok"}


def test_save_video_never_overwrites_an_input(tiny_int8_model, tmp_path):
    """--out the inputs' own folder: clip.mp4 -> clip.mp4 would replace the source."""
    source = clip(tmp_path / "clip.mp4", "dog.jpg", 3)
    before = source.read_bytes()
    r = run_batch(str(tmp_path), "--out", str(tmp_path), "--save-video", model=tiny_int8_model)
    assert r.returncode == 2
    assert_no_traceback(r.stderr)
    (line,) = error_lines(r.stderr)
    assert str(source) in line and "overwrite" in line
    assert source.read_bytes() == before


# ---------------------------------------------------------------- SIGKILL, then --resume

def test_sigkill_then_resume(tiny_int8_model, tmp_path):
    src = tmp_path / "in"
    sources = {
        "a": clip(src / "a.mp4", "dog.jpg", 45, (333, 251)),
        "b": clip(src / "b.avi", "horses.jpg", 60),
        "c": clip(src / "c.mp4", "person.jpg", 45, (241, 181)),
        "d": clip(src / "d.mkv", "kite.jpg", 45),
    }
    counts = {stem: frame_count(p) for stem, p in sources.items()}
    assert counts == {"a": 45, "b": 60, "c": 45, "d": 45}
    out, logs = tmp_path / "out", tmp_path
    args = (str(src), "--out", str(out), "--save-video")
    proc = start_batch(*args, model=tiny_int8_model, logs=logs)
    try:
        wait_for_partial(out, "b", proc, logs)  # b has begun writing its outputs
        time.sleep(0.2)                               # ... and is a few frames in
        os.kill(proc.pid, signal.SIGKILL)
        rc, _, _ = finish(proc, logs)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert rc == -signal.SIGKILL

    # only complete outputs under final names: a is done, b is mid-way (partial files only)
    finals = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert finals == ["a.jsonl", "a.mp4", "summary.json"]
    assert_complete(out, "a", sources["a"], counts["a"])
    assert [p for p in partials(out) if p.startswith(".b.partial.")]  # tagged per run
    summary = json.loads((out / "summary.json").read_text())  # written after a, whole
    assert [(v["input"], v["status"]) for v in summary["videos"]] == [(str(sources["a"]), "ok")]
    done_before = mtimes(out, "a")
    time.sleep(0.05)  # a rewrite of a's outputs would show in their mtime

    r = run_batch(*args, "--resume", model=tiny_int8_model)
    assert r.returncode == 0, r.stderr
    assert_no_traceback(r.stderr)
    assert "yolo_tpu: resume: 1 of 4 inputs already done" in r.stderr.splitlines()
    assert mtimes(out, "a") == done_before
    assert partials(out) == []
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{s}.{ext}" for s in sources for ext in ("jsonl", "mp4")] + ["summary.json"]
        + [f".{s}.settings.json" for s in sources] + [".yolo_tpu.lock"])
    for stem, source in sources.items():
        assert_complete(out, stem, source, counts[stem])
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["inputs"], summary["ok"], summary["failed"]) == (4, 4, [])
    assert summary["frames"] == sum(counts.values())
    assert [v.get("resumed", False) for v in summary["videos"]] == [True, False, False, False]
    assert [row[-1] for row in table_rows(r.stdout)[1:]] == ["ok (earlier run)", "ok", "ok", "ok"]

    # once more, without the summary (as after a kill between a rename and its update):
    # nothing left to do, nothing rewritten, the totals counted again from the JSON lines
    finished = {stem: mtimes(out, stem) for stem in sources}
    (out / "summary.json").unlink()
    again = run_batch(*args, "--resume", model=tiny_int8_model)
    assert again.returncode == 0, again.stderr
    assert "yolo_tpu: resume: 4 of 4 inputs already done" in again.stderr.splitlines()
    assert {stem: mtimes(out, stem) for stem in sources} == finished
    recounted = json.loads((out / "summary.json").read_text())
    assert [v["frames"] for v in recounted["videos"]] == list(counts.values())
    assert recounted["detections"] == summary["detections"]


# ---------------------------------------------------------------- SIGINT / SIGTERM

@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_stops_cleanly_and_resume_redoes_the_video(tiny_int8_model, tmp_path, signum):
    src = tmp_path / "in"
    sources = {"a": clip(src / "a.mp4", "dog.jpg", 30, (333, 251)),
               "b": clip(src / "b.mp4", "eagle.jpg", 60),
               "c": clip(src / "c.avi", "giraffe.jpg", 30)}
    out, logs = tmp_path / "out", tmp_path
    args = (str(src), "--out", str(out), "--save-video")
    proc = start_batch(*args, model=tiny_int8_model, logs=logs)
    try:
        wait_for_partial(out, "b", proc, logs)
        time.sleep(0.2)
        os.kill(proc.pid, signum)
        rc, stdout, stderr = finish(proc, logs)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert rc == 128 + signum, stderr
    assert_no_traceback(stderr)
    assert "--resume" in stderr.splitlines()[-1]
    # a is complete; b (in progress) left nothing, not even partial files; c never started
    assert sorted(p.name for p in out.iterdir()) == [".a.settings.json", ".yolo_tpu.lock",
                                                    "a.jsonl", "a.mp4", "summary.json"]
    assert_complete(out, "a", sources["a"], 30)
    summary = json.loads((out / "summary.json").read_text())
    assert [(v["input"], v["status"]) for v in summary["videos"]] == [
        (str(sources["a"]), "ok"), (str(sources["b"]), "stopped")]
    assert summary["inputs"] == 3 and summary["failed"] == []
    statuses = [row[-1] for row in table_rows(stdout)[1:]]
    assert statuses == ["ok", "stopped"]
    done_before = mtimes(out, "a")

    r = run_batch(*args, "--resume", model=tiny_int8_model)
    assert r.returncode == 0, r.stderr
    assert "yolo_tpu: resume: 1 of 3 inputs already done" in r.stderr.splitlines()
    assert mtimes(out, "a") == done_before
    for stem, source in sources.items():
        assert_complete(out, stem, source, frame_count(source))
    assert partials(out) == []
    assert json.loads((out / "summary.json").read_text())["ok"] == 3


# ---------------------------------------------------------------- arguments

def test_no_inputs_found_exits_2(capsys, tmp_path):
    out = tmp_path / "out"
    assert batch.main(["no/such.mp4", "--out", str(out)]) == 2
    assert capsys.readouterr().err == "error: no/such.mp4: no such file or directory\n"
    assert not out.exists()


def test_folder_without_videos_exits_2(capsys, tmp_path):
    (tmp_path / "notes.txt").write_text("no videos here\n")
    assert batch.main([str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {tmp_path}: no videos in folder")


@pytest.mark.parametrize("value", ["0", "-2", "x"])
def test_every_must_be_positive(capsys, tmp_path, value):
    with pytest.raises(SystemExit) as e:
        batch.main(["samples", "--out", str(tmp_path), "--every", value])
    assert e.value.code == 2 and "argument --every" in capsys.readouterr().err
