"""The real-media test helpers (tests/media.py) against the real cv2.VideoCapture / FFmpeg.

Fast (~10 s): small frames, short videos, a live MJPEG camera on 127.0.0.1 at 30 fps.
"""
from __future__ import annotations

import socket
import time

import cv2
import numpy as np
import pytest

from media import (
    SAMPLES,
    MjpegServer,
    UdpTsStreamer,
    corrupt_middle,
    pan_zoom_frames,
    read_frames,
    read_stamp,
    stamp_frame,
    truncate_file,
    write_video,
)

FPS = 15.0


def stamped(n: int, size: tuple[int, int] = (333, 251), photo: str = "dog.jpg") -> list[np.ndarray]:
    return [stamp_frame(f, i) for i, f in enumerate(pan_zoom_frames(SAMPLES / photo, size, n))]


def open_live(url: str, timeout_ms: int = 2000) -> cv2.VideoCapture:
    return cv2.VideoCapture(url, cv2.CAP_FFMPEG,
                            [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, timeout_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, timeout_ms])


# --------------------------------------------------------------------------- frames and stamps

@pytest.mark.parametrize("size", [(333, 251), (320, 240), (64, 48)])
def test_pan_zoom_is_deterministic_moving_and_sized(size):
    a = list(pan_zoom_frames(SAMPLES / "kite.jpg", size, 12))
    b = list(pan_zoom_frames(SAMPLES / "kite.jpg", size, 12))
    assert len(a) == 12
    assert all(f.shape == (size[1], size[0], 3) and f.dtype == np.uint8 for f in a)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    steps = [np.abs(x.astype(int) - y).mean() for x, y in zip(a, a[1:])]
    assert min(steps) > 1.0  # the camera really moves every frame


def test_stamp_round_trip_in_memory_and_rejects_unstamped():
    frames = list(pan_zoom_frames(SAMPLES / "horses.jpg", (160, 120), 20))
    assert all(read_stamp(f) is None for f in frames)  # no false positives on photos
    for i in [0, 1, 2, 255, 1000, 65535]:
        assert read_stamp(stamp_frame(frames[i % 20].copy(), i)) == i
    f = stamp_frame(frames[0].copy(), 77)
    f[:, :40] = 255 - f[:, :40]  # flip some cells: sync/CRC must catch it
    assert read_stamp(f) is None
    with pytest.raises(ValueError):
        stamp_frame(np.zeros((6, 40, 3), np.uint8), 1)


@pytest.mark.parametrize("name,fourcc", [("v.mp4", "mp4v"), ("v.avi", "MJPG")])
def test_stamps_survive_a_real_video_file(tmp_path, name, fourcc):
    path = tmp_path / name
    assert write_video(path, stamped(90), FPS, fourcc) == 90
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    assert cap.get(cv2.CAP_PROP_FRAME_COUNT) == 90
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(FPS)
    cap.release()
    frames = read_frames(path)
    assert [read_stamp(f) for f in frames] == list(range(90))
    assert frames[0].shape == (250, 332, 3)  # odd sizes are cropped to even by the writer


def test_write_video_refuses_what_it_cannot_write(tmp_path):
    with pytest.raises(RuntimeError):  # no H.264 encoder in the opencv-python wheel
        write_video(tmp_path / "x.mp4", stamped(2), FPS, "avc1")
    frames = [np.zeros((48, 64, 3), np.uint8), np.zeros((50, 64, 3), np.uint8)]
    with pytest.raises(ValueError):
        write_video(tmp_path / "y.avi", frames)


def test_truncate_and_corrupt_keep_what_they_promise(tmp_path):
    path = tmp_path / "v.avi"
    write_video(path, stamped(60, (160, 120)), FPS)
    original = path.read_bytes()
    offset, nbytes = corrupt_middle(path, 0.4, 0.2, fill="zeros")
    data = path.read_bytes()
    assert len(data) == len(original)
    assert data[:offset] == original[:offset] and data[offset + nbytes:] == original[offset + nbytes:]
    assert data[offset:offset + nbytes] == bytes(nbytes) != original[offset:offset + nbytes]
    # The damaged MJPEG file still plays: frames in order, a gap where the zeros are, no repeats.
    got = [read_stamp(f) for f in read_frames(path)]
    assert None not in got and got == sorted(set(got)) and got[0] == 0 and got[-1] == 59
    assert 30 < len(got) < 60
    # A truncated AVI opens and stops early, in order.
    assert truncate_file(path, 0.5) == len(original) // 2
    got = [read_stamp(f) for f in read_frames(path)]
    assert 20 < len(got) < 40 and got[:20] == list(range(20))


# --------------------------------------------------------------------------- live MJPEG camera

