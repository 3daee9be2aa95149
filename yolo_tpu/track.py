"""Tracks: the same object keeps one id from frame to frame (ByteTrack-style association).

`Tracker.update(detections, t=seconds)` returns the detections with a `tracker_id` array,
as `trackers.ByteTrackTracker.update` does (-1: a detection not, or not yet, on a track).

Per call:
1. every track's constant-velocity Kalman filter (centre, size and their velocities) is
   predicted to time `t`: frames skipped by `--every` or dropped by a live source make a
   longer step, not a wrong one, and a lost track expires after `lost_s` seconds whatever
   the frame rate was;
2. high-score detections are matched to tracked and lost tracks by IoU (Hungarian
   assignment, scipy's `linear_sum_assignment`, given only the tracks and detections that
   compete: a track and a detection that are each other's only candidate are a pair
   without it), the cost weighted by the score;
3. low-score detections (ByteTrack's insight: an occluded object scores low) are matched
   to the confirmed tracks still unmatched;
4. tentative tracks take what detections are left; the detections still unmatched start
   tentative tracks, confirmed (given an id) on their `confirm_hits`-th sighting in a row:
   a false positive rarely appears twice in the same place, an object does.
`tracks()` gives the confirmed tracks themselves (filtered boxes, short gaps bridged).

The filter's noise follows ByteTrack (std proportional to the box height) in units of one
frame at `frame_rate`, so a step of dt seconds is dt * frame_rate such frames. State is
kept as arrays (one row per track, class votes included); predict, update, IoU and the
split of the assignment are numba loops: 50 objects take about 0.2 ms a frame
(scripts/benchmark_tracking.py).
"""
from __future__ import annotations

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
    """Kalman update of track rows[i] with measurement z[i] (centre x, y, w, h), H = [I 0]:
    S = P[:4, :4] + R, K' = S^-1 P[:4, :] (a 4x4 Cholesky solve, P being symmetric),
    x += K y, P -= K P[:4, :]. Loops over fixed small sizes, no allocation per track."""
    chol = np.empty((4, 4))
    top = np.empty((4, 8))   # P[:4, :] before the update
    gain_t = np.empty((4, 8))  # K'
    y = np.empty(4)
    for i in range(rows.shape[0]):
        t = rows[i]
        p = cov[t]
        r = (_STD_POS * mean[t, 3]) ** 2
        for a in range(4):
            y[a] = z[i, a] - mean[t, a]
            for c in range(8):
                top[a, c] = p[a, c]
        for j in range(4):  # S = L L'
            d = top[j, j] + r
            for k in range(j):
                d -= chol[j, k] * chol[j, k]
            chol[j, j] = np.sqrt(d)
            for a in range(j + 1, 4):
                v = top[a, j]
                for k in range(j):
                    v -= chol[a, k] * chol[j, k]
                chol[a, j] = v / chol[j, j]
        for c in range(8):  # L L' K' = P[:4, :], column by column
            for a in range(4):
                v = top[a, c]
                for k in range(a):
                    v -= chol[a, k] * gain_t[k, c]
                gain_t[a, c] = v / chol[a, a]
            for a in range(3, -1, -1):
                v = gain_t[a, c]
                for k in range(a + 1, 4):
                    v -= chol[k, a] * gain_t[k, c]
                gain_t[a, c] = v / chol[a, a]
        for a in range(8):
            v = 0.0
            for b in range(4):
                v += gain_t[b, a] * y[b]
            mean[t, a] += v
            for c in range(8):
                v = 0.0
                for b in range(4):
                    v += gain_t[b, a] * top[b, c]
                p[a, c] -= v


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


