"""Where frames come from: image paths, video files, cameras and network streams.

Image and video paths are expanded from files, folders and globs. A path named explicitly
is always tried (reading it reports what is wrong with it); a folder or a glob yields only
the files of the wanted kind, by extension, so `clips/` next to a README does not turn the
README into an error.

`VideoSource` is one `cv2.VideoCapture` behind all the moving sources. A file is read frame
by frame to its end; a live source (camera, stream URL) is reopened with backoff when it
stops delivering, because cameras reboot and Wi-Fi drops.
"""
from __future__ import annotations

import functools
import glob
import os
import re
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

__all__ = ["IMAGE_EXTENSIONS", "VIDEO_EXTENSIONS", "SourceError", "Frame", "SourceSpec",
           "VideoSource", "expand", "expand_images", "expand_image_args", "expand_video_args",
           "is_image_name", "is_video_name", "camera_spec", "video_spec", "source_spec"]

# What OpenCV's imread decodes in the usual builds (opencv-python wheels included).
IMAGE_EXTENSIONS = frozenset({
    ".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".dib", ".webp", ".tif", ".tiff",
    ".jp2", ".pbm", ".pgm", ".ppm", ".pnm", ".avif",
})
# Containers the FFmpeg inside opencv-python opens; a folder or glob yields these as videos.
VIDEO_EXTENSIONS = frozenset({
    ".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".ts", ".mts",
    ".m2ts", ".flv", ".wmv", ".3gp", ".mjpeg", ".mjpg", ".h264", ".h265", ".hevc",
})
# URL schemes of live network sources (FFmpeg protocols).
LIVE_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "rtp", "srt")


class SourceError(ValueError):
    """A path, glob, camera or stream that yields no frames: the message names it."""


