#!/usr/bin/env python3
"""Our tracker against `trackers`' ByteTrack and OC-SORT and norfair, on real ground truth.

py-motmetrics ships the ground truth of two real MOT sequences (TUD-Campus, 71 frames, and
TUD-Stadtmitte, 179 frames, 640x480 at 25 FPS). Each is turned into the detections a
detector would give, erring the way detectors err, with fixed seeds:
- boxes dropped (at random, and in runs: an object missed for several frames),
- boxes jittered (their centre and size, relative to their size),
- scores spread out, lower for boxes that overlap another (the occluded one scores low),
- false positives (random boxes with middling scores), a few per frame.
Every tracker gets the same detections; motmetrics scores its tracks against the ground
truth (IoU >= 0.5): MOTA, IDF1, ID switches. Time per frame is the tracker's `update` only.

Then the speed target: 50 objects moving through 300 frames, ms per frame for each tracker
(wall clock and CPU time: the machine may be shared).

    python scripts/benchmark_tracking.py [--seeds 10] [--json FILE]

Needs `pip install '.[test]'` (motmetrics, trackers, scipy) and norfair (`make test`
installs it without its dependencies: it pins rich<13, trackers wants rich>=13).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

if not hasattr(np, "asfarray"):  # motmetrics 1.4 calls np.asfarray, gone in numpy 2
    np.asfarray = lambda a, dtype=np.float64: np.asarray(a, dtype=dtype)  # type: ignore

SEQUENCES = ("TUD-Campus", "TUD-Stadtmitte")
FPS = 25.0
SIZE = (640, 480)


@dataclass(frozen=True)
class Errors:
    """How the simulated detector errs (fractions of a box's size, probabilities)."""
    drop: float = 0.10            # a box missing in a frame
    run_start: float = 0.02       # a box starting a run of misses ...
    run_frames: int = 6           # ... this many frames long
    jitter: float = 0.04          # std of centre and size noise, relative to the box
    false_per_frame: float = 0.5  # mean false positives per frame (Poisson)


def ground_truth(name: str) -> dict[int, list[tuple[int, np.ndarray]]]:
    """frame -> [(object id, xyxy)] from motmetrics' package data."""
    import motmetrics
    path = os.path.join(os.path.dirname(motmetrics.__file__), "data", name, "gt.txt")
    rows = np.loadtxt(path, delimiter=",")
    out: dict[int, list[tuple[int, np.ndarray]]] = {}
    for frame, oid, x, y, w, h, *_ in rows:
        out.setdefault(int(frame), []).append((int(oid), np.array([x, y, x + w, y + h])))
    return out


def detections(gt: dict[int, list[tuple[int, np.ndarray]]], seed: int,
               errors: Errors = Errors()) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """frame -> (xyxy (N, 4), scores (N,)): the ground truth as a detector would see it."""
    rng = np.random.default_rng(seed)
    missing: dict[int, int] = {}  # object -> frames still to miss
    out = {}
    w_img, h_img = SIZE
    for frame in range(1, max(gt) + 1):
        boxes, scores = [], []
        objs = gt.get(frame, [])
        all_boxes = np.array([b for _, b in objs]) if objs else np.zeros((0, 4))
        for k, (oid, box) in enumerate(objs):
            if missing.get(oid, 0) > 0:
                missing[oid] -= 1
                continue
            if rng.random() < errors.run_start:
                missing[oid] = errors.run_frames - 1
                continue
            if rng.random() < errors.drop:
                continue
            w, h = box[2] - box[0], box[3] - box[1]
            cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            cx += rng.normal(0, errors.jitter) * w
            cy += rng.normal(0, errors.jitter) * h
            w *= np.exp(rng.normal(0, errors.jitter))
            h *= np.exp(rng.normal(0, errors.jitter))
            boxes.append([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
            others = np.delete(all_boxes, k, axis=0)
            occluded = _max_overlap(box, others)  # of this box covered by another
            scores.append(float(np.clip(rng.uniform(0.55, 0.95) - 0.6 * occluded, 0.26, 0.99)))
        for _ in range(rng.poisson(errors.false_per_frame)):
            w, h = rng.uniform(30, 120), rng.uniform(60, 250)
            x, y = rng.uniform(0, w_img - w), rng.uniform(0, h_img - h)
            boxes.append([x, y, x + w, y + h])
            scores.append(float(rng.uniform(0.26, 0.6)))
        out[frame] = (np.array(boxes, np.float32).reshape(-1, 4), np.array(scores, np.float32))
    return out


def _max_overlap(box: np.ndarray, others: np.ndarray) -> float:
    if not len(others):
        return 0.0
    w = np.clip(np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]), 0, None)
    h = np.clip(np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]), 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    return float((w * h).max() / area) if area > 0 else 0.0


