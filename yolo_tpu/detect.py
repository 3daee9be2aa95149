"""`python -m yolo_tpu.detect`: detect objects in images, video files, cameras and streams.

Images (`--image PATH ...`, files, folders or globs): one readable line per image on stdout
(stderr with `--json -`, so stdout stays machine-readable), `--json` writes one JSON line
per image, flushed as it goes, `--save DIR` writes annotated copies.

Moving sources (`--video FILE`, `--cam [N]`, `--source URL|PATH`) run through the threaded
loop in `stream.py`: `--json` writes one line per frame, `--save FILE.mp4` the annotated
video, `--show` a window. Ctrl-C or SIGTERM stops cleanly: the video is finalized, the
JSON lines are complete, a summary is printed.

Exit status: 0 every input processed; 1 some input could not be read or found (the others
were still processed), a video had undecodable frames, or a live source gave up; 2 nothing
could run (bad model, device or arguments, no input, a source that does not open);
130 / 143 stopped by SIGINT / SIGTERM (outputs complete up to that point).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from typing import IO, Any

from .environment import require

require(__name__, "yolo_tpu.detect")  # a hint, not a traceback, outside the venv

import cv2
import numpy as np

from . import __version__
from .cli import (
    add_model_args,
    device_ok,
    error,
    frame_size,
    load_detector,
    non_negative_int,
    positive_float,
    positive_int,
    serve_address,
    serve_fps,
    run_guarded,
    setup_logging,
    timeout_s,
    warm_up,
)
from .backends import BackendError
from .image_header import image_format, oversize
from .sources import SourceError, SourceSpec, camera_spec, expand_image_args, source_spec, \
    video_spec
from .text import counted

log = logging.getLogger("yolo_tpu")

# ANYCOLOR|ANYDEPTH rather than IMREAD_UNCHANGED: grey stays one channel and 16 bit stays
# 16 bit as with UNCHANGED, but the EXIF orientation is applied (UNCHANGED ignores it, so a
# phone photo would be detected sideways); alpha is dropped, which letterbox would do anyway.
_IMREAD_FLAGS = cv2.IMREAD_ANYCOLOR | cv2.IMREAD_ANYDEPTH


class ImageError(ValueError):
    """An input file that is not a usable image: the message says why (not the path)."""


# ---------------------------------------------------------------- reading images

def _truncation(raw: bytes, fmt: str | None) -> str | None:
    """Why a JPEG/PNG is cut short, or None: checked before decoding, as libpng would
    otherwise print its own complaint to stderr next to ours."""
    # Entropy-coded JPEG data never holds FF D9 (0xFF is stuffed), so a scan that ends
    # properly is followed by the end-of-image marker.
    if fmt == "JPEG" and raw.rfind(b"\xff\xd9") < raw.rfind(b"\xff\xda"):
        return "truncated JPEG (no end-of-image marker after the image data)"
    if fmt == "PNG" and raw.rfind(b"IEND") < 0:
        return "truncated PNG (no IEND chunk)"
    return None


def to_uint8(image: np.ndarray) -> np.ndarray:
    """8-bit pixels: 16-bit images keep their top byte (as cv2.imread's default does)."""
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        return (image >> 8).astype(np.uint8)
    raise ImageError(f"unsupported pixel type {image.dtype} (expected 8 or 16 bit)")


def read_image(path: str) -> np.ndarray:
    """A uint8 grey, BGR or BGRA image; ImageError saying why a file is not one."""
    try:
        raw = np.fromfile(path, np.uint8)  # bytes first: non-ASCII paths, and a reason on failure
    except OSError as e:
        raise ImageError(f"cannot read: {e.strerror or e}") from None
    if raw.size == 0:
        raise ImageError("empty file")
    head = raw[:16].tobytes()
    fmt = image_format(head)
    data = raw.tobytes()
    reason = oversize(data, fmt) or (_truncation(data, fmt) if fmt in ("JPEG", "PNG") else None)
    if reason:
        raise ImageError(reason)
    try:
        image = cv2.imdecode(raw, _IMREAD_FLAGS)
    except cv2.error as e:  # a header OpenCV refuses (its own pixel limit, a bad size)
        raise ImageError(f"OpenCV refuses this {fmt or 'image'}: "
                         f"{(e.err or str(e)).strip()}") from None
    if image is None:
        raise ImageError(f"corrupt {fmt} data, OpenCV cannot decode it" if fmt
                         else "not an image (OpenCV recognises no image format in it)")
    return to_uint8(image)


# ---------------------------------------------------------------- output

def record(source: str, image: np.ndarray, detections: Any, retried: int = 0) -> dict[str, Any]:
    """The JSON line of one image: boxes in its own pixels (`retried`: on a rebuilt TPU)."""
    h, w = image.shape[:2]
    return {"source": source, "frame": 0, "width": int(w), "height": int(h),
            **({"retried": retried} if retried else {}), "detections": detections.to_dict()}


def summary_line(source: str, image: np.ndarray, detections: Any, ms: float) -> str:
    """`dog.jpg 768x576: dog 0.89, bicycle 0.81 (12.3 ms)`."""
    h, w = image.shape[:2]
    found = ", ".join(f"{d.label} {d.score:.2f}" for d in detections) or "no detections"
    return f"{source} {w}x{h}: {found} ({ms:.1f} ms)"


def save_path(folder: str, source: str, taken: set[str]) -> str:
    """`folder/<name of source>`; a name already written in this run gets `_2`, `_3`, ..."""
    stem, ext = os.path.splitext(os.path.basename(source))
    path, n = os.path.join(folder, stem + ext), 1
    while path in taken:
        n += 1
        path = os.path.join(folder, f"{stem}_{n}{ext}")
    taken.add(path)
    return path


def save_image(path: str, image: np.ndarray) -> str | None:
    """Write `path` whole (encoded in memory, written under a partial name, renamed), or
    say why OpenCV cannot encode this file type; OutputError when the write fails."""
    from .outputs import AtomicFile
    ext = os.path.splitext(path)[1]
    try:
        ok, buf = cv2.imencode(ext, image)
    except cv2.error as e:
        return str(e).strip().splitlines()[-1]
    if not ok:
        return "OpenCV cannot write this file type"
    with AtomicFile(path, binary=True) as f:
        f.write(buf.tobytes())
    return None


# ---------------------------------------------------------------- arguments

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m yolo_tpu.detect",
        description="Detect objects in images, video files, cameras and streams with a "
                    "converted YOLO .tflite model (Edge TPU or CPU).",
        epilog="Exit status: 0 all input processed; 1 some input could not be read or "
               "found (the rest were processed), undecodable frames, or a live source gave "
               "up; 2 nothing could run (model, device, arguments, or no input); 130/143 "
               "stopped by SIGINT/SIGTERM.")
    add_model_args(p, "image or frame")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--image", nargs="+", metavar="PATH",
                     help="image files, folders (their images, sorted) or globs")
    src.add_argument("--video", metavar="FILE", help="a video file: every frame, in order")
    src.add_argument("--cam", nargs="?", const="0", metavar="INDEX|DEVICE",
                     help="a camera: index (default 0) or device such as /dev/video0")
    src.add_argument("--source", metavar="URL|PATH",
                     help="a stream (rtsp://, http(s):// MJPEG, udp://, ...), a camera or a "
                          "video file: whatever OpenCV's FFmpeg opens")
    p.add_argument("--save", metavar="PATH",
                   help="images: a folder for annotated copies (same file names), or for "
                        "one image the annotated file (out.jpg); video: "
                        "the annotated video file (.mp4, .avi, ...; a folder gets "
                        "<source name>.mp4), at the source's size and frame rate")
    p.add_argument("--json", metavar="FILE",
                   help="write one JSON line per image or frame to FILE ('-': stdout)")
    p.add_argument("--show", action="store_true",
                   help="video: show annotated frames in a window (q or Esc quits)")
    p.add_argument("--cam-size", type=frame_size, metavar="WxH",
                   help="camera: ask for this capture size, e.g. 640x480")
    p.add_argument("--cam-fps", type=positive_float, metavar="FPS",
                   help="camera: ask for this frame rate")
    p.add_argument("--reconnect", type=non_negative_int, default=5, metavar="N",
                   help="live source: reopen a camera or stream that stops delivering up to "
                        "N times in a row, with backoff 0.5, 1, 2, ... s (default 5)")
    p.add_argument("--timeout", type=timeout_s, default=5.0, metavar="SECONDS",
                   help="stream: give up opening or reading after this long (default 5)")
    p.add_argument("--max-frames", type=positive_int, metavar="N",
                   help="video: stop after N frames")
    p.add_argument("--serve", type=serve_address, metavar="[HOST:]PORT",
                   help="video: serve a live view while the run goes on: the page at "
                        "http://HOST:PORT/, /stream.mjpg, /events, /health (HOST defaults "
                        "to 127.0.0.1, this machine only; 0.0.0.0 for every interface)")
    p.add_argument("--serve-token", metavar="TOKEN",
                   help="--serve: every endpoint wants this token (?token=TOKEN or "
                        "'Authorization: Bearer TOKEN'; default: $YOLO_TPU_SERVE_TOKEN)")
    p.add_argument("--serve-fps", type=serve_fps, default=15.0,
                   metavar="FPS",
                   help="--serve: at most this many JPEGs a second on /stream.mjpg, each the "
                        "newest frame (default 15; 0: every frame); /events has every frame")
    p.add_argument("--realtime", action=argparse.BooleanOptionalAction, default=None,
                   help="video file: deliver frames at the file's frame rate, as a camera "
                        "would (default: on with --serve, so it can be watched)")
    from .track_cli import add_tracking_args
    add_tracking_args(p)
    p.add_argument("--version", action="version", version=f"yolo_tpu {__version__}")
    return p.parse_args(argv)


