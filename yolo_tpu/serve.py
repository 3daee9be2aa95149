"""`detect --serve`: watch a run from a browser (a live view for boxes without a display).

    GET /             the page (yolo_tpu/static/live.html): picture, detections, figures
    GET /stream.mjpg  annotated frames, multipart/x-mixed-replace JPEG (at most
                      --serve-fps a second, default 15: the newest frame each time)
    GET /events       Server-Sent Events: one `--json` line per processed frame, and a
                      `stats` event about twice a second
    GET /health       JSON: source, model, backend, frames, fps, up since, ...

The standard library's ThreadingHTTPServer does the HTTP (a thread per connection).
Inference never waits for a viewer: the loop's output thread hands each processed frame to
`LiveView.publish`, which only swaps a reference under a lock. One encoder thread turns the
newest frame into a JPEG, once per frame and only while a /stream.mjpg viewer is connected;
each viewer keeps the sequence number of the last frame it sent and takes the newest one
when it is ready for more, so a slow or stalled viewer skips frames for itself only.

Bound to 127.0.0.1 unless a host is given. With a token (`--serve-token` or
$YOLO_TPU_SERVE_TOKEN) every endpoint wants it, as `?token=` or `Authorization: Bearer`.
No endpoint reads or writes files or takes any other input.

Out of file descriptors it neither spins nor starves /health: connections are capped
below what the process has left (`connection_caps`), streams below that, and a new
connection at the cap closes the oldest one that has not sent its request yet; should
`accept` still fail (EMFILE: the run itself used the descriptors up), a reserve descriptor
is given up to take the waiting connection and close it at once, so each failed accept
clears one instead of being retried in a busy loop.
"""
from __future__ import annotations

import errno
import hmac
import ipaddress
import json
import logging
import os
import resource
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

import cv2
import numpy as np

from . import __version__
from .detections import Detections
from .draw import PALETTE, draw_detections
from .sinks import frame_record
from .sources import Frame

__all__ = ["DEFAULT_HOST", "TOKEN_ENV", "ServeError", "LiveView", "LiveServer",
           "parse_address", "is_loopback"]

DEFAULT_HOST = "127.0.0.1"
TOKEN_ENV = "YOLO_TPU_SERVE_TOKEN"
BOUNDARY = "yolo_tpu_frame"
JPEG_QUALITY = 80
STREAM_FPS = 15.0         # default cap of /stream.mjpg: smooth in a browser, light on a Pi's
                          # CPU and Wi-Fi (10 viewers of 640x480 at 15 FPS: ~9 MB/s)
MAX_STREAMS = 32          # concurrent /stream.mjpg + /events connections (a Pi has few threads)
MAX_CONNECTIONS = 64      # open connections of any kind (streams included)
HEALTH_SLOTS = 8          # connections beyond the streams' cap: /health and the page stay open
OUT_OF_FDS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
MAX_BACKOFF_S = 0.5       # accept's pause when even the reserve descriptor is gone
WARN_EVERY_S = 10.0       # the "out of file descriptors" warning, at most this often
STATS_EVERY_S = 0.5       # `stats` SSE events, and the SSE keep-alive
SEND_BUFFER = 256 * 1024  # per streaming socket: a slow viewer blocks (and skips frames)
                          # after a few frames instead of buffering seconds of stale ones
SOCKET_TIMEOUT_S = 30.0   # a viewer that takes no data for this long is dropped

log = logging.getLogger("yolo_tpu")


class ServeError(ValueError):
    """--serve cannot listen where asked: the message says where and why."""


# ---------------------------------------------------------------- address

