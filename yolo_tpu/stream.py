"""The loop behind video files, cameras and streams: frames -> Detector -> sinks.

Three threads overlap the stages: capture (decode; letterbox for files) -> inference ->
output (draw, encode, write JSON). OpenCV and the interpreter release the GIL while they work, so on a 2-core
box decoding and encoding run beside `invoke()` instead of after it.

Between capture and inference:
- a file goes through a small blocking queue: every frame, in order, none lost;
- a live source goes through a one-frame mailbox: the newest frame replaces a waiting
  one (counted as dropped), so the detections follow the scene, not a growing backlog.
Between inference and output a small blocking queue keeps every processed frame.
"""
from __future__ import annotations

import contextlib
import dataclasses
import queue
import signal
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import cv2
import numpy as np

from .detections import Detections
from .draw import draw_detections
from .sources import Frame, SourceError, VideoSource
from .supervised import DeviceStopped
from .text import counted

__all__ = ["Stats", "Newest", "ResultSink", "ImageSink", "LiveSink", "StopEvent", "run",
           "draw_overlay", "stop_on_signals"]

_END = object()  # end-of-stream marker in the queues


class ResultSink(Protocol):
    """Takes every processed frame with its detections (JSON lines)."""
    def write(self, frame: Frame, detections: Detections) -> None: ...
    def close(self, complete: bool = True) -> None: ...


class ImageSink(Protocol):
    """Takes every processed frame annotated (video file, window)."""
    def write(self, image: np.ndarray, t_ms: float) -> None: ...
    def close(self, complete: bool = True) -> None: ...


class LiveSink(Protocol):
    """Takes every processed frame, with the run's figures so far (`serve.LiveView`);
    `annotated` is the drawn frame when another sink needed one, else None."""
    def publish(self, frame: Frame, detections: Detections, infer_ms: float, fps: float,
                annotated: np.ndarray | None, stats: "Stats") -> None: ...


@dataclass
class Stats:
    """What a run did, for the summary line and the batch table."""
    frames: int = 0                 # frames run through the model
    dropped: int = 0                # live frames replaced by a newer one before inference
    decode_errors: int = 0
    reconnects: int = 0
    wall_s: float = 0.0
    infer_ms: list[float] = field(default_factory=list)
    per_class: Counter = field(default_factory=Counter)
    error: str | None = None        # why the run ended early (source gave up, sink failed)
    stopped: bool = False           # ended by a signal, a closed window or a frame limit
    counts: dict | None = None      # --zone / --line: counts per class (events.Analysis)
    device_stopped: bool = False    # the Edge TPU stopped (supervised.DeviceStopped)

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0

    def percentiles(self) -> tuple[float, float, float]:
        if not self.infer_ms:
            return (0.0, 0.0, 0.0)
        p50, p90, p99 = np.percentile(self.infer_ms, [50, 90, 99])
        return float(p50), float(p90), float(p99)

    def summary(self) -> str:
        """`240 frames, 0 dropped, 0 decode errors, 41.2 FPS, inference ms p50 9.1 p90 ...`."""
        p50, p90, p99 = self.percentiles()
        text = (f"{counted(self.frames, 'frame')}, {self.dropped} dropped, "
                f"{counted(self.decode_errors, 'decode error')}, "
                f"{counted(sum(self.per_class.values()), 'detection')}, {self.fps:.1f} FPS, "
                f"inference ms p50 {p50:.1f} p90 {p90:.1f} p99 {p99:.1f}")
        if self.reconnects:
            text += f", {counted(self.reconnects, 'reconnect')}"
        if self.counts:
            from .events import counts_text
            text += f"; counts: {counts_text(self.counts)}"
        return text

    def to_dict(self) -> dict[str, Any]:
        p50, p90, p99 = self.percentiles()
        return {"frames": self.frames, "dropped": self.dropped,
                "decode_errors": self.decode_errors, "reconnects": self.reconnects,
                "seconds": round(self.wall_s, 3), "fps": round(self.fps, 2),
                "inference_ms": {"p50": round(p50, 2), "p90": round(p90, 2),
                                 "p99": round(p99, 2)},
                "detections": dict(sorted(self.per_class.items())),
                "error": self.error, "stopped": self.stopped,
                **({"counts": self.counts} if self.counts is not None else {})}


