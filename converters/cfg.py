"""Darknet `.cfg` parser: one readable pass from the INI dialect to checked layer specs.

Darknet's dialect: `[section]` headers that repeat, `key=value` lines with optional spaces,
`#` and `;` comments, comma lists. Every layer gets its output shape here, so routes,
head filter counts and the input size are checked before any weight is read, and every
error names the file and line it comes from.

Which keys exist is AlexeyAB's `src/parser.c` (the darknet most models are trained with
today; pjreddie's reads a subset): `SECTIONS` lists, per section type, the keys that change
inference (read by the section's builder below) and the keys that only matter for
training (read and ignored, as darknet's own detector ignores them). A key in neither is
an error with a "did you mean" for near misses: darknet itself only warns about unused keys,
so a misspelt `scale_x_y` would silently change the model.
"""
from __future__ import annotations

import builtins
import difflib
import math
import os
import re
from dataclasses import dataclass, field
from typing import Callable

from yolo_tpu.meta import NMS_KINDS  # one list for the cfg and the metadata


class ConfigError(ValueError):
    """A cfg the converter cannot build: the message names file, line and problem."""


# Keys parse_network_cfg_custom reads in every layer section: all about training, except
# dontload and dontloadscales (weights or batch-norm values not read from the file, which
# changes the file's layout), which parse_cfg refuses.
_EVERY_LAYER = frozenset({
    "clip", "onlyforward", "dont_update", "burnin_update", "stopbackward", "train_only_bn",
    "dontloadscales", "learning_rate", "dontload",
})
_NET_INFERENCE = {"width", "height", "channels", "letter_box"}
_NET_TRAINING = {
    "batch", "subdivisions", "momentum", "decay", "angle", "saturation", "exposure", "hue",
    "learning_rate", "learning_rate_min", "burn_in", "max_batches", "policy", "steps",
    "scales", "seq_scales", "scale", "step", "gamma", "power", "mosaic", "mosaic_bound",
    "max_crop", "min_crop", "aspect", "flip", "inputs", "time_steps", "notruth", "random",
    "center", "adam", "b1", "b2", "eps", "max_ratio", "min_ratio", "jitter", "cutmix", "mixup",
    "blur", "gaussian_noise", "sgdr_cycle", "sgdr_mult", "track", "augment_speed",
    "sequential_subdivisions", "try_fix_nan", "weights_reject_freq", "equidistant_point",
    "badlabels_rejection_percentage", "num_sigmas_reject_badlabels", "ema_alpha",
    "use_cuda_graph", "loss_scale", "dynamic_minibatch", "optimized_memory",
    "workspace_size_limit_mb", "contrastive", "contrastive_jit_flip", "contrastive_color",
    "unsupervised", "label_smooth_eps", "resize_step", "attention", "adversarial_lr",
    "max_chart_loss", "show_receptive_field",
}
_YOLO_TRAINING = {
    "jitter", "ignore_thresh", "truth_thresh", "iou_thresh", "random", "max",
    "counters_per_class", "label_smooth_eps", "iou_normalizer", "iou_loss", "cls_normalizer",
    "obj_normalizer", "delta_normalizer", "uc_normalizer", "max_delta", "map", "focal_loss",
    "resize", "objectness_smooth", "iou_thresh_kind", "show_details", "track_history_size",
    "sim_thresh", "dets_for_track", "dets_for_show", "track_ciou_norm", "embedding_layer",
    "yolo_point",
}


@dataclass(frozen=True)
class SectionKeys:
    """What darknet reads in one section type: keys that change inference, keys that don't."""

    inference: frozenset[str]
    training: frozenset[str] = frozenset()

    @property
    def all(self) -> frozenset[str]:
        return self.inference | self.training | _EVERY_LAYER


def _keys(inference: str, training: str = "") -> SectionKeys:
    return SectionKeys(frozenset(inference.split()), frozenset(training.split()))


