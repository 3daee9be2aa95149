"""Calibration images for full-int8 quantization: real photos and video frames, never noise.

Each sample is preprocessed by the runtime's own `letterbox`, so the ranges the quantizer
measures are the ranges the deployed model sees. Few images are stretched to `num` samples
with flips and crops (new framings of real content, not new content).
"""
from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import cv2
import numpy as np

from yolo_tpu.image_header import image_format, oversize
from yolo_tpu.preprocess import letterbox
from yolo_tpu.sources import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, SourceError, is_video_name
from yolo_tpu.sources import expand as expand_path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLES = os.path.join(ROOT, "samples")
# The bundled photos are split so the accuracy report measures images the quantizer never saw.
DEFAULT_CALIB = tuple(os.path.join(SAMPLES, n) for n in ("dog.jpg", "person.jpg", "horses.jpg"))
DEFAULT_EVAL = tuple(os.path.join(SAMPLES, n) for n in ("kite.jpg", "eagle.jpg", "giraffe.jpg"))
MIN_RECOMMENDED = 100


class CalibrationError(ValueError):
    """No usable calibration image: the message names the path."""


def expand(paths: list[str]) -> list[str]:
    """Files, folders (their images and videos, sorted) and globs -> a list of files, as
    the runtime expands its inputs (`yolo_tpu.sources.expand`)."""
    files: list[str] = []
    for p in paths:
        try:
            files += expand_path(p, IMAGE_EXTENSIONS | VIDEO_EXTENSIONS, "images or videos")
        except SourceError as e:
            raise CalibrationError(str(e)) from None
    return files


def read_frames(path: str, max_frames: int = 50) -> list[np.ndarray]:
    """BGR images of a file: the image itself, or up to `max_frames` frames spread over a video."""
    if is_video_name(path):
        cap = cv2.VideoCapture(path)
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or max_frames
        step = max(1, total // max_frames)
        frames = []
        index = 0
        while len(frames) < max_frames:
            ok, frame = cap.read()
            if not ok:
                break
            if index % step == 0:
                frames.append(frame)
            index += 1
        cap.release()
        return frames
    image, _ = read_image(path)
    return [] if image is None else [image]


def read_image(path: str) -> tuple[np.ndarray | None, str | None]:
    """(BGR image, None), or (None, why not): an empty file, a header claiming more pixels
    than yolo_tpu decodes (checked before decoding), or data OpenCV cannot decode."""
    try:
        raw = np.fromfile(path, np.uint8)
    except OSError as e:
        return None, f"cannot read: {e.strerror or e}"
    if raw.size == 0:
        return None, "empty file"
    data = raw.tobytes()
    if problem := oversize(data, image_format(data)):
        return None, problem
    try:
        image = cv2.imdecode(raw, cv2.IMREAD_COLOR)
    except cv2.error as e:
        return None, f"OpenCV refuses it: {(e.err or str(e)).strip()}"
    return (image, None) if image is not None else (None, "not a decodable image")


def _augment(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A mirrored and/or cropped view (60-100% of each side) of a real image."""
    h, w = image.shape[:2]
    if rng.random() < 0.5:
        image = image[:, ::-1]
    ch, cw = int(h * rng.uniform(0.6, 1.0)), int(w * rng.uniform(0.6, 1.0))
    y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
    return np.ascontiguousarray(image[y:y + ch, x:x + cw])


def load_images(paths: list[str]) -> list[np.ndarray]:
    images: list[np.ndarray] = []
    for path in expand(paths):
        frames = read_frames(path)
        if not frames:
            print(f"warning: {path}: not a readable image or video, skipped", file=sys.stderr)
        images += frames
    if not images:
        raise CalibrationError(f"{', '.join(paths)}: no readable image or video frame")
    return images


def warn_if_few(images: list[np.ndarray], num: int) -> None:
    if len(images) < MIN_RECOMMENDED:
        print(f"warning: {len(images)} calibration image{'s' if len(images) != 1 else ''}; "
              f"at least {MIN_RECOMMENDED} real images from your deployment are recommended "
              "(pass them with --calib)."
              + (f" Using flips and crops of these to reach {num} samples."
                 if num > len(images) else ""), file=sys.stderr)


def samples(images: list[np.ndarray], num: int, width: int, height: int,
            seed: int = 0, stretch: bool = False) -> Iterator[np.ndarray]:
    """`num` letterboxed float32 (1, H, W, 3) RGB 0..1 tensors: each image once, then views."""
    rng = np.random.default_rng(seed)
    for i in range(num):
        image = images[i] if i < len(images) else _augment(images[i % len(images)], rng)
        tensor, _ = letterbox(image, width, height, dtype=np.float32, stretch=stretch)
        yield tensor
