"""yolo_tpu's TFLite forms: the runner (file, frame, invoke, video loop), building the
forms into build/bench/ (again when cfg, weights or names change), the video clip, and
their Edge TPU compilation.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from typing import Any

from .common import (
    BENCH_DIR,
    CFG,
    CONF,
    FORMS,
    IOU,
    MODES,
    NAMES,
    ROOT,
    SAMPLES,
    VIDEO_FRAMES,
    WEIGHTS,
    one_line,
    say,
    timed,
)


class TfliteRunner:
    """yolo_tpu's runtime on one .tflite (LiteRT on the CPU, or the Edge TPU)."""

    modes = MODES

    def __init__(self, spec: dict):
        import cv2
        from yolo_tpu.detector import Detector
        self.imread = cv2.imread
        self.images = spec["images"]
        self.detector = Detector(spec["model"], spec.get("device", "cpu"), conf=CONF, iou=IOU)
        self.frames = [cv2.imread(p) for p in self.images]
        # preprocess reuses one buffer: keep a copy per photo
        self.tensors = [self.detector.preprocess(f)[0].copy() for f in self.frames]
        self.threads = self.detector.backend
        self.thread_count = os.cpu_count() if spec.get("device", "cpu") == "cpu" else None
        self.video = spec.get("video")
        self.modes = MODES + (("video",) if self.video else ())

    def time(self, mode: str) -> list[float]:
        if mode == "file":
            return timed(lambda p: self.detector(self.imread(p)), self.images)
        if mode == "frame":
            return timed(self.detector, self.frames)
        if mode == "video":
            return [self.video_ms_per_frame()]
        return timed(self.detector.infer, self.tensors)

    def video_ms_per_frame(self) -> float:
        """`detect --video FILE --json OUT` in-process: the threaded loop over the file,
        decode, letterbox, invoke, decode heads, NMS, JSON lines; wall ms per frame."""
        import tempfile

        from yolo_tpu.sinks import JsonLines
        from yolo_tpu.sources import VideoSource, video_spec
        from yolo_tpu.stream import run
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            source = VideoSource(video_spec(self.video)).open()
            sink = JsonLines(os.path.join(tmp, "frames.jsonl"), self.video)
            stats = run(self.detector, source, [sink])
            source.close()
            sink.close()
        return (time.perf_counter() - t0) * 1e3 / max(stats.frames, 1)

    def detect(self, conf: float) -> list[list[list[float]]]:
        import numpy as np
        self.detector.conf = conf
        try:
            dets = [self.detector(f) for f in self.frames]
        finally:
            self.detector.conf = CONF
        return [np.column_stack([d.xyxy, d.scores, d.class_ids]).tolist() for d in dets]

    @staticmethod
    def versions() -> dict[str, str]:
        from importlib.metadata import version

        import cv2
        import numpy
        return {"ai-edge-litert": version("ai-edge-litert"), "numba": version("numba"),
                "numpy": numpy.__version__, "opencv (yolo_tpu)": cv2.__version__}


def source_key(mode: str, leaky: str, num: int) -> str:
    """What a built model depends on: cfg, weights, names, form and calibration count."""
    digest = hashlib.sha256()
    for path in (CFG, WEIGHTS, NAMES):
        with open(path, "rb") as f:
            digest.update(f.read())
    digest.update(f"{mode} {leaky} {num}".encode())
    return digest.hexdigest()


def model_path(mode: str, leaky: str) -> str:
    return os.path.join(BENCH_DIR, f"yolov3-tiny_{mode}_{leaky}.tflite")


def is_fresh(path: str, key: str) -> bool:
    try:
        with open(path + ".json") as f:
            return os.path.exists(path) and json.load(f).get("key") == key
    except (OSError, ValueError):
        return False


def build_models(num: int) -> dict[tuple[str, str], str]:
    """Each form's .tflite in build/bench/, built with the converters where missing or stale.

    Returns the forms that could be had; a build failure is reported and that form skipped.
    """
    keys = {form: source_key(*form, num) for form in FORMS}
    stale = [form for form in FORMS if not is_fresh(model_path(*form), keys[form])]
    if stale:
        say(f"building {len(stale)} model form(s) into build/bench/ with TensorFlow "
            "(one time; about 30-60 s each) ...")
    converted: dict[str, Any] = {}
    for i, (mode, leaky) in enumerate(stale, 1):
        path, t0 = model_path(mode, leaky), time.perf_counter()
        say(f"[{i}/{len(stale)}] {mode} --leaky {leaky} -> {os.path.relpath(path, ROOT)}")
        try:
            from converters.darknet import convert
            from converters.quantize import quantize, write
            if leaky not in converted:
                converted[leaky] = convert(CFG, WEIGHTS, leaky, names=NAMES)
            c = converted[leaky]
            write(path, quantize(c.model, c.meta, mode, None, num, progress=True))
        except Exception as e:  # noqa: BLE001 - one line, and the form is skipped
            say(f"  skipped: cannot build {mode} --leaky {leaky}: {one_line(e)}")
            continue
        with open(path + ".json", "w") as f:
            json.dump({"key": keys[(mode, leaky)], "num": num}, f)
        say(f"  {os.path.getsize(path) / 1e6:.2f} MB in {time.perf_counter() - t0:.0f} s")
    return {form: model_path(*form) for form in FORMS if is_fresh(model_path(*form), keys[form])}


def build_video() -> str | None:
    """build/bench/pan.mp4: VIDEO_FRAMES frames 640x480 mp4v panning over the samples."""
    path = os.path.join(BENCH_DIR, "pan.mp4")
    key = f"pan {VIDEO_FRAMES} 640x480"
    if is_fresh(path, key):
        return path
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from media import pan_zoom_frames, write_video  # tests/media.py
    photos = sorted(p for p in os.listdir(SAMPLES) if p.endswith(".jpg"))
    per = VIDEO_FRAMES // len(photos)

    def frames():
        for name in photos:
            yield from pan_zoom_frames(os.path.join(SAMPLES, name), (640, 480), per)
    write_video(path, frames(), fps=25.0)
    with open(path + ".json", "w") as f:
        json.dump({"key": key}, f)
    return path


def edgetpu_ops(path: str) -> str:
    """'mapped/total' from the static Edge TPU check."""
    from converters.edgetpu_check import check
    report = check(path)
    return f"{report.tpu_count}/{report.total}"


def edgetpu_models(models: dict[tuple[str, str], str], notes: list[str]) -> dict[str, str]:
    """int8 models compiled by edgetpu_compiler where it is installed: key -> path."""
    compiler = shutil.which("edgetpu_compiler")
    if compiler is None:
        notes.append("No `edgetpu_compiler` and no Edge TPU here: TPU timings need both (the "
                     "compiler is x86-64 Debian/Ubuntu only). The Edge TPU column is the "
                     "static op check (`converters.edgetpu_check`) of each int8 form.")
        return {}
    from converters.edgetpu_compile import run_compiler
    compiled = {}
    for (mode, leaky), path in models.items():
        if mode != "int8":
            continue
        out = path.replace(".tflite", "_edgetpu.tflite")
        if not os.path.exists(out) or os.path.getmtime(out) < os.path.getmtime(path):
            say(f"edgetpu_compiler {os.path.basename(path)} ...")
            code, output = run_compiler(path, BENCH_DIR, compiler)
            if code != 0 or not os.path.exists(out):
                notes.append(f"edgetpu_compiler failed on {os.path.basename(path)}: "
                             f"{output.strip().splitlines()[-1] if output.strip() else code}")
                continue
        compiled[f"tpu-int8-{leaky}"] = out
    return compiled