# One row per section type darknet knows (aliases below). `None`: darknet has the section,
# yolo_tpu does not build it (the error says so instead of "unknown section").
SECTIONS: dict[str, SectionKeys | None] = {
    "net": SectionKeys(frozenset(_NET_INFERENCE), frozenset(_NET_TRAINING)),
    "convolutional": _keys(
        "filters size stride stride_x stride_y pad padding groups activation batch_normalize "
        "cbn dilation binary xnor bin_output flipped antialiasing share_index sway rotate "
        "stretch stretch_sway coordconv",
        "angle grad_centr reverse dot assisted_excitation stream wait_stream"),
    "maxpool": _keys("size stride stride_x stride_y padding maxpool_depth out_channels "
                     "antialiasing", "maxpool_zero_nonmax"),
    "avgpool": _keys(""),
    "route": _keys("layers groups group_id", "stream wait_stream"),
    # alpha/beta: pjreddie's scaled shortcut (AlexeyAB's does not read them)
    "shortcut": _keys("from activation weights_type weights_normalization alpha beta"),
    "upsample": _keys("stride scale"),
    "dropout": _keys("", "probability dropblock dropblock_size_rel dropblock_size_abs"),
    "sam": _keys("from activation"),
    "scale_channels": _keys("from activation scale_wh"),
    "activation": _keys("activation"),
    "empty": _keys(""),
    "yolo": SectionKeys(frozenset({"mask", "anchors", "classes", "num", "scale_x_y",
                                   "new_coords", "nms_kind", "beta_nms"}),
                        frozenset(_YOLO_TRAINING)),
    "region": _keys(
        "anchors classes coords num softmax tree classfix",
        "log sqrt focal_loss jitter resize rescore thresh absolute random coord_scale "
        "object_scale noobject_scale mask_scale class_scale bias_match map max"),
    "reorg": _keys("stride reverse"),
    "reorg3d": _keys("stride reverse"),  # AlexeyAB's parse_reorg ([reorg] is parse_reorg_old)
    "local_avgpool": _keys("size stride stride_x stride_y padding"),
    # Sections darknet reads that no detector we convert uses.
    "local": None, "crnn": None, "rnn": None, "gru": None, "lstm": None, "conv_lstm": None,
    "history": None, "connected": None, "softmax": None, "contrastive": None,
    "detection": None, "cost": None, "crop": None, "normalization": None, "batchnorm": None,
    "implicit": None, "gaussian_yolo": None,
}
_SECTION_ALIASES = {"network": "net", "conv": "convolutional", "max": "maxpool",
                    "avg": "avgpool", "silence": "empty", "conn": "connected",
                    "soft": "softmax", "lrn": "normalization", "local_avg": "local_avgpool"}
HEAD_KINDS = ("yolo", "region")

# Activations, as darknet's get_activation names them. Darknet maps an unknown name to
# relu with a warning; here it is an error.
ACTIVATIONS = ("linear", "leaky", "relu", "relu6", "logistic", "tanh", "swish", "mish",
               "hard_mish")

# The largest value yolo_tpu builds, per integer key (any section): beyond these a cfg is
# damaged or hostile (`width=100000000` would be a 465 GiB tensor, `num=2147483648` an
# 18 GB anchor list), not a model. Any other integer key is bounded by INT_LIMIT.
INT_LIMITS: dict[str, int] = {
    "width": 8192, "height": 8192, "channels": 64, "filters": 16384, "size": 64,
    "stride": 64, "stride_x": 64, "stride_y": 64, "dilation": 64, "padding": 256,
    "groups": 16384, "group_id": 16384, "num": 1024, "classes": 100000, "coords": 64,
    "mask": 1024,
}
INT_LIMIT = 2 ** 31 - 1
MAX_TENSOR = 2 ** 30  # elements of one layer's output (4 GiB as float32)

# What the Debian (pjreddie 2018) darknet reads; a cfg using anything beyond it was written
# for AlexeyAB's darknet, whose detector stretches images and normalizes batch norm with
# sqrt(var + 1e-5) instead of sqrt(var) + 1e-6.
_PJREDDIE_KEYS = {
    "net": {"batch", "subdivisions", "width", "height", "channels", "momentum", "decay",
            "angle", "saturation", "exposure", "hue", "learning_rate", "burn_in",
            "max_batches", "policy", "steps", "scales", "max_crop", "min_crop", "aspect",
            "step", "gamma", "power", "inputs", "time_steps", "notruth", "random", "center",
            "adam", "b1", "b2", "eps", "scale"},
    "convolutional": {"filters", "size", "stride", "pad", "padding", "batch_normalize",
                      "groups", "activation", "binary", "xnor", "flipped", "dot",
                      "stopbackward"},
    "maxpool": {"size", "stride", "padding", "stopbackward"},
    "avgpool": set(), "dropout": {"probability"},
    "route": {"layers", "stopbackward"},
    "shortcut": {"from", "activation", "alpha", "beta", "stopbackward"},
    "upsample": {"stride", "scale"},
    "yolo": {"mask", "anchors", "classes", "num", "jitter", "ignore_thresh", "truth_thresh",
             "random", "max", "map"},
    "region": {"anchors", "classes", "coords", "num", "softmax", "log", "sqrt", "jitter",
               "rescore", "thresh", "classfix", "absolute", "random", "coord_scale",
               "object_scale", "noobject_scale", "mask_scale", "class_scale", "bias_match",
               "tree", "map", "max", "background"},
    "reorg": {"stride", "reverse", "flatten", "extra"},
}
_PJREDDIE_ACTIVATIONS = {"linear", "leaky", "relu", "logistic", "tanh", "relie", "ramp",
                         "plse", "stair", "hardtan", "lhtan", "elu", "loggy", "selu"}
FLAVORS = ("alexeyab", "pjreddie")