# ---------------------------------------------------------------- the trackers, one shape

Step = Callable[[np.ndarray, np.ndarray, float], tuple[np.ndarray, np.ndarray]]


def ours(coast: bool = True, **config: Any) -> Callable[[], Step]:
    """Our tracker; `coast`: its tracks (`Tracker.tracks`: a missed object is reported at
    its predicted box for `coast_s`, as norfair reports its objects), else only the
    detections it gave an id (`update`'s output, as ByteTrack reports)."""
    def make() -> Step:
        from yolo_tpu.detections import Detections
        from yolo_tpu.track import Tracker, TrackerConfig
        tracker = Tracker(frame_rate=FPS, config=TrackerConfig(**config))

        def step(xyxy, scores, t):
            out = tracker.update(Detections(xyxy, scores, np.zeros(len(scores), np.int32)),
                                 t=t)
            if coast:
                out = tracker.tracks()
            keep = out.tracker_id >= 0
            return out.xyxy[keep], out.tracker_id[keep]
        return step
    return make


def _roboflow(cls_name: str) -> Callable[[], Step]:
    def make() -> Step:
        import supervision as sv
        import trackers
        tracker = getattr(trackers, cls_name)(frame_rate=FPS)

        def step(xyxy, scores, t):
            dets = sv.Detections(xyxy=xyxy.astype(np.float32), confidence=scores,
                                 class_id=np.zeros(len(scores), int))
            out = tracker.update(dets)
            ids = np.asarray(out.tracker_id if out.tracker_id is not None else [], int)
            keep = ids >= 0
            return np.asarray(out.xyxy).reshape(-1, 4)[keep], ids[keep]
        return step
    return make


def norfair() -> Step:
    from norfair import Detection, Tracker
    tracker = Tracker(distance_function="iou", distance_threshold=0.7, hit_counter_max=15,
                      initialization_delay=1)

    def step(xyxy, scores, t):
        dets = [Detection(points=b.reshape(2, 2), scores=np.array([s, s]))
                for b, s in zip(xyxy.astype(np.float64), scores)]
        objs = tracker.update(detections=dets)
        if not objs:
            return np.zeros((0, 4)), np.zeros(0, int)
        return (np.array([o.estimate.reshape(4) for o in objs]),
                np.array([o.id for o in objs], int))
    return step


TRACKERS: dict[str, Callable[[], Step]] = {
    "yolo_tpu": ours(),
    "yolo_tpu (ids on detections)": ours(coast=False),
    "trackers ByteTrack": _roboflow("ByteTrackTracker"),
    "trackers OC-SORT": _roboflow("OCSORTTracker"),
    "norfair": norfair,
}


# ---------------------------------------------------------------- scoring

def _warm(make: Callable[[], Step], frames: list[tuple[np.ndarray, np.ndarray]]) -> None:
    """One-off costs (numba compiling or loading its cache, lazy imports) out of the timing:
    a throwaway tracker over a few frames reaches every association step."""
    step = make()
    for k, (xyxy, scores) in enumerate(frames):
        step(xyxy, scores, k / FPS)


