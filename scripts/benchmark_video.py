"""End-to-end FPS of the video loop against invoke-only FPS of the same model, same frames.

    python scripts/benchmark_video.py [--model build/yolov3-tiny_int8.tflite] [--frames 300]
                                      [--rounds 5] [--size 640x480]

Writes a pan-and-zoom video over the sample photos (OpenCV, mp4v), then alternates, round
after round in one process with one Detector:
- invoke only: `Detector.infer` on tensors letterboxed in advance (the model's ceiling);
- end to end: `stream.run` on the video file with a JSON lines sink, exactly what
  `python -m yolo_tpu.detect --video FILE --json OUT` runs (decode, letterbox, invoke,
  decode heads, NMS, JSON), and the same with `--save` (drawing + mp4 encoding) as well.
Each figure is the median of the rounds (min-max beside it). Target: end to end >= 0.85x
invoke only.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import cv2

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]

from media import pan_zoom_frames, write_video  # noqa: E402  (tests/media.py)

from yolo_tpu.detector import Detector  # noqa: E402
from yolo_tpu.sinks import JsonLines, VideoFile  # noqa: E402
from yolo_tpu.sources import VideoSource, video_spec  # noqa: E402
from yolo_tpu.stream import run  # noqa: E402

TARGET = 0.85
PHOTOS = ("dog", "person", "horses", "kite", "eagle", "giraffe")


def make_video(path: str, frames: int, size: tuple[int, int]) -> int:
    """A pan/zoom clip across the six sample photos, `frames` frames in all."""
    per = max(frames // len(PHOTOS), 1)

    def clip():
        for name in PHOTOS:
            yield from pan_zoom_frames(os.path.join(ROOT, "samples", f"{name}.jpg"), size, per)
    return write_video(path, clip(), fps=25.0)


def invoke_only_fps(detector: Detector, tensors: list) -> float:
    t0 = time.perf_counter()
    for tensor in tensors:
        detector.infer(tensor)
    return len(tensors) / (time.perf_counter() - t0)


def end_to_end_fps(detector: Detector, video: str, out_dir: str, save: bool) -> float:
    """Frames per second of the whole loop, from opening the file to the last JSON line."""
    t0 = time.perf_counter()
    source = VideoSource(video_spec(video)).open()
    results = [JsonLines(os.path.join(out_dir, "frames.jsonl"), video)]
    images = [VideoFile(os.path.join(out_dir, "annotated.mp4"), source.sane_fps or 25.0)] \
        if save else []
    stats = run(detector, source, results, images)
    source.close()
    for sink in results + images:
        sink.close()
    return stats.frames / (time.perf_counter() - t0)


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):6.1f} FPS ({min(values):.1f}-{max(values):.1f})"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=os.path.join(ROOT, "build", "yolov3-tiny_int8.tflite"))
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--size", default="640x480", help="video frame size WxH")
    args = p.parse_args()
    if not os.path.exists(args.model):
        print(f"error: {args.model}: no such model (run `make demo` first)", file=sys.stderr)
        return 2
    size = tuple(int(v) for v in args.size.lower().split("x"))
    detector = Detector(args.model, device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        video = os.path.join(tmp, "pan.mp4")
        n = make_video(video, args.frames, size)
        cap = cv2.VideoCapture(video)
        tensors = []
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            tensors.append(detector.preprocess(frame)[0].copy())
        cap.release()
        print(f"{os.path.basename(args.model)}: {n} frames {size[0]}x{size[1]} mp4v, "
              f"{detector.backend}, {args.rounds} rounds", flush=True)
        detector.postprocess(detector.infer(tensors[0]), detector.preprocess(
            cv2.imread(os.path.join(ROOT, "samples", "dog.jpg")))[1])  # warm numba's cache
        invoke, e2e, e2e_save = [], [], []
        for r in range(args.rounds):
            invoke.append(invoke_only_fps(detector, tensors))
            e2e.append(end_to_end_fps(detector, video, tmp, save=False))
            e2e_save.append(end_to_end_fps(detector, video, tmp, save=True))
            print(f"round {r + 1}: invoke only {invoke[-1]:.1f}, end to end {e2e[-1]:.1f}, "
                  f"with --save {e2e_save[-1]:.1f} FPS", file=sys.stderr, flush=True)
    ratio = statistics.median(e2e) / statistics.median(invoke)
    ratio_save = statistics.median(e2e_save) / statistics.median(invoke)
    print(f"invoke only                  {spread(invoke)}")
    print(f"end to end --video --json    {spread(e2e)}   {ratio:.2f}x invoke only")
    print(f"end to end ... --save .mp4   {spread(e2e_save)}   {ratio_save:.2f}x invoke only")
    verdict = "PASS" if ratio >= TARGET else "FAIL"
    print(f"{verdict}: end to end {ratio:.2f}x invoke-only FPS (target >= {TARGET}x)")
    return 0 if ratio >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
