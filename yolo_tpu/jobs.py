"""One video of a batch into its outputs, and the records of what happened: the code the
local batch (`batch.py`) and a Dask worker (`cluster.py`) both run, in a module of its own
so that neither of those imports the other for it.

A `Job` is one input and its output names; `process` runs it into outputs that are whole or
absent (`outputs.py`), recording the settings they were made with beside them, which
`--resume` checks (`Job.done`); `write_summary` and `table` report the records.
"""
from __future__ import annotations

import argparse
import glob
import hashlib
import json
import logging
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from .outputs import PARTIAL, OutputError, video_problem, write_atomic
from .sinks import JsonLines, VideoFile
from .sources import SourceError, VideoSource, video_spec

log = logging.getLogger("yolo_tpu")
SUMMARY = "summary.json"
# What the outputs depend on; --device and --save-video do not change the detections.
SETTINGS_KEYS = ("model_sha256", "conf", "iou", "max_det", "every", "track")


@dataclass
class Job:
    """One input video and where its outputs go."""
    source: str
    stem: str
    out_dir: str
    save_video: bool
    record: dict[str, Any] = field(default_factory=dict)
    track: bool = False             # --track / --zone / --line: track ids, counts
    regions: tuple = ()             # zones.Region: counts, and DIR/<name>.events.jsonl

    @property
    def events_path(self) -> str:
        return os.path.join(self.out_dir, self.stem + ".events.jsonl")

    @property
    def json_path(self) -> str:
        return os.path.join(self.out_dir, self.stem + ".jsonl")

    @property
    def video_path(self) -> str:
        return os.path.join(self.out_dir, self.stem + ".mp4")

    def outputs(self) -> list[str]:
        return [self.json_path] + ([self.video_path] if self.save_video else []) \
            + ([self.events_path] if self.regions else [])

    @property
    def settings_path(self) -> str:
        return os.path.join(self.out_dir, f".{self.stem}.settings.json")

    def started(self) -> bool:
        """Whether an earlier run left any of its outputs."""
        return any(os.path.exists(p) for p in self.outputs())

    def problem(self, recorded: dict[str, Any] | None) -> str | None:
        """Why this job's outputs are not the complete set an earlier run recorded
        (`recorded["outputs"]`: bytes, and JSON lines or video frames, per file), or None."""
        held = (recorded or {}).get("outputs") if isinstance(recorded, dict) else None
        for path in self.outputs():
            name = os.path.basename(path)
            if not os.path.exists(path):
                return f"{name} is missing"
            want = held.get(name) if isinstance(held, dict) else None
            if not isinstance(want, dict):
                return f"no record of what {name} holds"
            size = os.path.getsize(path)
            if size != want.get("bytes"):
                return f"{name} is {size} bytes, {want.get('bytes')} when written"
            if "lines" in want and (lines := _whole_lines(path)) != want["lines"]:
                return f"{name} holds {lines} whole lines of the {want['lines']} written"
            if "frames" in want and (why := video_problem(path, want["frames"])):
                return f"{name} {why}"
        return None

    def done(self) -> bool:
        return self.problem(recorded_settings(self)) is None


def _whole_lines(path: str) -> int:
    """Lines of a JSON lines file that end with a newline and parse (-1: unreadable)."""
    n = 0
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if not line.endswith("\n"):
                    break
                json.loads(line)
                n += 1
    except (OSError, ValueError):
        return -1
    return n


def file_sha256(path: str) -> str | None:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError:
        return None  # reported when the model is loaded
    return h.hexdigest()


def settings_for(model: str, conf: float, iou: float, max_det: int,
                 every: int, track: list[str] | None = None) -> dict[str, Any]:
    """What an input's outputs depend on; `model` may list segments, comma-separated."""
    digests = [file_sha256(p) for p in str(model).split(",")]
    sha = digests[0] if len(digests) == 1 else \
        None if None in digests else hashlib.sha256("".join(digests).encode()).hexdigest()
    return {"model": model, "model_sha256": sha, "conf": conf, "iou": iou,
            "max_det": max_det, "every": every, "track": track}


