"""`python -m yolo_tpu.batch INPUT ... --out DIR`: detect in every frame of many videos.

For each video, `DIR/<name>.jsonl` (one JSON line per frame, the `detect --json` schema)
and with `--save-video` `DIR/<name>.mp4` (annotated). `DIR/summary.json` holds one record
per input and the totals; a table is printed at the end.

Every output is written under a hidden partial name (tagged per run) and renamed when
complete and verified (`outputs.py`), so a run killed at any moment (even `kill -9`) or
stopped by a full disk leaves only complete outputs; `--resume` then skips the inputs
whose outputs are all there, hold what was written (JSON lines and bytes counted, the
video played back) and were made with the same settings (model file, --conf, --iou,
--max-det, --every, recorded beside them in `.<name>.settings.json`), and redoes the
others, saying why. A video that fails (cannot be opened, damaged, truncated) is listed at
the end and makes the exit status 1; the batch goes on. A write error (disk full) ends
the batch with one line naming the file and the free space; what was finished stays.

One batch writes into a folder at a time: a second one on the same --out says so and
exits (or waits, with --wait); the lock (`DIR/.yolo_tpu.lock`) dies with its holder.

Progress: bars on a terminal; otherwise (a log file, a pipe, a service) a line as each
video starts and ends, and a progress line every --log-every seconds.

`--devices usb:0,usb:1` runs one worker per device here (each its own copy of the model,
taking the next video when free); `--scheduler tcp://HOST:PORT` hands the videos to the
workers of a Dask cluster (`cluster.py`), which run the same `process` on shared storage.

Exit status: 0 all inputs done; 1 some failed (the rest are done), or the scheduler was
lost; 2 nothing could run (model, device, arguments, no inputs, no scheduler); 130 / 143
stopped by SIGINT / SIGTERM (the video in progress is left for `--resume`).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from typing import Any

from .environment import require

require(__name__, "yolo_tpu.batch", ("numpy", "cv2", "numba", "tqdm"))

from . import __version__
from .cli import add_model_args, device_ok, error, load_detector, positive_float, positive_int, \
    setup_logging
from .jobs import (
    SUMMARY,
    Job,
    LogProgress,
    count_frames,
    current_settings,
    plan,
    process,
    recorded_settings,
    recount,
    settings_change,
    table,
    write_summary,
)
from .outputs import FolderLock, OutputError, run_tag
from .sources import SourceError, expand_video_args
from .text import counted

log = logging.getLogger("yolo_tpu")
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m yolo_tpu.batch",
        description="Detect objects in every frame of many videos; one JSON lines file "
                    "(and optionally an annotated video) per input.",
        epilog="Exit status: 0 all inputs done; 1 some failed (the rest are done) or the "
               "scheduler was lost; 2 nothing could run; 130/143 stopped by a signal (use "
               "--resume to go on).")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="video files, folders (their videos, sorted) or globs")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--resume", action="store_true",
                   help="skip inputs whose outputs are already complete in DIR")
    p.add_argument("--wait", action="store_true",
                   help="when another batch is writing into DIR, wait for it to end "
                        "(default: say so and exit)")
    p.add_argument("--every", type=positive_int, default=1, metavar="N",
                   help="run the model on every Nth frame (default 1: all)")
    p.add_argument("--save-video", action="store_true",
                   help="also write the annotated video DIR/<name>.mp4")
    p.add_argument("--log-every", type=positive_float, default=10.0, metavar="SECONDS",
                   help="when stderr is not a terminal (no progress bars): a progress line "
                        "this often (default 10)")
    add_model_args(p, "frame")
    from .track_cli import add_tracking_args
    add_tracking_args(p, batch=True)
    p.add_argument("--devices", metavar="DEV,DEV,...",
                   help="one worker per device on this machine, each with its own copy of "
                        "the model, taking the next video when free (e.g. usb:0,usb:1 or "
                        "cpu,cpu); replaces --device")
    p.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                   help="send the videos to the workers of a running Dask cluster (pip "
                        "install .[cluster]); inputs, --model and --out must be paths every "
                        "worker sees (shared storage)")
    p.add_argument("--version", action="version", version=f"yolo_tpu {__version__}")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> int:
    if args.devices and args.scheduler:
        error("--devices and --scheduler: choose one (cluster workers pick their own device)")
        return 2
    devices = [d.strip() for d in args.devices.split(",")] if args.devices else [args.device]
    if not all(device_ok(d) for d in devices):
        return 2
    from .track_cli import check_tracking
    if problem := check_tracking(args):
        error(problem)
        return 2
    sources, missing = expand_video_args(args.inputs)
    for e in missing:
        error(str(e))
    if not sources:
        return 2
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        error(f"--out {args.out}: is an existing file, not a folder")
        return 2
    lock = FolderLock(args.out)
    try:  # made if missing; a read-only or foreign folder fails here, before any work
        lock.acquire(wait=args.wait, on_wait=lambda m: log.info("%s", m))
    except OutputError as e:
        error(str(e))
        return 2
    try:
        return _run_locked(args, sources, missing, devices)
    finally:
        lock.release()


def _run_locked(args: argparse.Namespace, sources: list[str], missing: list[SourceError],
                devices: list[str]) -> int:
    """The batch, once this run holds --out's lock."""
    from tqdm import tqdm

    from .stream import stop_on_signals
    from .track_cli import regions, tracking_wanted
    args.tag = run_tag()  # this run's partial names
    jobs = plan(sources, args.out, args.save_video, tracking_wanted(args), tuple(regions(args)))
    inputs = {os.path.realpath(s) for s in sources}
    for job in jobs:  # --out the inputs' folder: clip.mp4 would replace the source clip.mp4
        if any(os.path.realpath(p) in inputs for p in job.outputs()):
            error(f"--out {args.out}: the output of {job.source} would overwrite an input; "
                   "choose another folder")
            return 2
    previous = _previous_records(args.out) if args.resume else {}
    settings = current_settings(args)
    todo = []
    for job in jobs:
        if args.resume and (job.started() or os.path.exists(job.settings_path)):
            recorded = recorded_settings(job)
            why = job.problem(recorded) or settings_change(recorded, settings)
            if why is None:
                continue
            log.info("resume: %s: redoing, %s", job.source, why)
        todo.append(job)
    if args.resume:
        log.info("resume: %d of %s already done", len(jobs) - len(todo),
                 counted(len(jobs), "input"))
    records: list[dict[str, Any]] = [
        {} if j in todo else recount(j, previous.get(j.source)) for j in jobs]
    detectors = []
    if todo and not args.scheduler:
        for device in devices:
            detector = load_detector(argparse.Namespace(**{**vars(args), "device": device}))
            if detector is None:
                return 2
            detectors.append(detector)
    total = sum(count_frames(j.source) for j in todo)
    overall = tqdm(total=total or None, unit="frame", desc=f"{len(todo)} videos",
                   file=sys.stderr, position=0, disable=None, dynamic_ncols=True)
    progress = LogProgress(len(todo), total, args.log_every)
    start = time.perf_counter()
    lost = None
    write_failed: list[OutputError] = []
    with stop_on_signals() as stop:
        try:
            if args.scheduler and todo:
                from .cluster import run_on_cluster
                lost = run_on_cluster(args, jobs, todo, records, missing, stop, overall,
                                      write_failed)
                if lost == "unreachable":
                    return 2
            else:
                run_local(detectors, jobs, todo, records, args, missing, stop, overall,
                          devices if args.devices else None,
                          progress if len(detectors) == 1 else None, write_failed)
        finally:
            overall.close()
            for detector in detectors:
                detector.close()
    disk_full = any(isinstance(e, OutputError) for e in write_failed)
    if not disk_full:
        try:
            write_summary(args.out, records, args, missing)
        except OutputError as e:
            write_failed.append(e)
            disk_full = True
    if write_failed:  # a full disk or a stopped TPU: every further video would fail too
        done = sum(1 for r in records if r and r["status"] == "ok")
        error(f"{write_failed[0]}; {done} of {counted(len(jobs), 'video')} done and kept; "
              f"{'free some space and ' if disk_full else ''}run again with --resume")
        return 1
    failed = [r for r in records if r and r["status"] == "failed"]
    print(table(records), flush=True)
    elapsed = time.perf_counter() - start
    done = sum(1 for r in records if r and r["status"] == "ok")
    print(f"yolo_tpu: {done} of {counted(len(jobs), 'video')} done, {len(failed)} failed, "
          f"{counted(len(missing), 'input')} not found, {elapsed:.1f} s; summary: "
          f"{os.path.join(args.out, SUMMARY)}", file=sys.stderr, flush=True)
    for e in missing:  # again at the end, with the other failures: the start has scrolled away
        error(str(e))
    for r in failed:
        error(r["error"])
    if lost:
        error(lost)
        return 1
    if stop.signal:
        print("yolo_tpu: stopped; run again with --resume to finish", file=sys.stderr)
        return 128 + stop.signal
    return 1 if failed or missing else 0


