"""Zones and lines over tracks (issue 22): parsing, crossings with direction, enter/leave."""
from __future__ import annotations

import numpy as np
import pytest

from yolo_tpu.detections import Detections
from yolo_tpu.zones import Counting, RegionError, parse_line, parse_zone


def tracked(boxes: dict[int, tuple[float, float, float, float]]) -> Detections:
    ids = list(boxes)
    return Detections.from_arrays(np.array([boxes[i] for i in ids], np.float32).reshape(-1, 4),
                                  np.full(len(ids), 0.9), np.zeros(len(ids), int),
                                  ["person"]).with_tracker_ids(np.array(ids))


def box_at(x: float, y: float, half: float = 10) -> tuple[float, float, float, float]:
    return (x - half, y - half, x + half, y + half)


def test_parse_pixels_and_fractions():
    assert parse_line("door:0,0.5,1,0.5").fractional
    zone = parse_zone("yard:10,10,200,10,200,100")
    assert not zone.fractional and zone.pixels(640, 480)[1].tolist() == [200, 10]
    assert parse_line("door:0,0.5,1,0.5").pixels(640, 480).tolist() == [[0, 240], [640, 240]]


@pytest.mark.parametrize("parse, text, why", [
    (parse_line, "door:0,0.5,1", "odd number"),
    (parse_line, "door:0,0.5,1,0.5,1,1", "a line is 2 points"),
    (parse_line, "door:1,1,1,1", "the same"),
    (parse_line, "do or:0,0,1,1", "NAME"),
    (parse_line, "0,0,1,1", "NAME"),
    (parse_zone, "yard:0,0,1,1", "at least 3 points"),
    (parse_zone, "yard:0,0,1,1,2,2", "no area"),
    (parse_zone, "yard:0,0,x,1,2,2", "numbers"),
])
def test_bad_regions_say_why(parse, text, why):
    with pytest.raises(RegionError, match=why):
        parse(text)


def test_names_must_differ():
    with pytest.raises(RegionError, match="used twice"):
        Counting([parse_line("a:0,0.5,1,0.5"), parse_zone("a:0,0,1,0,1,1")])


def run(counting: Counting, frames, ended_at=None):
    events = []
    for k, boxes in enumerate(frames):
        ended = (ended_at or {}).get(k, [])
        events += counting.update(tracked(boxes), (640, 480), {}, ended)
    return events


def test_line_counts_each_track_once_per_direction():
    line = Counting([parse_line("door:100,240,540,240")])
    frames = []
    for k in range(40):
        y = 100 + 10 * k                                  # 1 walks down through the line
        jitter = 240 + (3 if k % 2 else -3)               # 2 jitters on the line
        back = 300 - 10 * k if k < 20 else 100 + 10 * (k - 20)  # 3: up, then down again
        frames.append({1: box_at(300, y), 2: box_at(200, jitter), 3: box_at(400, back),
                       4: box_at(600, y)})                 # 4 passes beyond the segment's end
    events = run(line, frames)
    crossings = [(e["track_id"], e["direction"]) for e in events]
    assert sorted(crossings) == [(1, "in"), (2, "in"), (2, "out"), (3, "in"), (3, "out")]
    assert line.counts()["lines"]["door"] == {"in": {"person": 3}, "out": {"person": 2}}


def test_zone_enter_leave_and_occupancy():
    zone = Counting([parse_zone("yard:0.5,0,1,0,1,1,0.5,1")])  # the right half
    frames = [{1: box_at(200 + 40 * k, 200), 2: box_at(500, 100)} for k in range(10)]
    events = run(zone, frames + [{1: box_at(100, 200)}], ended_at={10: [2]})
    kinds = [(e["event"], e["track_id"]) for e in events]
    assert kinds == [("enter", 2), ("enter", 1), ("leave", 2), ("leave", 1)]
    assert zone.counts()["zones"]["yard"] == {"entered": {"person": 2}, "occupancy": {}}