# ---------------------------------------------------------------- main

def _check_image_save(args: argparse.Namespace, files: list[str]) -> str | None:
    """Why --save cannot take the annotated images, or None. A folder takes copies under
    the inputs' names; for one input, a name with an image extension is the file itself
    (`args.save_file`)."""
    from .outputs import folder_problem
    from .sources import IMAGE_EXTENSIONS
    save = args.save
    args.save_file = None
    if os.path.isdir(save):
        return _check_save_dir(save, files)
    if os.path.splitext(save)[1].lower() in IMAGE_EXTENSIONS:
        if len(files) != 1:
            return (f"--save {save}: names one image file, but {len(files)} images were "
                    "given; pass a folder for their annotated copies")
        if problem := _check_output_file(save, files[0], "image"):
            return problem
        if problem := folder_problem(os.path.dirname(save)):
            return f"--save {save}: cannot write there: {problem}"
        args.save_file = save
        return None
    if os.path.exists(save):
        return (f"--save {save}: is an existing file, not a folder; pass a folder for the "
                "annotated copies (or, for one image, an image file name such as out.jpg)")
    return _check_save_dir(save, files)


def _check_save_dir(folder: str, files: list[str]) -> str | None:
    """Why annotated copies cannot go to `folder` (would overwrite an input, read-only),
    or None."""
    from .outputs import folder_problem
    target = os.path.realpath(folder)
    for f in files:
        if os.path.realpath(os.path.dirname(os.path.abspath(f))) == target:
            return (f"--save {folder}: is the folder of input {f}; annotated copies would "
                    "overwrite the inputs")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        return f"--save {folder}: {e.strerror or e}"
    if problem := folder_problem(folder):
        return f"--save {folder}: cannot write there: {problem}"
    return None


