"""Darknet itself, through ctypes: the reference our converter and runtime are measured against.

Uses Debian's `darknet` package (`/usr/lib/darknet/libdarknet.so`). The library exposes
`struct layer` only by value, so the offsets of the few fields we read (type, outputs,
output, out_w/h/c) are taken from its own header by compiling a four-line probe with the
system C compiler once; guessing a 1 KiB struct's layout by hand would be fragile.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass

import numpy as np

LIB = "/usr/lib/darknet/libdarknet.so"
HEADER_DIR = "/usr/lib/darknet/include"
_YOLO = 23  # LAYER_TYPE enum value of YOLO in darknet.h
_FIELDS = ("sizeof_layer", "type", "outputs", "output", "out_w", "out_h", "out_c", "layers")


class DarknetUnavailable(RuntimeError):
    """Debian's darknet package (or a C compiler to read its header) is missing."""


class _Image(ctypes.Structure):
    _fields_ = [("w", ctypes.c_int), ("h", ctypes.c_int), ("c", ctypes.c_int),
                ("data", ctypes.POINTER(ctypes.c_float))]


class _Box(ctypes.Structure):
    _fields_ = [("x", ctypes.c_float), ("y", ctypes.c_float), ("w", ctypes.c_float),
                ("h", ctypes.c_float)]


class _Detection(ctypes.Structure):
    _fields_ = [("bbox", _Box), ("classes", ctypes.c_int),
                ("prob", ctypes.POINTER(ctypes.c_float)),
                ("mask", ctypes.POINTER(ctypes.c_float)), ("objectness", ctypes.c_float),
                ("sort_class", ctypes.c_int)]


def available() -> str | None:
    """None when the reference can run here, else why not (for pytest skip reasons)."""
    if not os.path.exists(LIB):
        return f"{LIB} not found: install Debian's darknet package (apt-get install darknet)"
    try:
        _offsets()
    except DarknetUnavailable as e:
        return str(e)
    return None


def _offsets() -> dict[str, int]:
    header = os.path.join(HEADER_DIR, "darknet.h")
    with open(header, "rb") as f:
        key = hashlib.sha256(f.read()).hexdigest()[:16]
    cache = os.path.join(tempfile.gettempdir(), f"yolo_tpu_darknet_offsets_{key}.txt")
    if not os.path.exists(cache):
        src = ('#include <stdio.h>\n#include <stddef.h>\n#include "darknet.h"\n'
               'int main(){printf("%zu %zu %zu %zu %zu %zu %zu %zu\\n", sizeof(layer),'
               ' offsetof(layer,type), offsetof(layer,outputs), offsetof(layer,output),'
               ' offsetof(layer,out_w), offsetof(layer,out_h), offsetof(layer,out_c),'
               ' offsetof(network,layers)); return 0;}\n')
        with tempfile.TemporaryDirectory() as d:
            c, exe = os.path.join(d, "probe.c"), os.path.join(d, "probe")
            with open(c, "w") as f:
                f.write(src)
            try:
                subprocess.run(["cc", f"-I{HEADER_DIR}", c, "-o", exe], check=True,
                               capture_output=True)
                out = subprocess.run([exe], check=True, capture_output=True, text=True).stdout
            except (OSError, subprocess.CalledProcessError) as e:
                raise DarknetUnavailable(f"cannot compile the darknet.h layout probe: {e}")
        with open(cache, "w") as f:
            f.write(out)
    with open(cache) as f:
        return dict(zip(_FIELDS, map(int, f.read().split())))


@dataclass
class Detection:
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in source pixels
    score: float
    class_id: int


