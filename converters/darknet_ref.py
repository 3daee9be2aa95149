"""Darknet itself, through ctypes: the reference our converter and runtime are measured against.

Two darknets: Debian's `darknet` package (pjreddie's 2018 tree, `/usr/lib/darknet`), the
reference for the YOLOv3 family, and AlexeyAB's, built from source by `make alexeyab`
(build/darknet-alexeyab/libdarknet.so), the reference for everything newer (route groups,
scale_x_y, new_coords, mish, DIoU NMS, letter_box). Both expose `struct layer` only by
value, so the offsets of the few fields we read are taken from each one's own header by
compiling a small probe with the system C compiler once; guessing a 1 KiB struct's layout
by hand would be fragile.
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

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIB = "/usr/lib/darknet/libdarknet.so"
HEADER_DIR = "/usr/lib/darknet/include"
ALEXEYAB_DIR = os.environ.get("YOLO_TPU_ALEXEYAB",
                              os.path.join(ROOT, "build", "darknet-alexeyab"))


class DarknetUnavailable(RuntimeError):
    """The darknet library (or a C compiler to read its header) is missing."""


@dataclass(frozen=True)
class Reference:
    """One darknet build: where its library and header are, which fields we read."""

    name: str
    lib: str
    header_dir: str
    layer_fields: tuple[str, ...]
    network_fields: tuple[str, ...]
    how_to_get: str


DEBIAN = Reference(
    "debian", LIB, HEADER_DIR,
    ("type", "outputs", "output", "out_w", "out_h", "out_c", "n", "classes"),
    ("n", "layers", "w", "h"),
    "install Debian's darknet package (apt-get install darknet)")
ALEXEYAB = Reference(
    "alexeyab", os.path.join(ALEXEYAB_DIR, "libdarknet.so"),
    os.path.join(ALEXEYAB_DIR, "include"),
    ("type", "outputs", "output", "out_w", "out_h", "out_c", "n", "classes", "nms_kind",
     "beta_nms", "new_coords", "scale_x_y"),
    ("n", "layers", "w", "h", "letter_box"),
    "run `make alexeyab` (builds AlexeyAB's darknet from ../shared/reference into build/)")
# Random weights that make AlexeyAB's cfgs informative at a small input: cfg -> (input size,
# kernel scale, objectness bias), with class biases -2.5 and w/h biases -1.5. Objectness
# logits then vary by about one across cells (not all 0.5, not saturated) and a photo gets
# tens of boxes, not thousands at 0.25. Shared by tests/test_alexeyab.py and
# scripts/alexeyab_coverage.py.
RANDOM_WEIGHTS = {
    "yolov4-tiny": (160, 1.617, -2.68),
    "yolov4-tiny-custom": (160, 1.617, -2.68),
    "yolov4-tiny-3l": (160, 1.633, -3.45),
    "yolov3-tiny-prn": (160, 1.367, -2.83),
    "yolov4": (128, 1.289, -3.24),
    "yolov7-tiny": (160, 1.508, -3.2),
    "yolov2-tiny": (160, 1.57, -3.7),
    "yolo-fastest-1.1": (160, 1.102, -2.94),
}
HEAD_BIAS = {"classes": -2.5, "wh": -1.5}


def write_random_weights(path: str, net, name: str) -> None:
    """`RANDOM_WEIGHTS[name]`'s weights for `net` (same seed each time)."""
    from .weights import write_weights
    _, scale, objectness = RANDOM_WEIGHTS[name]
    write_weights(path, net, np.random.default_rng(0), scale=scale,
                  head_bias={"objectness": objectness, **HEAD_BIAS})


_FLOAT_FIELDS = {"beta_nms", "scale_x_y"}
_PTR_FIELDS = {"output", "layers"}
NMS_KINDS = ("default", "greedynms", "diounms", "cornersnms")  # darknet's NMS_KIND order


class _Image(ctypes.Structure):
    _fields_ = [("w", ctypes.c_int), ("h", ctypes.c_int), ("c", ctypes.c_int),
                ("data", ctypes.POINTER(ctypes.c_float))]


