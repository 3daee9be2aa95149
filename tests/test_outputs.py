"""Outputs whole or absent: a real full disk (a small tmpfs in a private mount namespace,
so the kernel itself returns ENOSPC) under batch, then --resume after freeing space; a
second batch on a folder another one is writing into. ~40 s on 2 cores."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, require
from test_batch import assert_complete, assert_no_traceback, batch_cmd, clip, error_lines, \
    finish, frame_count, partials, run_batch, start_batch, wait_for_partial

BALLAST = 1 << 20


def namespace_prefix(probe_dir: Path) -> list[str]:
    """`unshare` into a mount namespace of our own (root: -m; else a user namespace too)."""
    prefix = ["unshare", "-m"] if os.geteuid() == 0 else ["unshare", "-rm"]
    missing = None
    if shutil.which("unshare") is None:
        missing = "unshare (util-linux) not found"
    else:
        r = subprocess.run(prefix + ["sh", "-c", f"mount -t tmpfs -o size=64k tmpfs {probe_dir}"],
                           capture_output=True, text=True)
        if r.returncode:
            missing = f"cannot mount a tmpfs in a private namespace: {r.stderr.strip()}"
    require(missing, "a private mount namespace for a small disk")
    return prefix


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Path]:
    src = tmp_path_factory.mktemp("in")
    return {"a": clip(src / "a.mp4", "dog.jpg", 20, (160, 120)),
            "b": clip(src / "b.mp4", "horses.jpg", 30, (160, 120)),
            "c": clip(src / "c.mp4", "person.jpg", 20, (160, 120))}


@pytest.fixture(scope="module")
def undisturbed(sources, tiny_int8_model, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("undisturbed")
    r = run_batch(str(sources["a"].parent), "--out", str(out), "--save-video",
                  model=tiny_int8_model)
    assert r.returncode == 0, r.stderr
    return out


def pages(n: int) -> int:
    return -(-n // 4096) * 4096


def assert_finals_complete(out: Path, sources: dict[str, Path]) -> list[str]:
    """Every output under a final name is whole; the stems that have them."""
    done = []
    for stem, source in sources.items():
        if (out / f"{stem}.jsonl").exists() or (out / f"{stem}.mp4").exists():
            assert (out / f"{stem}.jsonl").exists() and (out / f"{stem}.mp4").exists(), stem
            assert_complete(out, stem, source, frame_count(source))
            done.append(stem)
    if (out / "summary.json").exists():
        json.loads((out / "summary.json").read_text())
    return done


def assert_same_as(out: Path, reference: Path, stems) -> None:
    for stem in stems:
        assert (out / f"{stem}.jsonl").read_bytes() == (reference / f"{stem}.jsonl").read_bytes()
        # the frames carry the measured FPS/ms overlay, so two runs' videos differ there:
        # the same number of frames is what they must share
        assert frame_count(out / f"{stem}.mp4") == frame_count(reference / f"{stem}.mp4")


def test_disk_full_then_resume(sources, undisturbed, tiny_int8_model, tmp_path):
    prefix = namespace_prefix(tmp_path)
    mnt, logs = tmp_path / "disk", tmp_path / "logs"
    mnt.mkdir()
    logs.mkdir()
    # room for a's outputs and bookkeeping, and half of b's: the disk fills inside b
    a = sum(pages((undisturbed / f"a.{e}").stat().st_size) for e in ("jsonl", "mp4"))
    b = sum(pages((undisturbed / f"b.{e}").stat().st_size) for e in ("jsonl", "mp4"))
    free = a + b // 2 + 6 * 4096
    cmd = " ".join([sys.executable, "-m", "yolo_tpu.batch", str(sources["a"].parent), "--out",
                    str(mnt / "out"), "--save-video", "--model", str(tiny_int8_model)])
    script = f"""
