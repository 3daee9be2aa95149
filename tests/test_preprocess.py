"""letterbox(): darknet's geometry, pad values, dtypes, channel layouts, box mapping."""
from __future__ import annotations

import ctypes
import os

import numpy as np
import pytest

from yolo_tpu.preprocess import PAD_FLOAT, PAD_UINT8, Letterbox, letterbox, letterbox_geometry

LIBDARKNET = "/usr/lib/darknet/libdarknet.so"

# (src w, src h, dst w, dst h): landscape, portrait, tiny, odd paddings, same size, up/down-scaling
SIZES = [
    (640, 480, 416, 416), (480, 640, 416, 416), (5, 3, 416, 416), (3, 5, 416, 416),
    (1280, 720, 416, 416), (333, 777, 416, 416), (416, 416, 416, 416), (100, 37, 320, 192),
    (1920, 1080, 608, 352), (7, 7, 416, 416), (1, 1, 32, 32), (999, 1000, 416, 416),
]


def _image(rng: np.random.Generator, w: int, h: int, channels: int = 3) -> np.ndarray:
    # values >= 160 so that nothing in the image can be mistaken for the 127 / 0.5 padding
    shape = (h, w) if channels == 1 else (h, w, channels)
    return rng.integers(160, 256, shape, dtype=np.uint8)


def _expected_inner(src_w: int, src_h: int, dst_w: int, dst_h: int) -> tuple[int, int, int, int]:
    """darknet letterbox_image: new size by int truncation, offset by int halving."""
    if dst_w / src_w < dst_h / src_h:
        new_w, new_h = dst_w, src_h * dst_w // src_w
    else:
        new_w, new_h = src_w * dst_h // src_h, dst_h
    return (dst_w - new_w) // 2, (dst_h - new_h) // 2, new_w, new_h


@pytest.mark.parametrize("size", SIZES)
def test_uint8_geometry_pad_and_content(size) -> None:
    src_w, src_h, dst_w, dst_h = size
    img = _image(np.random.default_rng(0), src_w, src_h)
    tensor, box = letterbox(img, dst_w, dst_h)
    assert tensor.shape == (1, dst_h, dst_w, 3) and tensor.dtype == np.uint8
    px, py, nw, nh = _expected_inner(src_w, src_h, dst_w, dst_h)
    assert (box.pad_x, box.pad_y, box.new_w, box.new_h) == (px, py, nw, nh)
    pad = np.ones((dst_h, dst_w), bool)
    pad[py:py + nh, px:px + nw] = False
    assert np.all(tensor[0][pad] == PAD_UINT8)
    assert np.all(tensor[0][~pad] >= 160)
    if (nw, nh) == (src_w, src_h):
        np.testing.assert_array_equal(tensor[0, py:py + nh, px:px + nw], img[:, :, ::-1])  # BGR->RGB


def test_constant_colour_is_exact_and_rgb() -> None:
    img = np.empty((48, 64, 3), np.uint8)
    img[:] = (10, 200, 250)  # B, G, R
    tensor, box = letterbox(img, 416, 416)
    inner = tensor[0, box.pad_y:box.pad_y + box.new_h, box.pad_x:box.pad_x + box.new_w]
    assert np.all(inner == np.array([250, 200, 10], np.uint8))
    f, _ = letterbox(img, 416, 416, dtype=np.float32)
    finner = f[0, box.pad_y:box.pad_y + box.new_h, box.pad_x:box.pad_x + box.new_w]
    np.testing.assert_allclose(finner, np.broadcast_to(np.array([250, 200, 10]) / 255.0, finner.shape), atol=1e-7)


@pytest.mark.parametrize("size", SIZES[:6])
def test_float_and_int8_are_the_uint8_tensor_rescaled(size) -> None:
    src_w, src_h, dst_w, dst_h = size
    img = _image(np.random.default_rng(1), src_w, src_h)
    u8, box = letterbox(img, dst_w, dst_h)
    f32, fbox = letterbox(img, dst_w, dst_h, dtype=np.float32)
    i8, ibox = letterbox(img, dst_w, dst_h, dtype=np.int8)
    assert box == fbox == ibox
    assert f32.dtype == np.float32 and i8.dtype == np.int8
    pad = u8[0] == PAD_UINT8
    assert np.all(f32[0][pad] == PAD_FLOAT)  # darknet's 0.5 grey, exactly
    np.testing.assert_array_equal(f32[0][~pad], u8[0][~pad].astype(np.float32) / np.float32(255))
    assert f32.min() >= 0.0 and f32.max() <= 1.0
    np.testing.assert_array_equal(i8.astype(np.int16), u8.astype(np.int16) - 128)