def damage(stats: Stats, source: VideoSource, every: int = 1) -> str | None:
    """What was wrong with a file that played to its end, or None: frames that did not
    decode, and frames the container announced but never delivered (truncation)."""
    if source.live or stats.stopped or stats.error:
        return None
    problems = []
    if stats.decode_errors:
        problems.append(f"{stats.decode_errors} undecodable frames skipped")
    expected = -(-source.frame_count // every)
    missing = expected - stats.frames - -(-stats.decode_errors // every)
    if source.frame_count and missing > 0:
        problems.append(f"video ends early: {stats.frames} of {expected} frames decoded "
                        "(truncated or damaged file)")
    return f"{source.name}: {'; '.join(problems)}" if problems else None


class Newest:
    """A one-slot mailbox: `put` replaces an unread item (and counts it), `get` waits."""

    def __init__(self) -> None:
        self._item: Any = None
        self._full = False
        self._cond = threading.Condition()
        self.replaced = 0

    def put(self, item: Any) -> None:
        with self._cond:
            if self._full:
                if self._item is _END:
                    return  # the end marker is never overwritten
                self.replaced += 1
            self._item, self._full = item, True
            self._cond.notify()

    def get(self, timeout: float | None = None) -> Any:
        with self._cond:
            if not self._cond.wait_for(lambda: self._full, timeout):
                raise queue.Empty
            item, self._item, self._full = self._item, None, False
            return item


def draw_overlay(image: np.ndarray, fps: float, infer_ms: float) -> np.ndarray:
    """`12.3 FPS  9.1 ms` in the bottom-left corner, on a dark band so it reads on any
    scene (bottom: the labels of boxes touching the top edge stay visible)."""
    text = f"{fps:.1f} FPS  {infer_ms:.1f} ms"
    h, w = image.shape[:2]
    scale = max(min(w, h) / 900, 0.4)
    thick = max(int(round(scale * 2)), 1)
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    pad = max(int(th * 0.4), 2)
    top = h - (th + base + 2 * pad)
    cv2.rectangle(image, (0, top), (tw + 2 * pad, h), (0, 0, 0), cv2.FILLED)
    cv2.putText(image, text, (pad, top + pad + th), cv2.FONT_HERSHEY_SIMPLEX, scale,
                (255, 255, 255), thick, cv2.LINE_AA)
    return image


def run(detector: Any, source: VideoSource, results: list[ResultSink] = (),
        images: list[ImageSink] = (), *, stop: threading.Event | None = None,
        every: int = 1, max_frames: int | None = None,
        on_frame: Callable[[Frame, Detections, float], None] | None = None,
        view: LiveSink | None = None, realtime: bool = False,
        analysis: Any = None) -> Stats:
    """Run `detector` over `source` until it ends, `stop` is set or a sink gives up.

    `every`: run the model on every Nth frame only (the others are read and skipped).
    `on_frame(frame, detections, infer_ms)` is called from the output thread (progress).
    `view` (the live view of `--serve`) gets every processed frame from the output thread.
    `realtime`: deliver a file's frames at its own frame rate, as a camera would.
    `analysis` (`events.Analysis`: --track, --zone, --line): gives each frame's detections
    their track ids, in order, before any sink sees them, and draws its zones and lines.
    The sinks are not closed here: the caller decides whether their output is complete.
    """
    stop = stop or threading.Event()  # the caller's: signals
    halt = threading.Event()          # ours: tells the capture thread to end, whatever the cause
    stats = Stats()
    live = source.live
    inbox: Newest | queue.Queue = Newest() if live else queue.Queue(maxsize=4)
    outbox: queue.Queue = queue.Queue(maxsize=8)
    failures: list[str] = []

    def capture() -> None:
        origin: float | None = None  # realtime: perf_counter of the file's time 0
        try:
            for frame in source.frames(halt):
                if frame.index % every:
                    continue
                if realtime and not live:
                    now = time.perf_counter()
                    due = now if origin is None else origin + frame.t_ms / 1e3
                    if due < now - 0.25:  # fell behind (a slow first inference): go on
                        due = now         # from here rather than rush to catch up
                    origin = due - frame.t_ms / 1e3
                    if halt.wait(max(due - now, 0.0)):
                        break
                # A file's frames are all processed: letterbox them here, beside invoke().
                # A live source's may be dropped: letterbox only those that are kept.
                work = frame if live else (frame, *detector.preprocess(frame.image, False))
                _put(inbox, work, halt.is_set)
                if halt.is_set():
                    break
        except SourceError as e:
            failures.append(str(e))
        except Exception as e:  # noqa: BLE001 - reported as the run's error, never lost
            failures.append(f"{source.name}: capture failed: {e}")
        finally:
            _put(inbox, _END, halt.is_set)  # gives up only on halt: then nobody waits

    def output() -> None:
        fps = _Rate()
        while True:
            item = outbox.get()
            if item is _END:
                return
            frame, dets, ms = item
            try:
                if analysis is not None:
                    dets = analysis.update(frame, dets)
                    stats.counts = analysis.counts()
                for sink in results:
                    sink.write(frame, dets)
                rate, annotated = fps.tick(), None
                if images:
                    annotated = draw_detections(frame.image, dets)
                    if analysis is not None:
                        analysis.draw(annotated)
                    annotated = draw_overlay(annotated, rate, ms)
                    for sink in images:
                        sink.write(annotated, frame.t_ms)
                        if getattr(sink, "closed", False):  # window closed, q or Esc
                            stats.stopped = True
                            halt.set()
                if view is not None:  # a reference handed over: never waits for a viewer
                    view.publish(frame, dets, ms, rate, annotated, stats)
            except Exception as e:  # noqa: BLE001 - a full disk ends the run, reported
                failures.append(str(e) if isinstance(e, OSError) and str(e) else
                                f"cannot write output: {e}")
                halt.set()
                _drain(outbox)
                return
            if on_frame is not None:
                on_frame(frame, dets, ms)

    reader = threading.Thread(target=capture, name="yolo_tpu-capture", daemon=True)
    writer = threading.Thread(target=output, name="yolo_tpu-output", daemon=True)
    start = time.perf_counter()
    reader.start()
    writer.start()
    # A pipelined detector (a model in segments) holds up to `in_flight` frames at once;
    # a single model one: then each frame is collected right after it is submitted.
    depth = getattr(detector, "in_flight", 1)
    pending: deque = deque()  # (frame, box, submit time) of frames in the detector, in order
    submitted = 0

    def finish_oldest() -> None:
        frame, box, t0 = pending.popleft()
        heads = detector.collect()
        ms = (time.perf_counter() - t0) * 1e3
        if getattr(detector, "retried", 0):  # the TPU was rebuilt for it: the record says so
            frame = dataclasses.replace(frame, retried=detector.retried)
        dets = detector.postprocess(heads, box)
        stats.frames += 1
        stats.infer_ms.append(ms)
        if live:  # live figures for the live view; final ones are set below
            stats.dropped, stats.reconnects = inbox.replaced, source.reconnects
        stats.per_class.update(dets.labels)
        # every processed frame reaches the sinks, unless the output thread has died
        _put(outbox, (frame, dets, ms), lambda: not writer.is_alive())

    try:
        while True:
            try:
                work = inbox.get(timeout=0.2)
            except queue.Empty:  # a live source waiting for frames: still answer a signal
                if stop.is_set() or halt.is_set():
                    break
                continue
            if work is _END:
                break
            if live:  # its own buffer when several frames are in flight
                frame, (tensor, box) = work, detector.preprocess(work.image, depth == 1)
            else:
                frame, tensor, box = work
            pending.append((frame, box, time.perf_counter()))
            detector.submit(tensor)
            submitted += 1
            if len(pending) >= depth:
                finish_oldest()
            if max_frames is not None and submitted >= max_frames:
                stats.stopped = True
                break
            if stop.is_set() or halt.is_set():
                break
        while pending:  # frames already in the detector: finish them, in order
            finish_oldest()
    except DeviceStopped as e:  # K faults in a row: the frames before it are all written
        failures.insert(0, str(e))
        stats.device_stopped = True
    finally:
        halt.set()  # tell capture to end (it may be blocked on a full queue)
        _drain(inbox)
        _put(outbox, _END, lambda: not writer.is_alive())
        writer.join()
        # capture may sit in a blocking read of a live source: bounded by its read timeout
        reader.join(timeout=source.timeout_s + 1.0)
        if reader.is_alive():
            source.detach()
        stats.wall_s = time.perf_counter() - start
        stats.dropped = inbox.replaced if isinstance(inbox, Newest) else 0
        stats.decode_errors = source.decode_errors
        stats.reconnects = source.reconnects
        stats.error = failures[0] if failures else None
        stats.stopped = stats.stopped or stop.is_set()
    return stats


class StopEvent(threading.Event):
    """A stop request; `signal` is the number of the signal that asked for it, if any."""
    signal: int = 0


@contextlib.contextmanager
def stop_on_signals(signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)):
    """Turn SIGINT/SIGTERM into a stop request, so the loop ends cleanly and outputs are
    finalized; a second Ctrl-C interrupts at once. Handlers are restored on exit."""
    stop = StopEvent()
    if threading.current_thread() is not threading.main_thread():
        yield stop  # signals are delivered to the main thread only
        return

    def handler(signum: int, _frame: object) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.signal = stop.signal or signum
        print(f"yolo_tpu: {signal.Signals(signum).name}: stopping after the current frame "
              "(Ctrl-C again to abort)", file=sys.stderr, flush=True)
        stop.set()

    previous = {s: signal.signal(s, handler) for s in signals}
    try:
        yield stop
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


class _Rate:
    """Frames per second over the last second or so, for the overlay."""

    def __init__(self) -> None:
        self._times: deque[float] = deque()

    def tick(self) -> float:
        now = time.perf_counter()
        self._times.append(now)
        while len(self._times) > 2 and now - self._times[0] > 1.0:
            self._times.popleft()
        span = self._times[-1] - self._times[0]
        return (len(self._times) - 1) / span if span > 0 else 0.0


def _put(box: Newest | queue.Queue, item: Any, give_up: Callable[[], bool]) -> None:
    """Put, waiting while the queue is full, until `give_up()` says nobody will read it."""
    if isinstance(box, Newest):
        box.put(item)
        return
    while True:
        try:
            box.put(item, timeout=0.1)
            return
        except queue.Full:
            if give_up():
                return


def _drain(box: Newest | queue.Queue) -> None:
    """Empty a queue so a producer blocked on it can go on (and see `stop`)."""
    if isinstance(box, Newest):
        return
    while True:
        try:
            box.get_nowait()
        except queue.Empty:
            return