mount -t tmpfs -o size={free + BALLAST} tmpfs {mnt}
head -c {BALLAST} /dev/zero > {mnt}/ballast
cd {ROOT}
{cmd} > {logs}/1.out 2> {logs}/1.err; echo $? > {logs}/1.rc
cp -a {mnt}/out {logs}/full
rm {mnt}/ballast
{cmd} --resume > {logs}/2.out 2> {logs}/2.err; echo $? > {logs}/2.rc
cp -a {mnt}/out {logs}/resumed
"""
    subprocess.run(prefix + ["bash", "-c", script], check=True, timeout=300)
    err = (logs / "1.err").read_text()
    assert (logs / "1.rc").read_text().strip() == "1", err
    assert_no_traceback(err)
    (line,) = error_lines(err)
    # ENOSPC from Python's own writes, or OpenCV's writer (which reports none) leaving a
    # video without its index: either way one line with the file and the space left
    assert "No space left on device" in line or "written incompletely" in line, line
    assert "free on" in line and str(mnt / "out") in line, line
    assert "--resume" in line
    full = logs / "full"
    assert partials(full) == []
    done = assert_finals_complete(full, sources)
    assert "a" in done and "c" not in done
    assert_same_as(full, undisturbed, done)

    err = (logs / "2.err").read_text()
    assert (logs / "2.rc").read_text().strip() == "0", err
    assert_no_traceback(err)
    resumed = logs / "resumed"
    assert assert_finals_complete(resumed, sources) == ["a", "b", "c"]
    assert partials(resumed) == []
    assert_same_as(resumed, undisturbed, sources)


def test_second_batch_on_the_folder_exits_then_wait_resumes(tiny_int8_model, tmp_path):
    """One writer per folder: a second batch says so and exits; one with --wait takes over
    when the first is SIGKILLed (the kernel drops the lock) and finishes it with --resume."""
    src = {"a": clip(tmp_path / "in" / "a.mp4", "dog.jpg", 10, (160, 120)),
           "b": clip(tmp_path / "in" / "b.mp4", "horses.jpg", 150, (160, 120))}
    out = tmp_path / "out"
    for d in ("1", "3"):
        (tmp_path / d).mkdir()
    args = (str(tmp_path / "in"), "--out", str(out), "--save-video")
    first = start_batch(*args, model=tiny_int8_model, logs=tmp_path / "1")
    waiter = None
    try:
        partial = wait_for_partial(out, "b", first, tmp_path / "1")
        assert len(partial.name.split(".")) == 5  # .b.partial.TAG.mp4: tagged per run
        second = run_batch(*args, "--resume", model=tiny_int8_model)
        assert first.poll() is None, "the first batch ended too soon for this test"
        assert second.returncode == 2, second.stderr
        assert_no_traceback(second.stderr)
        (line,) = error_lines(second.stderr)
        assert "another run is writing there" in line and f"pid {first.pid}" in line, line
        waiter = start_batch(*args, "--resume", "--wait", model=tiny_int8_model,
                             logs=tmp_path / "3")
        deadline = time.monotonic() + 60
        while "waiting" not in (tmp_path / "3" / "stderr").read_text():
            assert waiter.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        first.kill()
        first.wait()
        rc, _, err = finish(waiter, tmp_path / "3", timeout=120)
    finally:
        for p in (first, waiter):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
    assert rc == 0, err
    assert_no_traceback(err)
    assert assert_finals_complete(out, src) == ["a", "b"]
    assert partials(out) == []
    reference = tmp_path / "reference"
    assert run_batch(*args[:1], "--out", str(reference), "--save-video",
                     model=tiny_int8_model).returncode == 0
    assert_same_as(out, reference, src)


def test_resume_checks_what_it_skips(sources, undisturbed, tiny_int8_model, tmp_path):
    """A cut JSON lines file or an unplayable video under a final name is redone."""
    out = tmp_path / "out"
    shutil.copytree(undisturbed, out)
    text = (out / "a.jsonl").read_text()
    (out / "a.jsonl").write_text(text[: len(text) * 2 // 3])
    video = (out / "b.mp4").read_bytes()
    (out / "b.mp4").write_bytes(video[: len(video) // 2])
    r = run_batch(str(sources["a"].parent), "--out", str(out), "--save-video", "--resume",
                  model=tiny_int8_model)
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    assert any("a.mp4: redoing, a.jsonl is" in x for x in lines), r.stderr
    assert any("b.mp4: redoing, b.mp4 is" in x for x in lines), r.stderr
    assert "yolo_tpu: resume: 1 of 3 inputs already done" in lines
    assert_same_as(out, undisturbed, sources)


# ---------------------------------------------------------------- detect, and read-only folders

PHOTOS = [str(ROOT / "samples" / p) for p in ("dog.jpg", "horses.jpg", "person.jpg")]


def detect_cmd(model: Path, *args: str) -> str:
    return " ".join([sys.executable, "-m", "yolo_tpu.detect", "--model", str(model), *args])


def in_namespace(prefix: list[str], script: str, logs: Path, runs: dict[str, str]) -> dict:
    """Run `script` (mounts), then each command of `runs`, in one private mount namespace;
    {name: (exit status, stderr)}."""
    logs.mkdir(exist_ok=True)
    body = "\n".join(f"{cmd} > {logs}/{name}.out 2> {logs}/{name}.err; echo $? > {logs}/{name}.rc"
                     if not cmd.startswith("#") else cmd[1:] for name, cmd in runs.items())
    subprocess.run(prefix + ["bash", "-c", f"set -e\n{script}\ncd {ROOT}\nset +e\n{body}"],
                   check=True, timeout=600)
    return {name: (int((logs / f"{name}.rc").read_text()), (logs / f"{name}.err").read_text())
            for name, cmd in runs.items() if not cmd.startswith("#")}


def one_error(result: tuple[int, str], *expect: str, status: int | None = None) -> str:
    rc, err = result
    assert_no_traceback(err)
    (line,) = error_lines(err)
    assert all(x in line for x in expect), line
    assert rc != 0 if status is None else rc == status, err
    return line


def test_read_only_outputs_are_one_line_before_any_work(sources, tiny_int8_model, tmp_path):
    """--out, --save and --json into a read-only mount (root passes permission checks, not
    a read-only file system): one line naming the path and the reason, exit 2."""
    prefix = namespace_prefix(tmp_path)
    mnt = tmp_path / "ro"
    mnt.mkdir()
    script = f"mount -t tmpfs -o size=1m tmpfs {mnt}\nmkdir {mnt}/out\nmount -o remount,ro {mnt}"
    ro, m = "Read-only file system", tiny_int8_model
    r = in_namespace(prefix, script, tmp_path / "logs", {
        "batch": " ".join(batch_cmd(str(sources["a"].parent), "--out", str(mnt / "out"),
                                    model=m)),
        "image_save": detect_cmd(m, "--image", PHOTOS[0], "--save", str(mnt / "out" / "d.jpg")),
        "images_save": detect_cmd(m, "--image", *PHOTOS, "--save", str(mnt / "out")),
        "image_json": detect_cmd(m, "--image", PHOTOS[0], "--json", str(mnt / "out" / "d.jsonl")),
        "video": detect_cmd(m, "--video", str(sources["a"]), "--json", str(mnt / "out" / "a.jsonl"),
                            "--save", str(mnt / "out" / "a.mp4")),
    })
    one_error(r["batch"], f"--out {mnt / 'out'}", ro, status=2)
    one_error(r["image_save"], str(mnt / "out" / "d.jpg"), ro, status=2)
    one_error(r["images_save"], str(mnt / "out"), ro, status=2)
    one_error(r["image_json"], str(mnt / "out" / "d.jsonl"), ro, status=2)
    one_error(r["video"], str(mnt / "out" / "a"), ro, status=2)
    for name in ("image_save", "images_save"):  # refused before the model ran
        assert not (tmp_path / "logs" / f"{name}.out").read_text(), name


@pytest.fixture(scope="module")
def detect_undisturbed(sources, tiny_int8_model, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("detect_undisturbed")
    for args in (["--image", *PHOTOS, "--save", str(out / "img"), "--json", str(out / "img.jsonl")],
                 ["--video", str(sources["a"]), "--save", str(out / "a.mp4"), "--json",
                  str(out / "a.jsonl")]):
        r = subprocess.run(detect_cmd(tiny_int8_model, *args).split(), cwd=ROOT,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
    return out


def whole_lines(path: Path) -> list[dict]:
    text = path.read_text()
    assert text == "" or text.endswith("\n"), "a cut line under the final name"
    return [json.loads(x) for x in text.splitlines()]


def test_detect_on_a_full_disk(detect_undisturbed, sources, tiny_int8_model, tmp_path):
    """detect --image --save --json, --image --json and --video --save --json on a disk that
    fills: one line naming the file and the space left, exit 1, no partial file, JSON cut
    back to whole lines, the annotated copies finished before (and a file there before)
    left as they were, and no unplayable video under its final name."""
    prefix = namespace_prefix(tmp_path)
    und, mnt, m = detect_undisturbed, tmp_path / "disk", tiny_int8_model
    mnt.mkdir()
    first = pages((und / "img" / "dog.jpg").stat().st_size)
    video_json = pages((und / "a.jsonl").stat().st_size)
    # images: room for the first copy and the JSON, not the second copy
    # video: room for its JSON lines and a little of the video
    fill = f"head -c $(( $(stat -f -c '%a*%S' {mnt}) - {{room}} )) /dev/zero > {mnt}/{{name}}"
    script = f"mount -t tmpfs -o size={4 * BALLAST} tmpfs {mnt}\nmkdir {mnt}/img\n" \
             f"echo before > {mnt}/earlier.txt"
    r = in_namespace(prefix, script, tmp_path / "logs", {
        "f1": "#" + fill.format(room=first + 4096, name="ballast1"),
        "images": detect_cmd(m, "--image", *PHOTOS, "--save", str(mnt / "img"), "--json",
                             str(mnt / "img.jsonl")),
        "snap1": f"#cp -a {mnt} {tmp_path}/after_images",
        "f2": f"#rm -rf {mnt}/img {mnt}/img.jsonl {mnt}/ballast1\n"
              + fill.format(room=0, name="ballast2"),
        "json": detect_cmd(m, "--image", *PHOTOS, "--json", str(mnt / "only.jsonl")),
        "snap2": f"#cp -a {mnt} {tmp_path}/after_json",
        "f3": f"#rm -f {mnt}/ballast2 {mnt}/only.jsonl\n"
              + fill.format(room=video_json + 8192, name="ballast3"),
        "video": detect_cmd(m, "--video", str(sources["a"]), "--save", str(mnt / "a.mp4"),
                            "--json", str(mnt / "a.jsonl")),
        "snap3": f"#cp -a {mnt} {tmp_path}/after_video",
    })
    after = tmp_path / "after_images"
    one_error(r["images"], str(mnt / "img" / "horses.jpg"), "No space left", "free on",
              status=1)
    assert sorted(p.name for p in (after / "img").iterdir()) == ["dog.jpg"]
    assert (after / "img" / "dog.jpg").read_bytes() == (und / "img" / "dog.jpg").read_bytes()
    lines = whole_lines(after / "img.jsonl")
    assert lines == whole_lines(und / "img.jsonl")[:len(lines)]

    after = tmp_path / "after_json"
    one_error(r["json"], str(mnt / "only.jsonl"), "No space left", "free on", status=1)
    assert whole_lines(after / "only.jsonl") == []  # not a page could be written

    after = tmp_path / "after_video"
    one_error(r["video"], str(mnt / "a.mp4"), "free on", status=1)
    assert not (after / "a.mp4").exists()
    lines = whole_lines(after / "a.jsonl")
    assert lines == whole_lines(und / "a.jsonl")[:len(lines)] and lines
    for snap in ("after_images", "after_json", "after_video"):
        assert (tmp_path / snap / "earlier.txt").read_text() == "before\n"
        assert [p.name for p in (tmp_path / snap).rglob("*") if ".partial" in p.name] == []


# ---------------------------------------------------------------- a cluster's worker on a full disk

def test_cluster_worker_on_a_full_disk_stops_the_batch(sources, undisturbed, tiny_int8_model,
                                                         tmp_path):
    """Real `dask scheduler` and `dask worker` processes writing --out on a disk that fills
    inside the second video: the batch stops (the rest cancelled, no hang) with the local
    batch's one line, only complete outputs stay, and --resume after freeing space
    finishes them as an undisturbed run did."""
    pytest.importorskip("distributed", reason="pip install .[cluster] (dask.distributed)")
    dask = Path(sys.executable).parent / "dask"
    require(None if dask.exists() else "no dask CLI beside this Python", "the dask CLI")
    prefix = namespace_prefix(tmp_path)
    mnt, logs = tmp_path / "disk", tmp_path / "logs"
    mnt.mkdir()
    a = sum(pages((undisturbed / f"a.{e}").stat().st_size) for e in ("jsonl", "mp4"))
    b = sum(pages((undisturbed / f"b.{e}").stat().st_size) for e in ("jsonl", "mp4"))
    free = a + b // 2 + 6 * 4096
    py = sys.executable
    cmd = " ".join([py, "-m", "yolo_tpu.batch", str(sources["a"].parent), "--out",
                    str(mnt / "out"), "--save-video", "--model", str(tiny_int8_model),
                    "--scheduler", "$ADDR"])
    script = f"""
