"""Greedy non-maximum suppression, per class or class-agnostic.

Keeps the same set as OpenCV's `cv2.dnn.NMSBoxesBatched` / `cv2.dnn.NMSBoxes` (boxes sorted by
score, a box is dropped when its IoU with a kept box of its class is > the threshold, IoU with
plain `w * h` areas, no +1), but works class by class: OpenCV's batched NMS shifts each class
to its own region and then compares every candidate with *every* kept box of every class, which
is quadratic in the number of kept boxes; here a candidate only meets the kept boxes of its own
class. Compiled with numba (`cache=True`, so later processes load the machine code from disk).

AlexeyAB's darknet has two more kinds, chosen by the cfg's `nms_kind` (src/box.c,
diounms_sort): `greedynms` suppresses a box when its DIoU with a kept box, IoU - (d / c)^0.6,
exceeds the threshold (d: squared distance of the centres, c: squared diagonal of the box
enclosing both), and `diounms` the same with `beta_nms` as the exponent. DIoU changes under
stretching, so it is measured after scaling x and y by `xy_scale` (darknet measures in
coordinates relative to the image).
"""
from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["nms", "cached_njit", "uncompiled_kernels", "NMS_KINDS"]

KERNELS: list = []  # every dispatcher made by cached_njit
NMS_KINDS = ("default", "greedynms", "diounms")
GREEDY_BETA = 0.6  # box_diou's fixed exponent in darknet's greedynms


def cached_njit(func):
    """`numba.njit(cache=True)`, or plain `njit` when no cache directory is writable.

    numba caches next to the module (`__pycache__`), else in `NUMBA_CACHE_DIR` or the user's
    cache dir; it raises at decoration time when none of those is writable (a read-only
    install run by a user without a home, say). Then compiling in each process is still
    better than failing to import.
    """
    try:
        kernel = njit(cache=True)(func)
    except RuntimeError:
        kernel = njit(cache=False)(func)
    KERNELS.append(kernel)
    return kernel


def host_cpu_key():
    """numba's key for this CPU in its cache index (LLVM triple, CPU name, features), or
    None when this numba does not expose it."""
    try:
        from numba.core.registry import cpu_target
        return cpu_target.target_context.codegen().magic_tuple()
    except Exception:  # noqa: BLE001 - numba internals: then any cached entry counts
        return None


def cached_for(index: dict, cpu_key) -> bool:
    """Whether a numba cache index holds machine code numba would load on this CPU: its
    entries are keyed (signature, cpu key, bytecode hashes), so an install copied from
    another board has a full cache and still compiles everything."""
    if None in index:  # internals unknown: counted as cached, so no false notice
        return True
    if cpu_key is None:
        return bool(index)
    return any(isinstance(k, tuple) and len(k) >= 2 and k[1] == cpu_key for k in index)


def uncompiled_kernels(names: set[str] | None = None) -> list[str]:
    """Names of the kernels (of `names`, default all) with no usable machine code for this
    CPU in numba's on-disk cache: the ones this process would compile (10-30 s in all, on a
    small CPU).

    Reads numba's cache index the way numba does (an index whose source stamp is stale is
    empty; an entry is for one CPU); a numba without these internals counts as cached, so
    no false notice is shown.
    """
    missing = []
    cpu_key = host_cpu_key()
    for kernel in KERNELS:
        if names is not None and kernel.py_func.__name__ not in names:
            continue
        try:
            cached = kernel._cache._cache_file._load_index()
        except AttributeError:  # NullCache (no writable cache dir) or other numba internals
            cached = {} if type(kernel._cache).__name__ == "NullCache" else {None: None}
        except Exception:  # noqa: BLE001 - an unreadable index means numba recompiles too
            cached = {}
        if not cached_for(cached, cpu_key):
            missing.append(kernel.py_func.__name__)
    return missing


def compile_kernels() -> None:
    """Compile (or load) NMS for the argument types `nms` passes, on two tiny boxes."""
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11]], np.float32)
    nms(boxes, np.array([0.9, 0.8], np.float32), np.array([0, 1], np.int32), 0.45)