class _Box(ctypes.Structure):
    _fields_ = [("x", ctypes.c_float), ("y", ctypes.c_float), ("w", ctypes.c_float),
                ("h", ctypes.c_float)]


class _DebianDetection(ctypes.Structure):
    _fields_ = [("bbox", _Box), ("classes", ctypes.c_int),
                ("prob", ctypes.POINTER(ctypes.c_float)),
                ("mask", ctypes.POINTER(ctypes.c_float)), ("objectness", ctypes.c_float),
                ("sort_class", ctypes.c_int)]


class _AlexeyABDetection(ctypes.Structure):
    _fields_ = [("bbox", _Box), ("classes", ctypes.c_int), ("best_class_idx", ctypes.c_int),
                ("prob", ctypes.POINTER(ctypes.c_float)),
                ("mask", ctypes.POINTER(ctypes.c_float)), ("objectness", ctypes.c_float),
                ("sort_class", ctypes.c_int), ("uc", ctypes.POINTER(ctypes.c_float)),
                ("points", ctypes.c_int), ("embeddings", ctypes.POINTER(ctypes.c_float)),
                ("embedding_size", ctypes.c_int), ("sim", ctypes.c_float),
                ("track_id", ctypes.c_int)]


def available(ref: Reference = DEBIAN) -> str | None:
    """None when the reference can run here, else why not (for pytest skip reasons)."""
    if not os.path.exists(ref.lib):
        return f"{ref.lib} not found: {ref.how_to_get}"
    try:
        _offsets(ref)
    except DarknetUnavailable as e:
        return str(e)
    return None


def _offsets(ref: Reference) -> dict[str, int]:
    """sizeof(layer), the layer/network field offsets, and the YOLO/REGION enum values."""
    header = os.path.join(ref.header_dir, "darknet.h")
    with open(header, "rb") as f:
        key = hashlib.sha256(f.read() + repr(ref).encode()).hexdigest()[:16]
    cache = os.path.join(tempfile.gettempdir(), f"yolo_tpu_darknet_offsets_{key}.txt")
    names = (["sizeof_layer", "YOLO", "REGION"] + [f"layer.{f}" for f in ref.layer_fields]
             + [f"network.{f}" for f in ref.network_fields])
    if not os.path.exists(cache):
        values = (["sizeof(layer)", "(size_t)YOLO", "(size_t)REGION"]
                  + [f"offsetof(layer,{f})" for f in ref.layer_fields]
                  + [f"offsetof(network,{f})" for f in ref.network_fields])
        src = ('#include <stdio.h>\n#include <stddef.h>\n#include "darknet.h"\n'
               'int main(){\n' + "".join(f'printf("%zu\\n", {v});\n' for v in values)
               + "return 0;}\n")
        with tempfile.TemporaryDirectory() as d:
            c, exe = os.path.join(d, "probe.c"), os.path.join(d, "probe")
            with open(c, "w") as f:
                f.write(src)
            try:
                subprocess.run(["cc", f"-I{ref.header_dir}", c, "-o", exe], check=True,
                               capture_output=True)
                out = subprocess.run([exe], check=True, capture_output=True, text=True).stdout
            except (OSError, subprocess.CalledProcessError) as e:
                raise DarknetUnavailable(f"cannot compile the darknet.h layout probe: {e}")
        with open(cache, "w") as f:
            f.write(out)
    with open(cache) as f:
        return dict(zip(names, map(int, f.read().split())))


@dataclass
class Detection:
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in source pixels
    score: float
    class_id: int