@dataclass
class Section:
    """One `[name]` block as written, with the line numbers for error messages."""

    name: str
    line: int
    values: dict[str, str] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # where darknet reads it unexpectedly


@dataclass
class Layer:
    """A darknet layer after checking: its kind, parameters, inputs and output shape (h, w, c)."""

    index: int
    kind: str
    line: int
    params: dict
    inputs: list[int]  # indices of the layers it reads; -1 is the network input
    shape: tuple[int, int, int]
    lines: dict[str, int] = field(default_factory=dict)  # cfg line of each key


@dataclass
class Network:
    path: str
    width: int
    height: int
    channels: int
    layers: list[Layer]
    flavor: str = "pjreddie"  # which darknet the cfg was written for (see _flavor)
    letter_box: bool = True  # the detector's resize: letterbox (True) or stretch
    flavor_reason: str = ""
    # lines darknet reads other than a reader would expect (merged numbers, default
    # anchors): converted as darknet reads them, and said in the summary
    warnings: list[str] = field(default_factory=list)

    @property
    def heads(self) -> list[Layer]:
        """Detection layers ([yolo] and [region]) in cfg order: the model's outputs."""
        return [l for l in self.layers if l.kind in HEAD_KINDS]

    @property
    def yolo_layers(self) -> list[Layer]:
        return self.heads

    @property
    def classes(self) -> int:
        return self.heads[0].params["classes"]


# darknet's read_cfg strips every space and tab from a line before it parses it (strip() in
# src/utils.c), so `anchors = 10,14  23,27` is 10,1423,27 and `layers = -1 8` is -18.
_DARKNET_SPACE = re.compile(r"[ \t\r\n]")
_MERGED_NUMBERS = re.compile(r"[0-9.][ \t]+[-+0-9.]")


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
        key = _DARKNET_SPACE.sub("", key)
        if _MERGED_NUMBERS.search(value):
            joined = _DARKNET_SPACE.sub("", value)
            sections[-1].notes.append(
                f"{path}:{number}: {key}={value}: darknet deletes every space before reading "
                f"a line, so this is {key}={joined} (a missing comma?); converted as darknet "
                "reads it")
        sections[-1].values[key.lower()] = _DARKNET_SPACE.sub("", value)
        sections[-1].lines[key.lower()] = number
    if not sections:
        raise ConfigError(f"{path}: no sections: not a darknet cfg")
    return sections


def did_you_mean(word: str, choices) -> str:
    """' (did you mean 'x'?)' for a near miss among `choices`, else ''."""
    close = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.7)
    return f" (did you mean '{close[0]}'?)" if close else ""