@cached_njit
def _group_by_class(order: np.ndarray, class_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Stable counting sort of score ranks by class.

    Returns `ranks` (positions into `order`, grouped by class, each group still in descending
    score order) and `starts` (group boundaries, `starts[g]:starts[g+1]`). O(N + class range);
    class ids are small non-negative ints in practice, a wide range falls back to a merge sort.
    """
    n = order.shape[0]
    lo = class_ids[0]
    hi = class_ids[0]
    for i in range(n):
        c = class_ids[i]
        lo = min(lo, c)
        hi = max(hi, c)
    span = np.int64(hi) - np.int64(lo) + 1
    if span > 4 * n + 1024:
        # Sparse ids: sort the ranks by class (stable keeps the score order within a class).
        cls_by_rank = np.empty(n, np.int64)
        for r in range(n):
            cls_by_rank[r] = class_ids[order[r]]
        ranks = np.argsort(cls_by_rank, kind="mergesort")
        starts_list = [0]
        for i in range(1, n):
            if cls_by_rank[ranks[i]] != cls_by_rank[ranks[i - 1]]:
                starts_list.append(i)
        starts_list.append(n)
        return ranks, np.array(starts_list, np.int64)
    counts = np.zeros(span + 1, np.int64)
    for r in range(n):
        counts[class_ids[order[r]] - lo + 1] += 1
    for k in range(1, span + 1):
        counts[k] += counts[k - 1]
    starts = counts.copy()  # starts[g]:starts[g+1] is class lo+g; empty groups are harmless
    ranks = np.empty(n, np.int64)
    for r in range(n):
        g = class_ids[order[r]] - lo
        ranks[counts[g]] = r
        counts[g] += 1
    return ranks, starts


@cached_njit
def _greedy(
    boxes: np.ndarray, order: np.ndarray, ranks: np.ndarray, starts: np.ndarray,
    iou_threshold: float, max_det: int, diou_beta: float, sx: float, sy: float,
) -> np.ndarray:
    """Greedy NMS within each group `ranks[starts[g]:starts[g+1]]`; kept indices by score.

    diou_beta > 0: suppress on IoU - (d / c)^diou_beta (boxes scaled by sx, sy) instead of IoU.
    """
    n = order.shape[0]
    # Kept boxes of the current group, struct-of-arrays so the inner loop streams memory.
    kx1 = np.empty(n, np.float64)
    ky1 = np.empty(n, np.float64)
    kx2 = np.empty(n, np.float64)
    ky2 = np.empty(n, np.float64)
    karea = np.empty(n, np.float64)
    keep_rank = np.zeros(n, np.bool_)
    thr = np.float64(np.float32(iou_threshold))  # OpenCV compares against a float threshold
    for g in range(starts.shape[0] - 1):
        nk = 0
        for j in range(starts[g], starts[g + 1]):
            r = ranks[j]
            b = order[r]
            x1 = np.float64(boxes[b, 0]) * sx
            y1 = np.float64(boxes[b, 1]) * sy
            x2 = np.float64(boxes[b, 2]) * sx
            y2 = np.float64(boxes[b, 3]) * sy
            area = (x2 - x1) * (y2 - y1)
            keep = True
            for k in range(nk):
                iw = min(x2, kx2[k]) - max(x1, kx1[k])
                if iw <= 0.0:
                    continue
                ih = min(y2, ky2[k]) - max(y1, ky1[k])
                if ih <= 0.0:
                    continue
                inter = iw * ih
                if diou_beta > 0.0:
                    # no overlap -> DIoU <= 0, never above a threshold >= 0: skipped above
                    cw = max(x2, kx2[k]) - min(x1, kx1[k])
                    ch = max(y2, ky2[k]) - min(y1, ky1[k])
                    c = cw * cw + ch * ch
                    dx = (x1 + x2 - kx1[k] - kx2[k]) * 0.5
                    dy = (y1 + y2 - ky1[k] - ky2[k]) * 0.5
                    diou = inter / (area + karea[k] - inter)
                    if c > 0.0:
                        diou -= ((dx * dx + dy * dy) / c) ** diou_beta
                    if diou > thr:
                        keep = False
                        break
                # iou > thr without dividing; union > 0 whenever inter > 0
                elif inter > thr * (area + karea[k] - inter):
                    keep = False
                    break
            if keep:
                kx1[nk] = x1
                ky1[nk] = y1
                kx2[nk] = x2
                ky2[nk] = y2
                karea[nk] = area
                nk += 1
                keep_rank[r] = True
    # Walking the ranks gives the kept boxes in global score order, so max_det is a prefix.
    out = np.empty(min(n, max_det), np.int64)
    m = 0
    for r in range(n):
        if m == out.shape[0]:
            break
        if keep_rank[r]:
            out[m] = order[r]
            m += 1
    return out[:m]


def nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    class_ids: np.ndarray | None,
    iou_threshold: float,
    agnostic: bool = False,
    max_det: int = 300,
    kind: str = "default",
    beta: float = GREEDY_BETA,
    xy_scale: tuple[float, float] = (1.0, 1.0),
) -> np.ndarray:
    """Indices (int64) of the boxes kept by greedy NMS, in descending score order.

    boxes: (N, 4) x1, y1, x2, y2. A box is suppressed when its IoU with a higher-scored kept
    box of the same class (any class if `agnostic`) is > `iou_threshold`. Equal scores keep
    their input order, as OpenCV's stable sort does. At most `max_det` indices are returned
    (the best ones; unlike OpenCV's `top_k`, which truncates the candidates before NMS).
    `kind`: darknet's nms_kind; greedynms and diounms compare DIoU (exponent 0.6 and `beta`)
    on boxes scaled by `xy_scale`.
    """
    if kind not in NMS_KINDS:
        raise ValueError(f"nms kind must be one of {NMS_KINDS}, got {kind!r}")
    diou_beta = 0.0 if kind == "default" else GREEDY_BETA if kind == "greedynms" else beta
    if kind == "diounms" and not beta > 0:
        raise ValueError(f"diounms needs beta_nms > 0, got {beta}")
    boxes = np.ascontiguousarray(boxes, dtype=np.float32).reshape(-1, 4)
    scores = np.ascontiguousarray(scores, dtype=np.float32).reshape(-1)
    n = boxes.shape[0]
    if scores.shape[0] != n:
        raise ValueError(f"{n} boxes but {scores.shape[0]} scores")
    if n == 0 or max_det <= 0:
        return np.empty(0, np.int64)
    order = np.argsort(-scores, kind="stable")
    if agnostic or class_ids is None:
        ranks = np.arange(n, dtype=np.int64)
        starts = np.array([0, n], np.int64)
    else:
        class_ids = np.ascontiguousarray(class_ids, dtype=np.int32).reshape(-1)
        if class_ids.shape[0] != n:
            raise ValueError(f"{n} boxes but {class_ids.shape[0]} class ids")
        ranks, starts = _group_by_class(order, class_ids)
    return _greedy(boxes, order, ranks, starts, float(iou_threshold), int(max_det),
                   float(diou_beta), float(xy_scale[0]), float(xy_scale[1]))