class Darknet:
    """One loaded darknet network: raw forward pass and darknet's own detection pipeline."""

    def __init__(self, cfg: str, weights: str):
        reason = available()
        if reason:
            raise DarknetUnavailable(reason)
        self.off = _offsets()
        lib = self.lib = ctypes.CDLL(LIB)
        lib.load_network.restype = ctypes.c_void_p
        lib.load_network.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int]
        lib.set_batch_network.argtypes = [ctypes.c_void_p, ctypes.c_int]
        lib.network_predict.restype = ctypes.POINTER(ctypes.c_float)
        lib.network_predict.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_float)]
        lib.load_image_color.restype = _Image
        lib.load_image_color.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_int]
        lib.letterbox_image.restype = _Image
        lib.letterbox_image.argtypes = [_Image, ctypes.c_int, ctypes.c_int]
        lib.free_image.argtypes = [_Image]
        lib.get_network_boxes.restype = ctypes.POINTER(_Detection)
        lib.get_network_boxes.argtypes = [
            ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_float, ctypes.c_float,
            ctypes.POINTER(ctypes.c_int), ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
        lib.do_nms_sort.argtypes = [ctypes.POINTER(_Detection), ctypes.c_int, ctypes.c_int,
                                    ctypes.c_float]
        lib.free_detections.argtypes = [ctypes.POINTER(_Detection), ctypes.c_int]
        lib.free_network.argtypes = [ctypes.c_void_p]
        lib.network_width.argtypes = lib.network_height.argtypes = [ctypes.c_void_p]
        self.net = lib.load_network(cfg.encode(), weights.encode(), 0)
        if not self.net:
            raise RuntimeError(f"darknet could not load {cfg} / {weights}")
        lib.set_batch_network(self.net, 1)
        n = ctypes.c_int.from_address(self.net).value  # network.n is the first field
        self.layers_ptr = ctypes.c_void_p.from_address(self.net + self.off["layers"]).value
        self.n = n

    def _layer_int(self, i: int, field: str) -> int:
        base = self.layers_ptr + i * self.off["sizeof_layer"]
        return ctypes.c_int.from_address(base + self.off[field]).value

    def yolo_outputs(self) -> list[np.ndarray]:
        """Outputs of the [yolo] layers after the last forward pass, as (h, w, c) arrays.

        Darknet's yolo layer applies the logistic in place to x, y, objectness and classes;
        w and h stay raw.
        """
        result = []
        for i in range(self.n):
            if self._layer_int(i, "type") != _YOLO:
                continue
            h, w, c = (self._layer_int(i, k) for k in ("out_h", "out_w", "out_c"))
            base = self.layers_ptr + i * self.off["sizeof_layer"]
            ptr = ctypes.c_void_p.from_address(base + self.off["output"]).value
            flat = np.ctypeslib.as_array((ctypes.c_float * (h * w * c)).from_address(ptr))
            result.append(flat.reshape(c, h, w).transpose(1, 2, 0).copy())
        return result

    def forward(self, image_rgb01: np.ndarray) -> list[np.ndarray]:
        """Run darknet on an (H, W, 3) RGB float image in 0..1 at the network's input size."""
        chw = np.ascontiguousarray(image_rgb01.transpose(2, 0, 1), dtype=np.float32)
        self.lib.network_predict(self.net, chw.ctypes.data_as(ctypes.POINTER(ctypes.c_float)))
        return self.yolo_outputs()

    def detect(self, image_path: str, thresh: float = 0.25,
               nms: float = 0.45) -> list[Detection]:
        """Darknet's `detector test` pipeline: its image loader, letterbox, boxes and NMS."""
        lib = self.lib
        im = lib.load_image_color(image_path.encode(), 0, 0)
        if im.w == 0:
            raise RuntimeError(f"darknet could not read {image_path}")
        try:
            net_w, net_h = lib.network_width(self.net), lib.network_height(self.net)
            sized = lib.letterbox_image(im, net_w, net_h)
            try:
                lib.network_predict(self.net, sized.data)
            finally:
                lib.free_image(sized)
            num = ctypes.c_int(0)
            dets = lib.get_network_boxes(self.net, im.w, im.h, thresh, 0.5, None, 1,
                                         ctypes.byref(num))
            try:
                classes = dets[0].classes if num.value else 0
                if num.value:
                    lib.do_nms_sort(dets, num.value, classes, nms)
                out = []
                for k in range(num.value):
                    d = dets[k]
                    b = d.bbox
                    box = ((b.x - b.w / 2) * im.w, (b.y - b.h / 2) * im.h,
                           (b.x + b.w / 2) * im.w, (b.y + b.h / 2) * im.h)
                    box = (max(0.0, box[0]), max(0.0, box[1]), min(im.w - 1.0, box[2]),
                           min(im.h - 1.0, box[3]))
                    for j in range(classes):
                        if d.prob[j] > thresh:
                            out.append(Detection(box, float(d.prob[j]), j))
                return out
            finally:
                lib.free_detections(dets, num.value)
        finally:
            lib.free_image(im)

    def close(self) -> None:
        if self.net:
            self.lib.free_network(self.net)
            self.net = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def yolo_activate(out: np.ndarray, anchors: int) -> np.ndarray:
    """What darknet's forward_yolo_layer does in place: logistic on x, y, obj and classes.

    `out` is one raw head (h, w, anchors * (5 + classes)) as our models output it.
    """
    h, w, c = out.shape
    v = out.reshape(h, w, anchors, c // anchors).astype(np.float64)
    v[..., 0:2] = 1 / (1 + np.exp(-v[..., 0:2]))
    v[..., 4:] = 1 / (1 + np.exp(-v[..., 4:]))
    return v.reshape(h, w, c)


def head_differences(ours: list[np.ndarray], ref: list[np.ndarray],
                     anchors_per_head: list[int]) -> list[tuple[float, float]]:
    """Per head: (largest |ours - darknet|, largest |ours - darknet| / max(1, |darknet|)).

    `ours` are raw (1, h, w, c) heads, `ref` darknet's activated (h, w, c) yolo outputs.
    """
    if [o.shape[1:] for o in ours] != [r.shape for r in ref]:
        raise ValueError(f"head shapes differ: {[o.shape for o in ours]} vs "
                         f"{[r.shape for r in ref]}")
    result = []
    for o, r, a in zip(ours, ref, anchors_per_head):
        diff = np.abs(yolo_activate(o[0], a) - r)
        result.append((float(diff.max()), float((diff / np.maximum(1.0, np.abs(r))).max())))
    return result


def cfg_with_size(src: str, dst: str, width: int, height: int) -> str:
    """Write a copy of cfg `src` with another [net] size (darknet reads it from the cfg)."""
    with open(src) as f:
        text = f.read()
    text = re.sub(r"(?m)^\s*width\s*=.*$", f"width={width}", text, count=1)
    text = re.sub(r"(?m)^\s*height\s*=.*$", f"height={height}", text, count=1)
    with open(dst, "w") as f:
        f.write(text)
    return dst
