"""Darknet `.cfg` parser: one readable pass from the INI dialect to checked layer specs.

Darknet's dialect: `[section]` headers that repeat, `key=value` lines with optional spaces,
`#` and `;` comments, comma lists. Every layer gets its output shape here, so routes,
`[yolo]` filter counts and the input size are checked before any weight is read, and every
error names the file and line it comes from.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field


class ConfigError(ValueError):
    """A cfg the converter cannot build: the message names file, line and problem."""


# Keys each section accepts. Training-only keys are accepted and ignored: users convert the
# cfg they trained with, and darknet ignores them at inference time too.
_NET_KEYS = {
    "batch", "subdivisions", "width", "height", "channels", "momentum", "decay", "angle",
    "saturation", "exposure", "hue", "learning_rate", "burn_in", "max_batches", "policy",
    "steps", "scales", "mosaic", "max_crop", "min_crop", "aspect", "flip", "step", "gamma",
    "power", "inputs", "time_steps", "notruth", "random", "center", "adam", "b1", "b2", "eps",
    "max_ratio", "min_ratio", "jitter", "letter_box", "cutmix", "mixup", "blur",
}
_KEYS = {
    "net": _NET_KEYS,
    "convolutional": {
        "filters", "size", "stride", "pad", "padding", "batch_normalize", "groups",
        "activation", "dilation", "binary", "xnor", "flipped", "dot", "stopbackward",
    },
    "maxpool": {"size", "stride", "padding", "stopbackward"},
    "route": {"layers", "stopbackward"},
    "shortcut": {"from", "activation", "alpha", "beta", "stopbackward"},
    "upsample": {"stride", "scale"},
    "yolo": {
        "mask", "anchors", "classes", "num", "jitter", "ignore_thresh", "truth_thresh",
        "random", "max", "counters_per_class", "label_smooth_eps", "scale_x_y",
        "iou_normalizer", "iou_loss", "cls_normalizer", "nms_kind", "beta_nms",
        "max_delta", "map", "focal_loss",
    },
}
_SECTION_ALIASES = {"network": "net", "conv": "convolutional", "max": "maxpool"}
ACTIVATIONS = ("linear", "leaky", "relu", "logistic")


@dataclass
class Section:
    """One `[name]` block as written, with the line numbers for error messages."""

    name: str
    line: int
    values: dict[str, str] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)


@dataclass
class Layer:
    """A darknet layer after checking: its kind, parameters, inputs and output shape (h, w, c)."""

    index: int
    kind: str
    line: int
    params: dict
    inputs: list[int]  # indices of the layers it reads; -1 is the network input
    shape: tuple[int, int, int]


@dataclass
class Network:
    path: str
    width: int
    height: int
    channels: int
    layers: list[Layer]

    @property
    def yolo_layers(self) -> list[Layer]:
        return [l for l in self.layers if l.kind == "yolo"]


def read_sections(path: str) -> list[Section]:
    """Split the file into sections; only syntax is checked here."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read cfg: {e.strerror or e}") from None
    sections: list[Section] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].split(";", 1)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            if not line.endswith("]"):
                raise ConfigError(f"{path}:{number}: malformed section header {raw.strip()!r}")
            sections.append(Section(line[1:-1].strip().lower(), number))
            continue
        if "=" not in line:
            raise ConfigError(f"{path}:{number}: expected 'key=value', got {raw.strip()!r}")
        if not sections:
            raise ConfigError(f"{path}:{number}: 'key=value' before the first [section]")
        key, value = (s.strip() for s in line.split("=", 1))
        sections[-1].values[key.lower()] = value
        sections[-1].lines[key.lower()] = number
    if not sections:
        raise ConfigError(f"{path}: no sections: not a darknet cfg")
    return sections


