"""`batch --devices` and `batch --scheduler`: many videos over several workers, with faults.

Real processes throughout: a `dask scheduler` and `dask worker`s on 127.0.0.1 started here
(the Dask CLIs, PYTHONPATH set to this checkout so they run its code), the batch CLI as a
subprocess. The reference is a local run with `--devices cpu,cpu`, itself checked against
the plain one-worker batch. Faults: a worker SIGKILLed while it holds a video's partial
output open (found through /proc, not guessed with a sleep), a worker started where the
model file is not, and the scheduler SIGKILLed mid-batch. ~60 s on 2 cores.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, SAMPLES
from media import pan_zoom_frames, video_info, write_video

pytest.importorskip("distributed", reason="pip install .[cluster] (dask.distributed)")
if not (Path(sys.executable).parent / "dask").exists():
    pytest.skip("the dask CLI is not beside this Python (pip install .[cluster])",
                allow_module_level=True)

DASK = Path(sys.executable).parent / "dask"
PHOTOS = ["dog", "horses", "eagle", "person", "kite"]
FRAMES = 30
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


# ---------------------------------------------------------------- processes

def start(cmd: list[str], log: Path, cwd: Path) -> subprocess.Popen:
    with open(log, "w") as f:
        return subprocess.Popen(cmd, cwd=cwd, stdout=f, stderr=subprocess.STDOUT, env=ENV)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=30)


def wait_until(condition, what: str, timeout: float = 60.0, procs=()) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        for p in procs:
            if p.poll() is not None:
                pytest.fail(f"process {p.args[:3]} exited ({p.returncode}) while waiting for {what}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


class Cluster:
    """A scheduler and its workers, each a real process; teardown kills what is left."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.file = folder / "scheduler.json"
        self.scheduler = start([str(DASK), "scheduler", "--host", "127.0.0.1", "--port", "0",
                                "--no-dashboard", "--scheduler-file", str(self.file)],
                               folder / "scheduler.log", folder)
        wait_until(lambda: self.file.exists() and self.file.stat().st_size > 0,
                   "the scheduler file", procs=[self.scheduler])
        self.address = json.loads(self.file.read_text())["address"]
        self.workers: list[subprocess.Popen] = []

    def add_worker(self, cwd: Path, *extra: str) -> subprocess.Popen:
        n = len(self.workers)
        worker = start([str(DASK), "worker", self.address, "--nthreads", "1", "--no-nanny",
                        "--no-dashboard", "--name", f"w{n}", *extra],
                       self.folder / f"worker{n}.log", cwd)
        self.workers.append(worker)
        wait_until(lambda: "Registered to:" in (self.folder / f"worker{n}.log").read_text(),
                   f"worker {n} to register", procs=[worker])
        return worker

    def address_of(self, worker: subprocess.Popen) -> str:
        log = (self.folder / f"worker{self.workers.index(worker)}.log").read_text()
        return log.split("Start worker at:", 1)[1].split()[0]

    def close(self) -> None:
        for p in [*self.workers, self.scheduler]:
            stop(p)


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("videos")
    return {p: _video(root / f"{p}.mp4", p) for p in PHOTOS}


def _video(path: Path, photo: str) -> Path:
    assert write_video(path, pan_zoom_frames(SAMPLES / f"{photo}.jpg", (160, 120), FRAMES),
                       15.0) == FRAMES
    return path


@pytest.fixture(scope="module")
def model_dir(tiny_int8_model, tmp_path_factory) -> Path:
    """A folder holding the model as `model.tflite` (workers started here find it by that
    relative name; a worker started elsewhere does not)."""
    folder = tmp_path_factory.mktemp("with_model")
    shutil.copy(tiny_int8_model, folder / "model.tflite")
    return folder


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, model_dir):
    c = Cluster(tmp_path_factory.mktemp("cluster"))
    try:
        c.add_worker(model_dir)
        c.add_worker(model_dir)
        yield c
    finally:
        c.close()


def batch(*args: str) -> list[str]:
    return [sys.executable, "-m", "yolo_tpu.batch", *args]