class _Reader:
    """Typed access to one section's values, with errors that point at the right line."""

    def __init__(self, path: str, section: Section):
        self.path, self.s = path, section
        self.flavor: str | None = None
        keys = SECTIONS[section.name]
        unknown = set(section.values) - keys.all
        if unknown:
            key = min(unknown, key=lambda k: section.lines[k])
            self.fail(f"unknown key '{key}' in [{section.name}]: darknet does not read it"
                      + did_you_mean(key, keys.all), key)

    def fail(self, message: str, key: str | None = None) -> None:
        line = self.s.lines.get(key, self.s.line) if key else self.s.line
        raise ConfigError(f"{self.path}:{line}: {message}")

    def has(self, key: str) -> bool:
        return key in self.s.values

    def bounded(self, key: str, value: int) -> int:
        """`value` if within INT_LIMITS[key] in magnitude, else an error naming the line."""
        limit = INT_LIMITS.get(key, INT_LIMIT)
        if abs(value) > limit:
            self.fail(f"'{key}={self.s.values[key].strip()}' is out of range: yolo_tpu builds "
                      f"at most {limit} (a damaged cfg?)", key)
        return value

    def int(self, key: str, default: int | None = None) -> int:
        if key not in self.s.values:
            if default is None:
                self.fail(f"[{self.s.name}] needs '{key}'")
            return default
        try:
            value = int(self.s.values[key])
        except ValueError:
            self.fail(f"'{key}' must be an integer, got {self.s.values[key]!r}", key)
        return self.bounded(key, value)

    def float(self, key: str, default: float) -> float:
        if key not in self.s.values:
            return default
        try:
            value = float(self.s.values[key])
        except ValueError:
            self.fail(f"'{key}' must be a number, got {self.s.values[key]!r}", key)
        if not math.isfinite(value):
            self.fail(f"'{key}' must be a finite number, got {self.s.values[key]!r}", key)
        return value

    def ints(self, key: str, default: list[int] | None = None) -> list[int]:
        if key not in self.s.values:
            if default is None:
                self.fail(f"[{self.s.name}] needs '{key}'")
            return default
        try:
            values = [int(v) for v in self.s.values[key].split(",") if v.strip()]
        except ValueError:
            self.fail(f"'{key}' must be a list of integers, got {self.s.values[key]!r}", key)
        if len(values) > INT_LIMITS.get(key, 1024):
            self.fail(f"'{key}' lists {len(values)} values: yolo_tpu builds at most "
                      f"{INT_LIMITS.get(key, 1024)}", key)
        for value in values:
            self.bounded(key, value)
        return values

    def floats(self, key: str) -> list[float]:
        try:
            values = [float(v) for v in self.s.values.get(key, "").split(",") if v.strip()]
        except ValueError:
            self.fail(f"'{key}' must be a list of numbers, got {self.s.values[key]!r}", key)
        if not all(math.isfinite(v) for v in values):
            self.fail(f"'{key}' must hold finite numbers, got {self.s.values[key]!r}", key)
        return values

    def darknet_list(self, key: str, kind: type = builtins.float) -> list:
        """A comma list as parse_yolo reads it: one entry per comma-separated piece, an empty
        piece (a trailing comma) is atof's / atoi's 0. Anything else not a number is an
        error here (atof would read its numeric prefix, or 0)."""
        pieces = self.s.values[key].split(",")
        values = []
        for piece in pieces:
            try:
                values.append(kind(piece) if piece else kind(0))
            except ValueError:
                self.fail(f"'{key}' must be a list of numbers, got {self.s.values[key]!r}",
                          key)
        if "" in pieces:
            self.note(key, f"{key}={self.s.values[key]}: darknet reads an empty entry as 0")
        return values

    def note(self, key: str, text: str) -> None:
        """A line darknet reads otherwise than it looks: kept for the summary's warnings."""
        self.s.notes.append(f"{self.path}:{self.s.lines.get(key, self.s.line)}: {text}")

    def str(self, key: str, default: str) -> str:
        return self.s.values.get(key, default).strip().lower()

    def activation(self, default: str) -> str:
        act = self.str("activation", default)
        if act not in ACTIVATIONS:
            self.fail(f"unsupported activation '{act}'{did_you_mean(act, ACTIVATIONS)} "
                      f"(supported: {', '.join(ACTIVATIONS)})", "activation")
        return act

    def refuse_unless(self, key: str, default, what: str) -> None:
        """A key darknet implements and we do not: fine at its default, an error otherwise."""
        if key in self.s.values and self.str(key, "") != str(default) and not (
                _is_number(self.s.values[key]) and _is_number(str(default))
                and float(self.s.values[key]) == float(default)):
            self.fail(f"[{self.s.name}] {key}={self.s.values[key]}: {what} is not supported",
                      key)


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def parse_size(text: str) -> tuple[int, int]:
    """`416` or `416x256` (width x height) -> (width, height)."""
    try:
        w, _, h = text.lower().partition("x")
        return int(w), int(h or w)
    except ValueError:
        raise ValueError(f"size must be N or WxH, got {text!r}") from None


def _check_section_names(path: str, sections: list[Section]) -> None:
    for s in sections:
        s.name = _SECTION_ALIASES.get(s.name, s.name)
        supported = [k for k, v in SECTIONS.items() if v is not None and k != "net"]
        if s.name not in SECTIONS:
            raise ConfigError(f"{path}:{s.line}: unknown section [{s.name}]"
                              f"{did_you_mean(s.name, SECTIONS)} (supported: "
                              f"{', '.join('[%s]' % k for k in supported)})")
        if SECTIONS[s.name] is None:
            raise ConfigError(f"{path}:{s.line}: [{s.name}] is a darknet layer yolo_tpu does "
                              f"not convert (supported: "
                              f"{', '.join('[%s]' % k for k in supported)})")


def _flavor(sections: list[Section]) -> tuple[str, str]:
    """('alexeyab' | 'pjreddie', why): the first thing only AlexeyAB's darknet reads, if any."""
    for s in sections:
        known = _PJREDDIE_KEYS.get(s.name)
        if known is None:
            return "alexeyab", f"line {s.line}: [{s.name}]"
        for key, line in s.lines.items():
            if key not in known and key not in _EVERY_LAYER - {"learning_rate"}:
                return "alexeyab", f"line {line}: {key}"
        act = s.values.get("activation", "").strip().lower()
        if act and act not in _PJREDDIE_ACTIVATIONS:
            return "alexeyab", f"line {s.lines['activation']}: activation={act}"
    return "pjreddie", "no key or layer beyond the 2018 darknet"


