"""OpenCV 4 DNN on the same cfg and weights, its darknet-style postprocessing, and the
venv with OpenCV 4 that still reads darknet models.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time

from .common import (
    BENCH_DIR,
    CANDIDATE_CONF,
    CFG,
    CONF,
    INPUT_SIZE,
    IOU,
    MODES,
    OPENCV4,
    OPENCV4_VENV,
    ROOT,
    say,
    timed,
)


def opencv_postprocess(outputs: list, width: int, height: int, conf: float,
                       iou: float):
    """Darknet-style boxes from OpenCV's [yolo] outputs: (N, 6) x1 y1 x2 y2 score class.

    OpenCV's rows are cx, cy, w, h (relative to the stretched input, so to the image),
    objectness, then objectness * class probability per class. As darknet does: a
    (box, class) pair per probability above `conf`, greedy NMS per class, boxes clipped
    to the image afterwards.
    """
    import cv2
    import numpy as np
    rows = np.concatenate([np.asarray(o).reshape(-1, np.asarray(o).shape[-1]) for o in outputs])
    probs = rows[:, 5:]
    r, c = np.nonzero(probs > conf)
    if not len(r):
        return np.zeros((0, 6), np.float32)
    cx, cy = rows[r, 0] * width, rows[r, 1] * height
    bw, bh = rows[r, 2] * width, rows[r, 3] * height
    boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1)
    scores = probs[r, c]
    keep: list[int] = []
    for cls in np.unique(c):
        idx = np.nonzero(c == cls)[0]
        xywh = boxes[idx].astype(np.float64)
        xywh[:, 2:] -= xywh[:, :2]
        kept = cv2.dnn.NMSBoxes(xywh.tolist(), scores[idx].tolist(), conf, iou)
        keep.extend(idx[np.asarray(kept, np.int64).reshape(-1)].tolist())
    keep_idx = np.asarray(keep, np.int64)
    clipped = np.clip(boxes[keep_idx], 0, [width - 1, height - 1, width - 1, height - 1])
    return np.column_stack([clipped, scores[keep_idx], c[keep_idx]]).astype(np.float32)


class OpencvRunner:
    """OpenCV 4 DNN on the darknet cfg and weights: 416x416, 1/255, swapRB, no letterbox."""

    modes = MODES

    def __init__(self, spec: dict):
        import cv2
        self.cv2 = cv2
        self.spec = spec
        self.images = spec["images"]
        self.net = cv2.dnn.readNetFromDarknet(spec["cfg"], spec["weights"])
        self.score_net = None
        self.outputs = self.net.getUnconnectedOutLayersNames()
        self.frames = [cv2.imread(p) for p in self.images]
        self.blobs = [self.blob(f) for f in self.frames]
        self.threads = f"{cv2.getNumThreads()} threads (OpenCV's default)"
        self.thread_count = cv2.getNumThreads()

    def blob(self, frame):
        return self.cv2.dnn.blobFromImage(frame, 1 / 255, (INPUT_SIZE, INPUT_SIZE),
                                          swapRB=True, crop=False)

    def forward(self, net, blob) -> list:
        net.setInput(blob)
        return net.forward(self.outputs)

    def detect_frame(self, frame, net, conf: float):
        h, w = frame.shape[:2]
        return opencv_postprocess(self.forward(net, self.blob(frame)), w, h, conf, IOU)

    def time(self, mode: str) -> list[float]:
        if mode == "file":
            return timed(lambda p: self.detect_frame(self.cv2.imread(p), self.net, CONF),
                         self.images)
        if mode == "frame":
            return timed(lambda f: self.detect_frame(f, self.net, CONF), self.frames)
        return timed(lambda b: self.forward(self.net, b), self.blobs)

    def detect(self, conf: float) -> list[list[list[float]]]:
        # OpenCV zeroes class scores under its [yolo] `thresh` (default 0.2); the scoring
        # net reads a cfg copy with thresh=0.005, so its low-confidence candidates count
        # as ours do. Timing uses the unmodified cfg.
        if self.score_net is None:
            self.score_net = self.cv2.dnn.readNetFromDarknet(self.spec["score_cfg"],
                                                             self.spec["weights"])
        return [self.detect_frame(f, self.score_net, conf).tolist() for f in self.frames]

    def versions(self) -> dict[str, str]:
        import numpy
        return {"opencv (DNN worker)": self.cv2.__version__,
                "numpy (DNN worker)": numpy.__version__}


def opencv4_python() -> tuple[str | None, str]:
    """The OpenCV-4 venv's python (created on first use), or None and why not."""
    python = os.path.join(OPENCV4_VENV, "bin", "python")
    stamp = os.path.join(OPENCV4_VENV, f".installed-opencv-{OPENCV4}")
    if os.path.exists(stamp):
        return python, ""
    say(f"setting up {os.path.relpath(OPENCV4_VENV, ROOT)} with opencv-python-headless=="
        f"{OPENCV4} (one time; OpenCV 5 has no darknet importer) ...")
    t0 = time.perf_counter()
    steps = ([sys.executable, "-m", "venv", "--clear", OPENCV4_VENV],
             [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
              f"opencv-python-headless=={OPENCV4}", "numpy"])
    for step in steps:
        r = subprocess.run(step, capture_output=True, text=True)
        if r.returncode != 0:
            lines = [line for line in (r.stderr + r.stdout).splitlines() if line.strip()]
            return None, f"cannot set up OpenCV {OPENCV4}: {lines[-1] if lines else step[2]}"
    open(stamp, "w").close()
    say(f"  done in {time.perf_counter() - t0:.0f} s")
    return python, ""


def opencv_score_cfg() -> str:
    """A copy of the cfg whose [yolo] sections say thresh=0.005 (OpenCV's own key)."""
    with open(CFG) as f:
        text = f.read()
    path = os.path.join(BENCH_DIR, "yolov3-tiny_opencv-thresh.cfg")
    with open(path, "w") as f:
        f.write(re.sub(r"(?m)^\[yolo\]\s*$", f"[yolo]\nthresh={CANDIDATE_CONF}", text))
    return path
