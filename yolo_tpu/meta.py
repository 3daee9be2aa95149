"""What the runtime needs to know about a converted model, and nothing more.

The converter builds a `ModelMeta` from the darknet cfg; the quantizer stores it as JSON in
the `.tflite` flatbuffer's metadata (key `yolo_tpu`), so the runtime needs only the model
file. Plain data, no TensorFlow.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

METADATA_KEY = "yolo_tpu"
FORMAT = "yolo_tpu/1"
CLASSIFIER_FORMAT = "yolo_tpu.classifier/1"  # any Keras model through converters.quantize


@dataclass(frozen=True)
class Head:
    """One `[yolo]` or `[region]` layer: its anchors, stride and how its outputs decode.

    kind "yolo": x = (col + s * sigmoid(tx) - (s - 1) / 2) * stride with s = scale_x_y,
    w = exp(tw) * anchor_w; with new_coords the outputs are already logistic (no sigmoid)
    and w = 4 * tw^2 * anchor_w. kind "region" (YOLOv2): classes are a softmax, scaled by
    objectness; its anchors are stored here in input pixels like [yolo]'s.
    """

    mask: tuple[int, ...]
    anchors: tuple[tuple[float, float], ...]  # (w, h) in input pixels, one per mask entry
    stride: int
    kind: str = "yolo"
    scale_x_y: float = 1.0
    new_coords: bool = False


@dataclass(frozen=True)
class ModelMeta:
    width: int
    height: int
    classes: int
    heads: tuple[Head, ...]  # in the model's output order (cfg order)
    names: tuple[str, ...] = field(default=())
    leaky: str = "relu"
    # How the darknet that trained the model fed it images: letterbox (pjreddie's, and
    # AlexeyAB's with [net] letter_box=1) or stretch (AlexeyAB's default).
    letter_box: bool = True
    nms_kind: str = "default"  # darknet's: default (IoU), greedynms / diounms (DIoU)
    beta_nms: float = 0.6

    def label(self, class_id: int) -> str:
        return self.names[class_id] if class_id < len(self.names) else str(class_id)

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, **asdict(self)})

    @classmethod
    def from_json(cls, text: str | bytes) -> "ModelMeta":
        """Parse and validate (see `validate`): ValueError saying which field is wrong."""
        try:
            d = json.loads(text)
        except RecursionError:
            raise ValueError("nested too deeply to be yolo_tpu metadata") from None
        except UnicodeDecodeError:
            raise ValueError("not UTF-8 text") from None
        if not isinstance(d, dict):
            raise ValueError(f"not {FORMAT} metadata: a JSON {type(d).__name__}, not an object")
        if d.get("format") == CLASSIFIER_FORMAT:
            raise ValueError("a classifier's metadata, not a detector's: run the model with "
                             "`python -m yolo_tpu.classify`")
        if d.get("format") != FORMAT:
            raise ValueError(f"not {FORMAT} metadata")
        validate(d)
        heads = tuple(
            Head(tuple(h["mask"]), tuple(tuple(a) for a in h["anchors"]), int(h["stride"]),
                 str(h.get("kind", "yolo")), float(h.get("scale_x_y", 1.0)),
                 bool(h.get("new_coords", False)))
            for h in d["heads"]
        )
        rest = {k: v for k, v in d.items() if k not in ("format", "heads", "names")}
        return cls(heads=heads, names=tuple(d.get("names", ())), **rest)


# --- the schema: one row per field, (required, check); a check returns what is wrong ------

HEAD_KINDS = ("yolo", "region")
NMS_KINDS = ("default", "greedynms", "diounms")  # as converters.cfg knows them
MAX_SIDE, MAX_CLASSES, MAX_ANCHORS = 8192, 100000, 1024


def _int_in(low: int, high: int):
    def check(v):
        if type(v) is not int or not low <= v <= high:
            return f"must be an integer in {low}..{high}, got {v!r}"
    return check


def _number_in(low: float, high: float):
    def check(v):
        if type(v) not in (int, float) or not low <= v <= high:  # NaN fails too
            return f"must be a number in [{low:g}, {high:g}], got {v!r}"
    return check


def _one_of(*choices):
    def check(v):
        if v not in choices:
            return f"must be one of {', '.join(map(str, choices))}, got {v!r}"
    return check


def _boolean(v):
    if type(v) is not bool and v not in (0, 1):
        return f"must be true or false, got {v!r}"


def _names(v):
    if not isinstance(v, list) or not all(isinstance(n, str) for n in v):
        return "must be a list of strings"


def _mask(v):
    if (not isinstance(v, list) or not 1 <= len(v) <= MAX_ANCHORS
            or not all(type(m) is int and 0 <= m < MAX_ANCHORS for m in v)):
        return f"must be a non-empty list of anchor indices, got {_short(v)}"


def _anchor_list(v):
    if (not isinstance(v, list) or not 1 <= len(v) <= MAX_ANCHORS
            or not all(isinstance(a, list) and len(a) == 2
                       and all(type(x) in (int, float) and 0 < x <= 1e6 for x in a)
                       for a in v)):
        return f"must be a non-empty list of positive [w, h] pairs, got {_short(v)}"


def _short(v) -> str:
    text = json.dumps(v)
    return text if len(text) <= 60 else text[:57] + "..."


HEAD_FIELDS = {
    "mask": (True, _mask),
    "anchors": (True, _anchor_list),
    "stride": (True, _int_in(1, MAX_SIDE)),
    "kind": (False, _one_of(*HEAD_KINDS)),
    "scale_x_y": (False, _number_in(0.5, 4.0)),
    "new_coords": (False, _boolean),
}
FIELDS = {
    "format": (True, _one_of(FORMAT)),
    "width": (True, _int_in(1, MAX_SIDE)),
    "height": (True, _int_in(1, MAX_SIDE)),
    "classes": (True, _int_in(1, MAX_CLASSES)),
    "heads": (True, lambda v: None if isinstance(v, list) and 1 <= len(v) <= 16
              else "must be a list of 1 to 16 heads"),
    "names": (False, _names),
    "leaky": (False, lambda v: None if isinstance(v, str) else "must be a string"),
    "letter_box": (False, _boolean),
    "nms_kind": (False, _one_of(*NMS_KINDS)),
    "beta_nms": (False, _number_in(0.0, 1.0)),
}


def _check_fields(d: dict, fields: dict, where: str) -> None:
    unknown = sorted(set(d) - set(fields))
    if unknown:
        raise ValueError(f"{where}unknown field {unknown[0]!r}")
    for name, (required, check) in fields.items():
        if name not in d:
            if required:
                raise ValueError(f"{where}missing field {name!r}")
            continue
        if problem := check(d[name]):
            raise ValueError(f"{where}{name!r} {problem}")


def validate(d: dict) -> None:
    """Types, ranges and cross-checks of a metadata object; ValueError naming the field.

    Beyond types: one anchor per mask entry (the decoder indexes the anchors by position
    in the mask, and reads past the array otherwise), a stride that divides the input,
    and no more names than classes."""
    _check_fields(d, FIELDS, "")
    for i, head in enumerate(d["heads"]):
        where = f"heads[{i}]: "
        if not isinstance(head, dict):
            raise ValueError(f"{where}must be an object, got {_short(head)}")
        _check_fields(head, HEAD_FIELDS, where)
        if len(head["anchors"]) != len(head["mask"]):
            raise ValueError(f"{where}{len(head['mask'])} mask entries but "
                             f"{len(head['anchors'])} anchors (one per mask entry)")
        if d["width"] % head["stride"] or d["height"] % head["stride"]:
            raise ValueError(f"{where}stride {head['stride']} does not divide the input "
                             f"{d['width']}x{d['height']}")
    if len(d.get("names", ())) > d["classes"]:
        raise ValueError(f"{len(d['names'])} names for {d['classes']} classes")


# --- a classifier (any Keras model): how pixels become its input, and its labels ---------

@dataclass(frozen=True)
class ClassifierMeta:
    """The preprocessing chosen at conversion: input = (pixel - mean) / std, on RGB (or
    grey, for a one-channel input) pixels 0..255 resized to the input (None: not known,
    e.g. calibrated on arrays without --preprocess); and the labels."""

    mean: float | None = None
    std: float | None = None
    names: tuple[str, ...] = field(default=())

    def label(self, class_id: int) -> str:
        return self.names[class_id] if class_id < len(self.names) else str(class_id)

    def to_json(self) -> str:
        d = {k: v for k, v in asdict(self).items() if v is not None}
        return json.dumps({"format": CLASSIFIER_FORMAT, **d})

    @classmethod
    def from_json(cls, text: str | bytes) -> "ClassifierMeta":
        """Parse and validate strictly: ValueError saying which field is wrong."""
        try:
            d = json.loads(text)
        except (RecursionError, UnicodeDecodeError, ValueError) as e:
            raise ValueError(f"not JSON metadata ({type(e).__name__})") from None
        if not isinstance(d, dict):
            raise ValueError(f"not {CLASSIFIER_FORMAT} metadata: a JSON {type(d).__name__}")
        if d.get("format") == FORMAT:
            raise ValueError("a detector's metadata, not a classifier's: run the model with "
                             "`python -m yolo_tpu.detect`")
        if d.get("format") != CLASSIFIER_FORMAT:
            raise ValueError(f"not {CLASSIFIER_FORMAT} metadata")
        _check_fields(d, CLASSIFIER_FIELDS, "")
        if ("mean" in d) != ("std" in d):
            raise ValueError("'mean' and 'std' come together (the preprocessing), or neither")
        if len(d.get("names", ())) > MAX_CLASSES:
            raise ValueError(f"{len(d['names'])} names, more than {MAX_CLASSES}")
        mean, std = (float(d["mean"]), float(d["std"])) if "mean" in d else (None, None)
        return cls(mean, std, tuple(d.get("names", ())))


CLASSIFIER_FIELDS = {
    "format": (True, _one_of(CLASSIFIER_FORMAT)),
    "mean": (False, _number_in(-1e6, 1e6)),
    "std": (False, _number_in(1e-6, 1e6)),
    "names": (False, _names),
}
