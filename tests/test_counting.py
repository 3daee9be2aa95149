"""Counting on a real video through the real pipeline (issue 22): two people walk across a
vertical line, one each way, through a zone; `detect` and `batch` give exact counts."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import SAMPLES
from media import write_video

pytest.importorskip("scipy", reason="pip install '.[track]' (scipy's assignment solver)")

from yolo_tpu import batch, detect  # noqa: E402

LINE = "door:0.5,0,0.5,1"        # top to bottom: `in` is towards the left (its right side)
ZONE = "left:0,0,0.3,0,0.3,1,0,1"
# The person of samples/person.jpg: tiny-YOLOv3 sees it twice in every frame, whole and its
# upper body (boxes of IoU ~0.3, both kept by NMS), so each walker is two tracks that move
# together: each count below is 2 per walker.
MODEL_ARGS = ["--conf", "0.5"]


def walkers(n: int = 80, w: int = 92) -> list[np.ndarray]:
    """A walks left to right along the top, B right to left along the bottom."""
    person = cv2.imread(str(SAMPLES / "person.jpg"))[108:378, 176:282]
    h = int(person.shape[0] * w / person.shape[1])
    tile = cv2.resize(person, (w, h), interpolation=cv2.INTER_AREA)
    frames = []
    for k in range(n):
        img = np.full((480, 640, 3), 128, np.uint8)
        xa = int(20 + (640 - w - 40) * k / (n - 1))
        xb = 640 - w - xa
        img[5:5 + h, xa:xa + w] = tile
        img[475 - h:475, xb:xb + w] = tile
        frames.append(img)
    return frames


@pytest.fixture(scope="module")
def walk_clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("walk") / "walk.mp4"
    write_video(path, walkers(), fps=20)
    return path


EXPECTED = {"lines": {"door": {"in": {"person": 2}, "out": {"person": 2}}},
            "zones": {"left": {"entered": {"person": 4}, "occupancy": {"person": 2}}}}


def test_detect_counts_crossings_and_zone_events(tiny_int8_model, walk_clip, tmp_path, capsys):
    events, lines = tmp_path / "events.jsonl", tmp_path / "frames.jsonl"
    status = detect.main(["--model", str(tiny_int8_model), "--video", str(walk_clip),
                          *MODEL_ARGS, "--line", LINE, "--zone", ZONE,
                          "--events", str(events), "--json", str(lines)])
    err = capsys.readouterr().err
    assert status == 0, err
    assert "counts: door in 2 (person 2) out 2 (person 2); left 4 entered (person 4), 2 in" \
        in err
    records = [json.loads(x) for x in lines.read_text().splitlines()]
    ids = [[d["track_id"] for d in r["detections"]] for r in records]
    # four tracks from the second frame on (the first sighting is tentative), never a fifth
    assert {i for frame in ids for i in frame if i is not None} == {1, 2, 3, 4}
    assert all(sorted(frame) == [1, 2, 3, 4] for frame in ids[1:])
    got = [json.loads(x) for x in events.read_text().splitlines()]
    by_track = {}
    for e in got:
        by_track.setdefault(e["track_id"], []).append(
            (e["event"], e.get("zone") or e.get("line"), e.get("direction")))
    top = {d["track_id"] for d in records[1]["detections"] if d["box"][1] < 240}  # A's
    assert len(top) == 2
    for tid, seen in by_track.items():
        if tid in top:
            assert seen == [("enter", "left", None), ("leave", "left", None),
                            ("cross", "door", "out")], seen
        else:
            assert seen == [("cross", "door", "in"), ("enter", "left", None)], seen
    assert [e["id"] for e in got] == list(range(1, len(got) + 1))
    assert all(e["label"] == "person" and e["source"] == str(walk_clip) for e in got)


def test_batch_counts_per_video_and_every_is_timed(tiny_int8_model, walk_clip, tmp_path,
                                                    capsys):
    for every in (1, 2):  # every other frame: the same people, the same counts
        out = tmp_path / f"every{every}"
        status = batch.main([str(walk_clip), "--out", str(out), "--model", str(tiny_int8_model),
                             *MODEL_ARGS, "--line", LINE, "--zone", ZONE,
                             "--every", str(every)])
        captured = capsys.readouterr()
        assert status == 0, captured.err
        summary = json.loads((out / "summary.json").read_text())
        assert summary["videos"][0]["counts"] == EXPECTED
        assert summary["counts"]["lines"] == EXPECTED["lines"]
        assert "door in 2 (person 2) out 2 (person 2)" in captured.out  # the table
        events = (out / "walk.events.jsonl").read_text().splitlines()
        assert sum(json.loads(e)["event"] == "cross" for e in events) == 4
        assert summary["settings"]["track"] == [f"zone {ZONE}", f"line {LINE}"]


@pytest.mark.parametrize("args, message", [
    (["--line", "door:0,0.5,1"], "odd number of coordinates"),
    (["--zone", "a:0,0,1,0,1,1", "--line", "a:0,0.5,1,0.5"], "used twice"),
    (["--events", "x.jsonl"], "needs a --zone or --line"),
])
def test_tracking_options_are_checked_in_one_line(capsys, walk_clip, args, message):
    with pytest.raises(SystemExit) if "odd" in message else _nothing():
        status = detect.main(["--video", str(walk_clip), *args])
        assert status == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
