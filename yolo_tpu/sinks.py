"""Where results go: JSON lines, an annotated video file, a window.

Files that must be whole to be useful are written under a temporary name in the target's
folder and renamed when complete and verified (`outputs.py`), so a run killed at any
moment, even by SIGKILL, or stopped by a full disk, leaves either the complete file or
none. A JSON lines stream for a live run is flushed line by line instead, so `tail -f` sees
each frame; a write error cuts it back to its last whole line.
"""
from __future__ import annotations

import json
import os
import sys
from typing import IO, Any

import cv2
import numpy as np

from .detections import Detections
from .outputs import PARTIAL, AtomicFile, LineFile, OutputError, free_space, fsync_path, \
    partial_path, remove as _remove, video_problem, write_error
from .sources import Frame

__all__ = ["SinkError", "JsonLines", "VideoFile", "Window", "frame_record", "partial_path",
           "video_fourcc"]

# Container -> codec the opencv-python wheels can encode without extra libraries.
_FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}


class SinkError(OutputError):
    """An output that cannot be written: the message names the file and the reason."""


def video_fourcc(path: str) -> str:
    """The codec for an output video, by extension; SinkError for one we cannot write."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in _FOURCC:
        raise SinkError(f"{path}: cannot write video of type {ext or '(none)'!r}; "
                        f"use one of {', '.join(sorted(_FOURCC))}")
    return _FOURCC[ext]


def frame_record(source: str, frame: Frame, detections: Detections) -> dict[str, Any]:
    """The JSON line of one video frame: the image schema, with `frame` and `t_ms` set."""
    h, w = frame.image.shape[:2]
    retried = {"retried": frame.retried} if frame.retried else {}
    return {"source": source, "frame": frame.index, "t_ms": round(frame.t_ms, 2),
            "width": int(w), "height": int(h), **retried, "detections": detections.to_dict()}


class JsonLines:
    """One JSON line per frame to a file or stdout (`-`).

    `atomic=False` (detect): lines are flushed as they go to the final name; a write error
    cuts the file back to its last whole line (and is raised, naming the file).
    `atomic=True` (batch): lines go to a partial file renamed on `close(complete=True)`;
    a write error removes it. `lines`: the lines written; `error`: the write error, if any.
    """

    def __init__(self, path: str, source: str, atomic: bool = False, tag: str = ""):
        self.path, self.source, self.atomic = path, source, atomic
        self.lines = 0
        self._file: AtomicFile | LineFile | None = None
        try:
            if path != "-":
                self._file = AtomicFile(path, tag) if atomic else LineFile(path)
        except OutputError as e:
            raise SinkError(str(e)) from None

    @property
    def error(self) -> OutputError | None:
        return self._file.error if self._file is not None else None

    def write(self, frame: Frame, detections: Detections) -> None:
        line = json.dumps(frame_record(self.source, frame, detections))
        if self._file is None:
            sys.stdout.write(line + "\n")
        elif self.atomic:
            self._file.write(line + "\n")
        else:
            self._file.write_line(line)  # flushed: a crash later loses no line written
        self.lines += 1

    def close(self, complete: bool = True) -> None:
        if self._file is None:
            sys.stdout.flush()
        elif not self.atomic:
            self._file.close()
        elif not self._file.closed:
            if complete and self.error is None:
                self._file.commit()
            else:
                self._file.abort()


class VideoFile:
    """Annotated frames to a video file at the source's size and frame rate.

    Written to the partial name and renamed on `close()`, so an interrupted run still
    finalizes a playable file (the writer writes the index on release) and a killed one
    leaves no half-written file under the final name. Frames of another size (a camera
    that reconnected at a new resolution) are resized to the first frame's.

    `timed` (live sources): the file plays in real time whatever rate the frames came at.
    A live source's reported rate is no guide (HTTP MJPEG says 25 whatever it sends) and
    frames are dropped while the model is busy, so each frame is placed by its timestamp
    on the file's constant-rate grid, as FFmpeg's `-vsync cfr` does: a frame is held until
    the next one is due (repeated), and a frame due in a slot already written is left out.
    """

    def __init__(self, path: str, fps: float, tag: str = "", timed: bool = False):
        self.path, self.fps, self.timed = path, fps, timed
        self._fourcc = video_fourcc(path)
        self._target = partial_path(path, tag)
        self._writer: cv2.VideoWriter | None = None
        self.size: tuple[int, int] | None = None
        self.frames = 0  # frames in the file, repeats included
        self.left_out = 0  # timed: frames that arrived within an already written slot
        self._t0: float | None = None
        self._last: np.ndarray | None = None

    def _open(self, size: tuple[int, int]) -> None:
        folder = os.path.dirname(self.path)
        if folder:
            os.makedirs(folder, exist_ok=True)
        writer = cv2.VideoWriter(self._target, cv2.VideoWriter_fourcc(*self._fourcc),
                                 self.fps, size)
        if not writer.isOpened():
            _remove(self._target)
            raise SinkError(f"{self.path}: OpenCV cannot open a {self._fourcc} video writer")
        self._writer, self.size = writer, size

    def write(self, image: np.ndarray, t_ms: float | None = None) -> None:
        h, w = image.shape[:2]
        if self._writer is None:
            self._open((w, h))
        elif (w, h) != self.size:
            image = cv2.resize(image, self.size, interpolation=cv2.INTER_AREA)
        if self.timed and t_ms is not None:
            if self._t0 is None:
                self._t0 = t_ms
            slot = round((t_ms - self._t0) * self.fps / 1000.0)
            if slot < self.frames:
                self.left_out += 1
                return
            while self.frames < slot:  # the previous frame lasts until this one is due
                self._writer.write(self._last)
                self.frames += 1
            self._last = image
        self._writer.write(image)
        self.frames += 1

    def close(self, complete: bool = True) -> None:
        """Finalize, verify and rename (complete), or drop the partial file. OpenCV's
        writer reports no write error, so the file is read back: a video that does not
        play with every frame written (a full disk) is removed and raised as SinkError."""
        if self._writer is None:
            return
        self._writer.release()
        self._writer = None
        if not (complete and self.frames):
            _remove(self._target)
            return
        try:
            fsync_path(self._target)
            problem = video_problem(self._target, self.frames)
            if problem is None:
                os.replace(self._target, self.path)
                return
        except OSError as e:
            _remove(self._target)
            raise SinkError(str(write_error(self.path, e))) from None
        _remove(self._target)
        raise SinkError(f"{self.path}: cannot write: the video written {problem} "
                        f"({free_space(self.path)})")


class Window:
    """`--show`: annotated frames in a window; `closed` turns true on q, Esc or closing it."""

    def __init__(self, title: str):
        self.title = title
        self.closed = False
        from .display import show_problem
        if problem := show_problem():  # detect checks first; here for any other caller
            raise SinkError(problem)
        try:
            cv2.namedWindow(title, cv2.WINDOW_NORMAL)
        except cv2.error as e:
            raise SinkError(f"--show: cannot open a window ({str(e).strip().splitlines()[-1]}); "
                            "is there a display?") from None

    def write(self, image: np.ndarray, t_ms: float | None = None) -> None:
        cv2.imshow(self.title, image)
        key = cv2.waitKey(1) & 0xFF
        visible = cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE)
        if key in (ord("q"), 27) or visible < 1:
            self.closed = True

    def close(self, complete: bool = True) -> None:
        try:
            cv2.destroyWindow(self.title)
        except cv2.error:
            pass