set -e
mount -t tmpfs -o size={free + BALLAST} tmpfs {mnt}
head -c {BALLAST} /dev/zero > {mnt}/ballast
cd {ROOT}
export PYTHONPATH={ROOT}
{dask} scheduler --host 127.0.0.1 --port 0 --no-dashboard --scheduler-file {logs}/s.json \
    > {logs}/scheduler.log 2>&1 &
S=$!
trap 'kill -9 $S ${{W:-}} 2>/dev/null || true' EXIT
for _ in $(seq 600); do [ -s {logs}/s.json ] && break; sleep 0.1; done
ADDR=$({py} -c "import json; print(json.load(open('{logs}/s.json'))['address'])")
{dask} worker $ADDR --nthreads 1 --no-nanny --no-dashboard --name w0 > {logs}/worker.log 2>&1 &
W=$!
{py} -c "from distributed import Client; c = Client('$ADDR'); c.wait_for_workers(1, timeout=60); c.close()"
set +e
timeout 240 {cmd} > {logs}/1.out 2> {logs}/1.err; echo $? > {logs}/1.rc
cp -a {mnt}/out {logs}/full
rm {mnt}/ballast
timeout 240 {cmd} --resume > {logs}/2.out 2> {logs}/2.err; echo $? > {logs}/2.rc
cp -a {mnt}/out {logs}/resumed
"""
    logs.mkdir()
    subprocess.run(prefix + ["bash", "-c", script], check=True, timeout=600)
    err = (logs / "1.err").read_text()
    assert (logs / "1.rc").read_text().strip() == "1", err  # not 124: it did not hang
    assert_no_traceback(err)
    (line,) = error_lines(err)
    assert "No space left on device" in line or "written incompletely" in line, line
    assert "free on" in line and str(mnt / "out") in line and "--resume" in line, line
    full = logs / "full"
    assert partials(full) == []
    done = assert_finals_complete(full, sources)
    assert len(done) < 3, "the batch went on after the disk was full"
    assert_same_as(full, undisturbed, done)

    err = (logs / "2.err").read_text()
    assert (logs / "2.rc").read_text().strip() == "0", err
    assert_no_traceback(err)
    resumed = logs / "resumed"
    assert assert_finals_complete(resumed, sources) == ["a", "b", "c"]
    assert partials(resumed) == []
    assert_same_as(resumed, undisturbed, sources)