def run(args: argparse.Namespace) -> int:
    if not device_ok(args.device):
        return 2
    if args.image is None:
        return run_stream(args)
    for flag in ("show", "cam_size", "cam_fps", "max_frames", "serve", "serve_token",
                 "realtime", "track", "zone", "line", "events", "mqtt", "mqtt_queue"):
        if getattr(args, flag):
            error(f"--{flag.replace('_', '-')} applies to --video, --cam and --source only")
            return 2
    files, missing = expand_image_args(args.image)
    for e in missing:
        error(str(e))
    if not files:
        return 2
    if args.save and (problem := _check_image_save(args, files)):
        error(problem)
        return 2
    started = time.monotonic()
    detector = load_detector(args)
    if detector is None:
        return 2
    warm_up(detector, started)
    from .outputs import LineFile, OutputError
    text_out: IO[str] = sys.stderr if args.json == "-" else sys.stdout
    json_out: Any = None
    if args.json and args.json != "-":
        try:
            json_out = LineFile(args.json)
        except OutputError as e:
            error(f"--json {e}")
            return 2
    try:
        return _process(detector, files, args, json_out, text_out, failures=len(missing))
    except (OutputError, BackendError) as e:  # a full disk, a stopped TPU: the files
        error(str(e))                           # written so far stay, whole
        return 1
    finally:
        if json_out is not None:
            try:
                json_out.close()
            except OutputError as e:
                error(str(e))


