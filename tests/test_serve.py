"""`detect --serve` (issue 14): the live view, through the real CLI and real HTTP clients.

The CLI runs as a subprocess on a short clip or a real MJPEG camera on 127.0.0.1
(`media.MjpegServer`), serving on a free port (`--serve 127.0.0.1:0`; the URL is read from
its stderr). Without a browser: the MJPEG stream parses into one valid JPEG per processed
frame, SSE frame indices increase and match the JSON lines, the token guards every
endpoint, ten viewers with one stalled, SIGINT, port in use and bad hosts. In a browser:
Debian's Chromium, headless, driven by Playwright (never a downloaded browser).
"""
from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import ROOT, SAMPLES, require
from media import MjpegServer, pan_zoom_frames, read_frames, video_info, write_video

from test_stream_live import assert_no_traceback, error_lines, json_records, summary

from yolo_tpu import detect
from yolo_tpu.detections import Detections
from yolo_tpu.serve import ROUTES, TOKEN_ENV, LiveView
from yolo_tpu.sources import Frame
from yolo_tpu.stream import Stats

CLIP_SIZE = (352, 288)    # the clip's width, height: the page's picture must become this
CAM_SIZE = (320, 240)
URL_LINE = re.compile(r"yolo_tpu: live view: (http://\S+/)")
CLI_TIMEOUT = 60
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


# ---------------------------------------------------------------- fixtures and helpers

@pytest.fixture(scope="module")
def dog_clip(tmp_path_factory) -> Path:
    """2 s of a pan over samples/dog.jpg (the model finds the dog in it), 15 FPS."""
    path = tmp_path_factory.mktemp("serve") / "dog.mp4"
    write_video(path, pan_zoom_frames(SAMPLES / "dog.jpg", CLIP_SIZE, 30), fps=15.0)
    return path


@pytest.fixture(scope="module")
def cam_frames() -> list[np.ndarray]:
    return list(pan_zoom_frames(SAMPLES / "dog.jpg", CAM_SIZE, 30))


class Served:
    """The CLI running with --serve: its URL (from stderr), its stderr so far."""

    def __init__(self, model: Path, *args: str, env: dict[str, str] | None = None,
                 cwd: Path = ROOT):
        cmd = [sys.executable, "-m", "yolo_tpu.detect", "--model", str(model),
               "--serve", "127.0.0.1:0", *args]
        env = {**os.environ, **(env or {}), "PYTHONPATH": str(ROOT)}  # this tree's code
        self.proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True, env=env)
        self.lines: list[str] = []
        self._url: str | None = None
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line)
            if m := URL_LINE.search(line):
                self._url = m.group(1)
                self._ready.set()
        self._ready.set()  # ended: no URL coming

    @property
    def url(self) -> str:
        assert self._ready.wait(CLI_TIMEOUT), "no live view URL on stderr"
        assert self._url, f"the CLI ended without serving:\n{''.join(self.lines)}"
        return self._url

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1].strip("/"))

    def finish(self, sig: int | None = None, timeout: float = CLI_TIMEOUT) -> tuple[int, str]:
        if sig is not None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"the CLI did not end within {timeout} s:\n{''.join(self.lines)}")
        self._reader.join(5)
        return self.proc.returncode, "".join(self.lines)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@contextlib.contextmanager
def served(model: Path, *args: str, env: dict[str, str] | None = None,
           cwd: Path = ROOT) -> Iterator[Served]:
    cli = Served(model, *args, env=env, cwd=cwd)
    try:
        yield cli
    finally:
        cli.kill()


