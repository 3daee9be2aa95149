"""The tracker on synthetic scenes: crossings, occlusions, skipped frames (issue 22)."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("scipy", reason="pip install '.[track]' (scipy's assignment solver)")

from yolo_tpu.detections import Detections  # noqa: E402
from yolo_tpu.track import Tracker  # noqa: E402


def boxes_at(centres: list[tuple[float, float]], size=(40.0, 80.0)) -> np.ndarray:
    w, h = size
    return np.array([[x - w / 2, y - h / 2, x + w / 2, y + h / 2] for x, y in centres],
                    np.float32)


def dets(centres, scores=None, class_ids=None) -> Detections:
    n = len(centres)
    return Detections.from_arrays(boxes_at(centres) if n else np.zeros((0, 4)),
                                  np.full(n, 0.9) if scores is None else scores,
                                  np.zeros(n, int) if class_ids is None else class_ids)


def run(tracker: Tracker, frames, fps=30.0, every=1):
    """frames: per frame a list of (object name, centre); returns name -> set of ids seen."""
    ids: dict[str, list[int]] = {}
    for k, objects in enumerate(frames):
        if k % every:
            continue
        names = [name for name, _ in objects]
        out = tracker.update(dets([c for _, c in objects]), t=k / fps)
        assert out.tracker_id is not None and len(out.tracker_id) == len(objects)
        for name, tid in zip(names, out.tracker_id.tolist()):
            if tid >= 0:
                ids.setdefault(name, []).append(tid)
    return ids


def crossing(n=80, speed=6.0):
    """a walks right, b walks left on the same line: they overlap fully mid-way."""
    return [[("a", (100 + speed * k, 200.0)), ("b", (100 + speed * (n - 1) - speed * k, 206.0))]
            for k in range(n)]


@pytest.mark.parametrize("every", [1, 3])
def test_crossing_objects_keep_their_ids(every):
    ids = run(Tracker(frame_rate=30), crossing(), every=every)
    assert set(ids) == {"a", "b"}
    assert len(set(ids["a"])) == 1 and len(set(ids["b"])) == 1, ids
    assert set(ids["a"]) != set(ids["b"])
    # confirmed on the second sighting: every later one carries the id
    assert len(ids["a"]) >= len(range(0, 80, every)) - 1


def test_an_occluded_object_keeps_its_id_through_the_gap():
    frames = []
    for k in range(60):
        objs = [("b", (500.0, 300.0))]                 # a bystander, still
        if not 20 <= k < 32:                           # a is hidden for 0.4 s
            objs.append(("a", (100 + 5.0 * k, 200.0)))
        frames.append(objs)
    ids = run(Tracker(frame_rate=30), frames)
    assert len(set(ids["a"])) == 1 and len(set(ids["b"])) == 1
    assert set(ids["a"]) != set(ids["b"])


def test_a_track_lost_longer_than_lost_s_ends():
    tracker = Tracker(frame_rate=30)
    first = tracker.update(dets([(100, 100)]), t=0.0)
    second = tracker.update(dets([(100, 100)]), t=0.1)
    assert first.tracker_id.tolist() == [1] and second.tracker_id.tolist() == [1]
    tracker.update(dets([]), t=0.5)
    assert tracker.ended == []
    tracker.update(dets([]), t=1.5)                    # unseen for 1.4 s > lost_s
    assert tracker.ended == [1] and len(tracker) == 0
    again = tracker.update(dets([(100, 100)]), t=1.6)
    assert again.tracker_id.tolist() == [-1]           # tentative: a new object


def test_low_scores_extend_a_track_and_flickers_get_no_id():
    tracker = Tracker(frame_rate=30)
    for k in range(3):
        out = tracker.update(dets([(100 + 4 * k, 100)]), t=k / 30)
    tid = out.tracker_id[0]
    # the object dims (occluded): low scores keep its track
    for k in range(3, 8):
        out = tracker.update(dets([(100 + 4 * k, 100)], scores=[0.3]), t=k / 30)
        assert out.tracker_id.tolist() == [tid]
    # false positives flickering at random places never get an id
    for k in range(8, 20):
        spot = (300.0 + 100 * (k % 4), 250.0 + 120 * (k % 2))  # never twice in a row
        out = tracker.update(dets([(100 + 4 * k, 100), spot], scores=[0.9, 0.3]), t=k / 30)
        assert out.tracker_id.tolist() == [tid, -1]


def test_the_class_of_a_track_is_its_most_confident_vote():
    tracker = Tracker(frame_rate=30)
    for k, (cls, score) in enumerate([(2, 0.9), (7, 0.6), (2, 0.8), (7, 0.55)]):
        out = tracker.update(dets([(100, 100)], scores=[score], class_ids=[cls]), t=k / 30)
    assert tracker.track_class(int(out.tracker_id[0])) == 2


def test_json_carries_track_ids():
    out = Tracker().update(dets([(100, 100)]))
    assert out.to_dict()[0]["track_id"] == 1
    assert "track_id" not in dets([(100, 100)]).to_dict()[0]
    assert out[[0]].tracker_id.tolist() == [1]


def test_assignment_splits_into_the_same_answer_as_the_solver_on_the_whole_matrix():
    """_assign answers lone pairs itself and gives the solver only competing rows and
    columns: on random sparse similarity matrices (clusters of overlapping boxes, lone
    boxes, empty rows) its pairs are an optimal assignment of scipy's on the whole matrix."""
    from scipy.optimize import linear_sum_assignment
    from yolo_tpu.track import _assign
    rng = np.random.default_rng(7)
    for trial in range(300):
        n, m = rng.integers(0, 12, 2)
        sim = rng.uniform(0, 1, (n, m)) * (rng.uniform(0, 1, (n, m)) < rng.uniform(0.05, 0.5))
        minimum = 0.3
        rows, cols = _assign(sim, minimum)
        cost = np.where(sim >= minimum, 1.0 - sim, 1e6)
        r, c = linear_sum_assignment(cost) if sim.size else (np.zeros(0, int),) * 2
        full = [(i, j) for i, j in zip(r, c) if sim[i, j] >= minimum]
        assert len(rows) == len(full), trial
        assert len(set(rows.tolist())) == len(rows) and len(set(cols.tolist())) == len(cols)
        assert (sim[rows, cols] >= minimum).all()
        assert np.isclose(sim[rows, cols].sum(), sum(sim[i, j] for i, j in full)), trial


def test_votes_follow_the_summed_scores_with_many_classes():
    """A class id far beyond the first ones widens the votes; the class is the most
    summed one and a tie keeps the class held."""
    tr = Tracker(frame_rate=10)
    box = np.array([[10, 10, 50, 90]], np.float32)
    for k, (cls, score) in enumerate([(3, 0.9), (700, 0.5), (700, 0.4), (700, 0.3), (3, 0.2)]):
        out = tr.update(Detections(box + k, [score], [cls]), t=k / 10)
    tid = int(out.tracker_id[0])
    assert tr.track_class(tid) == 700  # 1.2 against 1.1
    assert tr.votes.shape[1] >= 701