def parse_cfg(path: str, size: tuple[int, int] | None = None,
              flavor: str | None = None) -> Network:
    """Parse and check a darknet cfg; `size` (width, height) overrides `[net]`.

    `flavor` ('alexeyab' or 'pjreddie', default: guessed from the keys the cfg uses) is the
    darknet the weights were trained with: it decides batch-norm arithmetic and, unless
    `[net] letter_box` says otherwise, whether the detector letterboxes or stretches.
    """
    sections = read_sections(path)
    _check_section_names(path, sections)
    net_section, *layer_sections = sections
    if net_section.name != "net":
        raise ConfigError(f"{path}:{net_section.line}: the first section must be [net]")
    net = _Reader(path, net_section)
    width, height = size or (net.int("width", 416), net.int("height", 416))
    channels = net.int("channels", 3)
    if size and max(size) > INT_LIMITS["width"]:
        raise ConfigError(f"{path}: --size {width}x{height} is out of range: yolo_tpu builds "
                          f"at most {INT_LIMITS['width']} a side")
    if width <= 0 or height <= 0 or width % 32 or height % 32:
        where = f"{path}: --size" if size else f"{path}:{net_section.line}: [net]"
        raise ConfigError(f"{where}: input size {width}x{height} is not a multiple of 32"
                          " (YOLO downsamples by 32)")
    if channels != 3:
        raise ConfigError(f"{path}:{net_section.lines.get('channels', net_section.line)}: "
                          f"channels={channels}; only 3-channel (RGB) networks are supported")
    guessed, reason = _flavor(sections)
    if flavor is None:
        flavor = guessed
    elif flavor not in FLAVORS:
        raise ValueError(f"flavor must be one of {FLAVORS}, got {flavor!r}")
    else:
        reason = "chosen with --darknet"
    # AlexeyAB's detector letterboxes only with [net] letter_box=1; pjreddie's always does.
    letter_box = bool(net.int("letter_box", 0)) if flavor == "alexeyab" else True

    layers: list[Layer] = []
    shape = (height, width, channels)
    for index, section in enumerate(layer_sections):
        if section.name == "net":
            raise ConfigError(f"{path}:{section.line}: [net] may only be the first section")
        r = _Reader(path, section)
        r.flavor = flavor  # builders whose arithmetic differs between the two darknets
        r.refuse_unless("dontload", 0, "not loading a layer's weights")
        r.refuse_unless("dontloadscales", 0, "not loading a layer's batch-norm values")
        params, inputs, shape = BUILDERS[section.name](r, index, layers, shape)
        if shape[0] * shape[1] * shape[2] > MAX_TENSOR:
            r.fail(f"[{section.name}] outputs {shape[1]}x{shape[0]}x{shape[2]} values, more "
                   f"than the {MAX_TENSOR} yolo_tpu builds in one layer")
        layers.append(Layer(index, section.name, section.line, params, inputs, shape,
                            dict(section.lines)))
    result = Network(path, width, height, channels, layers, flavor, letter_box, reason,
                     [note for s in sections for note in s.notes])
    heads = result.heads
    if not heads:
        raise ConfigError(f"{path}: no [yolo] or [region] layer: not a YOLO detector")
    classes = {h.params["classes"] for h in heads}
    if len(classes) != 1:
        raise ConfigError(f"{path}:{heads[-1].line}: detection layers disagree on classes: "
                          f"{sorted(classes)}")
    kinds = {h.kind for h in heads}
    if len(kinds) != 1:
        raise ConfigError(f"{path}: mixes [yolo] and [region] heads")
    return result


Builder = Callable[["_Reader", int, list, tuple], tuple[dict, list[int], tuple[int, int, int]]]


def _conv_out(n: int, size: int, stride: int, pad: int) -> int:
    return (n + 2 * pad - size) // stride + 1


def _convolutional(r: _Reader, index: int, layers: list[Layer], shape):
    h, w, c = shape
    filters, size = r.int("filters", 1), r.int("size", 1)
    stride = r.int("stride", 1)
    stride_x, stride_y = r.int("stride_x", stride), r.int("stride_y", stride)
    groups, dilation = r.int("groups", 1), r.int("dilation", 1)
    pad = size // 2 if r.int("pad", 0) else r.int("padding", 0)
    if filters < 1 or size < 1 or stride_x < 1 or stride_y < 1:
        r.fail("filters, size and stride must be positive")
    if size == 1:  # parse_convolutional: a 1x1 kernel has no dilation
        dilation = 1
    if dilation < 1:
        r.fail(f"dilation={dilation} must be positive", "dilation")
    if groups < 1 or c % groups or filters % groups:
        r.fail(f"groups={groups} must divide the {c} input channels and the {filters} "
               "filters", "groups")
    for key, what in (("binary", "binary weights"), ("xnor", "XNOR convolution"),
                      ("bin_output", "binary output"), ("flipped", "transposed weights"),
                      ("antialiasing", "anti-aliased striding"), ("sway", "deformable conv"),
                      ("rotate", "deformable conv"), ("stretch", "deformable conv"),
                      ("stretch_sway", "deformable conv"), ("coordconv", "coordconv")):
        r.refuse_unless(key, 0, what)
    if r.has("share_index"):
        r.fail("share_index (weights shared with another layer) is not supported",
               "share_index")
    out_h, out_w = _conv_out(h, size, stride_y, pad), _conv_out(w, size, stride_x, pad)
    if out_h < 1 or out_w < 1:
        r.fail(f"convolution reduces {h}x{w} input to nothing")
    # darknet sizes the layer without the dilation but im2col_cpu_ext pads pad*dilation and
    # spans dilation*(size-1)+1 pixels: the two agree only for pad = size/2 (odd sizes)
    span = dilation * (size - 1) + 1
    if dilation > 1 and (_conv_out(h, span, stride_y, pad * dilation) != out_h
                         or _conv_out(w, span, stride_x, pad * dilation) != out_w):
        r.fail(f"dilation={dilation} with size={size} and padding {pad}: darknet's im2col "
               f"fills a {_conv_out(w, span, stride_x, pad * dilation)}-wide grid into its "
               f"{out_w}-wide output (its result is garbage); use pad=1 with an odd size",
               "dilation")
    params = dict(filters=filters, size=size, stride=stride_x, stride_y=stride_y, pad=pad,
                  groups=groups, in_channels=c, dilation=dilation,
                  batch_normalize=bool(r.int("batch_normalize", 0) or r.int("cbn", 0)),
                  activation=r.activation("logistic"))
    return params, [index - 1], (out_h, out_w, filters)