def is_image_name(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in IMAGE_EXTENSIONS


def is_video_name(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in VIDEO_EXTENSIONS


def _is_glob(text: str) -> bool:
    return any(c in text for c in "*?[")


def _folder_files(folder: str, extensions: frozenset[str]) -> list[str]:
    """Files with one of `extensions` directly inside `folder`, sorted (not recursive).
    Hidden files are left out, as a glob does: `.clip.partial.mp4` is a killed run's leftover."""
    with os.scandir(folder) as entries:
        return sorted(os.path.join(folder, e.name) for e in entries
                      if os.path.splitext(e.name)[1].lower() in extensions
                      and not e.name.startswith(".") and e.is_file())


def expand(path: str, extensions: frozenset[str], kind: str = "images") -> list[str]:
    """One path argument -> files: the file itself, a folder's `kind` files (sorted) or a glob's."""
    if os.path.isdir(path):
        try:
            found = _folder_files(path, extensions)
        except OSError as e:
            raise SourceError(f"{path}: cannot list folder: {e.strerror or e}") from None
        if not found:
            raise SourceError(f"{path}: no {kind} in folder "
                              f"(looked for {', '.join(sorted(extensions))})")
        return found
    # An existing file is taken literally, even when its name holds glob characters.
    if os.path.exists(path):
        return [path]
    if not _is_glob(path):
        raise SourceError(f"{path}: no such file or directory")
    matches = sorted(glob.glob(path, recursive=True))
    found = [m for m in matches
             if os.path.splitext(m)[1].lower() in extensions and os.path.isfile(m)]
    if not found:
        what = "no files" if not matches else f"{len(matches)} paths, none of them {kind}"
        raise SourceError(f"{path}: pattern matches {what}")
    return found


def expand_images(path: str) -> list[str]:
    """One --image argument -> image files: a file, a folder's images (sorted) or a glob's."""
    return expand(path, IMAGE_EXTENSIONS, "images")


def _expand_all(paths: Iterable[str], extensions: frozenset[str],
                kind: str) -> tuple[list[str], list[SourceError]]:
    files: list[str] = []
    errors: list[SourceError] = []
    for p in paths:
        try:
            files += expand(p, extensions, kind)
        except SourceError as e:
            errors.append(e)
    return files, errors


def expand_image_args(paths: Iterable[str]) -> tuple[list[str], list[SourceError]]:
    """Expand every argument; the ones that yield nothing come back as errors, in order."""
    return _expand_all(paths, IMAGE_EXTENSIONS, "images")


def expand_video_args(paths: Iterable[str]) -> tuple[list[str], list[SourceError]]:
    """As `expand_image_args`, for video files (batch inputs)."""
    return _expand_all(paths, VIDEO_EXTENSIONS, "videos")


# ---------------------------------------------------------------- video, cameras, streams

@dataclass(frozen=True)
class Frame:
    """One decoded frame: its position in the source and its stream time."""
    index: int          # 0-based; a live source counts every frame received, dropped or not
    t_ms: float         # file: presentation time; live: ms since the source first opened
    image: np.ndarray   # BGR uint8
    retried: int = 0    # invokes retried on a rebuilt Edge TPU interpreter (supervised)


@dataclass(frozen=True)
class SourceSpec:
    """What to open: a video file, a camera (index or device path) or a stream URL."""
    kind: str           # "file", "camera" or "stream"
    target: str | int   # path, camera index or /dev/videoN, URL
    name: str           # how messages and the JSON "source" field name it

    @property
    def live(self) -> bool:
        return self.kind != "file"


def video_spec(path: str) -> SourceSpec:
    """--video PATH: an existing file (checked now, so a typo is a clear error)."""
    if os.path.isdir(path):
        raise SourceError(f"{path}: is a folder; --video takes one file "
                          "(python -m yolo_tpu.batch takes folders)")
    if not os.path.exists(path):
        raise SourceError(f"{path}: no such file")
    return SourceSpec("file", path, path)


def camera_spec(text: str | int | None) -> SourceSpec:
    """--cam [INDEX|/dev/videoN] (default 0)."""
    text = "0" if text is None else str(text)
    if re.fullmatch(r"\d+", text):
        return SourceSpec("camera", int(text), f"camera {text}")
    if text.startswith("/dev/"):
        return SourceSpec("camera", text, text)
    raise SourceError(f"--cam {text}: expected a camera index (0, 1, ...) or a device "
                      "path such as /dev/video0")


def source_spec(text: str) -> SourceSpec:
    """--source URL|PATH: a stream URL, a camera index or device, or a video file."""
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme in LIVE_SCHEMES:
        return SourceSpec("stream", text, _redact(text))
    if scheme == "file":
        return video_spec(text[len("file://"):])
    if scheme:
        raise SourceError(f"{_redact(text)}: unsupported URL scheme {scheme!r} "
                          f"(expected one of {', '.join(LIVE_SCHEMES)}, or a file)")
    if re.fullmatch(r"\d+", text) or text.startswith("/dev/video"):
        return camera_spec(text)
    return video_spec(text)


def _redact(url: str) -> str:
    """The URL without a password (rtsp://user:secret@cam/ -> rtsp://user:***@cam/)."""
    return re.sub(r"(://[^/:@]+):[^/@]*@", r"\1:***@", url)


class VideoSource:
    """Frames of one file, camera or stream, through OpenCV's FFmpeg (or V4L2) capture.

    `frames()` yields `Frame`s until the file ends or `stop` is set. Undecodable frames of
    a file are skipped and counted in `decode_errors`. A live source that stops delivering
    is reopened up to `reconnect` times in a row, waiting 0.5, 1, 2, 4, ... s (at most 8 s)
    between tries; `reconnects` counts successful reopenings. When every try fails,
    `frames()` raises SourceError.
    """

    def __init__(self, spec: SourceSpec, *, reconnect: int = 5, timeout_s: float = 5.0,
                 cam_size: tuple[int, int] | None = None, cam_fps: float | None = None):
        self.spec = spec
        self.reconnect = reconnect
        self.timeout_s = timeout_s
        self.cam_size, self.cam_fps = cam_size, cam_fps
        self.decode_errors = 0
        self.reconnects = 0
        self._cap = None
        self.fps = 0.0
        self.size = (0, 0)
        self.frame_count = 0  # 0 when unknown (live sources)
        self.live = spec.live

    @property
    def name(self) -> str:
        return self.spec.name

    # -- opening

    def _capture(self):
        _quiet_video_io()
        import cv2
        ms = int(self.timeout_s * 1000)
        timeouts = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
        target = self.spec.target
        if self.spec.kind == "camera":
            params = []
            if self.cam_size:
                params += [cv2.CAP_PROP_FRAME_WIDTH, self.cam_size[0],
                           cv2.CAP_PROP_FRAME_HEIGHT, self.cam_size[1]]
            if self.cam_fps:
                params += [cv2.CAP_PROP_FPS, self.cam_fps]
            # V4L2 on Linux: CAP_ANY would also try backends such as Orbbec's, which log
            # their own errors for a missing camera next to ours.
            api = cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY
            return cv2.VideoCapture(target, api, params)
        return cv2.VideoCapture(str(target), cv2.CAP_FFMPEG, timeouts)

    def open(self) -> "VideoSource":
        """Open the source; SourceError naming it and saying why when it cannot be."""
        import cv2
        cap = self._capture()
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"{self.name}: {self._why_not_opened()}")
        self._cap = cap
        w = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        h = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self.size = (w, h)
        self.fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        # Unknown: live sources report -9.2e18, MPEG-TS a guess from the duration.
        if not 0 < count < 1_000_000_000 or str(self.spec.target).lower().endswith(UNCOUNTED) \
                or self.spec.kind == "camera":
            count = 0
        self.frame_count = count
        # An http(s) URL may serve a plain video file: it has a length, so it ends like one.
        self.live = self.spec.live and not count
        return self

    def _why_not_opened(self) -> str:
        kind, target = self.spec.kind, self.spec.target
        if kind == "file":
            if not os.access(str(target), os.R_OK):
                return "cannot read the file (permission denied)"
            if _unfinished_mp4(str(target)):
                return ("truncated or unfinished MP4: no 'moov' index, so no frame can be "
                        "located (the recording was cut short)")
            return "cannot open as a video (not a video file, or a codec OpenCV lacks)"
        if kind == "camera":
            dev = target if isinstance(target, str) else f"/dev/video{target}"
            if not os.path.exists(dev):
                return f"no such camera ({dev} does not exist)"
            return f"cannot open the camera ({dev} is busy, or not a capture device)"
        return f"cannot open the stream (refused, no answer within {self.timeout_s:g} s, " \
               "or not a video stream)"

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def detach(self) -> None:
        """Forget the capture without releasing it: a reader thread is still blocked in
        its `read()`, and releasing under it would crash; it ends when the read returns."""
        self._cap = None

    def __enter__(self) -> "VideoSource":
        return self.open() if self._cap is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def sane_fps(self) -> float | None:
        """The source's frame rate, or None when it reports none or a bogus one."""
        return self.fps if 1.0 <= self.fps <= 240.0 else None

    @property
    def write_fps(self) -> float:
        """The frame rate for an annotated copy: the source's, else 25."""
        return self.sane_fps or 25.0

    # -- reading

    def frames(self, stop: threading.Event | None = None) -> Iterator[Frame]:
        """Every frame of a file in order; a live source's frames as they arrive."""
        if self._cap is None:
            self.open()
        stop = stop or threading.Event()
        if self.live:
            yield from self._live_frames(stop)
        else:
            yield from self._file_frames(stop)

    def _file_frames(self, stop: threading.Event) -> Iterator[Frame]:
        """Frames to the end, skipping undecodable ones.

        A damaged frame is a failed `read()` (mp4v: one per damaged frame, up to 74 in a
        row measured) or simply missing (MJPG). A failed read is therefore not the end
        while the container says frames are still unaccounted for: keep reading, as
        failed reads cost microseconds. Failures followed by a good frame are decode
        errors, and count as frame positions so later frames keep their true index.
        The count is trusted only as far as frames arrive: MAX_FAILED_READS failures in a
        row end the file (a header announcing 999,999,999 frames for 40 would otherwise
        spin for half an hour after the 40th).
        """
        import cv2
        cap = self._cap
        index = run = 0  # index: frames accounted for (good ones and earlier bad runs)
        while not stop.is_set():
            ok, image = cap.read()
            if ok and image is not None:
                self.decode_errors += run
                index += run
                run = 0
                yield Frame(index, float(cap.get(cv2.CAP_PROP_POS_MSEC)), image)
                index += 1
                continue
            run += 1
            if run > min(MAX_FAILED_READS, max(8, self.frame_count - index)):
                return  # the failures that end the file are truncation, not decode errors

    def _live_frames(self, stop: threading.Event) -> Iterator[Frame]:
        start = time.monotonic()
        index = 0
        while not stop.is_set():
            ok, image = self._cap.read() if self._cap is not None else (False, None)
            if ok and image is not None:
                yield Frame(index, (time.monotonic() - start) * 1e3, image)
                index += 1
                continue
            self._reopen(stop)

    def _reopen(self, stop: threading.Event) -> None:
        """Close and reopen with backoff; SourceError when every try fails."""
        self.close()
        why = ""
        for attempt in range(self.reconnect):
            if stop.wait(min(0.5 * 2 ** attempt, 8.0)):
                return
            try:
                self.open()
            except SourceError as e:
                why = str(e)
                continue
            self.reconnects += 1
            return
        last = why.split(": ", 1)[-1] if why else "no frames"
        raise SourceError(f"{self.name}: stopped delivering frames; gave up after "
                          f"{self.reconnect} reconnect tries (last: {last})")


# Failed reads in a row that end a file whatever its header says: 4x the longest run of
# damaged frames measured (74, a 50%-corrupted mp4v file, docs/video_io.md).
MAX_FAILED_READS = 300

# Containers whose frame count FFmpeg estimates from the duration (wrong for MPEG-TS).
UNCOUNTED = (".ts", ".mts", ".m2ts")


def _unfinished_mp4(path: str) -> bool:
    """An MP4/MOV whose top-level boxes hold no 'moov' (the index written last)."""
    try:
        with open(path, "rb") as f:
            if f.read(12)[4:8] != b"ftyp":
                return False
            f.seek(0)
            while header := f.read(8):
                if len(header) < 8:
                    return True
                size, kind = int.from_bytes(header[:4], "big"), header[4:]
                if kind == b"moov":
                    return False
                if size == 1:
                    size = int.from_bytes(f.read(8), "big") - 8
                elif size == 0:
                    return True  # the last box runs to the end of the file
                if size < 8:
                    return True
                f.seek(size - 8, os.SEEK_CUR)
            return True
    except OSError:
        return False


@functools.cache
def _quiet_video_io() -> None:
    """Keep FFmpeg's and OpenCV's own stderr messages out of ours (one line per problem):
    a corrupt frame or a refused connection is reported by us, with the file or URL.
    Variables the user has set win (OPENCV_FFMPEG_LOGLEVEL=32 brings FFmpeg back)."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # read at the first capture
    if "OPENCV_LOG_LEVEL" not in os.environ:
        import cv2
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
