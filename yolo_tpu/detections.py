"""Detections of one frame as a struct of arrays (like supervision's `Detections`).

Arrays rather than a list of dicts: the per-frame pipeline produces arrays, drawing and
tracking code wants arrays, and selecting rows (`dets[dets.scores > 0.5]`) stays vectorised.
Iterating yields small `Detection` records, `to_dict()` gives JSON-ready plain Python values.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, NamedTuple, Sequence

import numpy as np

__all__ = ["Detection", "Detections"]


class Detection(NamedTuple):
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in source-image pixels
    score: float
    class_id: int
    label: str


def _label(names: Sequence[str], class_id: int) -> str:
    # Same rule as ModelMeta.label: a model without names still gets readable labels.
    return names[class_id] if 0 <= class_id < len(names) else str(class_id)


@dataclass(frozen=True, eq=False)
class Detections:
    """N detections: `xyxy` float32 (N, 4), `scores` float32 (N,), `class_ids` int32 (N,), `labels`,
    and after tracking `tracker_id` int64 (N,) (-1: on no track yet), as in supervision.

    Frozen: fields cannot be rebound; the arrays are private copies made read-only, so a
    `Detections` handed to several consumers cannot be changed under them.
    """

    xyxy: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    labels: tuple[str, ...] = field(default=())
    tracker_id: np.ndarray | None = None

    def __post_init__(self) -> None:
        xyxy = _frozen(self.xyxy, np.float32).reshape(-1, 4)
        scores = _frozen(self.scores, np.float32).reshape(-1)
        class_ids = _frozen(self.class_ids, np.int32).reshape(-1)
        n = xyxy.shape[0]
        if scores.shape[0] != n or class_ids.shape[0] != n:
            raise ValueError(f"{n} boxes, {scores.shape[0]} scores, {class_ids.shape[0]} class ids")
        labels = tuple(self.labels) if len(self.labels) else tuple(map(str, class_ids.tolist()))
        if len(labels) != n:
            raise ValueError(f"{n} detections but {len(labels)} labels")
        object.__setattr__(self, "xyxy", xyxy)
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "class_ids", class_ids)
        object.__setattr__(self, "labels", labels)
        if self.tracker_id is not None:
            ids = _frozen(self.tracker_id, np.int64).reshape(-1)
            if ids.shape[0] != n:
                raise ValueError(f"{n} detections but {ids.shape[0]} tracker ids")
            object.__setattr__(self, "tracker_id", ids)

    @classmethod
    def from_arrays(
        cls, xyxy: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, names: Sequence[str] = ()
    ) -> "Detections":
        """Build with labels looked up in `names` (the model's class names)."""
        ids = np.asarray(class_ids).reshape(-1)
        return cls(xyxy, scores, ids, tuple(_label(names, int(c)) for c in ids))

    @classmethod
    def empty(cls) -> "Detections":
        return cls(np.empty((0, 4), np.float32), np.empty(0, np.float32), np.empty(0, np.int32), ())

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def __iter__(self) -> Iterator[Detection]:
        boxes = self.xyxy.tolist()  # one conversion, then plain floats
        for box, score, cid, label in zip(boxes, self.scores.tolist(), self.class_ids.tolist(), self.labels):
            yield Detection(tuple(box), score, cid, label)

    def __getitem__(self, index: Any) -> "Detections":
        """Rows selected by an int, a slice, an index array or a boolean mask."""
        if isinstance(index, (int, np.integer)):
            index = [int(index)]  # keep the struct-of-arrays shape, like supervision
        rows = np.arange(len(self))[index]
        return Detections(self.xyxy[rows], self.scores[rows], self.class_ids[rows],
                          tuple(self.labels[i] for i in rows.tolist()),
                          None if self.tracker_id is None else self.tracker_id[rows])

    def with_tracker_ids(self, tracker_id: np.ndarray) -> "Detections":
        """The same detections with their track ids (-1: none). The arrays, already private
        and read-only, are shared rather than copied and checked again: the tracker calls
        this every frame."""
        ids = _frozen(tracker_id, np.int64).reshape(-1)
        if ids.shape[0] != len(self):
            raise ValueError(f"{len(self)} detections but {ids.shape[0]} tracker ids")
        out = object.__new__(Detections)
        for name in ("xyxy", "scores", "class_ids", "labels"):
            object.__setattr__(out, name, getattr(self, name))
        object.__setattr__(out, "tracker_id", ids)
        return out

    def to_dict(self) -> list[dict[str, Any]]:
        """JSON-ready list: class_id, label, score (4 decimals), box x1 y1 x2 y2 (2 decimals),
        and after tracking `track_id` (an int, or null for a detection on no track)."""
        out = [
            {"class_id": d.class_id, "label": d.label, "score": round(d.score, 4),
             "box": [round(v, 2) for v in d.box]}
            for d in self
        ]
        if self.tracker_id is not None:
            for item, tid in zip(out, self.tracker_id.tolist()):
                item["track_id"] = tid if tid >= 0 else None
        return out

    def __repr__(self) -> str:
        return f"Detections(n={len(self)}, labels={list(self.labels)[:8]}{'...' if len(self) > 8 else ''})"


def _frozen(a: Any, dtype: type) -> np.ndarray:
    out = np.array(a, dtype=dtype, copy=True)
    out.flags.writeable = False
    return out
