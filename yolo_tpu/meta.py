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
        d = json.loads(text)
        if d.pop("format", None) != FORMAT:
            raise ValueError(f"not {FORMAT} metadata")
        heads = tuple(
            Head(tuple(h["mask"]), tuple(tuple(a) for a in h["anchors"]), int(h["stride"]),
                 str(h.get("kind", "yolo")), float(h.get("scale_x_y", 1.0)),
                 bool(h.get("new_coords", False)))
            for h in d.pop("heads")
        )
        return cls(heads=heads, names=tuple(d.pop("names", ())), **d)
