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
    """One `[yolo]` layer: which anchors its channels predict, and its stride in pixels."""

    mask: tuple[int, ...]
    anchors: tuple[tuple[float, float], ...]  # (w, h) in input pixels, one per mask entry
    stride: int


@dataclass(frozen=True)
class ModelMeta:
    width: int
    height: int
    classes: int
    heads: tuple[Head, ...]  # in the model's output order (cfg order)
    names: tuple[str, ...] = field(default=())
    leaky: str = "relu"

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
            Head(tuple(h["mask"]), tuple(tuple(a) for a in h["anchors"]), int(h["stride"]))
            for h in d.pop("heads")
        )
        return cls(heads=heads, names=tuple(d.pop("names", ())), **d)