@numba.njit(cache=True, nogil=True)
def _split(similarity: np.ndarray, minimum: float
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The pairs at `minimum` whose row and column have no other (each an assignment problem
    of its own, solved by taking it), and the rows and columns left with candidates."""
    n_rows, n_cols = similarity.shape
    per_row = np.zeros(n_rows, np.int64)
    per_col = np.zeros(n_cols, np.int64)
    only = np.full(n_rows, -1, np.int64)  # a row's column, when it has one
    for i in range(n_rows):
        for j in range(n_cols):
            if similarity[i, j] >= minimum:
                per_row[i] += 1
                per_col[j] += 1
                only[i] = j
    alone = np.zeros(n_rows, np.bool_)
    taken = np.zeros(n_cols, np.bool_)
    for i in range(n_rows):
        if per_row[i] == 1 and per_col[only[i]] == 1:
            alone[i] = True
            taken[only[i]] = True
    pair_rows = np.nonzero(alone)[0]
    rest_rows = np.nonzero((per_row > 0) & ~alone)[0]
    rest_cols = np.nonzero((per_col > 0) & ~taken)[0]
    return pair_rows, only[pair_rows], rest_rows, rest_cols


def _assign(similarity: np.ndarray, minimum: float) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of the maximum-similarity assignment, pairs with similarity >= minimum.

    A row and a column that are each other's only candidate are a problem of their own,
    answered by that pair; rows and columns with no candidate cannot be in the answer. So
    the solver sees only the rows and columns that compete: the same assignment as the
    solver on the whole matrix, at a fraction of the cost when most objects have one
    candidate."""
    if similarity.size == 0:
        return _NONE, _NONE
    rows, cols, rest_rows, rest_cols = _split(similarity, minimum)
    if not rest_rows.size:
        return rows, cols
    sub = similarity[rest_rows][:, rest_cols]
    r, c = _linear_sum_assignment()(np.where(sub >= minimum, 1.0 - sub, 1e6))
    keep = sub[r, c] >= minimum
    return (np.concatenate([rows, rest_rows[r[keep]]]),
            np.concatenate([cols, rest_cols[c[keep]]]))


def _linear_sum_assignment():
    """scipy's Hungarian solver, imported once, on first use (scipy.optimize takes a while
    to import, and a runtime without --track never needs it)."""
    global _LSA
    if _LSA is None:
        from scipy.optimize import linear_sum_assignment
        _LSA = linear_sum_assignment
    return _LSA


_LSA = None
_NONE = np.zeros(0, np.int64)


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
        self.votes = np.zeros((0, 1))           # per track and class id: summed score
        self.best_class = np.zeros(0, np.int32)  # per track: its most voted class
        self._next_id = 1
        self._t: float | None = None
        self._calls = 0
        self.ended: list[int] = []            # ids of tracks ended by the last update

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def track_class(self, track_id: int) -> int | None:
        """The class a track has been seen as most (summed scores), or None."""
        rows = np.nonzero(self.ids == track_id)[0]
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
        pairs: list[tuple[np.ndarray, np.ndarray]] = []  # matched: track rows, detections
        if len(self) and n:
            iou = iou_matrix(_boxes(self.mean), xyxy)
            confirmed = self.state != TENTATIVE
            high = np.nonzero(scores >= cfg.high_score)[0]
            low = np.nonzero(scores < cfg.high_score)[0]
            # 1. confirmed (tracked or lost) tracks <- high-score detections
            pool = np.nonzero(confirmed)[0]
            sub = iou[pool][:, high]
            r, c = _assign(sub * scores[high][None, :], cfg.match_iou * cfg.high_score)
            ok = sub[r, c] >= cfg.match_iou
            self._mark(pool[r[ok]], high[c[ok]], pairs, matched_track, matched_det)
            # 2. confirmed tracks still unmatched <- low-score detections
            pool = np.nonzero(confirmed & ~matched_track)[0]
            r, c = _assign(iou[pool][:, low], cfg.low_match_iou)
            self._mark(pool[r], low[c], pairs, matched_track, matched_det)
            # 3. tentative tracks <- the detections left
            left = np.nonzero(~matched_det)[0]
            pool = np.nonzero(~confirmed)[0]
            r, c = _assign(iou[pool][:, left], cfg.tentative_iou)
            self._mark(pool[r], left[c], pairs, matched_track, matched_det)
        rows = np.concatenate([p[0] for p in pairs]) if pairs else _NONE
        dets = np.concatenate([p[1] for p in pairs]) if pairs else _NONE
        if rows.size:
            _update(self.mean, self.cov, rows, _xyxy_to_z(xyxy[dets]))
            self._vote(rows, detections.class_ids[dets], scores[dets])
            self.hits[rows] += 1
            self.last_seen[rows] = t
            self.last_box[rows] = xyxy[dets]
            self.last_score[rows] = scores[dets]
            promoted = (self.state[rows] != TENTATIVE) | (self.hits[rows] >= cfg.confirm_hits)
            rows, dets = rows[promoted], dets[promoted]
            self.state[rows] = TRACKED
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
        fresh = np.nonzero(~matched_det & (scores >= cfg.new_track_score))[0]
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
        rows = np.nonzero((self.ids >= 0) & (age <= coast))[0]
        boxes = _boxes(self.mean[rows])
        classes = self.best_class[rows]
        return Detections(boxes, self.last_score[rows], classes, (), self.ids[rows])

    # -- bookkeeping

    def _new_ids(self, k: int) -> np.ndarray:
        ids = np.arange(self._next_id, self._next_id + k, dtype=np.int64)
        self._next_id += k
        return ids

    @staticmethod
    def _mark(rows: np.ndarray, dets: np.ndarray, pairs: list[tuple[np.ndarray, np.ndarray]],
              tracks: np.ndarray, detections: np.ndarray) -> None:
        """Record pairs (track rows, detections) as matched."""
        tracks[rows] = True
        detections[dets] = True
        pairs.append((rows, dets))

    def _vote(self, rows: np.ndarray, class_ids: np.ndarray, scores: np.ndarray) -> None:
        """Add each matched detection's score to its track's vote for its class; a track's
        class changes when another class's votes pass the current one's (ties keep it).
        `rows` are distinct (a track takes one detection a frame)."""
        classes = class_ids.astype(np.int64)
        if classes.size and classes.max() >= self.votes.shape[1]:
            width = max(int(classes.max()) + 1, 2 * self.votes.shape[1])
            self.votes = np.pad(self.votes, ((0, 0), (0, width - self.votes.shape[1])))
        self.votes[rows, classes] += scores
        best = self.best_class[rows]
        passes = self.votes[rows, classes] > self.votes[rows, best]
        self.best_class[rows[passes]] = classes[passes]

    def _keep(self, keep: np.ndarray) -> None:
        if keep.all():
            return
        self.mean, self.cov = self.mean[keep], self.cov[keep]
        self.ids, self.state = self.ids[keep], self.state[keep]
        self.last_seen, self.hits = self.last_seen[keep], self.hits[keep]
        self.last_box, self.last_score = self.last_box[keep], self.last_score[keep]
        self.votes = self.votes[keep]
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
        votes = np.zeros((k, self.votes.shape[1]))
        self.votes = np.concatenate([self.votes, votes])
        self._vote(np.arange(len(self) - k, len(self)), class_ids, scores)
