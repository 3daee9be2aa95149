"""Zones and lines over tracks: who entered, who left, who crossed which way (counts, events).

`--zone NAME:x1,y1,x2,y2,x3,y3,...` is a polygon (3 points or more), `--line NAME:x1,y1,x2,y2`
a segment. Coordinates are pixels, or fractions of the frame's width and height when every
value is within 0..1 (`door:0,0.5,1,0.5` is a line across the middle of any frame).

- A track is in a zone when the bottom centre of its box is (where a person stands, as in
  Frigate and supervision); `enter` when it comes in (or is first seen inside), `leave`
  when it goes out or its track ends inside.
- A track crosses a line when the centre of its box moves from one side of the segment to
  the other through the segment itself. `in` is towards the right-hand side of the line seen
  from its first point to its second (a line drawn left to right counts downward motion as
  `in`), `out` the other way. Each track is counted at most once per line and direction, so
  a box jittering on the line, or an object that hesitates, counts once.

Counts are per class: the class a track has been seen as most (`Tracker.track_class`).
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from .detections import Detections

__all__ = ["Region", "RegionError", "parse_zone", "parse_line", "Counting"]

NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # safe in MQTT topics and Home Assistant ids


class RegionError(ValueError):
    """A --zone or --line that is not one: the message says which and why."""


@dataclass(frozen=True)
class Region:
    """A zone (polygon) or a line (two points), in pixels or in fractions of the frame."""
    kind: str                 # "zone" or "line"
    name: str
    points: tuple[tuple[float, float], ...]
    fractional: bool

    def pixels(self, width: int, height: int) -> np.ndarray:
        """The points in a frame of this size, float64 (K, 2)."""
        pts = np.array(self.points, np.float64)
        if self.fractional:
            pts = pts * np.array([width, height], np.float64)
        return pts

    @property
    def spec(self) -> str:
        return f"{self.name}:" + ",".join(f"{v:g}" for p in self.points for v in p)


def _parse(kind: str, text: str, sizes: str) -> Region:
    name, sep, coords = text.partition(":")
    flag = f"--{kind} {text}"
    if not sep or not NAME.match(name):
        raise RegionError(f"{flag}: expected NAME:{sizes} with a NAME of letters, digits, "
                          "_ or - (it names MQTT topics and Home Assistant entities)")
    try:
        values = [float(v) for v in coords.split(",")]
    except ValueError:
        raise RegionError(f"{flag}: the coordinates must be numbers: {coords!r}") from None
    if any(not np.isfinite(v) or v < 0 for v in values):
        raise RegionError(f"{flag}: coordinates must be finite and not negative")
    points = tuple(zip(values[0::2], values[1::2]))
    if len(values) % 2:
        raise RegionError(f"{flag}: an odd number of coordinates ({len(values)}); give x,y pairs")
    return Region(kind, name, points, all(v <= 1.0 for v in values))


def parse_zone(text: str) -> Region:
    region = _parse("zone", text, "x1,y1,x2,y2,x3,y3,...")
    if len(region.points) < 3:
        raise RegionError(f"--zone {text}: a zone needs at least 3 points, got "
                          f"{len(region.points)}")
    pts = np.array(region.points, np.float32)
    if abs(cv2.contourArea(pts)) <= 0:
        raise RegionError(f"--zone {text}: the points enclose no area")
    return region


def parse_line(text: str) -> Region:
    region = _parse("line", text, "x1,y1,x2,y2")
    if len(region.points) != 2:
        raise RegionError(f"--line {text}: a line is 2 points (4 numbers), got "
                          f"{len(region.points)}")
    if region.points[0] == region.points[1]:
        raise RegionError(f"--line {text}: its two points are the same")
    return region


def check_names(regions: list[Region]) -> None:
    """RegionError when two zones or lines share a name (their counts would mix)."""
    seen: set[str] = set()
    for r in regions:
        if r.name in seen:
            raise RegionError(f"--{r.kind} {r.spec}: the name {r.name!r} is used twice")
        seen.add(r.name)


def _side(a: np.ndarray, b: np.ndarray, p: np.ndarray) -> float:
    """> 0: p is on the right of a->b in image coordinates (y down), < 0 on the left."""
    return float((b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0]))


def _segments_cross(a: np.ndarray, b: np.ndarray, p: np.ndarray, q: np.ndarray) -> bool:
    """Whether the move p->q passes through segment a-b (p and q on opposite sides)."""
    d1, d2 = _side(p, q, a), _side(p, q, b)
    return (d1 <= 0 <= d2) or (d2 <= 0 <= d1)


@dataclass
class _LineState:
    side: dict[int, tuple[float, np.ndarray]] = field(default_factory=dict)  # track -> side, pt
    counted: set[tuple[int, str]] = field(default_factory=set)
    counts: dict[str, Counter] = field(default_factory=lambda: {"in": Counter(),
                                                                "out": Counter()})


@dataclass
class _ZoneState:
    inside: dict[int, str] = field(default_factory=dict)  # track -> label
    entered: Counter = field(default_factory=Counter)


class Counting:
    """Zones and lines over tracked detections: `update` returns the frame's events."""

    def __init__(self, regions: list[Region]) -> None:
        check_names(regions)
        self.zones = [r for r in regions if r.kind == "zone"]
        self.lines = [r for r in regions if r.kind == "line"]
        self._size: tuple[int, int] | None = None
        self._px: dict[str, np.ndarray] = {}
        self._lines = {r.name: _LineState() for r in self.lines}
        self._zones = {r.name: _ZoneState() for r in self.zones}
        self._last_box: dict[int, list[float]] = {}

    def _resolve(self, width: int, height: int) -> None:
        if self._size != (width, height):  # a camera that reconnected at another size
            self._size = (width, height)
            self._px = {r.name: r.pixels(width, height) for r in self.zones + self.lines}

    def update(self, dets: Detections, size: tuple[int, int], labels: dict[int, str],
               ended: list[int]) -> list[dict[str, Any]]:
        """Events of one frame: `dets` carry tracker ids; `labels` maps a track id to its
        class label; `ended` lists the tracks that ended before this frame."""
        self._resolve(*size)
        events: list[dict[str, Any]] = []
        for tid in ended:
            box = self._last_box.pop(tid, None)
            for name, state in self._zones.items():
                if tid in state.inside:
                    events.append(_event("leave", "zone", name, tid, state.inside.pop(tid), box))
            for state in self._lines.values():
                state.side.pop(tid, None)
        if dets.tracker_id is None:
            return events
        xyxy = dets.xyxy.astype(np.float64)
        for k, tid in enumerate(dets.tracker_id.tolist()):
            if tid < 0:
                continue
            x1, y1, x2, y2 = xyxy[k]
            box = [round(float(v), 2) for v in xyxy[k]]
            self._last_box[tid] = box
            label = labels.get(tid, dets.labels[k])
            centre = np.array([(x1 + x2) / 2, (y1 + y2) / 2])
            foot = (float((x1 + x2) / 2), float(y2))
            for line in self.lines:
                events += self._cross(line.name, tid, label, centre, box)
            for zone in self.zones:
                state = self._zones[zone.name]
                inside = cv2.pointPolygonTest(self._px[zone.name].astype(np.float32), foot,
                                              False) >= 0
                if inside and tid not in state.inside:
                    state.inside[tid] = label
                    state.entered[label] += 1
                    events.append(_event("enter", "zone", zone.name, tid, label, box))
                elif not inside and tid in state.inside:
                    events.append(_event("leave", "zone", zone.name, tid,
                                         state.inside.pop(tid), box))
        return events

    def _cross(self, name: str, tid: int, label: str, p: np.ndarray,
               box: list[float]) -> list[dict[str, Any]]:
        a, b = self._px[name]
        state = self._lines[name]
        side = _side(a, b, p)
        if side == 0:
            return []  # on the line: wait for the side it goes to
        before = state.side.get(tid)
        state.side[tid] = (side, p)
        if before is None or (before[0] > 0) == (side > 0):
            return []
        if not _segments_cross(a, b, before[1], p):
            return []  # went round the end of the segment
        direction = "in" if side > 0 else "out"
        if (tid, direction) in state.counted:
            return []
        state.counted.add((tid, direction))
        state.counts[direction][label] += 1
        return [_event("cross", "line", name, tid, label, box, direction)]

    def counts(self) -> dict[str, Any]:
        """{"lines": {name: {"in": {label: n}, "out": {...}}}, "zones": {name: {"entered":
        {label: n}, "occupancy": {label: n now}}}}."""
        return {
            "lines": {name: {d: dict(sorted(c.items())) for d, c in s.counts.items()}
                      for name, s in self._lines.items()},
            "zones": {name: {"entered": dict(sorted(s.entered.items())),
                             "occupancy": dict(sorted(Counter(s.inside.values()).items()))}
                      for name, s in self._zones.items()},
        }

    def draw(self, image: np.ndarray) -> np.ndarray:
        """Zones and lines with their counts drawn on `image` (in place; returned)."""
        h, w = image.shape[:2]
        self._resolve(w, h)
        lw = max(round((h + w) / 2 * 0.003), 2)
        scale = max(min(w, h) / 900, 0.4)
        counts = self.counts()
        for zone in self.zones:
            pts = self._px[zone.name].round().astype(np.int32)
            cv2.polylines(image, [pts], True, (255, 200, 0), lw, cv2.LINE_AA)
            c = counts["zones"][zone.name]
            text = f"{zone.name}: {sum(c['occupancy'].values())} in, " \
                   f"{sum(c['entered'].values())} entered"
            _label(image, text, tuple(pts.min(axis=0)), scale)
        for line in self.lines:
            a, b = self._px[line.name].round().astype(np.int32)
            cv2.line(image, tuple(a.tolist()), tuple(b.tolist()), (0, 255, 255), lw, cv2.LINE_AA)
            c = counts["lines"][line.name]
            text = f"{line.name}: in {sum(c['in'].values())} out {sum(c['out'].values())}"
            mid = ((a + b) // 2).tolist()
            _label(image, text, (mid[0], mid[1]), scale)
        return image


def _label(image: np.ndarray, text: str, at: tuple[int, int], scale: float) -> None:
    thick = max(int(round(scale * 2)), 1)
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    h, w = image.shape[:2]
    x = int(min(max(at[0], 0), max(w - tw - 4, 0)))
    y = int(min(max(at[1], th + 4), h - base - 2))
    cv2.rectangle(image, (x, y - th - 4), (x + tw + 4, y + base), (0, 0, 0), cv2.FILLED)
    cv2.putText(image, text, (x + 2, y - 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 255, 255),
                thick, cv2.LINE_AA)


def _event(kind: str, where: str, name: str, tid: int, label: str, box: list[float] | None,
           direction: str | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {"event": kind, where: name, "track_id": tid, "label": label}
    if direction:
        event["direction"] = direction
    event["box"] = box
    return event