def test_uint8_path_never_makes_float(monkeypatch) -> None:
    import cv2

    from yolo_tpu import preprocess

    seen = []
    real_warp, real_cvt = cv2.warpAffine, cv2.cvtColor

    def warp(src, *a, **k):  # darknet_resize
        seen.append(src.dtype)
        r = real_warp(src, *a, **k)
        seen.append(r.dtype)
        return r

    def cvt(src, *a, **k):
        seen.append(src.dtype)
        r = real_cvt(src, *a, **k)
        seen.append(r.dtype)
        return r

    monkeypatch.setattr(preprocess.cv2, "warpAffine", warp)
    monkeypatch.setattr(preprocess.cv2, "cvtColor", cvt)
    for w, h in [(640, 480), (5, 3)]:
        for stretch in (False, True):
            tensor, _ = letterbox(_image(np.random.default_rng(2), w, h), 416, 416,
                                  stretch=stretch)
            assert tensor.dtype == np.uint8
    assert len(seen) >= 16 and all(d == np.uint8 for d in seen)


def test_out_buffer_is_filled_in_place() -> None:
    rng = np.random.default_rng(3)
    buf = np.full((1, 416, 416, 3), 7, np.uint8)
    a, _ = letterbox(_image(rng, 640, 480), 416, 416, out=buf)
    assert a is buf
    # the other orientation next: no stale pixels of the first frame may survive in the pad
    fresh, _ = letterbox(_image(np.random.default_rng(4), 480, 640), 416, 416)
    reused, _ = letterbox(_image(np.random.default_rng(4), 480, 640), 416, 416, out=buf)
    np.testing.assert_array_equal(reused, fresh)
    with pytest.raises(ValueError):
        letterbox(_image(rng, 10, 10), 416, 416, out=np.empty((1, 416, 416, 3), np.float32))


@pytest.mark.parametrize("channels", [1, "1c", 4])
def test_grayscale_and_bgra(channels) -> None:
    rng = np.random.default_rng(5)
    bgr = _image(rng, 64, 48)
    if channels == 4:
        alpha = rng.integers(0, 256, (48, 64, 1), dtype=np.uint8)
        img = np.concatenate([bgr, alpha], axis=2)
        expected, _ = letterbox(bgr, 416, 416)  # alpha is dropped
    else:
        grey = bgr[:, :, 0]
        img = grey if channels == 1 else grey[:, :, None]
        expected, _ = letterbox(np.repeat(grey[:, :, None], 3, axis=2), 416, 416)
    tensor, _ = letterbox(img, 416, 416)
    np.testing.assert_array_equal(tensor, expected)


def test_bad_images_raise() -> None:
    with pytest.raises(ValueError):
        letterbox(np.zeros((4, 4, 2), np.uint8), 416, 416)
    with pytest.raises(TypeError):
        letterbox(np.zeros((4, 4, 3), np.float32), 416, 416)
    with pytest.raises(ValueError):
        letterbox(np.zeros((0, 4, 3), np.uint8), 416, 416)


@pytest.mark.parametrize("size", SIZES)
def test_boxes_round_trip(size) -> None:
    src_w, src_h, dst_w, dst_h = size
    box = letterbox_geometry(src_w, src_h, dst_w, dst_h)
    rng = np.random.default_rng(6)
    xy = rng.uniform(0, 1, (50, 2)) * [src_w, src_h]
    wh = rng.uniform(0, 1, (50, 2)) * ([src_w, src_h] - xy)
    src = np.hstack([xy, xy + wh]).astype(np.float32)
    src[0] = [0, 0, src_w, src_h]  # the whole image maps onto the resized area exactly
    inp = box.to_input(src)
    np.testing.assert_allclose(inp[0], [box.pad_x, box.pad_y, box.pad_x + box.new_w, box.pad_y + box.new_h],
                               atol=1e-3)
    np.testing.assert_allclose(box.to_source(inp), src, rtol=1e-5, atol=1e-3)