def parse_address(text: str) -> tuple[str, int]:
    """`8080`, `HOST:8080`, `[::1]:8080` -> (host, port); host defaults to 127.0.0.1."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = DEFAULT_HOST, text
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected [HOST:]PORT with PORT in 0-65535, got {text!r}")
    if sep and not host:
        raise ValueError(f"empty host in {text!r} (leave it out for {DEFAULT_HOST})")
    return host, int(port)


def is_loopback(host: str) -> bool:
    """Whether `host` is this machine only (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


def url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


# ---------------------------------------------------------------- the newest frame

class LiveView:
    """The newest processed frame and the run's figures, for any number of viewers.

    Written by the loop's output thread (`publish`), read by one thread per viewer
    (`next_jpeg`, `next_record`, `stats`). Nothing here ever waits for a viewer.
    """

    def __init__(self, source: str, stream_fps: float = STREAM_FPS) -> None:
        self.source = source
        self.interval_s = 1.0 / stream_fps if stream_fps > 0 else 0.0  # between JPEGs
        self.model: str | None = None
        self.backend: str | None = None
        self.size: tuple[int, int] | None = None
        self.state = "starting"
        self.error: str | None = None
        self.up_since = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self._cond = threading.Condition()
        self._closed = False
        self._seq = 0                    # frames published
        self._latest: tuple[Frame, Detections] | None = None
        self._newest: tuple | None = None    # what the encoder needs of the newest frame
        self._encoded_seq = 0                # the frame the JPEG below is of
        self._jpeg: tuple[int, int, bytes] | None = None   # (seq, frame index, MJPEG part)
        self._record: tuple[int, bytes] | None = None      # (seq, JSON line)
        self._jpeg_viewers = 0
        self._viewers = 0
        self._frames = self._dropped = self._reconnects = 0
        self._fps = 0.0
        self._infer_ms: deque[float] = deque(maxlen=30)
        self.encoded = 0                 # JPEGs made (tests: once per frame at most)
        self.overlay: Callable[[np.ndarray], np.ndarray] | None = None  # zones and lines
        self._counts: dict | None = None
        self._encoder = threading.Thread(target=self._encode_loop, name="yolo_tpu-jpeg",
                                         daemon=True)
        self._encoder.start()

    # -- the loop's side

    def set_model(self, model: str, backend: str) -> None:
        self.model, self.backend, self.state = model, backend, "running"

    def publish(self, frame: Frame, detections: Detections, infer_ms: float, fps: float,
                annotated: np.ndarray | None, stats: Any) -> None:
        """A processed frame (with its annotated image when the loop drew one anyway)."""
        with self._cond:
            self._seq += 1
            self._latest = (frame, detections)
            self._newest = (self._seq, frame, detections, infer_ms, fps, annotated)
            self._frames, self._fps = stats.frames, fps
            self._dropped, self._reconnects = stats.dropped, stats.reconnects
            self._counts = getattr(stats, "counts", None)
            self._infer_ms.append(infer_ms)
            h, w = frame.image.shape[:2]
            self.size = (w, h)
            self._cond.notify_all()

    def finish(self, stats: Any) -> None:
        """The run is over (the server may go on showing its last frame)."""
        with self._cond:
            self.state = "stopped" if stats.stopped else "ended"
            self.error = stats.error
            self._frames, self._dropped = stats.frames, stats.dropped
            self._reconnects, self._fps = stats.reconnects, stats.fps
            self._counts = getattr(stats, "counts", None)
            self._cond.notify_all()

    def close(self, drain_s: float = 1.0) -> None:
        """End the viewers' streams, once the last frame is encoded for those watching
        (waiting at most `drain_s`): a run that ends shows its end."""
        with self._cond:
            self._cond.wait_for(lambda: self._jpeg_viewers == 0 or self._newest is None or (
                self._jpeg is not None and self._jpeg[0] == self._newest[0]), drain_s)
            self._closed = True
            self._cond.notify_all()
        self._encoder.join(timeout=2.0)

    # -- encoding

    def _encode_loop(self) -> None:
        from .stream import draw_overlay  # stream imports nothing from here
        next_at = 0.0
        while True:
            with self._cond:
                # at most one JPEG per interval: frames in between are never encoded
                self._cond.wait_for(lambda: self._closed, next_at - time.monotonic())
                self._cond.wait_for(lambda: self._closed or (
                    self._jpeg_viewers > 0 and self._newest is not None
                    and self._newest[0] != self._encoded_seq))
                if self._closed:
                    return
                seq, frame, dets, ms, fps, annotated = self._newest
                self._encoded_seq = seq
                next_at = time.monotonic() + self.interval_s
            if annotated is None:
                annotated = draw_detections(frame.image, dets)
                if self.overlay is not None:
                    annotated = self.overlay(annotated)
                annotated = draw_overlay(annotated, fps, ms)
            ok, buf = cv2.imencode(".jpg", annotated, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            if not ok:
                continue
            head = (f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {buf.size}"
                    f"\r\nX-Frame-Index: {frame.index}\r\n\r\n").encode()
            part = b"".join((head, buf.data, b"\r\n"))  # built once, sent to every viewer
            with self._cond:
                if self._jpeg_viewers == 0:
                    continue  # the viewer left meanwhile: keep no stale JPEG
                self._jpeg = (seq, frame.index, part)
                self.encoded += 1
                self._cond.notify_all()

    # -- the viewers' side

    def viewer(self, wants_jpeg: bool = False) -> "_Viewer":
        return _Viewer(self, wants_jpeg)

    def next_jpeg(self, after: int, timeout: float | None = None
                  ) -> tuple[int, int, bytes] | None:
        """The newest JPEG newer than `after` (a sequence number): (seq, frame index,
        multipart part: boundary, headers, JPEG); None when the view closes. Waits up to
        `timeout` (then the same part)."""
        with self._cond:
            self._cond.wait_for(lambda: self._closed or
                                (self._jpeg is not None and self._jpeg[0] > after), timeout)
            if self._jpeg is not None and self._jpeg[0] > after:
                return self._jpeg  # even when closing: the last frame is still sent
            return None if self._closed else self._jpeg

    def next_record(self, after: int, timeout: float) -> tuple[int, bytes | None] | None:
        """(seq, the newest frame's JSON line) when a frame newer than `after` came within
        `timeout`, else (after, None); None when the view closes."""
        with self._cond:
            self._cond.wait_for(lambda: self._closed or self._seq > after, timeout)
            if self._seq <= after or self._latest is None:
                return None if self._closed else (after, None)
            if self._record is None or self._record[0] != self._seq:  # once per frame
                frame, dets = self._latest
                line = json.dumps(frame_record(self.source, frame, dets)).encode()
                self._record = (self._seq, line)
            return self._record

    @property
    def closed(self) -> bool:
        return self._closed

    def stats(self) -> dict[str, Any]:
        """The run's figures now: /health and the page's `stats` events."""
        with self._cond:
            ms = float(np.median(self._infer_ms)) if self._infer_ms else None
            return {"state": self.state, "source": self.source, "model": self.model,
                    "backend": self.backend,
                    "width": self.size[0] if self.size else None,
                    "height": self.size[1] if self.size else None,
                    "frames": self._frames, "fps": round(self._fps, 2),
                    "inference_ms": None if ms is None else round(ms, 2),
                    "dropped": self._dropped, "reconnects": self._reconnects,
                    "viewers": self._viewers, "error": self.error,
                    "up_since": self.up_since, "version": __version__,
                    **({"counts": self._counts} if self._counts is not None else {})}


class _Viewer:
    """Counts a connected viewer while its stream is open (JPEG viewers start the encoder)."""

    def __init__(self, view: LiveView, wants_jpeg: bool) -> None:
        self.view, self.wants_jpeg = view, wants_jpeg

    def __enter__(self) -> "_Viewer":
        with self.view._cond:
            self.view._viewers += 1
            self.view._jpeg_viewers += self.wants_jpeg
            self.view._cond.notify_all()
        return self

    def __exit__(self, *exc: object) -> None:
        with self.view._cond:
            self.view._viewers -= 1
            self.view._jpeg_viewers -= self.wants_jpeg
            if self.view._jpeg_viewers == 0:  # nobody watches: the next one gets a fresh JPEG
                self.view._jpeg, self.view._encoded_seq = None, 0


# ---------------------------------------------------------------- HTTP

def _page(token_required: bool) -> bytes:
    """The page, with the class colours of the boxes (draw.PALETTE, as CSS rgb)."""
    html = resources.files("yolo_tpu").joinpath("static", "live.html").read_text("utf-8")
    colours = json.dumps([f"rgb({r},{g},{b})" for b, g, r in PALETTE])
    return html.replace("/*PALETTE*/[]", colours).replace(
        "/*TOKEN_REQUIRED*/false", json.dumps(token_required)).encode()


def _open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 16  # no /proc: a guess at what a run holds


def connection_caps() -> tuple[int, int]:
    """(connections, streams) the server may hold: at most half the descriptors this
    process has left under RLIMIT_NOFILE (the run's own files keep the rest), streams
    HEALTH_SLOTS fewer so that /health always finds one."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    spare = MAX_CONNECTIONS if soft == resource.RLIM_INFINITY else (soft - _open_fds()) // 2
    conns = max(2, min(MAX_CONNECTIONS, spare))
    return conns, max(1, min(MAX_STREAMS, conns - HEALTH_SLOTS, conns // 2))


def _reserve() -> int | None:
    try:
        return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True       # a stalled viewer never holds up the end of the run
    request_queue_size = 64

    def __init__(self, address: tuple, family: int, view: LiveView, token: str | None):
        self.address_family = family
        self.view, self.token = view, token
        self.page = _page(token is not None)
        self.clients: set[socket.socket] = set()
        self.pending: dict[socket.socket, None] = {}  # accepted, no request yet: oldest first
        self.streams = 0
        self.max_connections, self.max_streams = connection_caps()
        self.shed = 0                                  # connections closed unanswered
        self.lock = threading.Lock()
        self._reserve = _reserve()
        self._backoff = 0.0
        self._warned_at = -WARN_EVERY_S
        super().__init__(address, _Handler)

    # -- descriptors: a cap, an eviction, and an accept that never spins

    def get_request(self) -> tuple[socket.socket, Any]:
        try:
            request = super().get_request()
        except OSError as e:
            if e.errno in OUT_OF_FDS:
                self._out_of_descriptors(e)
            raise  # socketserver drops this round and selects again
        self._backoff = 0.0
        return request

    def _out_of_descriptors(self, e: OSError) -> None:
        """accept failed for want of a descriptor, leaving the connection queued: give up
        the reserve one to take it and close it (the client sees a closed connection, not a
        hang), else pause, so that the next select does not wake at once for the same one."""
        now = time.monotonic()
        if now - self._warned_at >= WARN_EVERY_S:
            self._warned_at = now
            log.warning("live view: out of file descriptors (%s, %d connections open): "
                        "closing new connections until some are free", e.strerror,
                        len(self.clients))
        if self._reserve is not None:
            os.close(self._reserve)
            self._reserve = None
            self.socket.setblocking(False)  # the queued connection may have gone meanwhile
            try:
                conn, _ = self.socket.accept()
                conn.close()
                self.shed += 1
            except OSError:
                pass
            finally:
                self.socket.setblocking(True)
            self._reserve = _reserve()
            if self._reserve is not None:
                return
        self._backoff = min(MAX_BACKOFF_S, max(0.01, self._backoff * 2))
        time.sleep(self._backoff)
        self._reserve = _reserve()

    def verify_request(self, request: Any, client_address: Any) -> bool:
        """Admit a connection under the cap, closing the oldest one without a request yet
        to make room; with none to close (all streaming or busy), a 503."""
        victim = None
        with self.lock:
            if len(self.clients) >= self.max_connections:
                victim = next(iter(self.pending), None)
                if victim is None:
                    self.shed += 1
                    full = True
                else:
                    del self.pending[victim]
                    self.clients.discard(victim)
                    full = False
            else:
                full = False
            if not full:
                self.clients.add(request)
                self.pending[request] = None
        if victim is not None:
            self.shed += 1
            try:
                victim.shutdown(socket.SHUT_RDWR)  # its thread reads EOF and closes it
            except OSError:
                pass
        if full:
            try:
                request.setblocking(False)
                request.send(b"HTTP/1.0 503 Service Unavailable\r\nRetry-After: 5\r\n"
                             b"Content-Length: 0\r\nConnection: close\r\n\r\n")
            except OSError:
                pass
            return False
        return True

    def started(self, conn: socket.socket) -> None:
        """The connection sent its request: no longer the first to be closed."""
        with self.lock:
            self.pending.pop(conn, None)

    def shutdown_request(self, request: Any) -> None:
        with self.lock:
            self.clients.discard(request)
            self.pending.pop(request, None)
        super().shutdown_request(request)

    def server_close(self) -> None:
        super().server_close()
        if self._reserve is not None:
            os.close(self._reserve)
            self._reserve = None

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A viewer that went away is not an error; anything else is one line, no traceback."""
        import sys
        e = sys.exc_info()[1]
        if isinstance(e, (ConnectionError, TimeoutError)):
            return
        log.warning("live view: request from %s failed: %s", client_address[0], e)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = f"yolo_tpu/{__version__}"
    sys_version = ""
    timeout = SOCKET_TIMEOUT_S

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # one line per request would bury the run's own output

    def finish(self) -> None:
        try:
            super().finish()
        except (ConnectionError, TimeoutError):
            pass

    def do_GET(self) -> None:  # noqa: N802
        self.server.started(self.connection)
        url = urlsplit(self.path)
        if not self._authorized(url.query):
            self._send(401, "application/json", b'{"error": "token required"}\n',
                       {"WWW-Authenticate": 'Bearer realm="yolo_tpu"'})
            return
        route = ROUTES.get(url.path)
        if route is None:
            self._send(404, "application/json", b'{"error": "not found"}\n')
            return
        try:
            route(self)
        except (ConnectionError, TimeoutError):
            pass  # the viewer went away mid-frame: its stream ends, nothing else happens

    def _authorized(self, query: str) -> bool:
        token = self.server.token
        if token is None:
            return True
        given = parse_qs(query).get("token", [""])[-1]
        auth = self.headers.get("Authorization", "")
        if auth[:7].lower() == "bearer ":
            given = given or auth[7:].strip()
        return hmac.compare_digest(given.encode(), token.encode())

    def _send(self, status: int, ctype: str, body: bytes,
              extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self._headers(ctype, extra)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _headers(self, ctype: str, extra: dict[str, str] | None = None) -> None:
        self.send_header("Content-Type", ctype)
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")  # the token may be in the URL
        for k, v in (extra or {}).items():
            self.send_header(k, v)

    def _open_stream(self, ctype: str) -> bool:
        """Start a streaming response; False (503 sent) when too many are open."""
        with self.server.lock:
            if self.server.streams >= self.server.max_streams:
                full = True
            else:
                full, self.server.streams = False, self.server.streams + 1
        if full:
            self._send(503, "application/json", b'{"error": "too many viewers"}\n',
                       {"Retry-After": "5"})
            return False
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.send_response(200)
        self._headers(ctype, {"Connection": "close", "X-Accel-Buffering": "no"})
        self.end_headers()
        return True

    def _close_stream(self) -> None:
        with self.server.lock:
            self.server.streams -= 1

    # -- endpoints

    def page(self) -> None:
        self._send(200, "text/html; charset=utf-8", self.server.page, {
            "Content-Security-Policy": "default-src 'self'; script-src 'unsafe-inline'; "
                                       "style-src 'unsafe-inline'; img-src 'self'"})

    def no_icon(self) -> None:
        """Browsers ask for one; answering keeps their console (and our tests) clean."""
        self.send_response(204)
        self._headers("image/x-icon")
        self.end_headers()

    def health(self) -> None:
        body = json.dumps(self.server.view.stats()).encode() + b"\n"
        self._send(200, "application/json", body)

    def mjpeg(self) -> None:
        if not self._open_stream(f"multipart/x-mixed-replace; boundary={BOUNDARY}"):
            return
        view, seq = self.server.view, 0
        try:
            with view.viewer(wants_jpeg=True):
                while (item := view.next_jpeg(seq)) is not None:
                    seq, _, part = item
                    self.wfile.write(part)
            self.wfile.write(f"--{BOUNDARY}--\r\n".encode())
        finally:
            self._close_stream()

    def events(self) -> None:
        if not self._open_stream("text/event-stream; charset=utf-8"):
            return
        view, seq, last_stats = self.server.view, 0, 0.0
        try:
            with view.viewer():
                self.wfile.write(b"retry: 1000\n\n")
                while (item := view.next_record(seq, STATS_EVERY_S)) is not None:
                    seq, line = item
                    out = b"data: " + line + b"\n\n" if line is not None else b""
                    if time.monotonic() - last_stats >= STATS_EVERY_S:
                        out += b"event: stats\ndata: " + json.dumps(view.stats()).encode() \
                            + b"\n\n"
                        last_stats = time.monotonic()
                    if out:
                        self.wfile.write(out)
                self.wfile.write(b"event: stats\ndata: " + json.dumps(
                    {**view.stats(), "state": "closed"}).encode() + b"\n\n")
        finally:
            self._close_stream()


# path -> handler method: adding an endpoint is adding a row and a method
ROUTES: dict[str, Callable[[_Handler], None]] = {
    "/": _Handler.page,
    "/stream.mjpg": _Handler.mjpeg,
    "/events": _Handler.events,
    "/health": _Handler.health,
    "/favicon.ico": _Handler.no_icon,
}


class LiveServer:
    """The HTTP server of one run: bound at construction (so a port in use is known before
    the model loads), serving from `start()` until `close()`."""

    def __init__(self, host: str, port: int, source: str, token: str | None = None,
                 stream_fps: float = STREAM_FPS):
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as e:
            raise ServeError(f"--serve {url_host(host)}:{port}: unknown host "
                             f"({getattr(e, 'strerror', None) or e})") from None
        family, _, _, _, address = infos[0]
        self.view = LiveView(source, stream_fps)
        try:
            self.httpd = _Server(address, family, self.view, token)
        except OSError as e:
            self.view.close()
            raise ServeError(f"--serve {url_host(host)}:{port}: cannot listen: "
                             f"{e.strerror or e}") from None
        self.host, self.port = host, self.httpd.server_address[1]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{url_host(self.host)}:{self.port}/"

    def start(self) -> "LiveServer":
        self._thread = threading.Thread(target=self.httpd.serve_forever,
                                        kwargs={"poll_interval": 0.1},
                                        name="yolo_tpu-serve", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """End every stream (they send their closing boundary), stop listening, and cut
        off viewers that do not read (a stalled socket would otherwise block its thread)."""
        self.view.close()
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join(timeout=2.0)
        self.httpd.server_close()
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:  # streams finishing their last write
            with self.httpd.lock:
                if self.httpd.streams == 0:
                    break
            time.sleep(0.01)
        with self.httpd.lock:
            clients = list(self.httpd.clients)
        for conn in clients:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
