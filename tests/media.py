"""Real media for tests and scripts: synthetic videos, broken files, frame stamps and a live MJPEG camera.

No pytest in here, so scripts can import it too: tests import it as ``media`` (like
``tflite_builders``; pytest puts tests/ on sys.path), scripts put ``tests/`` on ``sys.path`` and do
``from media import MjpegServer`` (or ``from tests.media import ...`` from the repo root).

* :func:`pan_zoom_frames` -- a deterministic, smooth camera pan/zoom over one of ``samples/*.jpg``.
* :func:`write_video` -- :class:`cv2.VideoWriter` (FFmpeg backend) with the fourcc picked from the
  extension; raises instead of silently writing nothing.
* :func:`truncate_file`, :func:`corrupt_middle` -- damage a written file for broken-video tests.
* :func:`stamp_frame`, :func:`read_stamp` -- a frame index burnt into the top-left corner as big
  black/white cells with sync cells and a 6-bit CRC; survives mp4v, MJPEG and JPEG round trips.
* :class:`MjpegServer` -- an HTTP ``multipart/x-mixed-replace`` camera on 127.0.0.1 that can drop
  clients, stall, refuse connections or hang them, and come back on the same port.
* :class:`UdpTsStreamer` -- an MPEG-TS file sent over UDP at its own frame rate (``udp://`` source).

What works in the opencv-python 5.0 wheel (its bundled FFmpeg, avcodec 62): writers for ``mp4v``
(.mp4/.avi/.mkv), ``MJPG`` (.avi/.mkv), ``XVID``/``DIVX``/``FMP4`` (.avi), ``VP80``/``VP90`` (.webm),
``FFV1`` (.mkv), ``I420`` (raw .avi). There is no H.264/HEVC/AV1 *encoder* (``avc1``/``H264`` only
try the ``h264_v4l2m2m`` hardware encoder and fail), so tests cannot write H.264.
"""
from __future__ import annotations

import math
import os
import select
import socket
import struct
import threading
import time
import zlib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"

#: Default fourcc per container, all verified to open and read back in this OpenCV build.
FOURCC_FOR_EXT: dict[str, str] = {
    ".mp4": "mp4v",
    ".m4v": "mp4v",
    ".mov": "mp4v",
    ".avi": "MJPG",
    ".mkv": "MJPG",
    ".ts": "mp4v",
    ".webm": "VP80",
}


def sample_photos() -> list[Path]:
    """The bundled sample photos (dog, eagle, giraffe, horses, kite, person), sorted."""
    return sorted(SAMPLES.glob("*.jpg"))


# --------------------------------------------------------------------------- frames