@pytest.mark.parametrize("content_length", [True, False])
def test_mjpeg_server_streams_stamped_frames_in_order(content_length):
    frames = list(pan_zoom_frames(SAMPLES / "person.jpg", (320, 240), 30))
    with MjpegServer(frames, fps=30, stamp=True, content_length=content_length) as srv:
        cap = open_live(srv.url)
        assert cap.isOpened()
        got = []
        for _ in range(40):  # more than the 30-frame loop: sequence numbers keep counting
            ok, frame = cap.read()
            assert ok
            got.append(read_stamp(frame))
        cap.release()
        assert frame.shape == (240, 320, 3)
        assert got == list(range(40))
        assert srv.connections == 1 and srv.frames_sent >= 40


def test_mjpeg_server_404_for_other_paths():
    with MjpegServer([np.zeros((48, 64, 3), np.uint8)], fps=30) as srv:
        cap = open_live(srv.url.replace("/stream.mjpg", "/nope"))
        assert not cap.isOpened()
        assert srv.connections == 0 and srv.requests >= 1


def test_drop_refuse_and_come_back_on_the_same_port():
    frames = list(pan_zoom_frames(SAMPLES / "giraffe.jpg", (160, 120), 30))
    with MjpegServer(frames, fps=30, stamp=True, drop_after=10, drop_style="rst",
                     down_for=1.0, down_mode="refuse") as srv:
        port = srv.port
        cap = open_live(srv.url)
        got = []
        t0 = time.monotonic()
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            got.append(read_stamp(frame))
            assert time.monotonic() - t0 < 5, "the drop never happened"
        cap.release()
        assert got == list(range(10))
        assert srv.drops == 1 and srv.is_down
        # Down: the port is really closed, connect() is refused at once.
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        t = time.monotonic()
        assert not open_live(srv.url).isOpened()
        assert time.monotonic() - t < 0.5
        # Back up on the same port: a new capture continues the sequence.
        deadline = time.monotonic() + 5
        while not (cap := open_live(srv.url)).isOpened():
            assert time.monotonic() < deadline, "the server did not come back"
            time.sleep(0.1)
        ok, frame = cap.read()
        cap.release()
        assert ok and read_stamp(frame) == 10
        assert srv.port == port and srv.connections == 2


def test_drop_clients_by_hand_then_reconnect_at_once():
    frames = list(pan_zoom_frames(SAMPLES / "horses.jpg", (160, 120), 30))
    with MjpegServer(frames, fps=30, stamp=True) as srv:
        cap = open_live(srv.url)
        assert [read_stamp(cap.read()[1]) for _ in range(5)] == list(range(5))
        srv.drop_clients("cut")
        t = time.monotonic()
        while cap.read()[0]:
            assert time.monotonic() - t < 2.0
        cap.release()
        assert srv.drops == 1
        cap = open_live(srv.url)  # no down time
        ok, frame = cap.read()
        cap.release()
        assert ok and read_stamp(frame) > 5 and srv.connections == 2


def test_stall_is_ended_by_the_read_timeout():
    frames = list(pan_zoom_frames(SAMPLES / "eagle.jpg", (160, 120), 10))
    with MjpegServer(frames, fps=30, drop_after=5, drop_style="stall") as srv:
        cap = open_live(srv.url, timeout_ms=800)
        for _ in range(5):
            assert cap.read()[0]
        t = time.monotonic()
        ok, _ = cap.read()
        elapsed = time.monotonic() - t
        cap.release()
        assert not ok and 0.6 < elapsed < 3.0


def test_hung_server_is_ended_by_the_open_timeout():
    with MjpegServer([np.zeros((48, 64, 3), np.uint8)], fps=30) as srv:
        srv.go_down(5.0, "hang")
        t = time.monotonic()
        cap = open_live(srv.url, timeout_ms=800)
        elapsed = time.monotonic() - t
        assert not cap.isOpened() and 0.6 < elapsed < 3.0
        assert srv.hung == 1
        t = time.monotonic()
    assert time.monotonic() - t < 2.0  # stop() does not wait out the down time


def test_stop_closes_live_clients():
    srv = MjpegServer([np.zeros((48, 64, 3), np.uint8)], fps=30).start()
    cap = open_live(srv.url)
    assert cap.read()[0]
    t = time.monotonic()
    srv.stop()
    assert time.monotonic() - t < 2.0
    reads = 0
    while cap.read()[0]:  # frames FFmpeg already had, then the end (not a hang)
        reads += 1
        assert reads < 200 and time.monotonic() - t < 3.0
    cap.release()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", srv.port), timeout=1).close()


def test_udp_mpegts_stream(tmp_path):
    path = tmp_path / "v.ts"
    n = write_video(path, stamped(30, (160, 120)), FPS)
    with UdpTsStreamer(path, duration=n / FPS, delay=0.3) as streamer:
        cap = open_live(streamer.url, timeout_ms=3000)
        assert cap.isOpened()
        got = []
        for _ in range(20):
            ok, frame = cap.read()
            assert ok
            got.append(read_stamp(frame))
        cap.release()
    # Joined live it may miss the first frames (garbage until a keyframe: stamp None), then the
    # file's frames in order, looping 29 -> 0.
    while got and got[0] is None:
        got.pop(0)
    assert len(got) >= 10
    assert got == [(got[0] + k) % 30 for k in range(len(got))]