def run_batch(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(batch(*args), cwd=cwd, env=ENV, capture_output=True, text=True,
                          timeout=300)


def lines(path: Path) -> list[str]:
    text = path.read_text()
    assert text.endswith("\n")
    return text.splitlines()


def partials(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".partial" in p.name)


def assert_same_outputs(out: Path, reference: Path, stems) -> None:
    """One complete jsonl + mp4 per input, the jsonl equal line for line to the reference."""
    for stem in stems:
        got = lines(out / f"{stem}.jsonl")
        assert [json.loads(x)["frame"] for x in got] == list(range(FRAMES)), stem
        assert got == lines(reference / f"{stem}.jsonl"), stem
        assert video_info(out / f"{stem}.mp4")[0] == FRAMES, stem
    assert partials(out) == []


def holder(path: Path, procs: list[subprocess.Popen]) -> subprocess.Popen | None:
    """The process among `procs` with `path` open (its file descriptors, through /proc)."""
    for p in procs:
        try:
            fds = os.listdir(f"/proc/{p.pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{p.pid}/fd/{fd}") == os.path.realpath(path):
                    return p
            except OSError:
                continue
    return None


# ---------------------------------------------------------------- local workers

@pytest.fixture(scope="module")
def reference(videos, model_dir, tmp_path_factory) -> Path:
    """`--devices cpu,cpu`: two local workers; checked against the one-worker batch."""
    out = tmp_path_factory.mktemp("reference")
    r = run_batch(*map(str, videos.values()), "--out", str(out), "--save-video",
                  "--model", "model.tflite", "--devices", "cpu,cpu", cwd=model_dir)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    single = tmp_path_factory.mktemp("single")
    r = run_batch(*map(str, list(videos.values())[:2]), "--out", str(single),
                  "--model", "model.tflite", "--device", "cpu", cwd=model_dir)
    assert r.returncode == 0, r.stderr
    for stem in PHOTOS[:2]:
        assert lines(single / f"{stem}.jsonl") == lines(out / f"{stem}.jsonl")
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["ok"], summary["frames"]) == (len(PHOTOS), len(PHOTOS) * FRAMES)
    assert {v["worker"] for v in summary["videos"]} == {"local 0: cpu", "local 1: cpu"}
    assert sum(summary["detections"].values()) > 100
    return out


def test_local_devices(reference, videos):
    assert_same_outputs(reference, reference, videos)


def test_devices_and_scheduler_exclude_each_other(videos, model_dir, tmp_path):
    r = run_batch(str(videos["dog"]), "--out", str(tmp_path), "--devices", "cpu,cpu",
                  "--scheduler", "tcp://127.0.0.1:9", cwd=model_dir)
    assert r.returncode == 2 and r.stderr.count("error: ") == 1
    r = run_batch(str(videos["dog"]), "--out", str(tmp_path), "--devices", "cpu,usb:x",
                  cwd=model_dir)
    assert r.returncode == 2 and "error: --device" in r.stderr


@pytest.mark.parametrize("address, message", [(None, "cannot connect"),
                                              ("garbage", "not an address"),
                                              ("tcp://127.0.0.1:notaport", "not an address")])
def test_no_scheduler_there_is_one_line(videos, model_dir, tmp_path, address, message):
    """Nobody listening, or no address at all: one line, and no traceback from Dask's
    half-made Client at exit (a malformed address used to leave one 10 s later)."""
    import socket
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = run_batch(str(videos["dog"]), "--out", str(tmp_path), "--scheduler",
                  address or f"tcp://127.0.0.1:{port}", "--model", "model.tflite",
                  cwd=model_dir)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and "Exception ignored" not in r.stderr, r.stderr
    errors = [x for x in r.stderr.splitlines() if x.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], r.stderr


# ---------------------------------------------------------------- the cluster

def start_cluster_batch(cluster: Cluster, videos, out: Path, logs: Path,
                        cwd: Path) -> subprocess.Popen:
    """The batch over every video on the cluster, in the background (output to `logs`)."""
    return start(batch(*map(str, videos.values()), "--out", str(out), "--save-video",
                       "--model", "model.tflite", "--scheduler", cluster.address), logs, cwd)


def test_worker_killed_mid_video_loses_nothing(cluster, videos, reference, model_dir, tmp_path):
    out, logs = tmp_path / "out", tmp_path / "batch.log"
    proc = start_cluster_batch(cluster, videos, out, logs, model_dir)
    try:
        victim, stem = None, None

        def a_worker_writes():
            nonlocal victim, stem
            if not out.exists():
                return False
            for name in PHOTOS[1:]:  # not the first: the worker is warm, mid-stream
                for partial in out.glob(f".{name}.partial.*.jsonl"):  # tagged per task
                    victim = holder(partial, cluster.workers)
                    if victim is not None:
                        stem = name
                        return True
            return False

        wait_until(a_worker_writes, "a worker writing a partial output", procs=[proc])
        killed = cluster.address_of(victim)
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(timeout=30)
        assert not (out / f"{stem}.jsonl").exists()  # killed mid-video, not after it
        rc = proc.wait(timeout=240)
    finally:
        stop(proc)
    stderr = logs.read_text()
    assert rc == 0, stderr
    assert "Traceback" not in stderr and "error: " not in stderr
    assert_same_outputs(out, reference, videos)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{s}.{e}" for s in PHOTOS for e in ("jsonl", "mp4")] + ["summary.json"]
        + [f".{s}.settings.json" for s in PHOTOS]  # the settings that made each one
        + [".yolo_tpu.lock"])  # the batch's lock on the folder
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["ok"], summary["failed"]) == (len(PHOTOS), [])
    assert [v["input"] for v in summary["videos"]] == [str(v) for v in videos.values()]
    redone = next(v for v in summary["videos"] if Path(v["input"]).stem == stem)
    assert redone["worker"] != killed and redone["frames"] == FRAMES