def track_settings(track: bool, regions: Any) -> list[str] | None:
    """What tracking the outputs were made with: None (off), or the --zone/--line specs."""
    return [f"{r.kind} {r.spec}" for r in regions] if track else None


def current_settings(args: argparse.Namespace) -> dict[str, Any]:
    from .track_cli import regions, tracking_wanted
    return settings_for(args.model, args.conf, args.iou, args.max_det, args.every,
                        track_settings(tracking_wanted(args), regions(args)))


def recorded_settings(job: Job) -> dict[str, Any] | None:
    try:
        with open(job.settings_path, encoding="utf-8") as f:
            recorded = json.load(f)
    except (OSError, ValueError):
        return None
    return recorded if isinstance(recorded, dict) else None


def settings_change(recorded: dict[str, Any] | None, current: dict[str, Any]) -> str | None:
    """Why outputs made with `recorded` settings are not what `current` would make, or None."""
    if not isinstance(recorded, dict):
        return "no record of the settings that made its outputs"
    changes = [f"--{k.replace('_', '-')} was {recorded.get(k)}, now {current[k]}"
               for k in SETTINGS_KEYS if k != "model_sha256" and recorded.get(k) != current[k]]
    if recorded.get("model_sha256") != current["model_sha256"]:
        changes.insert(0, f"made with another model ({recorded.get('model')})")
    return "; ".join(changes) or None


def write_settings(job: Job, settings: dict[str, Any], held: dict[str, Any],
                   tag: str = "") -> None:
    """Beside the outputs, after they are renamed complete (and removed before they are
    redone), so a recorded setting always describes the outputs that are there; `held`:
    what each output holds (bytes; JSON lines or video frames), checked by --resume."""
    write_atomic(job.settings_path, json.dumps({**settings, "outputs": held}, indent=1),
                 tag)


class LogProgress:
    """Progress for a log (stderr not a terminal, so no bars): a line as each video starts
    and ends, and one every `period` seconds in between."""

    def __init__(self, jobs: int, total_frames: int, period: float):
        self.jobs, self.total, self.period = jobs, total_frames, period
        self.enabled = not sys.stderr.isatty()
        self.done = 0
        self.start = self.last = time.monotonic()
        self.n, self.name, self.expected, self.frames = 0, "", 0, 0

    def _line(self, text: str) -> None:
        if self.enabled:
            print(f"yolo_tpu: [{self.n}/{self.jobs}] {self.name}: {text}", file=sys.stderr,
                  flush=True)

    def begin(self, job: Job, expected: int) -> None:
        self.n += 1
        self.name, self.expected, self.frames = os.path.basename(job.source), expected, 0
        self._line(f"started ({expected or 'unknown number of'} frames)")

    def frame(self, every: int) -> None:
        self.frames += 1
        self.done += every
        now = time.monotonic()
        if now - self.last < self.period:
            return
        self.last = now
        of = f"/{self.expected}" if self.expected else ""
        rate = self.done / max(now - self.start, 1e-9)
        overall = f"overall {self.done}/{self.total} frames" if self.total else \
            f"overall {self.done} frames"
        eta = f", ETA {_duration((self.total - self.done) / rate)}" \
            if self.total and rate > 0 and self.done < self.total else ""
        self._line(f"{self.frames}{of} frames; {overall}, {rate:.1f} frames/s{eta}")

    def end(self, record: dict[str, Any]) -> None:
        fps = f", {record['fps']:.1f} FPS" if record.get("fps") else ""
        self._line(f"{record['status']}, {record.get('frames') or 0} frames{fps}")


