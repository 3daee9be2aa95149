"""A darknet project as darknet reads it: `obj.data`, its image lists, YOLO-format labels.

`obj.data` (AlexeyAB's read_data_cfg): `key=value` lines, every space and tab deleted
(darknet's `strip`), `#`/`;` comment lines, the first occurrence of a key wins. Keys used
here: `classes`, `train`, `valid` (default: `train`, as `detector map` does during
training), `names`. Lists (get_paths): one image path per line. Labels (read_boxes): one
`class x_center y_center width height` line per object, relative to the image, in the file
AlexeyAB's `replace_image_to_label` names: the image path with a few dataset folders renamed
(`/JPEGImages/` -> `/labels/`, COCO's `/images/train2017/` -> `/labels/train2017/`, ...) and
the image extension replaced by `.txt`; for most custom projects, the `.txt` beside the image.

Paths resolve as darknet resolves them, relative to the working folder, and failing that
relative to the `.data` file's folder (a project moved or run from elsewhere). Where darknet
goes on quietly (a missing image is a 10x10 grey one, a missing label file means no objects,
a malformed line ends the file), this module stops with one line naming the file and line.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

import numpy as np


class DataError(ValueError):
    """An obj.data project darknet's map cannot be computed on: the message names the file."""


# AlexeyAB's replace_image_to_label: folder renames (first occurrence each, in this order),
# then the image extension at the end of the path -> .txt.
_LABEL_FOLDERS = (
    ("/images/train2017/", "/labels/train2017/"), ("/images/val2017/", "/labels/val2017/"),
    ("/JPEGImages/", "/labels/"),
    ("\\images\\train2017\\", "\\labels\\train2017\\"),
    ("\\images\\val2017\\", "\\labels\\val2017\\"),
    ("\\images\\train2014\\", "\\labels\\train2014\\"),
    ("\\images\\val2014\\", "\\labels\\val2014\\"),
    ("/images/train2014/", "/labels/train2014/"), ("/images/val2014/", "/labels/val2014/"),
    ("\\JPEGImages\\", "\\labels\\"),
)
_IMAGE_EXTENSIONS = (".jpg", ".JPG", ".jpeg", ".JPEG", ".png", ".PNG", ".bmp", ".BMP",
                     ".ppm", ".PPM", ".tiff", ".TIFF")


@dataclass(frozen=True)
class Project:
    """An obj.data file with its paths resolved."""

    path: str
    classes: int | None
    names: tuple[str, ...]
    names_path: str | None
    train: str | None  # list files (resolved)
    valid: str | None


@dataclass(frozen=True)
class Labels:
    """One image's objects: class ids and boxes (x_center, y_center, w, h) relative to it."""

    class_ids: np.ndarray  # (N,) int
    xywh: np.ndarray  # (N, 4) float32


def read_options(path: str) -> dict[str, str]:
    """read_data_cfg: whitespace deleted from each line, comment lines skipped, first key wins."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e.strerror or e}") from None
    options: dict[str, str] = {}
    for number, raw in enumerate(lines, start=1):
        line = re.sub(r"[ \t\r\n]", "", raw)
        if not line or line[0] in "#;":
            continue
        key, eq, value = line.partition("=")
        if not eq or not value:
            raise DataError(f"{path}:{number}: expected 'key=value', got {raw.strip()!r}")
        options.setdefault(key, value)
    return options


def resolve(value: str, data_path: str, what: str, line_of: str = "") -> str:
    """`value` as darknet opens it (relative to the working folder), else relative to the
    .data file's folder; a one-line error naming both when neither exists."""
    if os.path.exists(value):
        return value
    beside = os.path.join(os.path.dirname(os.path.abspath(data_path)), value)
    if not os.path.isabs(value) and os.path.exists(beside):
        return beside
    where = f" or {beside}" if not os.path.isabs(value) else ""
    raise DataError(f"{line_of or data_path}: {what} {value!r} not found (looked in the "
                    f"working folder{where})")