def _stream_spec(args: argparse.Namespace) -> SourceSpec | str:
    """The moving source asked for, or the error message saying why it is not one."""
    try:
        if args.video is not None:
            return video_spec(args.video)
        if args.cam is not None:
            return camera_spec(args.cam)
        return source_spec(args.source)
    except SourceError as e:
        return str(e)


def _summary(times: list[float], n_dets: int, failures: int) -> str:
    """`6 images, 11 detections, 0 failures, 39.7 ms/image mean (17.6 after the first)`.

    The first image also pays one-off costs (numba loads its cached machine code on the
    first call), so the steady-state figure is given beside the plain mean.
    """
    n = len(times)
    text = f"{counted(n, 'image')}, {counted(n_dets, 'detection')}, {counted(failures, 'failure')}"
    if n:
        text += f", {sum(times) / n:.1f} ms/image mean"
    if n > 1:
        text += f" ({sum(times[1:]) / (n - 1):.1f} after the first)"
    return text


def _process(detector, files: list[str], args: argparse.Namespace, json_out: Any,
             text_out: IO[str], failures: int) -> int:
    """Detect in every file; a bad file is reported and skipped. Exit status 0 or 1.
    `json_out`: an `outputs.LineFile`, or None for stdout with `--json -`. OutputError
    when an output cannot be written (the run ends: a full disk fails every later one)."""
    from .draw import draw_detections
    times: list[float] = []
    n_dets = 0
    saved: set[str] = set()
    for path in files:
        try:
            image = read_image(path)
        except ImageError as e:
            error(f"{path}: {e}")
            failures += 1
            continue
        t0 = time.perf_counter()
        dets = detector(image)
        ms = (time.perf_counter() - t0) * 1e3
        times.append(ms)
        n_dets += len(dets)
        line = json.dumps(record(path, image, dets, getattr(detector, "retried", 0)))
        if json_out is not None:  # flushed: a crash or Ctrl-C later loses no line written
            json_out.write_line(line)
        elif args.json == "-":
            print(line, flush=True)
        print(summary_line(path, image, dets, ms), file=text_out, flush=True)
        if args.save:
            out = args.save_file or save_path(args.save, path, saved)
            if why := save_image(out, draw_detections(image, dets)):
                error(f"{out}: cannot save annotated copy: {why}")
                failures += 1
    print(f"yolo_tpu: {_summary(times, n_dets, failures)}", file=sys.stderr, flush=True)
    return 1 if failures else 0


# ---------------------------------------------------------------- video, cameras, streams

def _video_save_path(save: str, spec: SourceSpec) -> str:
    """--save for a video: the file named, or `<folder>/<source name>.mp4` for a folder."""
    if not (os.path.isdir(save) or save.endswith(os.sep)):
        return save
    if spec.kind == "file":
        stem = os.path.splitext(os.path.basename(str(spec.target)))[0]
    elif spec.kind == "camera":
        stem = "camera" + os.path.basename(str(spec.target)).replace("video", "")
    else:
        stem = "stream"
    return os.path.join(save, stem + ".mp4")


def _check_output_file(path: str, source: str | None, kind: str) -> str | None:
    """Why an annotated copy cannot go to `path` (it is the input `source`, or its folder
    cannot be made), or None; the folder is made here, before any work."""
    if source is not None and os.path.exists(path) and os.path.samefile(path, source):
        return f"--save {path}: is the input {kind}; it would be overwritten"
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    except OSError as e:
        return f"--save {path}: {e.strerror or e}"
    return None


def _check_video_save(path: str, spec: SourceSpec) -> str | None:
    """Why the annotated video cannot be written to `path`, or None."""
    from .outputs import folder_problem
    from .sinks import SinkError, video_fourcc
    try:
        video_fourcc(path)
    except SinkError as e:
        return f"--save {e}"
    if problem := _check_output_file(path, str(spec.target) if spec.kind == "file" else None,
                                     "video"):
        return problem
    if problem := folder_problem(os.path.dirname(path)):
        return f"--save {path}: cannot write there: {problem}"
    return None