def _duration(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"


def plan(sources: list[str], out_dir: str, save_video: bool, track: bool = False,
         regions: tuple = ()) -> list[Job]:
    """Output names by file name; a name met again gets `_2`, `_3`, ... in input order, so
    the same command line maps every input to the same outputs on `--resume`."""
    jobs, taken = [], set()
    for src in sources:
        stem = base = os.path.splitext(os.path.basename(src))[0]
        n = 1
        while stem in taken:
            n += 1
            stem = f"{base}_{n}"
        taken.add(stem)
        jobs.append(Job(src, stem, out_dir, save_video, track=track, regions=tuple(regions)))
    return jobs


def remove_partials(job: Job) -> None:
    """Leftovers of a killed run for this job (hidden `.<stem>.partial.*` files)."""
    pattern = f".{glob.escape(job.stem)}{PARTIAL}.*"
    for path in glob.glob(os.path.join(glob.escape(job.out_dir), pattern)):
        try:
            os.remove(path)
        except OSError:
            pass


def _remove_outputs(job: Job) -> None:
    """A set that could not be finished: none of it stays under a final name."""
    for path in job.outputs() + [job.settings_path]:
        try:
            os.remove(path)
        except OSError:
            pass


def count_frames(path: str) -> int:
    """The container's frame count (for the overall progress bar), 0 when unknown."""
    try:
        with VideoSource(video_spec(path)) as source:
            return source.frame_count
    except SourceError:
        return 0


def process(detector: Any, job: Job, every: int, stop, overall, position: int = 1,
            tag: str = "", progress: "LogProgress | None" = None) -> dict[str, Any]:
    """Run one video into its outputs; the record of what happened (never raises for input
    problems: they become the record's error). `tag`: in the partial names (one per run or
    cluster task). OutputError when an output cannot be written (a full disk): then none
    of this video's outputs is left, partial or final."""
    from tqdm import tqdm

    from .stream import damage, run as run_loop
    # Recorded from the detector that makes the outputs, whoever calls (a cluster worker too)
    settings = settings_for(detector.model_path, detector.conf, detector.iou,
                            detector.max_det, every, track_settings(job.track, job.regions))
    record: dict[str, Any] = {"input": job.source, "outputs": job.outputs(), "status": "ok",
                              "error": None, "settings": settings}
    try:
        os.remove(job.settings_path)  # the outputs there are about to be replaced
    except FileNotFoundError:
        pass
    try:
        source = VideoSource(video_spec(job.source)).open()
    except SourceError as e:
        return {**record, "status": "failed", "error": str(e), "frames": 0}
    remove_partials(job)
    try:
        results = [JsonLines(job.json_path, job.source, atomic=True, tag=tag)]
    except OutputError:
        source.close()
        raise
    analysis = None
    if job.track:  # by time stamps: --every N is a longer step, not a lost object
        from .events import Analysis, EventsFile
        sinks = [EventsFile(job.events_path, atomic=True, tag=tag)] if job.regions else []
        analysis = Analysis(job.source, source.fps if source.sane_fps else 30.0,
                            list(job.regions), sinks)
    images = [VideoFile(job.video_path, source.write_fps / every, tag)] if job.save_video \
        else []
    expected = -(-source.frame_count // every)  # frames the model will see; 0: unknown
    bar = tqdm(total=expected or None, unit="frame",
               desc=os.path.basename(job.source), file=sys.stderr, position=position, leave=False,
               disable=None, dynamic_ncols=True)
    if progress is not None:
        progress.begin(job, expected)

    def on_frame(*_: Any) -> None:
        bar.update(1)
        overall.update(every)
        if progress is not None:
            progress.frame(every)

    try:
        stats = run_loop(detector, source, results, images, stop=stop, every=every,
                         on_frame=on_frame, analysis=analysis)
    finally:
        bar.close()
        source.close()
    # Interrupted or a write failed: the outputs are incomplete, so they are dropped and
    # --resume redoes them. Otherwise they are kept: for a damaged file they hold every
    # frame that decodes. A failed write (or a video that does not play back) is raised.
    sinks = results + images
    failed = next((s.error for s in sinks if getattr(s, "error", None)), None)
    complete = not stop.is_set() and failed is None and not stats.device_stopped
    for sink in sinks:
        try:
            sink.close(complete=complete)
        except OutputError as e:
            failed, complete = failed or e, False
    if analysis is not None:
        analysis.close(complete)
    if failed is not None:
        for sink in sinks:
            sink.close(complete=False)
        _remove_outputs(job)  # those renamed already: a set is whole or absent
        raise failed
    if complete:
        held = {os.path.basename(job.json_path): {
            "bytes": os.path.getsize(job.json_path), "lines": results[0].lines}}
        if images:
            held[os.path.basename(job.video_path)] = {
                "bytes": os.path.getsize(job.video_path), "frames": images[0].frames}
        try:
            write_settings(job, settings, held, tag)
        except OutputError:
            _remove_outputs(job)
            raise
    if stats.device_stopped:  # this video's outputs are dropped, like an interrupted one's
        from .supervised import DeviceStopped
        raise DeviceStopped(stats.error)
    record.update(stats.to_dict())
    record.update(expected_frames=expected or None, every=every)
    if not complete:
        record.update(status="stopped", outputs=[])
    elif stats.error:
        record.update(status="failed", error=stats.error)
    elif stats.frames == 0:
        record.update(status="failed", error=f"{job.source}: no frame could be decoded")
    elif problem := damage(stats, source, every):
        record.update(status="failed", error=problem)
    if progress is not None:
        progress.end(record)
    return record


def recount(job: Job, previous: dict[str, Any] | None) -> dict[str, Any]:
    """The record of an input done by an earlier run: its summary entry, else counted from
    its JSON lines (frames and detections per class)."""
    if previous and previous.get("input") == job.source:
        return {**previous, "settings": _settings_only(job), "resumed": True}
    frames, per_class = 0, Counter()
    with open(job.json_path, encoding="utf-8") as f:
        for line in f:
            frames += 1
            per_class.update(d["label"] for d in json.loads(line)["detections"])
    return {"input": job.source, "outputs": job.outputs(), "status": "ok", "error": None,
            "frames": frames, "fps": None, "detections": dict(sorted(per_class.items())),
            "settings": _settings_only(job), "resumed": True}


def _settings_only(job: Job) -> dict[str, Any] | None:
    """The recorded settings of an input done earlier, without the record of its outputs."""
    recorded = recorded_settings(job)
    return recorded and {k: v for k, v in recorded.items() if k != "outputs"}


def write_summary(out_dir: str, records: list[dict[str, Any]], args: argparse.Namespace,
                  missing: list[SourceError] | None = None) -> None:
    """DIR/summary.json, replaced atomically after every video (a killed run keeps it).
    `not_found`: the input arguments that matched no file (their error messages)."""
    done = [r for r in records if r]
    totals = Counter()
    for r in done:
        totals.update(r.get("detections") or {})
    summary = {"model": args.model, "every": args.every,
               "settings": current_settings(args),
               "inputs": len(records), "ok": sum(r["status"] == "ok" for r in done),
               "failed": [r["input"] for r in done if r["status"] == "failed"],
               "not_found": [str(e) for e in missing or []],
               "frames": sum(r.get("frames") or 0 for r in done),
               "detections": dict(sorted(totals.items())), "videos": done}
    if any(r.get("counts") for r in done):
        from .events import sum_counts
        summary["counts"] = sum_counts([r["counts"] for r in done if r.get("counts")])
    write_atomic(os.path.join(out_dir, SUMMARY), json.dumps(summary, indent=1),
                 getattr(args, "tag", ""))


def table(records: list[dict[str, Any]]) -> str:
    """file | frames | FPS | detections per class (most frequent first) | status, and
    with --zone / --line the counts per line and zone."""
    from .events import counts_text
    with_counts = any(r and r.get("counts") for r in records)
    rows = [("file", "frames", "FPS", "detections", "status")
            + (("counts",) if with_counts else ())]
    for r in records:
        if not r:
            continue
        dets = Counter(r.get("detections") or {})
        top = ", ".join(f"{k} {v}" for k, v in dets.most_common(4))
        if len(dets) > 4:
            top += f", +{len(dets) - 4} classes"
        fps = f"{r['fps']:.1f}" if r.get("fps") else "-"
        status = r["status"] + (" (earlier run)" if r.get("resumed") else "")
        rows.append((os.path.basename(r["input"]), str(r.get("frames", 0)), fps,
                     top or "-", status)
                    + ((counts_text(r.get("counts")) or "-",) if with_counts else ()))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) if i in (0, 3, 4, 5) else c.rjust(w)
                               for i, (c, w) in enumerate(zip(row, widths))).rstrip()
                     for row in rows)