def _pool_geometry(r: _Reader, shape, size: int, sx: int, sy: int, padding: int):
    """Output size and whether every window sees at least one real pixel (darknet pads -inf)."""
    h, w, _ = shape
    out_h, out_w = (h + padding - size) // sy + 1, (w + padding - size) // sx + 1
    if out_h < 1 or out_w < 1:
        r.fail(f"[{r.s.name}] size={size} reduces {w}x{h} to nothing")
    for n, out, s in ((h, out_h, sy), (w, out_w, sx)):
        last = -(padding // 2) + (out - 1) * s
        if last >= n or -(padding // 2) + size <= 0:
            r.fail(f"[{r.s.name}] size={size} stride={s} padding={padding} on {n} pixels "
                   "has windows entirely outside the image")
    return out_h, out_w


def _pool_window(r: _Reader, index: int, shape):
    """The window keys maxpool and local_avgpool share (parse_maxpool's defaults) and the
    layer they make: (params, inputs, output shape)."""
    stride = r.int("stride", 1)
    sx, sy = r.int("stride_x", stride), r.int("stride_y", stride)
    size = r.int("size", stride)
    padding = r.int("padding", size - 1)
    if size < 1 or sx < 1 or sy < 1 or padding < 0:
        r.fail("size and stride must be positive")
    out_h, out_w = _pool_geometry(r, shape, size, sx, sy, padding)
    return (dict(size=size, stride=sx, stride_y=sy, padding=padding), [index - 1],
            (out_h, out_w, shape[2]))


def _maxpool(r: _Reader, index: int, layers: list[Layer], shape):
    layer = _pool_window(r, index, shape)
    r.refuse_unless("maxpool_depth", 0, "max over channels")
    r.refuse_unless("out_channels", 1, "max over channels")
    r.refuse_unless("antialiasing", 0, "anti-aliased pooling")
    return layer


def _local_avgpool(r: _Reader, index: int, layers: list[Layer], shape):
    """parse_local_avgpool: maxpool's geometry, the mean over each window's real pixels."""
    return _pool_window(r, index, shape)


def _reorg3d(r: _Reader, index: int, layers: list[Layer], shape):
    stride = r.int("stride", 1)
    r.refuse_unless("reverse", 0, "reverse reorg3d")
    h, w, c = shape
    if stride < 1 or h % stride or w % stride:
        r.fail(f"[reorg3d] stride={stride} must divide the {w}x{h} input", "stride")
    return dict(stride=stride), [index - 1], (h // stride, w // stride, c * stride * stride)


def _avgpool(r: _Reader, index: int, layers: list[Layer], shape):
    return {}, [index - 1], (1, 1, shape[2])


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
    groups, group_id = r.int("groups", 1), r.int("group_id", 0)
    shapes = [layers[t].shape for t in targets]
    if len({s[:2] for s in shapes}) != 1:
        r.fail(f"[route] joins layers of different sizes: "
               + ", ".join(f"{t}: {s[1]}x{s[0]}" for t, s in zip(targets, shapes)), "layers")
    if groups < 1 or not 0 <= group_id < groups:
        r.fail(f"[route] group_id={group_id} must be in 0..groups-1 (groups={groups})",
               "group_id" if r.has("group_id") else "groups")
    bad = [(t, s[2]) for t, s in zip(targets, shapes) if s[2] % groups]
    if bad:
        r.fail(f"[route] groups={groups} does not divide the {bad[0][1]} channels of layer "
               f"{bad[0][0]}", "groups")
    return (dict(groups=groups, group_id=group_id), targets,
            (*shapes[0][:2], sum(s[2] for s in shapes) // groups))


def _shortcut(r: _Reader, index: int, layers: list[Layer], shape):
    sources = [_route_index(r, index, v, "from") for v in r.ints("from")]
    if not sources:
        r.fail("[shortcut] needs 'from'", "from")
    r.refuse_unless("alpha", 1, "a scaled shortcut")
    r.refuse_unless("beta", 1, "a scaled shortcut")
    if r.str("weights_type", "none") != "none":
        r.fail("[shortcut] weights_type (weighted shortcuts) is not supported", "weights_type")
    resample = [_shortcut_geometry(r, t, layers[t].shape, shape) for t in sources]
    return (dict(activation=r.activation("linear"), resample=resample),
            [index - 1, *sources], shape)


def _shortcut_geometry(r: _Reader, source: int, src, shape) -> tuple[int, int, int, int]:
    """(stride, sample, rows, cols) of pjreddie's shortcut_cpu for layer `source` (h1, w1)
    added into the previous layer's (h2, w2): add[j*stride, i*stride] goes to
    out[j*sample, i*sample] for j < min(h1, h2), i < min(w1, w2); (1, 1, h, w) if equal."""
    (h1, w1, _), (h2, w2, _) = src, shape
    if (h1, w1) == (h2, w2):
        return 1, 1, h2, w2
    sizes = f"layer {source} of size {w1}x{h1} to size {w2}x{h2}"
    if r.flavor != "pjreddie":
        r.fail(f"[shortcut] adds {sizes}: AlexeyAB's darknet asserts equal sizes "
               "(parse_shortcut) and aborts; pjreddie's strides or samples (shortcut_cpu): "
               "pass --darknet pjreddie if the weights were trained with it", "from")
    stride, sample = w1 // w2, w2 // w1
    if stride != h1 // h2 or sample != h2 // h1:
        r.fail(f"[shortcut] adds {sizes}: width and height ratios differ, which darknet's "
               "shortcut_cpu asserts against", "from")
    return max(stride, 1), max(sample, 1), min(h1, h2), min(w1, w2)


def _upsample(r: _Reader, index: int, layers: list[Layer], shape):
    stride = r.int("stride", 2)
    if stride < 1:
        r.fail("only positive upsample strides are supported (negative means downsample)",
               "stride")
    h, w, c = shape
    return (dict(stride=stride, scale=r.float("scale", 1.0)), [index - 1],
            (h * stride, w * stride, c))


def _identity(r: _Reader, index: int, layers: list[Layer], shape):
    """[dropout] and [empty]: the previous layer's output, unchanged at inference."""
    return {}, [index - 1], shape


def _activation_layer(r: _Reader, index: int, layers: list[Layer], shape):
    return dict(activation=r.activation("linear")), [index - 1], shape


def _multiply(r: _Reader, index: int, layers: list[Layer], shape):
    """[sam]: previous x layer `from`, element-wise. [scale_channels]: layer `from` (h, w, c)
    scaled per channel by the previous layer (1, 1, c). The output has `from`'s shape."""
    sources = r.ints("from", [])
    if len(sources) != 1:
        r.fail(f"[{r.s.name}] needs exactly one 'from' layer, got {len(sources)}",
               "from" if r.has("from") else None)
    (source,) = sources
    target = _route_index(r, index, source, "from")
    other = layers[target].shape
    if r.s.name == "sam" and other != shape:
        r.fail(f"[sam] multiplies layer {target} of shape {other} with shape {shape}: "
               "darknet needs equal shapes", "from")
    if r.s.name == "scale_channels":
        r.refuse_unless("scale_wh", 0, "scaling by a per-position map")
        if shape != (1, 1, other[2]):
            r.fail(f"[scale_channels] scales layer {target} ({other}) by the previous layer, "
                   f"which must be 1x1x{other[2]}, not {shape}", "from")
    act = r.activation("linear")
    if act in ("swish", "mish", "hard_mish"):
        r.fail(f"[{r.s.name}] does not apply {act} in darknet", "activation")
    return dict(activation=act), [index - 1, target], other


def _reorg(r: _Reader, index: int, layers: list[Layer], shape):
    stride = r.int("stride", 1)
    r.refuse_unless("reverse", 0, "reverse reorg")
    h, w, c = shape
    if stride < 1 or h % stride or w % stride:
        r.fail(f"[reorg] stride={stride} must divide the {w}x{h} input", "stride")
    return dict(stride=stride), [index - 1], (h // stride, w // stride, c * stride * stride)


def _anchors(r: _Reader, num: int) -> list[tuple[float, float]]:
    """make_yolo_layer sets all 2*num biases to .5, then parse_yolo reads the first 2*num
    numbers of `anchors` over them: a short list leaves 0.5-pixel anchors, as darknet runs."""
    flat = r.darknet_list("anchors") if r.has("anchors") else []
    if not all(math.isfinite(v) and v >= 0 for v in flat):
        r.fail(f"'anchors' must be sizes (finite, not negative), got {r.s.values['anchors']!r}",
               "anchors")
    if r.s.name == "region" and len(flat) > 2 * num:
        r.fail(f"'anchors' has {len(flat)} numbers; num={num} reads {2 * num} (darknet's "
               "[region] writes the rest past its anchor table)", "anchors")
    if len(flat) < 2 * num:
        r.note("anchors", f"anchors={r.s.values.get('anchors', '')}: {len(flat)} numbers "
               f"for num={num}; "
               f"darknet leaves the other {2 * num - len(flat)} at 0.5 (pixels)")
    flat = (flat + [0.5] * (2 * num))[:2 * num]
    return [(flat[2 * i], flat[2 * i + 1]) for i in range(num)]


def _check_head_filters(r: _Reader, layers: list[Layer], shape, expected: int, why: str):
    if shape[2] != expected or not layers:
        prev = layers[-1] if layers else None
        line = prev.line if prev else r.s.line
        raise ConfigError(
            f"{r.path}:{line}: the layer before [{r.s.name}] (line {r.s.line}) has "
            f"{shape[2]} filters, but {why} = {expected}")


def _yolo(r: _Reader, index: int, layers: list[Layer], shape):
    classes = r.int("classes", 20)
    num = r.int("num", len(r.floats("anchors")) // 2 or 1)
    mask = r.darknet_list("mask", builtins.int) if r.has("mask") else list(range(num))
    anchors = _anchors(r, num)
    bad = [m for m in mask if not 0 <= m < num]
    if bad:
        # make_yolo_layer allocates 2*num biases; get_yolo_box reads biases[2*mask]: past
        # the table it reads whatever memory follows (undefined, not an anchor)
        r.fail(f"mask entry {bad[0]} is outside num={num} anchors: darknet reads its anchor "
               f"table (2*num={2 * num} numbers) out of bounds there, so the box sizes are "
               f"undefined memory; set num to the number of anchor pairs listed "
               f"({len(r.floats('anchors')) // 2})", "mask")
    if classes < 1:
        r.fail("classes must be positive", "classes")
    nms_kind = r.str("nms_kind", "default")
    if nms_kind not in NMS_KINDS:
        # darknet quietly falls back to plain NMS; a typo should not change the results
        r.fail(f"nms_kind={nms_kind}{did_you_mean(nms_kind, NMS_KINDS)}: darknet knows "
               f"{', '.join(NMS_KINDS)}", "nms_kind")
    _check_head_filters(r, layers, shape, len(mask) * (5 + classes),
                        f"mask {mask} and classes={classes} need "
                        f"{len(mask)} * (5 + {classes})")
    params = dict(classes=classes, mask=mask, anchors=anchors,
                  scale_x_y=r.float("scale_x_y", 1.0), new_coords=bool(r.int("new_coords", 0)),
                  nms_kind=nms_kind, beta_nms=r.float("beta_nms", 0.6))
    return params, [index - 1], shape


def _region(r: _Reader, index: int, layers: list[Layer], shape):
    classes, num, coords = r.int("classes", 20), r.int("num", 1), r.int("coords", 4)
    if coords != 4:
        r.fail(f"[region] coords={coords}: only 4 box coordinates are supported", "coords")
    if r.has("tree"):
        r.fail("[region] tree (YOLO9000's softmax tree) is not supported", "tree")
    r.refuse_unless("classfix", 0, "classfix")
    if not r.int("softmax", 0):
        r.fail("[region] without softmax=1 is not supported", "softmax"
               if r.has("softmax") else None)
    anchors = _anchors(r, num)
    _check_head_filters(r, layers, shape, num * (5 + classes),
                        f"num={num} and classes={classes} need {num} * (5 + {classes})")
    params = dict(classes=classes, mask=list(range(num)), anchors=anchors, scale_x_y=1.0,
                  new_coords=False, nms_kind="default", beta_nms=0.6)
    return params, [index - 1], shape


# One builder per darknet section type: adding a layer type is adding a row and a function.
BUILDERS: dict[str, Builder] = {
    "convolutional": _convolutional,
    "maxpool": _maxpool,
    "avgpool": _avgpool,
    "route": _route,
    "shortcut": _shortcut,
    "upsample": _upsample,
    "dropout": _identity,
    "empty": _identity,
    "activation": _activation_layer,
    "sam": _multiply,
    "scale_channels": _multiply,
    "reorg": _reorg,
    "reorg3d": _reorg3d,
    "local_avgpool": _local_avgpool,
    "yolo": _yolo,
    "region": _region,
}
assert set(BUILDERS) == {k for k, v in SECTIONS.items() if v is not None} - {"net"}


def cfg_line(net: Network, layer: Layer, key: str | None = None) -> str:
    """'file:line' of a layer (or one of its keys), for messages about that layer."""
    return f"{os.path.basename(net.path)}:{layer.lines.get(key, layer.line) if key else layer.line}"