class _Reader:
    """Typed access to one section's values, with errors that point at the right line."""

    def __init__(self, path: str, section: Section):
        self.path, self.s = path, section
        unknown = set(section.values) - _KEYS[section.name]
        if unknown:
            key = min(unknown, key=lambda k: section.lines[k])
            self.fail(f"unknown key '{key}' in [{section.name}]", key)

    def fail(self, message: str, key: str | None = None) -> None:
        line = self.s.lines.get(key, self.s.line) if key else self.s.line
        raise ConfigError(f"{self.path}:{line}: {message}")

    def int(self, key: str, default: int | None = None) -> int:
        if key not in self.s.values:
            if default is None:
                self.fail(f"[{self.s.name}] needs '{key}'")
            return default
        try:
            return int(self.s.values[key])
        except ValueError:
            self.fail(f"'{key}' must be an integer, got {self.s.values[key]!r}", key)

    def ints(self, key: str, default: list[int] | None = None) -> list[int]:
        if key not in self.s.values:
            if default is None:
                self.fail(f"[{self.s.name}] needs '{key}'")
            return default
        try:
            return [int(v) for v in self.s.values[key].split(",") if v.strip()]
        except ValueError:
            self.fail(f"'{key}' must be a list of integers, got {self.s.values[key]!r}", key)

    def floats(self, key: str) -> list[float]:
        try:
            return [float(v) for v in self.s.values.get(key, "").split(",") if v.strip()]
        except ValueError:
            self.fail(f"'{key}' must be a list of numbers, got {self.s.values[key]!r}", key)

    def str(self, key: str, default: str) -> str:
        return self.s.values.get(key, default).strip().lower()

    def activation(self) -> str:
        act = self.str("activation", "linear" if self.s.name == "shortcut" else "logistic")
        if act not in ACTIVATIONS:
            self.fail(f"unsupported activation '{act}' (supported: {', '.join(ACTIVATIONS)})",
                      "activation")
        return act


def parse_size(text: str) -> tuple[int, int]:
    """`416` or `416x256` (width x height) -> (width, height)."""
    try:
        w, _, h = text.lower().partition("x")
        return int(w), int(h or w)
    except ValueError:
        raise ValueError(f"size must be N or WxH, got {text!r}") from None


def parse_cfg(path: str, size: tuple[int, int] | None = None) -> Network:
    """Parse and check a darknet cfg; `size` (width, height) overrides `[net]`."""
    sections = read_sections(path)
    for s in sections:
        s.name = _SECTION_ALIASES.get(s.name, s.name)
        if s.name not in _KEYS:
            raise ConfigError(f"{path}:{s.line}: unknown section [{s.name}] "
                              f"(supported: {', '.join('[%s]' % k for k in _KEYS)})")
    net_section, *layer_sections = sections
    if net_section.name != "net":
        raise ConfigError(f"{path}:{net_section.line}: the first section must be [net]")
    net = _Reader(path, net_section)
    width, height = size or (net.int("width", 416), net.int("height", 416))
    channels = net.int("channels", 3)
    if width <= 0 or height <= 0 or width % 32 or height % 32:
        where = f"{path}: --size" if size else f"{path}:{net_section.line}: [net]"
        raise ConfigError(f"{where}: input size {width}x{height} is not a multiple of 32"
                          " (YOLO downsamples by 32)")
    if channels != 3:
        raise ConfigError(f"{path}:{net_section.lines.get('channels', net_section.line)}: "
                          f"channels={channels}; only 3-channel (RGB) networks are supported")

    layers: list[Layer] = []
    shape = (height, width, channels)
    for index, section in enumerate(layer_sections):
        if section.name == "net":
            raise ConfigError(f"{path}:{section.line}: [net] may only be the first section")
        r = _Reader(path, section)
        build = _BUILDERS[section.name]
        params, inputs, shape = build(r, index, layers, shape)
        layers.append(Layer(index, section.name, section.line, params, inputs, shape))
    if not any(l.kind == "yolo" for l in layers):
        raise ConfigError(f"{path}: no [yolo] layer: not a YOLOv3-family detector")
    return Network(path, width, height, channels, layers)


def _convolutional(r: _Reader, index: int, layers: list[Layer], shape):
    h, w, c = shape
    filters, size, stride = r.int("filters", 1), r.int("size", 1), r.int("stride", 1)
    groups, dilation = r.int("groups", 1), r.int("dilation", 1)
    pad = size // 2 if r.int("pad", 0) else r.int("padding", 0)
    if filters < 1 or size < 1 or stride < 1:
        r.fail("filters, size and stride must be positive")
    if dilation != 1:
        r.fail("dilation other than 1 is not supported", "dilation")
    if groups != 1 and not (groups == c == filters):
        r.fail(f"groups={groups}: only 1 or depthwise (groups = channels = filters) "
               "convolutions are supported", "groups")
    if r.int("binary", 0) or r.int("xnor", 0):
        r.fail("binary/xnor convolutions are not supported")
    out_h = (h + 2 * pad - size) // stride + 1
    out_w = (w + 2 * pad - size) // stride + 1
    if out_h < 1 or out_w < 1:
        r.fail(f"convolution reduces {h}x{w} input to nothing")
    params = dict(filters=filters, size=size, stride=stride, pad=pad, groups=groups,
                  batch_normalize=bool(r.int("batch_normalize", 0)), activation=r.activation())
    return params, [index - 1], (out_h, out_w, filters)