def run_stream(args: argparse.Namespace) -> int:
    """--video / --cam / --source: open, run the threaded loop, finalize outputs, summarize."""
    from .sinks import JsonLines, SinkError, VideoFile, Window
    from .sources import VideoSource
    from .stream import damage, run as run_loop, stop_on_signals
    if args.show:  # before the source, the server and the model: fails at once
        from .display import show_problem
        if problem := show_problem():
            error(problem)
            return 2
    spec = _stream_spec(args)
    if isinstance(spec, str):
        error(spec)
        return 2
    save = _video_save_path(args.save, spec) if args.save else None
    if save and (problem := _check_video_save(save, spec)):
        error(problem)
        return 2
    if args.serve_token is not None and not args.serve:
        error("--serve-token applies to --serve only")
        return 2
    if problem := _empty_token(args):
        error(problem)
        return 2
    from .track_cli import check_tracking
    if problem := check_tracking(args):
        error(problem)
        return 2
    server = _open_server(args, spec.name) if args.serve else None  # before the model
    if args.serve and server is None:
        return 2
    try:
        return _run_source(args, spec, save, server)
    finally:
        if server is not None:
            server.close()


def _empty_token(args: argparse.Namespace) -> str | None:
    """An empty token would turn authentication off without a word: refused."""
    from .serve import TOKEN_ENV
    if args.serve_token is not None and not args.serve_token.strip():
        return "--serve-token is empty: give a token, or leave the option out for no token"
    if args.serve and args.serve_token is None and TOKEN_ENV in os.environ \
            and not os.environ[TOKEN_ENV].strip():
        return (f"${TOKEN_ENV} is set but empty: give a token, or unset it for no token")
    return None


def _open_server(args: argparse.Namespace, source: str):
    """The live view's server, listening; None after a one-line error (port in use, bad
    host). Warns when it is reachable from other machines without a token."""
    from .serve import TOKEN_ENV, LiveServer, ServeError, is_loopback
    host, port = args.serve
    token = args.serve_token or os.environ.get(TOKEN_ENV) or None
    try:
        server = LiveServer(host, port, source, token, args.serve_fps).start()
    except ServeError as e:
        error(str(e))
        return None
    if token is None and not is_loopback(host):
        print(f"warning: --serve {host}:{port} without a token: anyone who can reach this "
              f"machine on port {server.port} can watch the live picture and detections; "
              f"set --serve-token or ${TOKEN_ENV} (the traffic is not encrypted either)",
              file=sys.stderr, flush=True)
    log.info("live view: %s%s", server.url, " (token required: ?token=...)" if token else "")
    return server