def get(port: int, path: str, headers: dict[str, str] | None = None,
        timeout: float = 10) -> http.client.HTTPResponse:
    """A GET on 127.0.0.1:port; the response with its headers read (body not yet)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    conn.request("GET", path, headers=headers or {})
    return conn.getresponse()


def mjpeg_parts(resp: http.client.HTTPResponse) -> Iterator[tuple[dict[str, str], bytes]]:
    """(part headers, JPEG bytes) of a multipart/x-mixed-replace stream, until its closing
    boundary; AssertionError on anything malformed (the test's own strict reader)."""
    ctype = resp.getheader("Content-Type", "")
    m = re.fullmatch(r"multipart/x-mixed-replace; boundary=(\S+)", ctype)
    assert m, ctype
    boundary = b"--" + m.group(1).encode()
    while True:
        line = resp.readline()
        if not line:
            raise EOFError("stream ended without its closing boundary")
        if line.rstrip(b"\r\n") == boundary + b"--":
            return
        assert line.rstrip(b"\r\n") == boundary, line
        headers = {}
        while (line := resp.readline()) not in (b"\r\n", b""):
            key, _, value = line.decode("latin-1").partition(":")
            headers[key.strip().lower()] = value.strip()
        assert headers.get("content-type") == "image/jpeg", headers
        jpeg = resp.read(int(headers["content-length"]))
        assert resp.read(2) == b"\r\n"
        yield headers, jpeg


def sse_events(resp: http.client.HTTPResponse) -> Iterator[tuple[str, str]]:
    """(event type, data) of a text/event-stream until the server closes it."""
    assert resp.getheader("Content-Type", "").startswith("text/event-stream")
    kind, data = "message", []
    while line := resp.readline():
        text = line.decode("utf-8").rstrip("\n")
        if not text:
            if data:
                yield kind, "\n".join(data)
            kind, data = "message", []
        elif text.startswith("event: "):
            kind = text[7:]
        elif text.startswith("data: "):
            data.append(text[6:])


def decode(jpeg: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "not a valid JPEG"
    return image


class Reader(threading.Thread):
    """A viewer in a thread: MJPEG parts or SSE events as they come, until the end."""

    def __init__(self, port: int, path: str):
        super().__init__(daemon=True)
        self.resp = get(port, path, timeout=CLI_TIMEOUT)
        self.items: list = []
        self.error: BaseException | None = None
        self.path = path
        self.progress = threading.Condition()

    def run(self) -> None:
        try:
            parts = mjpeg_parts(self.resp) if "mjpg" in self.path else sse_events(self.resp)
            for item in parts:
                with self.progress:
                    self.items.append(item)
                    self.progress.notify_all()
        except BaseException as e:  # noqa: BLE001 - reported by the test
            self.error = e

    def wait_items(self, n: int) -> None:
        """Block until `n` items came (or the stream ended)."""
        with self.progress:
            self.progress.wait_for(lambda: len(self.items) >= n or not self.is_alive(),
                                   CLI_TIMEOUT)

    def result(self) -> list:
        self.join(CLI_TIMEOUT)
        assert not self.is_alive(), f"{self.path}: stream did not end"
        assert self.error is None, f"{self.path}: {self.error!r}"
        return self.items


def frames_of(parts: list[tuple[dict, bytes]]) -> list[int]:
    return [int(h["x-frame-index"]) for h, _ in parts]


def assert_follows(frames: list[int], recs: list[dict], share: float = 0.8) -> None:
    """What a viewer that keeps up was sent: frames the run processed, in order, each
    once, ending with the run's last frame, and (newest-frame delivery lets a viewer the
    scheduler held back skip one) nearly all of them from its first on."""
    processed = [d["frame"] for d in recs]
    assert frames and all(a < b for a, b in zip(frames, frames[1:])), frames
    assert set(frames) <= set(processed), (frames, processed)
    assert frames[-1] == processed[-1], (frames, processed)  # the end is always shown
    since = [f for f in processed if f >= frames[0]]
    assert len(frames) >= share * len(since), (frames, since)


def data_records(events: list[tuple[str, str]]) -> list[dict]:
    return [json.loads(d) for k, d in events if k == "message"]


# ---------------------------------------------------------------- without a browser

def test_mjpeg_parts_and_sse_events_follow_the_run(tiny_int8_model, tmp_path, cam_frames):
    """A camera slower than the model: a viewer that keeps up gets the processed frames in
    order, once each, as valid JPEGs of the camera's size, and SSE events equal to their
    JSON lines, always up to the last frame; the streams close with the run (--max-frames)."""
    out = tmp_path / "dets.jsonl"
    with MjpegServer(cam_frames, fps=10) as cam, \
            served(tiny_int8_model, "--source", cam.url, "--max-frames", "20", "--timeout",
                   "3", "--json", str(out), "--serve-fps", "0") as cli:
        mjpeg, sse = Reader(cli.port, "/stream.mjpg"), Reader(cli.port, "/events")
        mjpeg.start()
        sse.start()
        mjpeg.wait_items(1)
        health = json.loads(get(cli.port, "/health").read())
        status, err = cli.finish()
        parts, events = mjpeg.result(), sse.result()
    assert status == 0, err
    assert_no_traceback(err)
    assert error_lines(err) == []
    assert {"source", "model", "backend", "frames", "fps", "up_since"} <= set(health)
    assert health["source"] == cam.url and health["model"] == tiny_int8_model.name
    assert health["state"] == "running" and health["frames"] >= 1 and health["backend"]
    recs = json_records(out)
    assert len(recs) == 20
    # MJPEG: from the first part the viewer got, the processed frames, in order, once
    shown = frames_of(parts)
    assert_follows(shown, recs)
    assert len(shown) >= 10  # the viewer connected before most of the run
    for _, jpeg in parts:
        assert decode(jpeg).shape == (CAM_SIZE[1], CAM_SIZE[0], 3)
    # SSE: an event per processed frame, the --json line itself
    lines = data_records(events)
    assert_follows([d["frame"] for d in lines], recs)
    assert lines == [d for d in recs if d["frame"] in {x["frame"] for x in lines}]
    stats = [json.loads(d) for k, d in events if k == "stats"]
    assert stats and stats[-1]["state"] == "closed" and stats[-1]["frames"] == 20
    assert {"fps", "inference_ms", "dropped", "reconnects"} <= set(stats[-1])
    assert summary(err)["frames"] == 20


def test_token_is_required_on_every_endpoint(tiny_int8_model, dog_clip):
    token = "s3cret-token"
    with served(tiny_int8_model, "--video", str(dog_clip), env={TOKEN_ENV: token}) as cli:
        port = cli.port
        for path in [*ROUTES, "/missing"]:
            for query, headers in [("", {}), ("?token=wrong", {}),
                                   ("", {"Authorization": "Bearer wrong"}),
                                   (f"?token={token}x", {}), ("?token=", {}),
                                   ("", {"Authorization": token})]:
                resp = get(port, path + query, headers)
                assert resp.status == 401, (path, query, headers)
                assert resp.getheader("WWW-Authenticate", "").startswith("Bearer")
                resp.close()
            for query, headers in [(f"?token={token}", {}),
                                   ("", {"Authorization": f"Bearer {token}"})]:
                resp = get(port, path + query, headers)
                assert resp.status == {"/missing": 404, "/favicon.ico": 204}.get(path, 200)
                if path == "/stream.mjpg":
                    _, jpeg = next(mjpeg_parts(resp))
                    assert decode(jpeg).shape[:2] == (CLIP_SIZE[1], CLIP_SIZE[0])
                elif path == "/":
                    assert b"TOKEN_REQUIRED = true" in resp.read()
                elif path == "/health":
                    assert json.loads(resp.read())["source"] == str(dog_clip)
                resp.close()
        status, err = cli.finish(signal.SIGTERM)
    assert status == 143, err
    assert_no_traceback(err)
    assert token not in err


def test_ten_viewers_one_stalled(tiny_int8_model, tmp_path):
    """Five MJPEG viewers, four SSE viewers and one that never reads: the stalled one fills
    its socket and skips frames; the others, and the JSON lines, get every frame."""
    frames = list(pan_zoom_frames(SAMPLES / "dog.jpg", (640, 480), 30))
    out = tmp_path / "dets.jsonl"
    with MjpegServer(frames, fps=12) as cam, \
            served(tiny_int8_model, "--source", cam.url, "--max-frames", "40", "--timeout",
                   "3", "--json", str(out), "--serve-fps", "0") as cli:
        stalled = socket.socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect
        stalled.connect(("127.0.0.1", cli.port))
        stalled.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")
        readers = [Reader(cli.port, "/stream.mjpg") for _ in range(5)] + \
                  [Reader(cli.port, "/events") for _ in range(4)]
        for r in readers:
            r.start()
        status, err = cli.finish()
        stalled.settimeout(5)
        got = b""
        with contextlib.suppress(OSError):
            while chunk := stalled.recv(1 << 16):
                got += chunk
        stalled.close()
        results = [r.result() for r in readers]
    assert status == 0, err
    assert_no_traceback(err)
    assert error_lines(err) == []
    recs = json_records(out)
    assert len(recs) == 40
    for parts in results[:5]:
        assert len(parts) >= 20
        assert_follows(frames_of(parts), recs)
    for events in results[5:]:
        lines = data_records(events)
        assert len(lines) >= 20
        assert_follows([d["frame"] for d in lines], recs)
    # the stalled viewer: far fewer frames reached it than the others got
    assert got.startswith(b"HTTP/1.0 200")
    assert 0 < got.count(b"X-Frame-Index:") < 20, got.count(b"X-Frame-Index:")


def test_sigint_closes_the_server_outputs_intact(tiny_int8_model, tmp_path, cam_frames):
    """SIGINT with viewers connected, one of them gone mid-frame: exit 130, JSON lines and
    video finalized, every stream closed properly, the port closed, no traceback."""
    out, video = tmp_path / "dets.jsonl", tmp_path / "live.mp4"
    token = "tok"
    with MjpegServer(cam_frames, fps=30) as cam, \
            served(tiny_int8_model, "--source", cam.url, "--timeout", "3", "--json", str(out),
                   "--save", str(video), "--serve-token", token) as cli:
        port = cli.port
        mjpeg = Reader(port, f"/stream.mjpg?token={token}")
        sse = Reader(port, f"/events?token={token}")
        mjpeg.start()
        sse.start()
        with socket.create_connection(("127.0.0.1", port)) as quitter:
            quitter.sendall(f"GET /stream.mjpg?token={token} HTTP/1.1\r\n\r\n".encode())
            assert quitter.recv(1000)  # part of a frame, then gone without a word (RST)
            quitter.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        mjpeg.wait_items(8)
        status, err = cli.finish(signal.SIGINT)
        parts, events = mjpeg.result(), sse.result()
    assert status == 130, err
    assert_no_traceback(err)
    assert error_lines(err) == []
    assert len(parts) >= 8
    assert [k for k, _ in events][-1] == "stats"
    assert json.loads(events[-1][1])["state"] == "closed"
    recs = json_records(out)
    assert summary(err)["frames"] == len(recs) >= 8
    # a live source's video plays in real time: it lasts from the first frame to the last
    _, _, fps = video_info(video)
    span_s = (recs[-1]["t_ms"] - recs[0]["t_ms"]) / 1e3
    assert abs(len(read_frames(video)) - (round(span_s * fps) + 1)) <= 1
    assert not [p for p in tmp_path.iterdir() if ".partial" in p.name]
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2)


def test_a_served_file_plays_in_real_time_and_ends_with_its_outputs(tiny_int8_model,
                                                                    dog_clip, tmp_path):
    """With --serve a file is delivered at its frame rate (15 FPS: the run cannot be
    faster); with --json the run ends with the file instead of holding the last frame."""
    out = tmp_path / "dets.jsonl"
    with served(tiny_int8_model, "--video", str(dog_clip), "--json", str(out)) as cli:
        status, err = cli.finish()
    assert status == 0, err
    assert_no_traceback(err)
    assert len(json_records(out)) == 30
    s = summary(err)
    assert s["frames"] == 30 and 0 < s["fps"] <= 15 * 1.05, s
    assert "shows its last frame" not in err


def test_serve_fps_caps_the_jpegs_not_the_events():
    """--serve-fps 5: frames published at ~100 a second with a JPEG viewer and an event
    viewer watching: at most 5 JPEGs a second are made; every frame has its event."""
    view = LiveView("cam", stream_fps=5)
    image = np.full((48, 64, 3), 128, np.uint8)
    stats, records, seq = Stats(), [], 0
    with view.viewer(wants_jpeg=True), view.viewer():
        t0 = time.monotonic()
        for i in range(50):
            stats.frames += 1
            view.publish(Frame(i, i * 10.0, image), Detections.empty(), 1.0, 100.0, None,
                         stats)
            seq, line = view.next_record(seq, 1.0)
            records.append(json.loads(line)["frame"])
            time.sleep(0.01)  # a 100 FPS source
        elapsed = time.monotonic() - t0
        part = view.next_jpeg(0, 1.0)
    view.close()
    assert records == list(range(50))
    assert 1 <= view.encoded <= elapsed * 5 + 1, (view.encoded, elapsed)
    assert part is not None and b"Content-Type: image/jpeg" in part[2]


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        yield s.getsockname()[1]


def test_port_in_use_is_one_error_before_the_model(capsys, dog_clip, busy_port):
    args = ["--model", "no-such-model.tflite", "--video", str(dog_clip)]
    assert detect.main([*args, "--serve", str(busy_port)]) == 2
    err = capsys.readouterr().err
    assert error_lines(err) == [f"error: --serve 127.0.0.1:{busy_port}: cannot listen: "
                                "Address already in use"]
    assert "no-such-model" not in err  # the model was never looked at
    assert detect.main([*args, "--serve", "no-such-host.invalid:8080"]) == 2
    (line,) = error_lines(capsys.readouterr().err)
    assert line.startswith("error: --serve no-such-host.invalid:8080: unknown host")


@pytest.mark.parametrize("text", ["http", "80800", "host:", ":80", "1.2.3.4:x"])
def test_bad_serve_address_is_an_argument_error(capsys, text):
    with pytest.raises(SystemExit) as e:
        detect.main(["--video", "x.mp4", "--serve", text])
    assert e.value.code == 2
    assert "argument --serve: " in capsys.readouterr().err


def test_other_interfaces_without_a_token_warn(capsys, dog_clip, monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    args = ["--model", "no-such-model.tflite", "--video", str(dog_clip)]
    assert detect.main([*args, "--serve", "0.0.0.0:0"]) == 2  # then the model is missing
    err = capsys.readouterr().err
    (warning,) = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert "without a token: anyone who can reach this machine" in warning
    assert TOKEN_ENV in warning
    assert error_lines(err) == ["error: no-such-model.tflite: no such model file (build it "
                                "with `make demo` or `python -m converters`)"]
    monkeypatch.setenv(TOKEN_ENV, "t")
    assert detect.main([*args, "--serve", "0.0.0.0:0"]) == 2
    assert "warning: " not in capsys.readouterr().err


def test_serve_applies_to_moving_sources_only(capsys):
    assert detect.main(["--image", str(SAMPLES / "dog.jpg"), "--serve", "0"]) == 2
    assert error_lines(capsys.readouterr().err) == [
        "error: --serve applies to --video, --cam and --source only"]


# ---------------------------------------------------------------- in a browser

def browser_missing() -> str | None:
    """Why the browser test cannot run here; CI installs Chromium, so there it must run."""
    if not os.path.exists(CHROMIUM):
        return f"no {CHROMIUM} (apt-get install chromium; .ci/run does)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright's Python package is not installed (pip install playwright)"
    return None


@pytest.fixture(scope="module")
def browser():
    require(browser_missing(), "browser")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def test_page_in_a_real_browser(tiny_int8_model, dog_clip, browser, tmp_path):
    """The page shows the annotated picture at the source's size, the dog in the detection
    list and the run's figures; it fits a phone's width; the screenshot is not blank.
    With YOLO_TPU_SCREENSHOT=PATH the desktop screenshot is also saved there: the README's
    is made by `YOLO_TPU_SCREENSHOT=docs/images/live_view.jpg pytest tests/test_serve.py
    -k browser`."""
    from playwright.sync_api import expect
    with served(tiny_int8_model, "--video", dog_clip.name, cwd=dog_clip.parent) as cli:
        page = browser.new_page(viewport={"width": 1000, "height": 620})
        problems: list[str] = []  # script errors, CSP violations, failed requests
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.on("console", lambda m: m.type == "error" and problems.append(m.text))
        page.goto(cli.url, wait_until="domcontentloaded")  # the MJPEG <img> never "loads"
        natural = "[document.getElementById('stream').naturalWidth, " \
                  "document.getElementById('stream').naturalHeight]"
        deadline = time.monotonic() + CLI_TIMEOUT
        # (the page's CSP forbids eval, which wait_for_function needs: poll instead)
        while page.evaluate(natural)[0] == 0 and time.monotonic() < deadline:
            page.wait_for_timeout(50)
        assert page.evaluate(natural) == list(CLIP_SIZE)
        expect(page.locator("#detections .label", has_text=re.compile("^dog$")).first) \
            .to_be_visible(timeout=CLI_TIMEOUT * 1000)
        expect(page.locator("#fps")).not_to_have_text("-", timeout=CLI_TIMEOUT * 1000)
        assert page.inner_text("#model") == tiny_int8_model.name
        assert page.inner_text("#source") == dog_clip.name
        shot = tmp_path / "page.png"
        page.screenshot(path=str(shot))
        if target := os.environ.get("YOLO_TPU_SCREENSHOT"):  # .jpg or .png, by name
            page.screenshot(path=target, **({"quality": 85} if target.endswith(".jpg")
                                            else {}))
        image = cv2.imread(str(shot))
        assert image.shape[:2] == (620, 1000)
        assert image.std() > 20  # not one flat colour
        # the picture area holds the video (many colours), not an empty box
        box = page.locator("#stream").bounding_box()
        picture = image[int(box["y"]):int(box["y"] + box["height"]),
                        int(box["x"]):int(box["x"] + box["width"])]
        assert picture.size and picture.std() > 20
        # readable on a phone: no sideways scrolling, the picture as wide as the screen
        page.set_viewport_size({"width": 390, "height": 844})
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        assert page.locator("#stream").bounding_box()["width"] >= 300
        assert problems == []
        page.close()
        status, err = cli.finish(signal.SIGINT)
    assert status == 130, err
    assert_no_traceback(err)


def test_track_ids_and_counts_in_a_real_browser(tiny_int8_model, browser, tmp_path):
    """--track --line: the detection list shows each detection's track id and the page's
    counts reach the line's exact counts (two people walk across it, one each way)."""
    pytest.importorskip("scipy", reason="pip install '.[track]'")
    from playwright.sync_api import expect
    from test_counting import EXPECTED, LINE, walkers
    clip = tmp_path / "walk.mp4"
    write_video(clip, walkers(), fps=20)
    with served(tiny_int8_model, "--video", clip.name, "--conf", "0.5", "--track",
                "--line", LINE, cwd=tmp_path) as cli:
        page = browser.new_page(viewport={"width": 1000, "height": 620})
        problems: list[str] = []
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.on("console", lambda m: m.type == "error" and problems.append(m.text))
        page.goto(cli.url, wait_until="domcontentloaded")
        expect(page.locator("#detections .track", has_text=re.compile(r"^#\d+$")).first) \
            .to_be_visible(timeout=CLI_TIMEOUT * 1000)
        expect(page.locator("#counts-section")).to_be_visible()
        door = EXPECTED["lines"]["door"]
        for direction in ("in", "out"):
            n = door[direction]["person"]
            expect(page.locator(f'#counts dd[data-count="door {direction}"]')) \
                .to_have_text(f"{n} (person {n})", timeout=CLI_TIMEOUT * 1000)
        assert problems == []
        page.close()
        status, err = cli.finish(signal.SIGINT)
    assert status == 130, err
    assert "counts: door in 2 (person 2) out 2 (person 2)" in err
    assert_no_traceback(err)
