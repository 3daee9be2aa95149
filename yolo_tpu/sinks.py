"""Where results go: JSON lines, an annotated video file, a window.

Files that must be whole to be useful are written under a temporary name in the target's
folder and renamed when complete (`os.replace` is atomic on one file system), so a run
killed at any moment, even by SIGKILL, leaves either the complete file or none. A JSON
lines stream for a live run is flushed line by line instead, so `tail -f` sees each frame.
"""
from __future__ import annotations

import json
import os
import sys
from typing import IO, Any

import cv2
import numpy as np

from .detections import Detections
from .sources import Frame

__all__ = ["SinkError", "JsonLines", "VideoFile", "Window", "frame_record", "partial_path",
           "video_fourcc"]

# Container -> codec the opencv-python wheels can encode without extra libraries.
_FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}
PARTIAL = ".partial"


class SinkError(OSError):
    """An output that cannot be written: the message names the file and the reason."""


def partial_path(path: str, tag: str = "") -> str:
    """`out/clip.mp4` -> `out/.clip.partial.mp4`: same folder (atomic rename), same
    extension (OpenCV picks the container from it), hidden from `ls` and from globs.
    `tag` (`out/.clip.partial.TAG.mp4`) keeps writers that may overlap apart: a cluster
    task and a redo of the same video elsewhere never rename each other's file."""
    folder, name = os.path.split(path)
    stem, ext = os.path.splitext(name)
    return os.path.join(folder, f".{stem}{PARTIAL}{'.' + tag if tag else ''}{ext}")


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
    return {"source": source, "frame": frame.index, "t_ms": round(frame.t_ms, 2),
            "width": int(w), "height": int(h), "detections": detections.to_dict()}


class JsonLines:
    """One JSON line per frame to a file or stdout (`-`).

    `atomic=False` (detect): lines are flushed as they go to the final name.
    `atomic=True` (batch): lines go to a partial file renamed on `close(complete=True)`.
    """

    def __init__(self, path: str, source: str, atomic: bool = False, tag: str = ""):
        self.path, self.source, self.atomic = path, source, atomic
        self._target = partial_path(path, tag) if atomic else path
        self._out: IO[str]
        if path == "-":
            self._out = sys.stdout
        else:
            try:
                self._out = open(self._target, "w", encoding="utf-8")
            except OSError as e:
                raise SinkError(f"{path}: {e.strerror or e}") from None

    def write(self, frame: Frame, detections: Detections) -> None:
        self._out.write(json.dumps(frame_record(self.source, frame, detections)) + "\n")
        if not self.atomic:
            self._out.flush()  # a crash later must not lose lines already produced

    def close(self, complete: bool = True) -> None:
        if self._out is sys.stdout:
            self._out.flush()
            return
        if self._out.closed:
            return
        self._out.flush()
        if self.atomic and complete:
            os.fsync(self._out.fileno())  # the data is on disk before the name says "done"
        self._out.close()
        if self.atomic:
            if complete:
                os.replace(self._target, self.path)
            else:
                _remove(self._target)


class VideoFile:
    """Annotated frames to a video file at the source's size and frame rate.

    Written to the partial name and renamed on `close()`, so an interrupted run still
    finalizes a playable file (the writer writes the index on release) and a killed one
    leaves no half-written file under the final name. Frames of another size (a camera
    that reconnected at a new resolution) are resized to the first frame's.
    """

    def __init__(self, path: str, fps: float, tag: str = ""):
        self.path, self.fps = path, fps
        self._fourcc = video_fourcc(path)
        self._target = partial_path(path, tag)
        self._writer: cv2.VideoWriter | None = None
        self.size: tuple[int, int] | None = None
        self.frames = 0

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

    def write(self, image: np.ndarray) -> None:
        h, w = image.shape[:2]
        if self._writer is None:
            self._open((w, h))
        elif (w, h) != self.size:
            image = cv2.resize(image, self.size, interpolation=cv2.INTER_AREA)
        self._writer.write(image)
        self.frames += 1

    def close(self, complete: bool = True) -> None:
        """Finalize and rename (complete), or drop the partial file."""
        if self._writer is None:
            return
        self._writer.release()
        self._writer = None
        if complete and self.frames:
            os.replace(self._target, self.path)
        else:
            _remove(self._target)


class Window:
    """`--show`: annotated frames in a window; `closed` turns true on q, Esc or closing it."""

    def __init__(self, title: str):
        self.title = title
        self.closed = False
        # OpenCV's Qt aborts the whole process (no exception) when it finds no X display.
        if sys.platform.startswith("linux") and (why := _no_x_display()):
            raise SinkError(f"--show: no display ({why}); run without --show, and use "
                            "--save to keep the annotated video")
        try:
            cv2.namedWindow(title, cv2.WINDOW_NORMAL)
        except cv2.error as e:
            raise SinkError(f"--show: cannot open a window ({str(e).strip().splitlines()[-1]}); "
                            "is there a display?") from None

    def write(self, image: np.ndarray) -> None:
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


def _no_x_display() -> str | None:
    """Why there is no X display to open a window on, or None (a local one that exists,
    or a remote one such as ssh's localhost:10.0, which only connecting can tell)."""
    display = os.environ.get("DISPLAY", "")
    if not display:
        return "DISPLAY is not set"
    if display.startswith(":"):
        number = display[1:].split(".")[0]
        if not os.path.exists(f"/tmp/.X11-unix/X{number}"):
            return f"no X server for DISPLAY={display}"
    return None


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