def _run_source(args: argparse.Namespace, spec: SourceSpec, save: str | None, server) -> int:
    """Open the source and the model, run the loop, finalize the outputs, summarize."""
    from .outputs import run_tag
    from .sinks import JsonLines, SinkError, VideoFile, Window
    from .sources import VideoSource
    from .stream import damage, run as run_loop, stop_on_signals
    source = VideoSource(spec, reconnect=args.reconnect, timeout_s=args.timeout,
                         cam_size=args.cam_size, cam_fps=args.cam_fps)
    try:
        source.open()  # before the model: a dead camera or a bad file fails at once
    except SourceError as e:
        error(str(e))
        return 2
    detector = load_detector(args)
    if detector is None:
        source.close()
        return 2
    view = server.view if server is not None else None
    if view is not None:
        view.set_model(os.path.basename(args.model), detector.backend)
    w, h = source.size
    kind = "live, newest frame kept" if source.live else \
        f"{source.frame_count or 'unknown number of'} frames"
    log.info("%s: %dx%d, %s FPS, %s", spec.name, w, h,
             f"{source.fps:.2f}" if source.sane_fps else "unknown", kind)
    results, images, event_sinks = [], [], []
    try:
        if args.show:  # first: the one that can fail, before any file is created
            images.append(Window(f"yolo_tpu: {spec.name}"))
        event_sinks = _event_sinks(args, spec.name)
        if args.json:
            results.append(JsonLines(args.json, spec.name))
        if save:
            images.append(VideoFile(save, source.write_fps, tag=run_tag(), timed=source.live))
    except SinkError as e:
        error(str(e))
        for sink in results + images + event_sinks:
            sink.close(complete=False)
        source.close()
        return 2
    from .track_cli import make_analysis
    analysis = make_analysis(args, spec.name, source.fps if source.sane_fps else 30.0,
                             event_sinks)
    if view is not None and analysis is not None:
        view.overlay = analysis.draw
    text_out = sys.stderr if args.json == "-" else sys.stdout
    progress, on_frame = _frame_reporting(source, text_out,
                                          quiet=bool(results or images or view))
    realtime = view is not None if args.realtime is None else args.realtime
    with stop_on_signals() as stop:
        try:
            stats = run_loop(detector, source, results, images, stop=stop,
                             max_frames=args.max_frames, on_frame=on_frame, view=view,
                             realtime=realtime, analysis=analysis)
        finally:
            progress.close()
            source.close()
            # finalize: a stopped run's outputs are complete; one that failed to write
            # (a full disk) is removed (a video) or cut back to its whole lines (JSON)
            write_errors = _close_sinks(results + images + event_sinks)
    if view is not None:
        view.finish(stats)
    status = 0
    if stats.error:
        error(stats.error)
        status = 1
    for e in write_errors:
        if str(e) != stats.error:
            error(str(e))
        status = 1
    if problem := damage(stats, source):
        error(f"{problem}; the outputs hold every frame that decoded")
        status = 1
    print(f"yolo_tpu: {spec.name}: {stats.summary()}", file=sys.stderr, flush=True)
    if save and os.path.exists(save):
        print(f"yolo_tpu: annotated video: {save}", file=sys.stderr, flush=True)
    for sink in event_sinks:
        if note := getattr(sink, "report", lambda: None)():
            print(f"yolo_tpu: {note}", file=sys.stderr, flush=True)
    if view is not None and not (stop.signal or stats.error or results or images
                                 or args.max_frames):
        # --serve alone: the run keeps going until stopped, showing the last frame
        print(f"yolo_tpu: {spec.name} ended; the live view at {server.url} shows its last "
              "frame until stopped (Ctrl-C)", file=sys.stderr, flush=True)
        with stop_on_signals() as stop:
            while not stop.wait(0.5):
                pass
    if stop.signal:
        return 128 + stop.signal
    return status


def _event_sinks(args: argparse.Namespace, source: str) -> list:
    """--events FILE and --mqtt URL (SinkError: one that cannot be opened)."""
    sinks: list = []
    if args.events:
        from .events import EventsFile
        sinks.append(EventsFile(args.events))
    if args.mqtt:
        from .mqtt import MqttSink
        sinks.append(MqttSink.from_url(args.mqtt, source, regions=_regions(args),
                                       queue=args.mqtt_queue))
    return sinks


def _regions(args: argparse.Namespace) -> list:
    from .track_cli import regions
    return regions(args)


def _close_sinks(sinks: list) -> list[OSError]:
    """Close every sink, even after one fails; the write errors (each its one line)."""
    from .outputs import OutputError
    errors = []
    for sink in sinks:
        try:
            sink.close(complete=True)
        except OutputError as e:
            errors.append(e)
    return errors


def _frame_reporting(source, text_out: IO[str], quiet: bool):
    """A progress bar on a terminal; without other outputs, a readable line per frame."""
    from tqdm import tqdm
    bar = tqdm(total=source.frame_count or None, unit="frame", desc=source.name,
               file=sys.stderr, disable=None, dynamic_ncols=True, leave=False)

    def on_frame(frame, dets, ms: float) -> None:
        bar.update(1)
        if not quiet:
            found = ", ".join(f"{d.label} {d.score:.2f}" for d in dets) or "no detections"
            line = f"frame {frame.index} t={frame.t_ms / 1e3:.2f}s: {found} ({ms:.1f} ms)"
            if bar.disable:
                print(line, file=text_out, flush=True)
            else:
                bar.write(line, file=text_out)
    return bar, on_frame


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging()
    return run_guarded(run, args)


if __name__ == "__main__":
    sys.exit(main())