def read_project(path: str) -> Project:
    """Parse obj.data and check that what it names exists."""
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such .data file")
    options = read_options(path)
    classes = None
    if "classes" in options:
        try:
            classes = int(options["classes"])
        except ValueError:
            raise DataError(f"{path}: classes={options['classes']!r} is not an integer") from None
    train = options.get("train")
    valid = options.get("valid", train)
    if not valid:
        raise DataError(f"{path}: no 'valid' (or 'train') list: darknet's map needs one")
    train_path = resolve(train, path, "train list") if train else None
    valid_path = resolve(valid, path, "valid list")
    names, names_path = (), None
    if "names" in options:
        names_path = resolve(options["names"], path, "names file")
        names = tuple(read_lines(names_path, "names"))
        if classes is not None and len(names) != classes:
            raise DataError(f"{names_path}: {len(names)} names, but {path} says "
                            f"classes={classes}")
    return Project(path, classes, names, names_path, train_path, valid_path)


def read_lines(path: str, what: str) -> list[str]:
    """get_paths / get_labels: one entry a line (blank lines skipped, \\r\\n tolerated)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return [line.strip() for line in f.read().splitlines() if line.strip()]
    except OSError as e:
        raise DataError(f"{path}: cannot read {what}: {e.strerror or e}") from None


def image_list(project: Project, which: str) -> list[str]:
    """The `train` or `valid` list's images, each resolved and checked to exist."""
    list_path = project.train if which == "train" else project.valid
    if list_path is None:
        raise DataError(f"{project.path}: no '{which}' list")
    entries = read_lines(list_path, f"{which} list")
    if not entries:
        raise DataError(f"{list_path}: the {which} list is empty")
    with open(list_path, encoding="utf-8", errors="replace") as f:
        numbers = [n for n, line in enumerate(f.read().splitlines(), 1) if line.strip()]
    return [resolve(e, project.path, "image", f"{list_path}:{n}")
            for e, n in zip(entries, numbers)]


def label_path(image_path: str) -> str:
    """AlexeyAB's replace_image_to_label: where darknet looks for an image's labels."""
    out = image_path
    for old, new in _LABEL_FOLDERS:
        out = out.replace(old, new, 1)
    out = out.strip(" \t")
    for ext in _IMAGE_EXTENSIONS:
        if out.endswith(ext):
            out = out[:-len(ext)] + ".txt"
    return out


def read_labels(image_path: str, classes: int) -> Labels:
    """read_boxes on the image's label file, strictly: a missing file or a line that is not
    `class x y w h` with 0 <= class < `classes` is an error (darknet would count the image
    as empty, or stop reading at that line, or index past its class table)."""
    path = label_path(image_path)
    if not path.endswith(".txt"):
        raise DataError(f"{image_path}: darknet finds no label file for this extension "
                        f"(it replaces {', '.join(_IMAGE_EXTENSIONS[::2])} by .txt)")
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        raise DataError(f"{path}: no label file for {image_path} (darknet reads labels from "
                        "the .txt beside the image; an image without objects needs an empty "
                        "one)") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read labels: {e.strerror or e}") from None
    ids, boxes = [], []
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields:
            continue
        try:
            if len(fields) < 5:
                raise ValueError
            cls, box = int(fields[0]), [float(v) for v in fields[1:5]]
        except ValueError:
            raise DataError(f"{path}:{number}: expected 'class x_center y_center width "
                            f"height', got {line.strip()!r}") from None
        if not 0 <= cls < classes:
            raise DataError(f"{path}:{number}: class {cls} is outside the model's "
                            f"{classes} classes (0..{classes - 1})")
        if not all(np.isfinite(box)):
            raise DataError(f"{path}:{number}: non-finite box {line.strip()!r}")
        ids.append(cls)
        boxes.append(box)
    return Labels(np.asarray(ids, np.int32), np.asarray(boxes, np.float32).reshape(-1, 4))


def sample(paths: list[str], num: int, seed: int = 0) -> list[str]:
    """`num` paths spread over the list (all of them if it is shorter), deterministically."""
    if len(paths) <= num:
        return list(paths)
    rng = np.random.default_rng(seed)
    return [paths[i] for i in sorted(rng.choice(len(paths), num, replace=False))]
