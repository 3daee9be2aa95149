"""Detections -> tracks -> zone and line events -> event sinks (a JSON lines file, MQTT).

`Analysis` is the stage the video loop runs on every processed frame, in order, before the
other sinks: it gives the detections their track ids (`track.Tracker`), turns tracks into
`enter` / `leave` / `cross` events (`zones.Counting`) and hands each event to the event
sinks. An event is one JSON object:

    {"id": 3, "event": "cross", "line": "door", "direction": "in", "track_id": 7,
     "label": "person", "box": [x1, y1, x2, y2], "source": "clip.mp4", "frame": 120,
     "t_ms": 4000.0}

(`zone` instead of `line` for `enter` / `leave`; `direction` for `cross` only). Event sinks
get a `snapshot()` callable too: the annotated frame as a JPEG, encoded once per frame and
only if some sink asks for it (MQTT does).
"""
from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import IO, Any, Protocol

import cv2
import numpy as np

from .detections import Detections
from .sinks import SinkError, partial_path
from .sources import Frame
from .zones import Counting, Region

__all__ = ["EventSink", "EventsFile", "Analysis"]

SNAPSHOT_QUALITY = 85


class EventSink(Protocol):
    """Takes every event, with a way to get the frame's annotated JPEG."""
    def write(self, event: dict[str, Any], snapshot: Callable[[], bytes]) -> None: ...
    def counts(self, counts: dict[str, Any]) -> None: ...
    def close(self, complete: bool = True) -> None: ...


class EventsFile:
    """`--events FILE`: one JSON line per event; flushed per line (detect) or written under
    a partial name renamed on `close(complete=True)` (`atomic`, batch)."""

    def __init__(self, path: str, atomic: bool = False, tag: str = "") -> None:
        self.path, self.atomic = path, atomic
        self._target = partial_path(path, tag) if atomic else path
        self._out: IO[str]
        if path == "-":
            self._out = sys.stdout
            return
        try:
            folder = os.path.dirname(path)
            if folder:
                os.makedirs(folder, exist_ok=True)
            self._out = open(self._target, "w", encoding="utf-8")
        except OSError as e:
            raise SinkError(f"{path}: {e.strerror or e}") from None

    def write(self, event: dict[str, Any], snapshot: Callable[[], bytes]) -> None:
        self._out.write(json.dumps(event) + "\n")
        if not self.atomic:
            self._out.flush()

    def counts(self, counts: dict[str, Any]) -> None:
        pass  # the file holds events; the counts are in the summary

    def close(self, complete: bool = True) -> None:
        if self._out is sys.stdout:
            self._out.flush()
            return
        if self._out.closed:
            return
        self._out.flush()
        if self.atomic and complete:
            os.fsync(self._out.fileno())
        self._out.close()
        if self.atomic:
            if complete:
                os.replace(self._target, self.path)
            else:
                try:
                    os.remove(self._target)
                except FileNotFoundError:
                    pass


class Analysis:
    """Tracking, counting and event output for one source (one video of a batch)."""

    def __init__(self, source: str, frame_rate: float, regions: list[Region] = (),
                 sinks: list[EventSink] = (), tracker: Any = None) -> None:
        from .track import Tracker  # scipy-backed: imported only when tracking
        self.source = source
        self.tracker = tracker or Tracker(frame_rate=frame_rate if frame_rate > 0 else 30.0)
        self.counting = Counting(list(regions)) if regions else None
        self.sinks = list(sinks)
        self.events = 0
        self._labels: dict[int, str] = {}  # class id -> label, as the model names them

    def update(self, frame: Frame, dets: Detections) -> Detections:
        """The frame's detections with track ids; its events go to the sinks."""
        tracked = self.tracker.update(dets, t=frame.t_ms / 1e3)
        if self.counting is None:
            return tracked
        for cid, label in zip(dets.class_ids.tolist(), dets.labels):
            self._labels.setdefault(cid, label)
        labels = {}
        for tid in tracked.tracker_id.tolist():
            if tid >= 0:
                cid = self.tracker.track_class(tid)
                labels[tid] = self._labels.get(cid, str(cid))
        h, w = frame.image.shape[:2]
        events = self.counting.update(tracked, (w, h), labels, self.tracker.ended)
        if events:
            snapshot = _Snapshot(frame.image, tracked, self)
            for event in events:
                self.events += 1
                record = {"id": self.events, **event, "source": self.source,
                          "frame": frame.index, "t_ms": round(frame.t_ms, 2)}
                for sink in self.sinks:
                    sink.write(record, snapshot)
            counts = self.counting.counts()
            for sink in self.sinks:
                sink.counts(counts)
        return tracked

    def counts(self) -> dict[str, Any] | None:
        return self.counting.counts() if self.counting is not None else None

    def draw(self, image: np.ndarray) -> np.ndarray:
        """The zones and lines with their counts over an annotated frame (in place)."""
        return self.counting.draw(image) if self.counting is not None else image

    def close(self, complete: bool = True) -> None:
        for sink in self.sinks:
            sink.close(complete)


class _Snapshot:
    """The frame annotated, as a JPEG, made on the first call only."""

    def __init__(self, image: np.ndarray, dets: Detections, analysis: Analysis) -> None:
        self._image, self._dets, self._analysis = image, dets, analysis
        self._jpeg: bytes | None = None

    def __call__(self) -> bytes:
        if self._jpeg is None:
            from .draw import draw_detections
            annotated = self._analysis.draw(draw_detections(self._image, self._dets))
            ok, buf = cv2.imencode(".jpg", annotated, [cv2.IMWRITE_JPEG_QUALITY,
                                                       SNAPSHOT_QUALITY])
            self._jpeg = buf.tobytes() if ok else b""
        return self._jpeg


def counts_text(counts: dict[str, Any] | None) -> str:
    """`door in 3 (person 2, car 1) out 1 (person 1); yard 2 entered, 1 in`."""
    if not counts:
        return ""
    parts = []
    for name, c in counts.get("lines", {}).items():
        parts.append(f"{name} " + " ".join(
            f"{d} {sum(c[d].values())}" + (f" ({_per_class(c[d])})" if c[d] else "")
            for d in ("in", "out")))
    for name, c in counts.get("zones", {}).items():
        parts.append(f"{name} {sum(c['entered'].values())} entered"
                     + (f" ({_per_class(c['entered'])})" if c["entered"] else "")
                     + (f", {sum(c['occupancy'].values())} in" if "occupancy" in c else ""))
    return "; ".join(parts)


def sum_counts(many: list[dict[str, Any]]) -> dict[str, Any]:
    """The counts of several videos added up per line, zone and class (crossings and
    entries; occupancy is a moment's figure, so it is left out of a total)."""
    from collections import Counter
    lines: dict[str, dict[str, Counter]] = {}
    zones: dict[str, Counter] = {}
    for counts in many:
        for name, c in counts.get("lines", {}).items():
            for d in ("in", "out"):
                lines.setdefault(name, {"in": Counter(), "out": Counter()})[d].update(c[d])
        for name, c in counts.get("zones", {}).items():
            zones.setdefault(name, Counter()).update(c["entered"])
    return {"lines": {n: {d: dict(sorted(c.items())) for d, c in v.items()}
                      for n, v in lines.items()},
            "zones": {n: {"entered": dict(sorted(c.items()))} for n, c in zones.items()}}


def _per_class(counter: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counter.items(), key=lambda kv: -kv[1]))
