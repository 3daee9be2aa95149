"""Tracks: the same object keeps one id from frame to frame (ByteTrack-style association).

`Tracker.update(detections, t=seconds)` returns the detections with a `tracker_id` array,
as `trackers.ByteTrackTracker.update` does (-1: a detection not, or not yet, on a track).

Per call:
1. every track's constant-velocity Kalman filter (centre, size and their velocities) is
   predicted to time `t`: frames skipped by `--every` or dropped by a live source make a
   longer step, not a wrong one, and a lost track expires after `lost_s` seconds whatever
   the frame rate was;
2. high-score detections are matched to tracked and lost tracks by IoU (Hungarian
   assignment, scipy's `linear_sum_assignment`), the cost weighted by the score;
3. low-score detections (ByteTrack's insight: an occluded object scores low) are matched
   to the confirmed tracks still unmatched;
4. tentative tracks take what detections are left; the detections still unmatched start
   tentative tracks, confirmed (given an id) on their `confirm_hits`-th sighting in a row:
   a false positive rarely appears twice in the same place, an object does.
`tracks()` gives the confirmed tracks themselves (filtered boxes, short gaps bridged).

The filter's noise follows ByteTrack (std proportional to the box height) in units of one
frame at `frame_rate`, so a step of dt seconds is dt * frame_rate such frames. State is
kept as arrays (one row per track); predict, update and IoU are numba loops.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numba
import numpy as np

from .detections import Detections

__all__ = ["Tracker", "TrackerConfig"]

# ByteTrack's filter tuning (per frame, relative to the box height).
_STD_POS = 1.0 / 20.0
_STD_VEL = 1.0 / 160.0
TENTATIVE, TRACKED, LOST = 0, 1, 2


@dataclass(frozen=True)
class TrackerConfig:
    """The association's knobs. `high_score` 0.6 and `low_match_iou` 0.5 are ByteTrack's
    MOT17 settings (mmtracking's `obj_score_thrs.high`, `match_iou_thrs.low`); the rest were
    checked on scripts/benchmark_tracking.py: see the README's tracking table."""
    high_score: float = 0.6        # detections at or above it: the first association
    new_track_score: float = 0.25  # a (tentative) track is started by a detection this confident
    confirm_hits: int = 2          # ... and confirmed (given an id) on this many sightings in a row
    match_iou: float = 0.3         # first association: at least this IoU (score-weighted)
    low_match_iou: float = 0.5     # second association (low scores, ambiguous): this IoU
    tentative_iou: float = 0.3     # tentative tracks: at least this IoU
    lost_s: float = 1.0            # a track unseen this long (seconds) is ended
    coast_s: float = 0.2           # `tracks()`: a missed track is still reported this long


# ---------------------------------------------------------------- numba kernels

@numba.njit(cache=True, nogil=True)
def _xyxy_to_z(xyxy: np.ndarray) -> np.ndarray:
    z = np.empty((xyxy.shape[0], 4), np.float64)
    for i in range(xyxy.shape[0]):
        w = max(xyxy[i, 2] - xyxy[i, 0], 1e-3)
        h = max(xyxy[i, 3] - xyxy[i, 1], 1e-3)
        z[i, 0] = xyxy[i, 0] + w / 2
        z[i, 1] = xyxy[i, 1] + h / 2
        z[i, 2] = w
        z[i, 3] = h
    return z


@numba.njit(cache=True, nogil=True)
def _predict(mean: np.ndarray, cov: np.ndarray, steps: float) -> None:
    """x <- F x, P <- F P F' + Q for `steps` frames (in place), F = [[I, s I], [0, I]]."""
    for t in range(mean.shape[0]):
        h = mean[t, 3]
        for k in range(4):
            mean[t, k] += steps * mean[t, 4 + k]
        p = cov[t]
        # P F': column k += s * column k+4 ; then F P: row k += s * row k+4
        for r in range(8):
            for k in range(4):
                p[r, k] += steps * p[r, 4 + k]
        for k in range(4):
            for c in range(8):
                p[k, c] += steps * p[4 + k, c]
        qp = (_STD_POS * h) ** 2 * steps
        qv = (_STD_VEL * h) ** 2 * steps
        for k in range(4):
            p[k, k] += qp
            p[4 + k, 4 + k] += qv


@numba.njit(cache=True, nogil=True)
def _update(mean: np.ndarray, cov: np.ndarray, rows: np.ndarray, z: np.ndarray) -> None:
    """Kalman update of track rows[i] with measurement z[i] (centre x, y, w, h)."""
    for i in range(rows.shape[0]):
        t = rows[i]
        p = cov[t]
        r = (_STD_POS * mean[t, 3]) ** 2
        s = np.empty((4, 4))
        for a in range(4):
            for b in range(4):
                s[a, b] = p[a, b]
            s[a, a] += r
        sinv = np.linalg.inv(s)
        gain = np.ascontiguousarray(p[:, :4]) @ sinv  # (8, 4)
        y = np.empty(4)
        for a in range(4):
            y[a] = z[i, a] - mean[t, a]
        mean[t] += gain @ y
        cov[t] = p - gain @ np.ascontiguousarray(p[:4, :])


@numba.njit(cache=True, nogil=True)
def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in `a` (N, 4 xyxy) with every box in `b` (M, 4)."""
    out = np.zeros((a.shape[0], b.shape[0]), np.float64)
    for i in range(a.shape[0]):
        area_a = (a[i, 2] - a[i, 0]) * (a[i, 3] - a[i, 1])
        for j in range(b.shape[0]):
            w = min(a[i, 2], b[j, 2]) - max(a[i, 0], b[j, 0])
            h = min(a[i, 3], b[j, 3]) - max(a[i, 1], b[j, 1])
            if w <= 0 or h <= 0:
                continue
            inter = w * h
            union = area_a + (b[j, 2] - b[j, 0]) * (b[j, 3] - b[j, 1]) - inter
            out[i, j] = inter / union if union > 0 else 0.0
    return out


@numba.njit(cache=True, nogil=True)
def _boxes(mean: np.ndarray) -> np.ndarray:
    out = np.empty((mean.shape[0], 4), np.float64)
    for t in range(mean.shape[0]):
        w, h = max(mean[t, 2], 1e-3), max(mean[t, 3], 1e-3)
        out[t, 0] = mean[t, 0] - w / 2
        out[t, 1] = mean[t, 1] - h / 2
        out[t, 2] = mean[t, 0] + w / 2
        out[t, 3] = mean[t, 1] + h / 2
    return out


def _assign(similarity: np.ndarray, minimum: float) -> list[tuple[int, int]]:
    """Pairs (row, col) of the maximum-similarity assignment with similarity >= minimum."""
    if similarity.size == 0:
        return []
    from scipy.optimize import linear_sum_assignment
    cost = np.where(similarity >= minimum, 1.0 - similarity, 1e6)
    rows, cols = linear_sum_assignment(cost)
    keep = similarity[rows, cols] >= minimum
    return list(zip(rows[keep].tolist(), cols[keep].tolist()))


# ---------------------------------------------------------------- the tracker

class Tracker:
    """ByteTrack-style multi-object tracker over `Detections`, driven by time stamps.

    `frame_rate`: the rate the filter's per-frame noise is tuned for, and the time step when
    `update` is given no time (then every call is one frame at this rate).
    """

    def __init__(self, frame_rate: float = 30.0, config: TrackerConfig | None = None) -> None:
        if not frame_rate > 0:
            raise ValueError(f"frame_rate must be positive, got {frame_rate}")
        self.frame_rate = float(frame_rate)
        self.config = config or TrackerConfig()
        self.mean = np.zeros((0, 8))
        self.cov = np.zeros((0, 8, 8))
        self.ids = np.zeros(0, np.int64)
        self.state = np.zeros(0, np.int8)
        self.hits = np.zeros(0, np.int64)     # sightings (a tentative track's run)
        self.last_seen = np.zeros(0)          # time of the last match, seconds
        self.last_box = np.zeros((0, 4))      # the box of the last match
        self.last_score = np.zeros(0)
        self.votes: list[Counter] = []        # per track: class id -> summed score
        self.best_class = np.zeros(0, np.int32)  # per track: its most voted class
        self._next_id = 1
        self._t: float | None = None
        self._calls = 0
        self.ended: list[int] = []            # ids of tracks ended by the last update

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def track_class(self, track_id: int) -> int | None:
        """The class a track has been seen as most (summed scores), or None."""
        rows = np.flatnonzero(self.ids == track_id)
        return int(self.best_class[rows[0]]) if rows.size else None

    def update(self, detections: Detections, t: float | None = None) -> Detections:
        """The detections of the frame at time `t` (seconds), with `tracker_id` set."""
        cfg = self.config
        if t is None:
            t = self._calls / self.frame_rate
        self._calls += 1
        steps = 0.0 if self._t is None else max(t - self._t, 0.0) * self.frame_rate
        self._t = t
        if len(self) and steps > 0:
            _predict(self.mean, self.cov, steps)
        n = len(detections)
        out_ids = np.full(n, -1, np.int64)
        xyxy = detections.xyxy.astype(np.float64)
        scores = detections.scores.astype(np.float64)
        matched_track = np.zeros(len(self), bool)
        matched_det = np.zeros(n, bool)
        pairs: list[tuple[int, int]] = []  # (track row, detection)
        if len(self) and n:
            boxes = _boxes(self.mean)
            iou = iou_matrix(boxes, xyxy)
            high = np.flatnonzero(scores >= cfg.high_score)
            low = np.flatnonzero(scores < cfg.high_score)
            # 1. confirmed (tracked or lost) tracks <- high-score detections
            pool = np.flatnonzero(self.state != TENTATIVE)
            sim = iou[np.ix_(pool, high)] * scores[high][None, :]
            for r, c in _assign(sim, cfg.match_iou * cfg.high_score):
                if iou[pool[r], high[c]] >= cfg.match_iou:
                    pairs.append((pool[r], high[c]))
            self._mark(pairs, matched_track, matched_det)
            # 2. confirmed tracks still unmatched <- low-score detections
            pool = np.flatnonzero((self.state != TENTATIVE) & ~matched_track)
            new = [(pool[r], low[c]) for r, c in
                   _assign(iou[np.ix_(pool, low)], cfg.low_match_iou)]
            self._mark(new, matched_track, matched_det)
            pairs += new
            # 3. tentative tracks <- the detections left
            left = np.flatnonzero(~matched_det)
            pool = np.flatnonzero(self.state == TENTATIVE)
            new = [(pool[r], left[c]) for r, c in
                    _assign(iou[np.ix_(pool, left)], cfg.tentative_iou)]
            self._mark(new, matched_track, matched_det)
            pairs += new
        if pairs:
            rows = np.array([p[0] for p in pairs], np.int64)
            dets = np.array([p[1] for p in pairs], np.int64)
            _update(self.mean, self.cov, rows, _xyxy_to_z(xyxy[dets]))
            for r, d in zip(rows.tolist(), dets.tolist()):
                votes, c = self.votes[r], int(detections.class_ids[d])
                votes[c] += float(scores[d])
                if votes[c] > votes[int(self.best_class[r])]:
                    self.best_class[r] = c
            pairs_rows, pairs_dets = rows, dets
            self.hits[rows] += 1
            promoted = (self.state[rows] != TENTATIVE) | (self.hits[rows] >= cfg.confirm_hits)
            rows, dets = rows[promoted], dets[promoted]
            self.state[rows] = TRACKED
            self.last_seen[pairs_rows] = t
            self.last_box[pairs_rows] = xyxy[pairs_dets]
            self.last_score[pairs_rows] = scores[pairs_dets]
            unnamed = rows[self.ids[rows] < 0]  # tentative, seen again: confirmed, named
            self.ids[unnamed] = self._new_ids(unnamed.size)
            out_ids[dets] = self.ids[rows]
        # tracks not matched: tentative ones die, tracked ones are lost, old lost ones end
        was_tentative = self.state == TENTATIVE  # matched tentative ones too: not named yet
        unmatched = ~matched_track
        first = self._calls == 1
        keep = ~(unmatched & was_tentative) & (t - self.last_seen <= cfg.lost_s)
        self.state[unmatched & ~was_tentative] = LOST
        self.ended = self.ids[~keep & ~was_tentative].tolist()
        self._keep(keep)
        # new tracks from confident detections no track took
        fresh = np.flatnonzero(~matched_det & (scores >= cfg.new_track_score))
        if fresh.size:
            # the first frame has no history: its confident detections are tracks at once
            now = (scores[fresh] >= cfg.high_score) & first
            self._start(xyxy[fresh], detections.class_ids[fresh], scores[fresh], t, now)
            out_ids[fresh[now]] = self.ids[-fresh.size:][now]
        return detections.with_tracker_ids(out_ids)

    def tracks(self, coast_s: float | None = None) -> Detections:
        """The confirmed tracks now, at the boxes their filters estimate: those seen in the
        last update, and those missed for at most `coast_s` seconds (default
        `config.coast_s`: a detection dropped for a few frames), with the score of their
        last detection and the class they were seen as most. This is how norfair reports
        its objects; `update` gives ids to the detections themselves, as ByteTrack does."""
        coast = self.config.coast_s if coast_s is None else coast_s
        t = self._t if self._t is not None else 0.0
        age = t - self.last_seen
        rows = np.flatnonzero((self.ids >= 0) & (age <= coast))
        boxes = _boxes(self.mean[rows])
        classes = self.best_class[rows]
        return Detections(boxes, self.last_score[rows], classes, (), self.ids[rows])

    # -- bookkeeping

    def _new_ids(self, k: int) -> np.ndarray:
        ids = np.arange(self._next_id, self._next_id + k, dtype=np.int64)
        self._next_id += k
        return ids

    @staticmethod
    def _mark(pairs: list[tuple[int, int]], tracks: np.ndarray, dets: np.ndarray) -> None:
        for r, d in pairs:
            tracks[r] = True
            dets[d] = True

    def _keep(self, keep: np.ndarray) -> None:
        if keep.all():
            return
        self.mean, self.cov = self.mean[keep], self.cov[keep]
        self.ids, self.state = self.ids[keep], self.state[keep]
        self.last_seen, self.hits = self.last_seen[keep], self.hits[keep]
        self.last_box, self.last_score = self.last_box[keep], self.last_score[keep]
        self.votes = [v for v, k in zip(self.votes, keep.tolist()) if k]
        self.best_class = self.best_class[keep]

    def _start(self, xyxy: np.ndarray, class_ids: np.ndarray, scores: np.ndarray, t: float,
               confirmed: np.ndarray) -> None:
        k = xyxy.shape[0]
        z = _xyxy_to_z(xyxy)
        mean = np.zeros((k, 8))
        mean[:, :4] = z
        cov = np.zeros((k, 8, 8))
        h = z[:, 3]
        for j, std in enumerate((2 * _STD_POS, 2 * _STD_POS, 2 * _STD_POS, 2 * _STD_POS,
                                 10 * _STD_VEL, 10 * _STD_VEL, 10 * _STD_VEL, 10 * _STD_VEL)):
            cov[:, j, j] = (std * h) ** 2
        # a tentative track is named when confirmed: ids count confirmed tracks only
        ids = np.full(k, -1, np.int64)
        ids[confirmed] = self._new_ids(int(confirmed.sum()))
        self.mean = np.concatenate([self.mean, mean])
        self.cov = np.concatenate([self.cov, cov])
        self.ids = np.concatenate([self.ids, ids])
        self.state = np.concatenate([self.state, np.where(confirmed, TRACKED, TENTATIVE)
                                     .astype(np.int8)])
        self.hits = np.concatenate([self.hits, np.ones(k, np.int64)])
        self.last_seen = np.concatenate([self.last_seen, np.full(k, t)])
        self.last_box = np.concatenate([self.last_box, xyxy])
        self.last_score = np.concatenate([self.last_score, scores])
        self.best_class = np.concatenate([self.best_class, class_ids.astype(np.int32)])
        self.votes += [Counter({int(c): float(s)}) for c, s in zip(class_ids.tolist(),
                                                                    scores.tolist())]