def test_worker_without_the_model_reports_it_and_others_go_on(cluster, videos, reference,
                                                              model_dir, tmp_path):
    elsewhere = tmp_path / "elsewhere"  # no model.tflite here
    elsewhere.mkdir()
    unfit = cluster.add_worker(elsewhere)
    out = tmp_path / "out"
    r = run_batch(*map(str, videos.values()), "--out", str(out), "--save-video",
                  "--model", "model.tflite", "--scheduler", cluster.address, cwd=model_dir)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr and "error: " not in r.stderr
    assert_same_outputs(out, reference, videos)
    # the scheduler hands the idle new worker videos at once: it says, once, why it can't
    address = cluster.address_of(unfit)
    (report,) = [x for x in r.stderr.splitlines() if "no such model file" in x]
    assert report == (f"yolo_tpu: worker {address}: model.tflite: no such model file (build "
                      "it with `make demo` or `python -m converters`); its videos go to the "
                      "other workers")
    used = {v["worker"] for v in json.loads((out / "summary.json").read_text())["videos"]}
    assert address not in used


def test_tpu_work_goes_to_edgetpu_workers_and_one_without_a_tpu_says_so(
        cluster, videos, model_dir, tmp_path):
    """`--device usb`: only workers declaring EDGETPU take the videos; this machine has no
    Edge TPU runtime, so that worker says so once and every video fails with its reason."""
    out = tmp_path / "out"
    args = (str(videos["dog"]), str(videos["kite"]), "--out", str(out), "--model",
            "model.tflite", "--device", "usb", "--scheduler", cluster.address)
    r = run_batch(*args, cwd=model_dir)  # no worker declares EDGETPU yet
    assert r.returncode == 2 and "Traceback" not in r.stderr
    (error,) = [x for x in r.stderr.splitlines() if x.startswith("error: ")]
    assert "no worker declares EDGETPU" in error and "--resources EDGETPU=1" in error

    tpu = cluster.add_worker(model_dir, "--resources", "EDGETPU=1")
    r = run_batch(*args, cwd=model_dir)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    address = cluster.address_of(tpu)
    (report,) = [x for x in r.stderr.splitlines() if x.startswith(f"yolo_tpu: worker {address}")]
    assert "libedgetpu.so.1 not found" in report
    tail = r.stderr.split(" videos done, ", 1)[1].splitlines()[1:]  # the final list
    assert len(tail) == 2 and all(x.startswith("error: ") for x in tail), tail
    assert all("no worker can run the model" in x for x in tail)
    assert sorted(p.name for p in out.iterdir()) == [".yolo_tpu.lock", "summary.json"]


def test_sigint_stops_a_cluster_batch_and_resume_finishes_it(cluster, videos, reference,
                                                             model_dir, tmp_path):
    """Ctrl-C: the videos not started are cancelled, the batch ends at once (130); a video
    still running on a worker ends there, complete. --resume on the cluster finishes, even
    while such a video may still be running (tagged partial names keep the two apart)."""
    out, logs = tmp_path / "out", tmp_path / "batch.log"
    proc = start_cluster_batch(cluster, videos, out, logs, model_dir)
    try:
        wait_until(lambda: out.exists() and any(out.glob(".*.partial.*.jsonl")),
                   "a first partial output", procs=[proc])
        os.kill(proc.pid, signal.SIGINT)
        rc = proc.wait(timeout=60)
    finally:
        stop(proc)
    stderr = logs.read_text()
    assert rc == 130, stderr
    assert "Traceback" not in stderr and "error: " not in stderr
    assert stderr.splitlines()[-1] == "yolo_tpu: stopped; run again with --resume to finish"
    r = run_batch(*map(str, videos.values()), "--out", str(out), "--save-video", "--model",
                  "model.tflite", "--scheduler", cluster.address, "--resume", cwd=model_dir)
    assert r.returncode == 0, r.stderr
    assert_same_outputs(out, reference, videos)


def test_scheduler_lost_ends_the_batch_keeping_completed_outputs(cluster, videos, reference,
                                                                 model_dir, tmp_path):
    out, logs = tmp_path / "out", tmp_path / "batch.log"
    proc = start_cluster_batch(cluster, videos, out, logs, model_dir)
    try:
        wait_until(lambda: any(not p.name.startswith(".") for p in out.glob("*.jsonl")),
                   "a first complete output", procs=[proc])
        cluster.scheduler.kill()
        rc = proc.wait(timeout=120)
    finally:
        stop(proc)
    stderr = logs.read_text()
    assert rc == 1, stderr
    assert "Traceback" not in stderr
    errors = [x for x in stderr.splitlines() if x.startswith("error: ")]
    assert len(errors) == 1 and "lost the scheduler" in errors[0], stderr
    assert "--resume" in errors[0] and stderr.splitlines()[-1] == errors[0]
    done = [p.stem for p in out.glob("*.jsonl") if not p.name.startswith(".")]
    assert done
    for stem in done:  # whatever is under a final name is complete
        assert lines(out / f"{stem}.jsonl") == lines(reference / f"{stem}.jsonl")
    # and a local --resume finishes the rest
    r = run_batch(*map(str, videos.values()), "--out", str(out), "--save-video",
                  "--model", "model.tflite", "--device", "cpu", "--resume", cwd=model_dir)
    assert r.returncode == 0, r.stderr
    assert_same_outputs(out, reference, videos)