class Darknet:
    """One loaded darknet network: raw forward pass and darknet's own detection pipeline."""

    def __init__(self, cfg: str, weights: str, ref: Reference = DEBIAN):
        reason = available(ref)
        if reason:
            raise DarknetUnavailable(reason)
        self.ref, self.off = ref, _offsets(ref)
        self.alexeyab = ref.name == "alexeyab"
        lib = self.lib = ctypes.CDLL(ref.lib)
        self._Detection = _AlexeyABDetection if self.alexeyab else _DebianDetection
        lib.load_image_color.restype = _Image
        lib.load_image_color.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_int]
        lib.letterbox_image.restype = lib.resize_image.restype = _Image
        lib.letterbox_image.argtypes = lib.resize_image.argtypes = [_Image, ctypes.c_int,
                                                                    ctypes.c_int]
        lib.free_image.argtypes = [_Image]
        dets = ctypes.POINTER(self._Detection)
        lib.get_network_boxes.restype = dets
        lib.do_nms_sort.argtypes = [dets, ctypes.c_int, ctypes.c_int, ctypes.c_float]
        lib.free_detections.argtypes = [dets, ctypes.c_int]
        lib.network_width.argtypes = lib.network_height.argtypes = [ctypes.c_void_p]
        if self.alexeyab:
            lib.load_network_custom.restype = ctypes.c_void_p
            lib.load_network_custom.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int,
                                                ctypes.c_int]
            lib.network_predict_ptr.restype = ctypes.POINTER(ctypes.c_float)
            lib.network_predict_ptr.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_float)]
            lib.get_network_boxes.argtypes = [
                ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_float, ctypes.c_float,
                ctypes.POINTER(ctypes.c_int), ctypes.c_int, ctypes.POINTER(ctypes.c_int),
                ctypes.c_int]
            lib.diounms_sort.argtypes = [dets, ctypes.c_int, ctypes.c_int, ctypes.c_float,
                                         ctypes.c_int, ctypes.c_float]
            lib.free_network_ptr.argtypes = [ctypes.c_void_p]
            self.net = lib.load_network_custom(cfg.encode(), weights.encode(), 0, 1)
        else:
            lib.load_network.restype = ctypes.c_void_p
            lib.load_network.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int]
            lib.set_batch_network.argtypes = [ctypes.c_void_p, ctypes.c_int]
            lib.network_predict.restype = ctypes.POINTER(ctypes.c_float)
            lib.network_predict.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_float)]
            lib.get_network_boxes.argtypes = [
                ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_float, ctypes.c_float,
                ctypes.POINTER(ctypes.c_int), ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
            lib.free_network.argtypes = [ctypes.c_void_p]
            self.net = lib.load_network(cfg.encode(), weights.encode(), 0)
            if self.net:
                lib.set_batch_network(self.net, 1)
        if not self.net:
            raise RuntimeError(f"darknet could not load {cfg} / {weights}")
        self.n = self._net_field("n")
        self.layers_ptr = self._net_field("layers")

    def _net_field(self, name: str):
        addr = self.net + self.off[f"network.{name}"]
        if name in _PTR_FIELDS:
            return ctypes.c_void_p.from_address(addr).value
        return ctypes.c_int.from_address(addr).value

    def _layer_field(self, i: int, name: str):
        addr = self.layers_ptr + i * self.off["sizeof_layer"] + self.off[f"layer.{name}"]
        if name in _PTR_FIELDS:
            return ctypes.c_void_p.from_address(addr).value
        if name in _FLOAT_FIELDS:
            return ctypes.c_float.from_address(addr).value
        return ctypes.c_int.from_address(addr).value

    def _head_indices(self) -> list[int]:
        kinds = (self.off["YOLO"], self.off["REGION"])
        return [i for i in range(self.n) if self._layer_field(i, "type") in kinds]

    @property
    def letter_box(self) -> bool:
        """Whether darknet's detector letterboxes this network's input."""
        return bool(self._net_field("letter_box")) if self.alexeyab else True

    def nms(self) -> tuple[str, float]:
        """The detector's NMS kind and beta: the last detection layer's (AlexeyAB)."""
        if not self.alexeyab:
            return "default", 0.6
        last = self._head_indices()[-1]
        return NMS_KINDS[self._layer_field(last, "nms_kind")], self._layer_field(last, "beta_nms")

    def head_outputs(self) -> list[np.ndarray]:
        """Outputs of the [yolo]/[region] layers after the last forward pass, as (h, w, c).

        Darknet's [yolo] applies the logistic in place to x, y, objectness and classes (not
        with new_coords) and then scale_x_y to x, y; w and h stay raw. [region] (AlexeyAB's
        CPU path) reorders to (cell, anchor, entry) and applies the logistic to objectness
        and the softmax to the classes; x, y, w, h stay raw.
        """
        result = []
        for i in self._head_indices():
            h, w, c = (self._layer_field(i, k) for k in ("out_h", "out_w", "out_c"))
            ptr = self._layer_field(i, "output")
            flat = np.ctypeslib.as_array((ctypes.c_float * (h * w * c)).from_address(ptr))
            if self._layer_field(i, "type") == self.off["REGION"] and self.alexeyab:
                result.append(flat.reshape(h, w, c).copy())
            else:
                result.append(flat.reshape(c, h, w).transpose(1, 2, 0).copy())
        return result

    yolo_outputs = head_outputs

    def _predict(self, data) -> None:
        if self.alexeyab:
            self.lib.network_predict_ptr(self.net, data)
        else:
            self.lib.network_predict(self.net, data)

    def forward(self, image_rgb01: np.ndarray) -> list[np.ndarray]:
        """Run darknet on an (H, W, 3) RGB float image in 0..1 at the network's input size."""
        chw = np.ascontiguousarray(image_rgb01.transpose(2, 0, 1), dtype=np.float32)
        self._predict(chw.ctypes.data_as(ctypes.POINTER(ctypes.c_float)))
        return self.head_outputs()

    def detect(self, image_path: str, thresh: float = 0.25, nms: float = 0.45,
               letter_box: bool | None = None) -> list[Detection]:
        """Darknet's `detector test` pipeline: its image loader, resize, boxes and NMS.

        Debian's darknet always letterboxes; AlexeyAB's stretches unless the cfg says
        `letter_box=1` (or `letter_box` is given here, like its `-letter_box` flag), and
        takes the NMS kind from the cfg's last [yolo] layer.
        """
        lib = self.lib
        letter = self.letter_box if letter_box is None else letter_box
        im = lib.load_image_color(image_path.encode(), 0, 0)
        if im.w == 0:
            raise RuntimeError(f"darknet could not read {image_path}")
        try:
            net_w, net_h = lib.network_width(self.net), lib.network_height(self.net)
            sized = (lib.letterbox_image if letter else lib.resize_image)(im, net_w, net_h)
            try:
                self._predict(sized.data)
            finally:
                lib.free_image(sized)
            return self._detections(im.w, im.h, letter, thresh, nms)
        finally:
            lib.free_image(im)

    def detect_input(self, image_rgb01: np.ndarray, src_w: int, src_h: int, letter_box: bool,
                     thresh: float = 0.25, nms: float = 0.45) -> list[Detection]:
        """Darknet's detector on an input tensor prepared elsewhere (e.g. by our runtime),
        boxes mapped to a `src_w` x `src_h` source as its `detector test` maps them."""
        chw = np.ascontiguousarray(image_rgb01.transpose(2, 0, 1), dtype=np.float32)
        self._predict(chw.ctypes.data_as(ctypes.POINTER(ctypes.c_float)))
        return self._detections(src_w, src_h, letter_box, thresh, nms)

    def _detections(self, im_w: int, im_h: int, letter: bool, thresh: float,
                    nms: float) -> list[Detection]:
        """get_network_boxes + the cfg's NMS after a forward pass, in source pixels."""
        lib = self.lib
        num = ctypes.c_int(0)
        if self.alexeyab:
            dets = lib.get_network_boxes(self.net, im_w, im_h, thresh, 0.5, None, 1,
                                         ctypes.byref(num), int(letter))
        else:
            dets = lib.get_network_boxes(self.net, im_w, im_h, thresh, 0.5, None, 1,
                                         ctypes.byref(num))
        try:
            classes = dets[0].classes if num.value else 0
            kind, beta = self.nms()
            if num.value and kind == "default":
                lib.do_nms_sort(dets, num.value, classes, nms)
            elif num.value:
                lib.diounms_sort(dets, num.value, classes, nms, NMS_KINDS.index(kind), beta)
            out = []
            for k in range(num.value):
                d = dets[k]
                b = d.bbox
                box = ((b.x - b.w / 2) * im_w, (b.y - b.h / 2) * im_h,
                       (b.x + b.w / 2) * im_w, (b.y + b.h / 2) * im_h)
                # clipped to the image as the runtime clips (edges, 0..w; darknet's drawing
                # clips to the last pixel's index, w - 1), and like the runtime, a box wholly
                # outside the image (its centre in the letterbox padding) is no detection
                box = tuple(min(max(v, 0.0), float(lim))
                            for v, lim in zip(box, (im_w, im_h, im_w, im_h)))
                if box[2] <= box[0] or box[3] <= box[1]:
                    continue
                for j in range(classes):
                    if d.prob[j] > thresh:
                        out.append(Detection(box, float(d.prob[j]), j))
            return out
        finally:
            lib.free_detections(dets, num.value)

    def close(self) -> None:
        if self.net:
            if self.alexeyab:
                self.lib.free_network_ptr(self.net)
            else:
                self.lib.free_network(self.net)
            self.net = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def head_activate(out: np.ndarray, head) -> np.ndarray:
    """What darknet's [yolo] / [region] forward does to one raw head (h, w, A * (5 + C)).

    `head` is a yolo_tpu.meta.Head (anchors per head, kind, scale_x_y, new_coords).
    """
    h, w, c = out.shape
    a = len(head.mask)
    v = out.reshape(h, w, a, c // a).astype(np.float64)
    if head.kind == "region":
        v[..., 4] = 1 / (1 + np.exp(-v[..., 4]))
        e = np.exp(v[..., 5:] - v[..., 5:].max(axis=-1, keepdims=True))
        v[..., 5:] = e / e.sum(axis=-1, keepdims=True)
        return v.reshape(h, w, c)
    if not head.new_coords:
        v[..., 0:2] = 1 / (1 + np.exp(-v[..., 0:2]))
        v[..., 4:] = 1 / (1 + np.exp(-v[..., 4:]))
    s = head.scale_x_y
    v[..., 0:2] = v[..., 0:2] * s - 0.5 * (s - 1)
    return v.reshape(h, w, c)


def yolo_activate(out: np.ndarray, anchors: int) -> np.ndarray:
    """darknet's plain [yolo] (logistic on x, y, obj and classes) for `anchors` anchors."""
    from yolo_tpu.meta import Head
    return head_activate(out, Head(tuple(range(anchors)), ((1.0, 1.0),) * anchors, 1))


def head_differences(ours: list[np.ndarray], ref: list[np.ndarray],
                     heads) -> list[tuple[float, float]]:
    """Per head: (largest |ours - darknet|, largest |ours - darknet| / max(1, |darknet|)).

    `ours` are raw (1, h, w, c) heads, `ref` darknet's activated (h, w, c) outputs, `heads`
    the metadata heads (or, for plain [yolo] heads, anchor counts).
    """
    if [o.shape[1:] for o in ours] != [r.shape for r in ref]:
        raise ValueError(f"head shapes differ: {[o.shape for o in ours]} vs "
                         f"{[r.shape for r in ref]}")
    result = []
    for o, r, head in zip(ours, ref, heads):
        mine = yolo_activate(o[0], head) if isinstance(head, int) else head_activate(o[0], head)
        diff = np.abs(mine - r)
        result.append((float(diff.max()), float((diff / np.maximum(1.0, np.abs(r))).max())))
    return result


def cfg_with_size(src: str, dst: str, width: int, height: int,
                  net_keys: dict[str, object] | None = None) -> str:
    """Write a copy of cfg `src` with another [net] size (darknet reads it from the cfg),
    and optionally other [net] keys set (e.g. letter_box)."""
    with open(src) as f:
        text = f.read()
    text = re.sub(r"(?m)^\s*width\s*=.*$", f"width={width}", text, count=1)
    text = re.sub(r"(?m)^\s*height\s*=.*$", f"height={height}", text, count=1)
    for key, value in (net_keys or {}).items():
        text, n = re.subn(rf"(?m)^\s*{key}\s*=.*$", f"{key}={value}", text, count=1)
        if not n:
            text = re.sub(r"(?m)^\s*width\s*=", f"{key}={value}\nwidth=", text, count=1)
    with open(dst, "w") as f:
        f.write(text)
    return dst