def score(make: Callable[[], Step], gt, dets) -> dict[str, float]:
    """MOTA, IDF1, ID switches and ms per frame of one tracker on one sequence."""
    import motmetrics as mm
    _warm(make, [dets[f] for f in (1, 2, 3)])
    step = make()
    acc = mm.MOTAccumulator(auto_id=True)
    spent = 0.0
    for frame in range(1, max(gt) + 1):
        xyxy, scores = dets[frame]
        t0 = time.perf_counter()
        boxes, ids = step(xyxy, scores, (frame - 1) / FPS)
        spent += time.perf_counter() - t0
        objs = gt.get(frame, [])
        gt_xywh = np.array([[b[0], b[1], b[2] - b[0], b[3] - b[1]] for _, b in objs]) \
            .reshape(-1, 4)
        hyp = np.asarray(boxes, np.float64).reshape(-1, 4)
        hyp_xywh = np.c_[hyp[:, :2], hyp[:, 2:] - hyp[:, :2]]
        acc.update([oid for oid, _ in objs], ids.tolist(),
                   mm.distances.iou_matrix(gt_xywh, hyp_xywh, max_iou=0.5))
    summary = mm.metrics.create().compute(acc, metrics=["mota", "idf1", "num_switches"])
    return {"mota": float(summary["mota"].iloc[0]), "idf1": float(summary["idf1"].iloc[0]),
            "id_switches": int(summary["num_switches"].iloc[0]),
            "ms_per_frame": spent / max(gt) * 1e3}


def evaluate(seeds: int = 10) -> dict[str, dict[str, dict[str, float]]]:
    """sequence -> tracker -> figures averaged over `seeds` detection draws (ID switches
    summed)."""
    results: dict[str, dict[str, dict[str, float]]] = {}
    for seq in SEQUENCES:
        gt = ground_truth(seq)
        per: dict[str, list[dict[str, float]]] = {name: [] for name in TRACKERS}
        for seed in range(seeds):
            dets = detections(gt, seed)
            for name, make in TRACKERS.items():
                per[name].append(score(make, gt, dets))
        results[seq] = {name: {"mota": float(np.mean([r["mota"] for r in runs])),
                               "idf1": float(np.mean([r["idf1"] for r in runs])),
                               "id_switches": int(sum(r["id_switches"] for r in runs)),
                               "ms_per_frame": float(np.mean([r["ms_per_frame"] for r in runs]))}
                        for name, runs in per.items()}
    return results


def crowd_timing(objects: int = 50, frames: int = 300, seed: int = 0
                 ) -> dict[str, tuple[float, float]]:
    """ms per frame of each tracker on `objects` boxes moving through `frames` frames:
    (wall clock, CPU time of this process). On a machine shared with other jobs the wall
    clock also counts the time other processes ran; the CPU time does not."""
    rng = np.random.default_rng(seed)
    pos = rng.uniform([0, 0], [1800, 1000], (objects, 2))
    vel = rng.normal(0, 3, (objects, 2))
    size = rng.uniform([20, 40], [60, 120], (objects, 2))
    seq = []
    for _ in range(frames):
        pos = pos + vel
        xyxy = np.c_[pos, pos + size].astype(np.float32)
        seq.append((xyxy, rng.uniform(0.3, 0.95, objects).astype(np.float32)))
    out = {}
    for name, make in TRACKERS.items():
        _warm(make, seq[:3])
        step = make()
        step(*seq[0], 0.0)
        t0, c0 = time.perf_counter(), time.process_time()
        for k, (xyxy, scores) in enumerate(seq[1:], 1):
            step(xyxy, scores, k / 30.0)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        out[name] = (wall / (frames - 1) * 1e3, cpu / (frames - 1) * 1e3)
    return out


def table(results, timing) -> str:
    lines = ["| sequence | tracker | MOTA | IDF1 | ID switches | ms/frame |",
             "|---|---|---:|---:|---:|---:|"]
    for seq, per in results.items():
        for name, r in per.items():
            lines.append(f"| {seq} | {name} | {r['mota']:.3f} | {r['idf1']:.3f} | "
                         f"{r['id_switches']} | {r['ms_per_frame']:.3f} |")
    lines += ["", "| 50 objects, 300 frames | ms/frame (wall) | ms/frame (CPU) | CPU vs yolo_tpu |",
              "|---|---:|---:|---:|"]
    ours_cpu = timing["yolo_tpu"][1]
    for name, (wall, cpu) in timing.items():
        lines.append(f"| {name} | {wall:.3f} | {cpu:.3f} | {cpu / ours_cpu:.1f}x |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=10, help="detection draws per sequence")
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = p.parse_args(argv)
    results = evaluate(args.seeds)
    timing = crowd_timing()
    print(table(results, timing))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"sequences": results,
                       "crowd_ms_per_frame": {k: w for k, (w, _) in timing.items()},
                       "crowd_cpu_ms_per_frame": {k: c for k, (_, c) in timing.items()}},
                      f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