def test_to_source_clips_to_the_image() -> None:
    box = letterbox_geometry(640, 480, 416, 416)  # 416x312 at y=52
    out = box.to_source(np.array([[-10, 0, 500, 416], [100, 60, 200, 100]], np.float32))
    np.testing.assert_allclose(out[0], [0, 0, 640, 480])
    np.testing.assert_allclose(out[1], [100 / 0.65, 8 / 0.65, 200 / 0.65, 48 / 0.65], rtol=1e-5)
    assert isinstance(box, Letterbox) and box.to_source(np.empty((0, 4))).shape == (0, 4)


# --- against darknet's own letterbox_image, through ctypes ----------------------------------

class _DarknetImage(ctypes.Structure):
    _fields_ = [("w", ctypes.c_int), ("h", ctypes.c_int), ("c", ctypes.c_int),
                ("data", ctypes.POINTER(ctypes.c_float))]


@pytest.fixture(scope="module")
def darknet():
    if not os.path.exists(LIBDARKNET):
        pytest.skip(f"{LIBDARKNET} not installed (Debian package 'darknet')")
    lib = ctypes.CDLL(LIBDARKNET)
    lib.make_image.restype = _DarknetImage
    lib.make_image.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.letterbox_image.restype = _DarknetImage
    lib.letterbox_image.argtypes = [_DarknetImage, ctypes.c_int, ctypes.c_int]
    lib.free_image.restype = None
    lib.free_image.argtypes = [_DarknetImage]

    def run(bgr: np.ndarray, w: int, h: int) -> np.ndarray:
        """darknet letterbox of a BGR uint8 image, back as (h, w, 3) RGB float."""
        chw = np.ascontiguousarray(bgr[:, :, ::-1].transpose(2, 0, 1), dtype=np.float32) / np.float32(255)
        im = lib.make_image(bgr.shape[1], bgr.shape[0], 3)
        ctypes.memmove(im.data, chw.ctypes.data, chw.nbytes)
        boxed = lib.letterbox_image(im, w, h)
        try:
            data = np.ctypeslib.as_array(boxed.data, shape=(3, boxed.h, boxed.w)).copy()
        finally:
            lib.free_image(boxed)
            lib.free_image(im)
        return data.transpose(1, 2, 0)

    return run


@pytest.mark.parametrize("size", SIZES)
def test_matches_darknet_letterbox_image(darknet, size) -> None:
    src_w, src_h, dst_w, dst_h = size
    rng = np.random.default_rng(7)
    # a smooth image: the resize is darknet's (corner-aligned bilinear), computed by OpenCV
    # with 1/32-pixel positions and 8-bit output; where the padding is is compared exactly
    yy, xx = np.mgrid[0:src_h, 0:src_w]
    smooth = 160 + 90 * (0.5 + 0.5 * np.sin(xx / max(src_w, 1) * 3 + yy / max(src_h, 1) * 2 + rng.uniform(0, 6, 3)[:, None, None]))
    img = smooth.transpose(1, 2, 0).astype(np.uint8)
    ours, _ = letterbox(img, dst_w, dst_h, dtype=np.float32)
    ref = darknet(img, dst_w, dst_h)
    assert ref.shape == ours[0].shape
    pad_ref = np.all(ref == 0.5, axis=2)
    pad_ours = np.all(ours[0] == PAD_FLOAT, axis=2)
    np.testing.assert_array_equal(pad_ours, pad_ref)
    diff = np.abs(ours[0][~pad_ref] - ref[~pad_ref])
    # every size, even a 5x3 image blown up 80 times: within the 8-bit rounding (0.5/255)
    assert diff.mean() < 0.3 / 255 and diff.max() < 0.6 / 255
    # and on a constant colour, where the resize method cannot matter, they are equal
    flat = np.empty((src_h, src_w, 3), np.uint8)
    flat[:] = (30, 140, 220)
    ours, _ = letterbox(flat, dst_w, dst_h, dtype=np.float32)
    np.testing.assert_allclose(ours[0], darknet(flat, dst_w, dst_h), atol=1e-6)