def pan_zoom_frames(
    photo_path: str | os.PathLike[str],
    size: tuple[int, int] = (320, 240),
    n: int | None = 60,
    *,
    zoom: tuple[float, float] = (1.0, 1.8),
    cycles: float = 1.0,
) -> Iterator[np.ndarray]:
    """Yield ``n`` BGR frames (``size`` = (width, height)) of a smooth pan and zoom across a photo.

    The crop window (with the output's aspect ratio) travels an ellipse over the photo while its
    zoom goes from ``zoom[0]`` to ``zoom[1]`` and back, ``cycles`` times over the ``n`` frames, so with
    ``cycles=1`` the sequence loops seamlessly (frame ``n`` would equal frame 0). Any size works,
    odd (333x251) or tiny (16x12). Deterministic: the same arguments give identical frames.
    ``n=None`` yields forever (period ``60 / cycles`` frames).
    """
    w, h = int(size[0]), int(size[1])
    if w < 1 or h < 1:
        raise ValueError(f"bad size {size}")
    photo = cv2.imread(str(photo_path), cv2.IMREAD_COLOR)
    if photo is None:
        raise FileNotFoundError(f"cannot read image {photo_path}")
    ph, pw = photo.shape[:2]
    aspect = w / h
    # Largest window with the output aspect that fits in the photo.
    cw0, ch0 = (pw, pw / aspect) if pw / aspect <= ph else (ph * aspect, ph)
    period = n if n is not None else 60
    k = 0
    while n is None or k < n:
        phase = 2.0 * math.pi * cycles * k / period
        z = zoom[0] + (zoom[1] - zoom[0]) * (0.5 - 0.5 * math.cos(phase))
        cw, ch = max(cw0 / z, 1.0), max(ch0 / z, 1.0)
        # Centre on an ellipse, kept so the window stays inside the photo.
        fx, fy = 0.5 - 0.5 * math.cos(phase), 0.5 + 0.5 * math.sin(phase)
        cx = cw / 2 + fx * (pw - cw)
        cy = ch / 2 + fy * (ph - ch)
        # Sub-pixel crop as an affine map dst -> src (pixel centres), pre-shrinking the photo
        # when the window is much bigger than the output so bilinear sampling does not alias.
        src, f = photo, 1.0
        shrink = math.floor(min(cw / w, ch / h))
        if shrink >= 2:
            f = 1.0 / shrink
            src = cv2.resize(photo, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
        sx, sy = cw * f / w, ch * f / h
        x0, y0 = (cx - cw / 2) * f, (cy - ch / 2) * f
        m = np.array([[sx, 0.0, x0 + 0.5 * sx - 0.5],
                      [0.0, sy, y0 + 0.5 * sy - 0.5]])
        frame = cv2.warpAffine(src, m, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                               borderMode=cv2.BORDER_REFLECT)
        yield frame
        k += 1


# --------------------------------------------------------------------------- files

def write_video(
    path: str | os.PathLike[str],
    frames: Iterable[np.ndarray],
    fps: float = 15.0,
    fourcc: str | None = None,
) -> int:
    """Write ``frames`` (BGR uint8, all the same size) with ``cv2.VideoWriter`` and return how many.

    ``fourcc`` defaults from the extension (:data:`FOURCC_FOR_EXT`: .mp4 -> mp4v, .avi -> MJPG).
    Odd sizes are written cropped to even (333x251 reads back as 332x250, last column/row gone;
    every codec here, even FFV1), because FFmpeg encodes yuv420p.
    Raises ``RuntimeError`` if the writer does not open (e.g. ``avc1``: no H.264 encoder in the
    wheel) and ``ValueError`` on a frame of another size (VideoWriter would silently drop it).
    """
    path = Path(path)
    if fourcc is None:
        try:
            fourcc = FOURCC_FOR_EXT[path.suffix.lower()]
        except KeyError:
            raise ValueError(f"no default fourcc for {path.suffix!r}; pass fourcc=") from None
    writer: cv2.VideoWriter | None = None
    count = 0
    size: tuple[int, int] | None = None
    try:
        for frame in frames:
            frame = np.ascontiguousarray(frame)
            if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
                raise ValueError(f"frames must be HxWx3 uint8 BGR, got {frame.shape} {frame.dtype}")
            fsize = (frame.shape[1], frame.shape[0])
            if writer is None:
                size = fsize
                writer = cv2.VideoWriter(str(path), cv2.CAP_FFMPEG,
                                         cv2.VideoWriter_fourcc(*fourcc), float(fps), size)
                if not writer.isOpened():
                    raise RuntimeError(f"cv2.VideoWriter did not open {path} with fourcc {fourcc!r}")
            elif fsize != size:
                raise ValueError(f"frame {count} is {fsize}, expected {size}")
            writer.write(frame)
            count += 1
    finally:
        if writer is not None:
            writer.release()
    if writer is None:
        raise ValueError("no frames to write")
    return count


def read_frames(path: str | os.PathLike[str], limit: int = 10_000) -> list[np.ndarray]:
    """Every frame ``cv2.VideoCapture`` (FFmpeg) decodes, in order, up to the first failed read."""
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    if not cap.isOpened():
        raise ValueError(f"{path} does not open as a video")
    frames: list[np.ndarray] = []
    while len(frames) < limit:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


def video_info(path: str | os.PathLike[str]) -> tuple[int, tuple[int, int], float]:
    """(frames decoded, (width, height), FPS) of a video file."""
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    if not cap.isOpened():
        raise ValueError(f"{path} does not open as a video")
    size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    fps = cap.get(cv2.CAP_PROP_FPS)
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n, size, fps


def truncate_file(path: str | os.PathLike[str], keep_fraction: float) -> int:
    """Cut the file to its first ``keep_fraction`` (0..1) of bytes, like an interrupted download.

    Returns the new size in bytes. Note an .mp4 from VideoWriter has its ``moov`` index at the
    end, so any truncation makes it unopenable; an .avi keeps its header at the front.
    """
    if not 0.0 <= keep_fraction <= 1.0:
        raise ValueError("keep_fraction must be in [0, 1]")
    size = os.path.getsize(path)
    new = int(size * keep_fraction)
    os.truncate(path, new)
    return new


def corrupt_middle(
    path: str | os.PathLike[str],
    start_fraction: float = 0.45,
    length: int | float = 0.1,
    *,
    fill: Literal["random", "zeros"] = "random",
    seed: int = 0,
) -> tuple[int, int]:
    """Overwrite a span of bytes in the middle of a file, keeping its size, header and end intact.

    The span starts at ``start_fraction`` of the file; ``length`` is bytes (int) or a fraction of
    the file (float). ``fill`` is seeded random bytes or zeros. Returns ``(offset, nbytes)``.
    """
    size = os.path.getsize(path)
    nbytes = int(length if isinstance(length, int) else size * length)
    offset = int(size * start_fraction)
    if nbytes <= 0 or offset <= 0 or offset + nbytes >= size:
        raise ValueError(f"span {offset}+{nbytes} does not fit inside {size} bytes")
    if fill == "zeros":
        junk = bytes(nbytes)
    else:
        junk = np.random.default_rng(seed).integers(0, 256, nbytes, dtype=np.uint8).tobytes()
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(junk)
    return offset, nbytes


# --------------------------------------------------------------------------- stamps

_STAMP_COLS, _STAMP_ROWS = 12, 2          # 24 cells: 2 sync + 16 data + 6 CRC bits
_STAMP_DATA_BITS, _STAMP_CRC_BITS = 16, 6
STAMP_MAX = (1 << _STAMP_DATA_BITS) - 1


def _stamp_cell(shape: tuple[int, ...]) -> int:
    h, w = shape[0] & ~1, shape[1] & ~1  # even: VideoWriter crops 333x251 to 332x250
    s = min(16, w // 24, h // 12)
    s = max(s, 4)
    if _STAMP_COLS * s > w or _STAMP_ROWS * s > h:
        raise ValueError(f"frame {w}x{h} too small for a stamp (needs {_STAMP_COLS * 4}x{_STAMP_ROWS * 4})")
    return s


def _stamp_bits(index: int) -> list[int]:
    crc = zlib.crc32(struct.pack(">H", index)) & ((1 << _STAMP_CRC_BITS) - 1)
    data = [(index >> (_STAMP_DATA_BITS - 1 - i)) & 1 for i in range(_STAMP_DATA_BITS)]
    check = [(crc >> (_STAMP_CRC_BITS - 1 - i)) & 1 for i in range(_STAMP_CRC_BITS)]
    return [1, 0] + data + check


def stamp_frame(image: np.ndarray, index: int) -> np.ndarray:
    """Burn ``index`` (0..65535) into the top-left corner of ``image`` in place; returns ``image``.

    12x2 square cells (side ``clamp(min(w // 24, h // 12), 4, 16)`` px, so 4-16 px; the reader
    recomputes it from the frame size rounded down to even, so it survives VideoWriter's odd-size
    crop, but not a resize): a white and a
    black sync cell, 16 data bits MSB first, 6 bits of CRC-32. White = 1, black = 0.
    """
    if not 0 <= index <= STAMP_MAX:
        raise ValueError(f"stamp index {index} outside 0..{STAMP_MAX}")
    s = _stamp_cell(image.shape)
    for i, bit in enumerate(_stamp_bits(index)):
        r, c = divmod(i, _STAMP_COLS)
        image[r * s:(r + 1) * s, c * s:(c + 1) * s] = 255 if bit else 0
    return image


def read_stamp(image: np.ndarray) -> int | None:
    """The index :func:`stamp_frame` wrote, or None if there is none (sync, contrast or CRC fail).

    Each cell is read as the mean of its central half; a cell between 64 and 192 (neither clearly
    black nor white) makes the stamp unreadable rather than guessed.
    """
    try:
        s = _stamp_cell(image.shape)
    except ValueError:
        return None
    gray = image if image.ndim == 2 else image.mean(axis=2)
    q0, q1 = s // 4, s - s // 4
    bits = []
    for i in range(_STAMP_COLS * _STAMP_ROWS):
        r, c = divmod(i, _STAMP_COLS)
        v = float(gray[r * s + q0:r * s + q1, c * s + q0:c * s + q1].mean())
        if 64 < v < 192:
            return None
        bits.append(1 if v >= 128 else 0)
    if bits[:2] != [1, 0]:
        return None
    index = int("".join(map(str, bits[2:2 + _STAMP_DATA_BITS])), 2)
    return index if _stamp_bits(index) == bits else None


# --------------------------------------------------------------------------- live MJPEG camera

DownMode = Literal["refuse", "hang"]
DropStyle = Literal["cut", "rst", "stall"]


class MjpegServer:
    """A live MJPEG-over-HTTP camera on 127.0.0.1, in background threads.

    ``GET <path>`` answers ``multipart/x-mixed-replace; boundary=<boundary>``, each part an
    ``image/jpeg`` with ``Content-Length`` (unless ``content_length=False``, as some cameras do), paced at ``fps`` per connection. ``frames`` is a sequence
    (looped forever) or an iterator (shared by all connections; when it runs out the stream ends
    cleanly). Frame sequence numbers are global across connections, so a reader that reconnects
    continues where the camera is, and with ``stamp=True`` each frame carries its sequence number
    (:func:`stamp_frame`) -- a reader can check order, gaps and duplicates.

    Faults:

    * ``drop_after=N``: every connection is ended after N frames, ``drop_style``: ``"cut"`` sends
      half of the next JPEG then closes (FIN), ``"rst"`` closes with an RST, ``"stall"`` stops
      sending but keeps the socket open (until the down time is over, or :meth:`stop`).
    * ``down_for=seconds``: after each drop the camera is down: ``down_mode="refuse"`` closes the
      listening socket (connect gets ECONNREFUSED) then listens again on the SAME port;
      ``"hang"`` accepts connections and never answers (until it is back up, then closes them).
    * :meth:`drop_clients` and :meth:`go_down` trigger the same by hand.

    Counters (read any time): ``frames_sent``, ``connections`` (streams started), ``drops``,
    ``hung`` (connections accepted while down), ``requests`` (all HTTP requests). ``events`` is a
    list of ``(monotonic_time, text)`` for debugging. Use as a context manager, or ``start()`` /
    ``stop()``; all threads are daemons and ``stop()`` closes every socket.
    """

    def __init__(
        self,
        frames: Sequence[np.ndarray] | Iterable[np.ndarray],
        fps: float = 15.0,
        *,
        path: str = "/stream.mjpg",
        boundary: str = "frameboundary",
        quality: int = 90,
        stamp: bool = False,
        content_length: bool = True,
        drop_after: int | None = None,
        drop_style: DropStyle = "cut",
        down_for: float = 0.0,
        down_mode: DownMode = "refuse",
        port: int = 0,
    ) -> None:
        if isinstance(frames, Sequence):
            if len(frames) == 0:
                raise ValueError("no frames")
            self._seq: Sequence[np.ndarray] | None = frames
            self._it: Iterator[np.ndarray] | None = None
        else:
            self._seq, self._it = None, iter(frames)
        self.fps = float(fps)
        self.path = path
        self.boundary = boundary
        self.quality = int(quality)
        self.stamp = stamp
        self.content_length = content_length
        self.drop_after = drop_after
        self.drop_style: DropStyle = drop_style
        self.down_for = float(down_for)
        self.down_mode: DownMode = down_mode
        self.port = int(port)
        self.frames_sent = 0
        self.connections = 0
        self.drops = 0
        self.hung = 0
        self.requests = 0
        self.events: list[tuple[float, str]] = []
        self._next_index = 0
        self._drop_gen = 0
        self._drop_style_now: DropStyle = drop_style
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._up = threading.Event()
        self._down_until = 0.0
        self._down_mode_now: DownMode = down_mode
        self._listener: socket.socket | None = None
        self._clients: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._accept_thread: threading.Thread | None = None

    # ---- lifecycle
    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port><path>``."""
        return f"http://127.0.0.1:{self.port}{self.path}"

    def start(self) -> MjpegServer:
        self._listen()
        self._accept_thread = threading.Thread(target=self._accept_loop, name="mjpeg-accept", daemon=True)
        self._accept_thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Close the listener and every client connection; join the threads (daemons anyway)."""
        self._stop.set()
        self._close_listener()
        with self._lock:
            clients = list(self._clients)
        for c in clients:
            _hard_close(c)
        deadline = time.monotonic() + timeout
        for t in [self._accept_thread, *self._threads]:
            if t is not None and t is not threading.current_thread():
                t.join(max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> MjpegServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- fault injection
    def drop_clients(self, style: DropStyle | None = None) -> None:
        """End every current stream at its next frame (``style`` defaults to ``drop_style``),
        without down time. Counted in ``drops``."""
        with self._lock:
            self._drop_gen += 1
            self._drop_style_now = style or self.drop_style
        self._log("drop_clients")

    def go_down(self, seconds: float, mode: DownMode | None = None) -> None:
        """Be down for ``seconds`` from now (``mode`` defaults to ``down_mode``), then come back."""
        with self._lock:
            self._down_until = time.monotonic() + seconds
            self._down_mode_now = mode or self.down_mode
            mode_now = self._down_mode_now
        self._log(f"down {seconds:.2f}s {mode_now}")
        if mode_now == "refuse":
            self._close_listener()

    @property
    def is_down(self) -> bool:
        return time.monotonic() < self._down_until

    def wait_frames(self, n: int, timeout: float = 10.0) -> bool:
        """Block until ``frames_sent >= n``; False on timeout."""
        deadline = time.monotonic() + timeout
        while self.frames_sent < n:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    # ---- internals
    def _log(self, text: str) -> None:
        self.events.append((time.monotonic(), text))

    def _listen(self) -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(16)
        self.port = s.getsockname()[1]
        with self._lock:
            self._listener = s
        self._log(f"listening on {self.port}")

    def _close_listener(self) -> None:
        with self._lock:
            s, self._listener = self._listener, None
        if s is not None:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
            self._log("listener closed")

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            if self._listener is None:
                if self.is_down:
                    time.sleep(0.01)
                    continue
                try:
                    self._listen()
                except OSError as e:  # port briefly unavailable: retry
                    self._log(f"re-listen failed: {e}")
                    time.sleep(0.05)
                    continue
            lst = self._listener
            if lst is None:
                continue
            try:
                ready, _, _ = select.select([lst], [], [], 0.05)
                if not ready:
                    continue
                conn, _addr = lst.accept()
            except (OSError, ValueError):
                continue  # listener closed under us (go_down / stop)
            with self._lock:
                self._clients.add(conn)
            t = threading.Thread(target=self._serve, args=(conn,), name="mjpeg-client", daemon=True)
            self._threads = [x for x in self._threads if x.is_alive()] + [t]
            t.start()

    def _next_frame(self) -> tuple[int, np.ndarray] | None:
        with self._lock:
            i = self._next_index
            if self._seq is not None:
                frame = self._seq[i % len(self._seq)]
            else:
                assert self._it is not None
                try:
                    frame = next(self._it)
                except StopIteration:
                    return None
            self._next_index += 1
        if self.stamp:
            frame = stamp_frame(np.array(frame, copy=True), i % (STAMP_MAX + 1))
        return i, frame

    def _encode(self, frame: np.ndarray) -> bytes:
        ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            raise RuntimeError("JPEG encode failed")
        return buf.tobytes()

    def _part(self, jpeg: bytes) -> bytes:
        length = f"Content-Length: {len(jpeg)}\r\n" if self.content_length else ""
        head = f"--{self.boundary}\r\nContent-Type: image/jpeg\r\n{length}\r\n".encode()
        return head + jpeg + b"\r\n"

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.is_down:  # down in "hang" mode: accept and never answer
                with self._lock:
                    self.hung += 1
                self._log("hung a connection")
                while self.is_down and not self._stop.is_set():
                    time.sleep(0.01)
                return
            request = _read_request(conn, timeout=5.0)
            with self._lock:
                self.requests += 1
            if request is None:
                return
            method, target = request
            if method != "GET" or target.split("?")[0] != self.path:
                conn.sendall(b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                return
            conn.sendall((
                "HTTP/1.0 200 OK\r\n"
                f"Content-Type: multipart/x-mixed-replace; boundary={self.boundary}\r\n"
                "Cache-Control: no-cache, no-store\r\nPragma: no-cache\r\nConnection: close\r\n\r\n"
            ).encode())
            with self._lock:
                self.connections += 1
            self._log("stream started")
            self._stream(conn)
        except OSError:
            pass  # client went away, or we closed it
        finally:
            with self._lock:
                self._clients.discard(conn)
            _hard_close(conn)

    def _stream(self, conn: socket.socket) -> None:
        t0 = time.monotonic()
        sent = 0
        gen = self._drop_gen
        while not self._stop.is_set():
            if self.drop_after is not None and sent >= self.drop_after:
                self._drop(conn, self.drop_style, self.down_for)
                return
            if self._drop_gen != gen:
                self._drop(conn, self._drop_style_now, 0.0)
                return
            item = self._next_frame()
            if item is None:
                conn.sendall(f"--{self.boundary}--\r\n".encode())
                self._log("source exhausted")
                return
            _, frame = item
            part = self._part(self._encode(frame))
            delay = t0 + sent / self.fps - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                return
            conn.sendall(part)
            sent += 1
            with self._lock:
                self.frames_sent += 1

    def _drop(self, conn: socket.socket, style: DropStyle, down_for: float) -> None:
        with self._lock:
            self.drops += 1
        self._log(f"drop ({style})")
        if down_for > 0:
            self.go_down(down_for)
        if style == "cut":
            item = self._next_frame()
            if item is not None:
                part = self._part(self._encode(item[1]))
                conn.sendall(part[: len(part) // 2])
        elif style == "rst":
            _hard_close(conn, rst=True)
        elif style == "stall":  # until the down time is over (no down time: until stop())
            while not self._stop.is_set() and (self.is_down or down_for <= 0):
                if self._stop.wait(0.02):
                    break


def _read_request(conn: socket.socket, timeout: float) -> tuple[str, str] | None:
    conn.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data and len(data) < 65536:
        chunk = conn.recv(4096)
        if not chunk:
            return None
        data += chunk
    conn.settimeout(None)
    parts = data.split(b"\r\n", 1)[0].decode("latin-1").split()
    return (parts[0], parts[1]) if len(parts) >= 2 else None


def _hard_close(conn: socket.socket, rst: bool = False) -> None:
    try:
        if rst:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        else:
            conn.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        conn.close()
    except OSError:
        pass


# --------------------------------------------------------------------------- UDP MPEG-TS

class UdpTsStreamer:
    """Send an MPEG-TS file to ``udp://127.0.0.1:<port>`` in 7x188-byte datagrams, paced over
    ``duration`` seconds (the file's length: frames / fps), looping ``loops`` times (0 = forever).

    Write the file with ``write_video(path.ts, frames, fps)`` (mp4v in MPEG-TS). The receiver must
    be listening (``cv2.VideoCapture(streamer.url, cv2.CAP_FFMPEG)``) before data matters: UDP has
    no connection, datagrams sent before it binds are lost, like joining a live multicast; the
    first frames decoded after joining mid-GOP are garbage ("first frame is no keyframe") yet
    ``read()`` returns True. ``delay`` seconds of silence before the first datagram let a reader
    open first.
    """

    def __init__(self, ts_path: str | os.PathLike[str], duration: float, *, port: int | None = None,
                 loops: int = 0, delay: float = 0.0) -> None:
        self.data = Path(ts_path).read_bytes()
        self.duration = float(duration)
        self.loops = loops
        self.delay = float(delay)
        if port is None:  # pick a free UDP port
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
        self.port = port
        self.datagrams_sent = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"udp://127.0.0.1:{self.port}"

    def start(self) -> UdpTsStreamer:
        self._thread = threading.Thread(target=self._run, name="udp-ts", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)

    def __enter__(self) -> UdpTsStreamer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        chunk = 188 * 7
        pkts = [self.data[i:i + chunk] for i in range(0, len(self.data), chunk)]
        gap = self.duration / max(len(pkts), 1)
        if self._stop.wait(self.delay):
            return
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            loop = 0
            while not self._stop.is_set() and (self.loops == 0 or loop < self.loops):
                t0 = time.monotonic()
                for i, p in enumerate(pkts):
                    delay = t0 + i * gap - time.monotonic()
                    if delay > 0 and self._stop.wait(delay):
                        return
                    s.sendto(p, ("127.0.0.1", self.port))
                    self.datagrams_sent += 1
                loop += 1