def _maxpool(r: _Reader, index: int, layers: list[Layer], shape):
    h, w, c = shape
    stride = r.int("stride", 1)
    size = r.int("size", stride)
    padding = r.int("padding", size - 1)
    if size < 1 or stride < 1:
        r.fail("size and stride must be positive")
    if padding != size - 1:
        # Darknet's default padding is what Keras 'same' pooling reproduces; other values
        # would need -inf padding, which does not quantize.
        r.fail(f"padding={padding}: only darknet's default (size-1) is supported", "padding")
    out_h, out_w = (h + padding - size) // stride + 1, (w + padding - size) // stride + 1
    # Keras 'same' pads max(0, (out-1)*stride + size - in) and puts the smaller half on top;
    # darknet puts padding//2 on top. They agree except for odd sizes with stride > 1.
    for n, out in ((h, out_h), (w, out_w)):
        total = max(0, (out - 1) * stride + size - n)
        if total // 2 != padding // 2:
            r.fail(f"maxpool size={size} stride={stride} on a {n}-pixel input pads "
                   "differently in darknet and TFLite; not supported")
    return dict(size=size, stride=stride), [index - 1], (out_h, out_w, c)


def _route_index(r: _Reader, index: int, value: int, key: str) -> int:
    target = index + value if value < 0 else value
    if not 0 <= target < index:
        r.fail(f"route to layer {value} from layer {index}: no such layer "
               f"(layers 0..{index - 1} precede it)", key)
    return target


def _route(r: _Reader, index: int, layers: list[Layer], shape):
    targets = [_route_index(r, index, v, "layers") for v in r.ints("layers")]
    if not targets:
        r.fail("[route] needs at least one layer", "layers")
    shapes = [layers[t].shape for t in targets]
    if len({s[:2] for s in shapes}) != 1:
        r.fail(f"[route] joins layers of different sizes: "
               + ", ".join(f"{t}: {s[1]}x{s[0]}" for t, s in zip(targets, shapes)), "layers")
    return {}, targets, (*shapes[0][:2], sum(s[2] for s in shapes))


def _shortcut(r: _Reader, index: int, layers: list[Layer], shape):
    (source,) = r.ints("from")
    target = _route_index(r, index, source, "from")
    if layers[target].shape != shape:
        r.fail(f"[shortcut] adds layer {target} of shape {layers[target].shape} to "
               f"shape {shape}; resampled shortcuts are not supported", "from")
    if r.floats("alpha") not in ([], [1.0]) or r.floats("beta") not in ([], [1.0]):
        r.fail("[shortcut] alpha/beta other than 1 are not supported")
    return dict(activation=r.activation()), [index - 1, target], shape


def _upsample(r: _Reader, index: int, layers: list[Layer], shape):
    stride = r.int("stride", 2)
    if stride < 1:
        r.fail("only positive upsample strides are supported (negative means downsample)",
               "stride")
    if r.floats("scale") not in ([], [1.0]):
        r.fail("upsample 'scale' other than 1 is not supported", "scale")
    h, w, c = shape
    return dict(stride=stride), [index - 1], (h * stride, w * stride, c)


def _yolo(r: _Reader, index: int, layers: list[Layer], shape):
    classes = r.int("classes", 20)
    anchors_flat = r.floats("anchors")
    num = r.int("num", len(anchors_flat) // 2 or 1)
    mask = r.ints("mask", list(range(num)))
    if len(anchors_flat) % 2 or len(anchors_flat) // 2 < num:
        r.fail(f"'anchors' has {len(anchors_flat)} numbers; num={num} needs {2 * num}",
               "anchors")
    anchors = [(anchors_flat[2 * i], anchors_flat[2 * i + 1]) for i in range(num)]
    bad = [m for m in mask if not 0 <= m < num]
    if bad:
        r.fail(f"mask entry {bad[0]} is outside the {num} anchors", "mask")
    if classes < 1:
        r.fail("classes must be positive", "classes")
    if r.floats("scale_x_y") not in ([], [1.0]):
        r.fail("scale_x_y other than 1 (YOLOv4) is not supported", "scale_x_y")
    expected = len(mask) * (5 + classes)
    if shape[2] != expected or not layers or layers[-1].kind != "convolutional":
        prev = layers[-1] if layers else None
        line = prev.line if prev else r.s.line
        raise ConfigError(
            f"{r.path}:{line}: the layer before [yolo] (line {r.s.line}) has {shape[2]} "
            f"filters, but mask {mask} and classes={classes} need "
            f"{len(mask)} * (5 + {classes}) = {expected}")
    return dict(classes=classes, mask=mask, anchors=anchors), [index - 1], shape


_BUILDERS = {
    "convolutional": _convolutional,
    "maxpool": _maxpool,
    "route": _route,
    "shortcut": _shortcut,
    "upsample": _upsample,
    "yolo": _yolo,
}