def run_local(detectors: list[Any], jobs: list[Job], todo: list[Job],
              records: list[dict[str, Any]], args: argparse.Namespace,
              missing: list[SourceError], stop, overall,
              devices: list[str] | None = None, progress: "LogProgress | None" = None,
              write_failed: list[OutputError] | None = None) -> None:
    """The videos to do, in input order, by one worker thread per detector (device): each
    takes the next video when it is free. The summary is rewritten after every video, each
    record naming the device that did it (`--devices`). A write error (full disk) stops
    every worker (their videos in progress are dropped) and goes to `write_failed`."""
    write_failed = [] if write_failed is None else write_failed
    import threading

    from .supervised import DeviceStopped
    lock = threading.Lock()
    queue = iter([i for i, job in enumerate(jobs) if job in todo])

    def work(detector: Any, slot: int) -> None:
        while not stop.is_set():
            with lock:
                i = next(queue, None)
            if i is None:
                return
            try:
                record = process(detector, jobs[i], args.every, stop, overall,
                                 position=1 + slot, tag=getattr(args, "tag", ""),
                                 progress=progress)
                if devices:
                    record["worker"] = f"local {slot}: {devices[slot]}"
                with lock:
                    records[i] = record
                    if record["status"] == "failed":
                        overall.write(f"error: {record['error']}", file=sys.stderr)
                    write_summary(args.out, records, args, missing)
            except (OutputError, DeviceStopped) as e:  # every further video would fail too
                with lock:
                    write_failed.append(e)
                stop.set()
                return

    if len(detectors) == 1:  # in this thread: nothing to join
        work(detectors[0], 0)
        return
    workers = [threading.Thread(target=work, args=(d, k), name=f"yolo_tpu-worker-{k}",
                                daemon=True) for k, d in enumerate(detectors)]
    for w in workers:
        w.start()
    for w in workers:
        while w.is_alive():  # short waits: the main thread must stay free for signals
            w.join(timeout=0.2)


def _previous_records(out_dir: str) -> dict[str, dict[str, Any]]:
    """The per-input records of an earlier run's summary.json, by input path."""
    try:
        with open(os.path.join(out_dir, SUMMARY), encoding="utf-8") as f:
            return {r["input"]: r for r in json.load(f).get("videos", [])
                    if r.get("status") in ("ok", "failed")}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging()
    try:
        return run(args)
    except KeyboardInterrupt:
        print("yolo_tpu: interrupted; run again with --resume to finish", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
