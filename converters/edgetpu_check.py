"""Static Edge TPU check: a prediction of which ops `edgetpu_compiler` will map.

`python -m converters.edgetpu_check MODEL.tflite [--compiled MODEL_edgetpu.tflite] [--json]`

The compiler (`edgetpu_compiler`) only runs on x86-64 Debian/Ubuntu, so this module applies
its rules to the flatbuffer instead, with no TensorFlow, and prints a table in the layout of
`edgetpu_compiler -s` but in its own words: each row is a *prediction*, never the
compiler's verdict (`converters.edgetpu_compile` prints the compiler's own words when it
ran). With `--compiled`, the prediction is held against what the compiler really did, read
from its output file. Exit 0 when every op is predicted to map, 1 when some op would run
on the CPU, 2 (one-line error) when the file is not a readable TFLite model.

Where the rules come from, strongest evidence first:
- Real compiler 16 outputs beside their inputs (tests/fixtures/edgetpu_real, from
  google-coral/test_data): which op ran where is read from the compiled file by tensor name
  (`placement_from_compiled`), and the tests require this checker to agree op by op. They
  show: placement follows data dependencies, not op order (an op is left on the CPU when
  one of its inputs comes from an op that stayed on the CPU after the Edge TPU part);
  UNIDIRECTIONAL_SEQUENCE_LSTM maps with its int16 cell state; RESIZE_BILINEAR with
  half_pixel_centers maps; float->int8 QUANTIZE, DEQUANTIZE, CAST stay on the CPU; int8
  requantize (QUANTIZE int8->int8) and the uint8<->int8 QUANTIZE at the model's edges map.
- Coral, "TensorFlow models on the Edge TPU", "Model requirements" and "Supported
  operations": https://coral.ai/docs/edgetpu/models-intro/#supported-operations
  (8-bit tensors, static sizes, constant parameters, at most 3 innermost dimensions > 1,
  the supported-op table and each op's "known limitations").
- The one-Edge-TPU-subgraph rule without `-a`/`-d` (status "More than one subgraph is not
  supported"), as Coral's maintainers describe it: google-coral/edgetpu issue #461.
- Size limits the compiler does not document ("not mapped due to some unspecified
  limitation"), fitted to where real compiler 16 outputs stopped (SIZE_LIMITS: the largest
  size seen mapped and the smallest seen left on the CPU, with the pair or log that shows
  it; `python scripts/checker_agreement.py --limits` prints the data). Above the smallest
  size seen on the CPU the op is predicted on the CPU; between the two the data cannot
  decide and the op gets a warning. Where only a public report gives a data point the op
  gets a warning, not a verdict (issues #461 MEAN, #598 LSTM).
- Op versions: edgetpu_compiler 16 rejects the whole model ("Didn't find op for builtin
  opcode ... Model could not be parsed") for op versions newer than its TFLite (seen:
  CONV_2D v6, QUANTIZE v3, TRANSPOSE_CONV v4; edgetpu issues #631, #879, #845). OP_VERSIONS
  gives each op's limit and the evidence for it.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from yolo_tpu.tflite_file import (
    EDGETPU_CUSTOM_CODE,
    NotTfliteError,
    OperatorInfo,
    TensorInfo,
    TfliteModel,
    read_model,
)

# Placement kinds. Each is a prediction; COMPILER_STATUS gives the status the compiler
# prints for it in its -s table (to compare with a parsed compiler report), PREDICTION
# the words this checker prints.
MAPPED = "edgetpu"
NOT_SUPPORTED = "unsupported_op"
SUBGRAPH = "after_cpu_op"
DATA_TYPE = "data_type"
VERSION = "op_version"
UNSPECIFIED = "limitation"
RANK = "rank"
DYNAMIC = "dynamic"
NOT_CONSTANT = "not_constant"
# What a compiled model's CPU ops are reported as: the compiler left them out on purpose.
COMPILED_CPU = "compiled_cpu"

# The compiler's own status strings. MAPPED, SUBGRAPH, DATA_TYPE, VERSION and UNSPECIFIED
# are verbatim from published compiler logs; the others are its wording as far as known
# (the real compiler aborts outright on dynamic-sized tensors instead of listing them).
COMPILER_STATUS = {
    MAPPED: "Mapped to Edge TPU",
    NOT_SUPPORTED: "Operation not supported",
    SUBGRAPH: "More than one subgraph is not supported",
    DATA_TYPE: "Operation is working on an unsupported data type",
    VERSION: "Operation version not supported",
    UNSPECIFIED: "Operation is otherwise supported, but not mapped due to some unspecified "
                 "limitation",
    RANK: "Tensor has unsupported rank (up to 3 innermost dimensions mapped)",
    DYNAMIC: "Attempted to use a dynamic-sized tensor",
    NOT_CONSTANT: "Filter, bias, or other param is not constant at compile-time",
    COMPILED_CPU: "(compiled: on the CPU)",
}
PREDICTION = {
    MAPPED: "Edge TPU",
    NOT_SUPPORTED: "CPU: not an Edge TPU operation",
    SUBGRAPH: "CPU: input comes from an op left on the CPU",
    DATA_TYPE: "CPU: data type",
    VERSION: "CPU: op version or variant",
    UNSPECIFIED: "CPU: op limitation",
    RANK: "CPU: tensor rank",
    DYNAMIC: "CPU: dynamic shape",
    NOT_CONSTANT: "CPU: parameter not constant",
    COMPILED_CPU: "CPU (compiled file)",
}
COMPILED_MAPPED = "compiled_edgetpu"
COMPILER_STATUS[COMPILED_MAPPED] = COMPILER_STATUS[MAPPED]
PREDICTION[COMPILED_MAPPED] = "Edge TPU (compiled file)"

# Each op of the supported-op table (Coral docs, runtime 14 / compiler 16) with the highest
# version predicted to map, and the evidence. "pair" = seen mapped by compiler 16 in a real
# pair (tests/fixtures/edgetpu_real); "rt2.5" = the op's highest version whose minimum
# runtime is <= TFLite 2.5.0 in tensorflow/lite/tools/versioning/runtime_version.cc
# (libedgetpu 16 and the compiler were built against TF 2.5; compiler 15 already failed on
# versions added in 2.5, so this is the conservative reading).
_PAIR, _RT = "pair", "rt2.5"
OP_VERSIONS: dict[str, tuple[int, str]] = {
    "ADD": (3, f"{_RT}; v2 {_PAIR} movenet"),
    "AVERAGE_POOL_2D": (3, f"{_RT}; v1 {_PAIR} mobilenet_v1"),
    "CONCATENATION": (3, f"{_RT}; v1 {_PAIR} split_concat, v2 posenet"),
    "CONV_2D": (5, f"{_RT}; v1 mobilenet_v1, v3 {_PAIR} movenet/posenet; v6 refused (#631)"),
    "DEPTHWISE_CONV_2D": (6, f"{_RT}; v1 mobilenet_v1, v3 {_PAIR} movenet/posenet"),
    "EXPAND_DIMS": (1, _RT),
    "FULLY_CONNECTED": (9, f"{_RT}; v4 {_PAIR} keras_lstm"),
    "L2_NORMALIZATION": (2, _RT),
    "LOGISTIC": (3, f"{_RT}; v2 {_PAIR} movenet"),
    "LSTM": (4, _RT),
    "UNIDIRECTIONAL_SEQUENCE_LSTM": (3, f"{_RT}; v1 {_PAIR} keras_lstm (int16 cell state)"),
    "MAXIMUM": (4, _RT),
    "MAX_POOL_2D": (3, _RT),
    "MEAN": (3, _RT),
    "MINIMUM": (4, _RT),
    "MUL": (4, f"{_RT}; v2 {_PAIR} movenet"),
    "PACK": (3, _RT),
    "PAD": (3, f"{_RT}; v2 {_PAIR} posenet"),
    "PRELU": (1, _RT),
    "QUANTIZE": (2, f"{_RT}; v1 {_PAIR} keras_lstm/movenet/posenet; v3 refused (#879)"),
    "REDUCE_MAX": (3, _RT),
    "REDUCE_MIN": (3, _RT),
    "RELU": (3, _RT),
    "RELU6": (3, _RT),
    "RELU_N1_TO_1": (1, _RT),
    "RESHAPE": (1, f"{_RT}; v1 {_PAIR} keras_lstm/mobilenet_v1/movenet"),
    "RESIZE_BILINEAR": (4, f"{_RT}; v3 (half_pixel_centers) {_PAIR} movenet"),
    "RESIZE_NEAREST_NEIGHBOR": (4, _RT),
    "RSQRT": (2, _RT),
    "SLICE": (5, _RT),
    "SOFTMAX": (3, f"{_RT}; v1 {_PAIR} mobilenet_v1, v2 keras_lstm"),
    "SPACE_TO_DEPTH": (2, _RT),
    "SPLIT": (4, f"{_RT}; v1 {_PAIR} split_concat"),
    "SQUARED_DIFFERENCE": (2, _RT),
    "SQUEEZE": (2, _RT),
    "STRIDED_SLICE": (5, _RT),
    "SUB": (5, f"{_RT}; v2 {_PAIR} movenet"),
    "SUM": (2, _RT),
    "TANH": (3, _RT),
    # Not in Coral's table, but compiler 16 maps it: deeplab_mobilenet_edgetpu_slim_cityscapes
    # broadcasts its image-pooling branch 1x1x128 -> 33x33x128 with TILE v1, on the Edge TPU.
    "TILE": (2, f"{_RT}; v1 {_PAIR} deeplab_mobilenet_edgetpu_slim_cityscapes"),
    "TRANSPOSE": (5, f"{_RT}; v2 {_PAIR} yolov8n_640"),
    "TRANSPOSE_CONV": (3, f"{_RT}; v4 refused (#845)"),
}
MAX_VERSION = {op: limit for op, (limit, _) in OP_VERSIONS.items()}
SUPPORTED_OPS = frozenset(OP_VERSIONS)

# Fused activations the hardware applies in the same pass; anything else (TANH, SIGN_BIT)
# is not listed as supported.
_FUSABLE = {"NONE", "RELU", "RELU6", "RELU_N1_TO_1"}
# "No fused activation function." in the table.
_NO_FUSED_ACTIVATION = {"AVERAGE_POOL_2D", "MAX_POOL_2D", "CONCATENATION"}
# In LSTM options the "fused activation" is the cell's own (TANH), not an extra output op.
_CELL_ACTIVATION = {"LSTM", "UNIDIRECTIONAL_SEQUENCE_LSTM"}
# Inputs that are weights or biases and must be compile-time constants (and may be int32).
_PARAM_INPUTS = {
    "CONV_2D": (1, 2),
    "DEPTHWISE_CONV_2D": (1, 2),
    "FULLY_CONNECTED": (1, 2),
    "TRANSPOSE_CONV": (1, 3),
}
_EIGHT_BIT = {"INT8", "UINT8"}
# Constant parameter tensors (biases, shapes, axes, paddings) may be 32/64-bit integers.
_CONST_TYPES = _EIGHT_BIT | {"INT32", "INT64"}
# A fully quantized LSTM keeps its cell state in int16 and its output state in int8.
_LSTM_STATE_TYPES = _EIGHT_BIT | {"INT16"}
SOFTMAX_MAX_ELEMENTS = 16000


@dataclass(frozen=True)
class SizeLimit:
    """A size limit the compiler does not document, as far as real outputs show it.

    `mapped`: the largest size (elements of the op's largest activation tensor; for
    RESIZE_BILINEAR its output) seen on the Edge TPU; `cpu`: the smallest seen left on the
    CPU by this limit (not because of an op before it). From `cpu` on the checker predicts
    the CPU; above `mapped` and below `cpu` it warns.
    """

    mapped: int
    mapped_seen: str
    cpu: int
    cpu_seen: str


# Fitted with `python scripts/checker_agreement.py --limits` on the pairs in
# tests/fixtures/edgetpu_real (compiler 16) and, at measure time, on a custom one-class YOLOv8
# pair at 640 px (G-aad-a/ddu-eksamen, not committed: no licence). Logs and files of compiler
# 16 that agree, shapes inferred from the exporter: Ultralytics' yolov8n at 192 px maps all 6
# TRANSPOSE and 6 RESHAPE (up to [1, 24, 24, 144] = 82944; jveitchmichaelis/edgetpu-yolo), a
# one-class YOLOv8 at 512 px compiled alone (nerbivol/edgetpu_lite) keeps the transpose of its
# 32x32x65 level (66560) inside the custom op and leaves 64x64x65 (266240) on the CPU, and
# yolov8n at 640 px (its pair's log) reports its RESHAPE to [1, 144, 1600] as a limitation.
# Elements separate all of these, and so would the transposed grid (mapped up to 32x32, on
# the CPU from 40x40): the data cannot tell which the compiler counts.
SIZE_LIMITS: dict[str, SizeLimit] = {
    "TRANSPOSE": SizeLimit(
        82944, "yolov8n at 192 px, compiler 16 log; pair yolov8n_640: [1, 20, 20, 144] = 57600",
        104000, "pair yolov8 one-class 640 px: [1, 40, 40, 65] -> [1, 65, 40, 40] = 104000; "
                "pair yolov8n_640: [1, 40, 40, 144] = 230400"),
    "RESHAPE": SizeLimit(
        82944, "yolov8n at 192 px, compiler 16 log; pair yolov8n_640: [1, 144, 400] = 57600",
        230400, "yolov8n_640 log: RESHAPE [1, 144, 40, 40] -> [1, 144, 1600] is a limitation"),
    "RESIZE_BILINEAR": SizeLimit(
        55296, "pair movenet: 24x24 -> 48x48x24, 2x",
        278784, "pairs deeplabv3_mnv2_pascal: 1x1 -> 33x33x256 = 278784 (33x), "
                "deeplab_mobilenet_edgetpu_slim: 33x33 -> 513x513x19 = 5000211 (15.5x)"),
}
# The largest upscale of a mapped bilinear resize seen (movenet 2x, half_pixel_centers).
# Both resizes seen on the CPU are larger in size AND factor, so the data cannot tell which
# one the compiler judges: the checker predicts the CPU only when both are exceeded.
RESIZE_MAPPED_FACTOR = 2.0


@dataclass(frozen=True)
class OpCheck:
    """One operator's predicted placement (a kind above) and why."""

    index: int
    op: str
    version: int
    status: str
    reason: str = ""
    warning: str = ""  # predicted to map, but near a limit the compiler does not document

    @property
    def mapped(self) -> bool:
        return self.status in (MAPPED, COMPILED_MAPPED)

    @property
    def prediction(self) -> str:
        return PREDICTION[self.status]

    @property
    def compiler_status(self) -> str:
        """The status the compiler prints for this kind (for comparing with its report)."""
        return COMPILER_STATUS[self.status]


@dataclass(frozen=True)
class CheckReport:
    source: str
    ops: tuple[OpCheck, ...]
    compiled: bool = False  # already an Edge TPU model (has an edgetpu-custom-op)
    edgetpu_custom_ops: int = 0
    # Model-level findings, e.g. things that make the real compiler abort entirely.
    notes: tuple[str, ...] = field(default=())

    @property
    def total(self) -> int:
        return len(self.ops)

    @property
    def tpu_count(self) -> int:
        return sum(op.mapped for op in self.ops)

    @property
    def cpu_count(self) -> int:
        return self.total - self.tpu_count

    @property
    def all_mapped(self) -> bool:
        return self.tpu_count == self.total

    @property
    def warnings(self) -> list[OpCheck]:
        return [op for op in self.ops if op.warning]

    def table_rows(self) -> list[tuple[str, int, str]]:
        """(op, count, kind) rows like the compiler's table, in first-seen order."""
        counts = Counter((op.op, op.status) for op in self.ops)
        return [(name, n, status) for (name, status), n in counts.items()]

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "compiled": self.compiled,
            "edgetpu_custom_ops": self.edgetpu_custom_ops,
            "total": self.total,
            "tpu": self.tpu_count,
            "cpu": self.cpu_count,
            "all_mapped": self.all_mapped,
            "ops": [asdict(op) | {"mapped": op.mapped, "prediction": op.prediction}
                    for op in self.ops],
            "table": [
                {"op": name, "count": n, "status": status, "prediction": PREDICTION[status]}
                for name, n, status in self.table_rows()
            ],
            "notes": list(self.notes),
        }


# --- per-op rules -------------------------------------------------------------------------

Verdict = tuple[str, str] | None  # (status, reason), None when the rule has nothing to say


def _activations(model: TfliteModel, op: OperatorInfo) -> list[TensorInfo]:
    """The op's non-constant tensors: the ones that flow through the chip."""
    idx = [i for i in op.inputs + op.outputs if i >= 0]
    return [model.tensor(i) for i in idx if not model.tensor(i).is_constant]


def _check_quantize_input(model: TfliteModel, op: OperatorInfo) -> Verdict:
    # A float->int8 QUANTIZE at the model's input stays on the CPU; the compiler reports it
    # with its generic status (as in the logs of post-training-quantized float-input models).
    if op.name != "QUANTIZE" or not op.inputs:
        return None
    src = model.tensor(op.inputs[0])
    if src.dtype not in _EIGHT_BIT:
        return UNSPECIFIED, f"QUANTIZE from {src.dtype} input: the Edge TPU takes 8-bit data only"
    return None


def _check_data_types(model: TfliteModel, op: OperatorInfo) -> Verdict:
    for i in [i for i in op.inputs + op.outputs if i >= 0]:
        t = model.tensor(i)
        allowed = _CONST_TYPES if t.is_constant else _EIGHT_BIT
        if op.name in _CELL_ACTIVATION and t.is_variable:
            allowed = _LSTM_STATE_TYPES  # the int16 cell state (keras_lstm pair: mapped)
        if t.dtype not in allowed:
            kind = "constant" if t.is_constant else "tensor"
            return DATA_TYPE, f"{kind} '{t.name}' is {t.dtype}; the Edge TPU computes on int8/uint8"
    return None


def _check_supported(model: TfliteModel, op: OperatorInfo) -> Verdict:
    if op.name in SUPPORTED_OPS:
        return None
    if op.name == "CUSTOM":
        return NOT_SUPPORTED, f"custom op '{op.custom_code}' is not an Edge TPU operation"
    return NOT_SUPPORTED, f"{op.name} is not in the Edge TPU's supported-operations table"


def _check_version(model: TfliteModel, op: OperatorInfo) -> Verdict:
    limit = MAX_VERSION[op.name]
    if op.version > limit:
        return VERSION, (
            f"{op.name} version {op.version} is newer than edgetpu_compiler 16 knows "
            f"(max {limit}); it cannot parse the model at all"
        )
    return None


def _check_dynamic(model: TfliteModel, op: OperatorInfo) -> Verdict:
    for t in _activations(model, op):
        if t.is_dynamic:
            sig = t.shape_signature if t.shape_signature is not None else t.shape
            return DYNAMIC, f"tensor '{t.name}' has dynamic shape {list(sig)}; sizes must be static"
    return None


def _check_rank(model: TfliteModel, op: OperatorInfo) -> Verdict:
    for t in _activations(model, op):
        if len(t.shape) > 3 and any(d > 1 for d in t.shape[:-3]):
            return RANK, (
                f"tensor '{t.name}' has shape {list(t.shape)}: only the 3 innermost "
                f"dimensions may be larger than 1"
            )
    return None


def _check_constant_params(model: TfliteModel, op: OperatorInfo) -> Verdict:
    for pos in _PARAM_INPUTS.get(op.name, ()):
        if pos < len(op.inputs) and op.inputs[pos] >= 0:
            t = model.tensor(op.inputs[pos])
            if not t.is_constant:
                return NOT_CONSTANT, f"input {pos} ('{t.name}') of {op.name} is not a constant"
    return None


def _const(model: TfliteModel, op: OperatorInfo, pos: int) -> list[int] | None:
    """Values of a constant integer input (axes, paddings, strides), flattened."""
    if pos >= len(op.inputs) or op.inputs[pos] < 0:
        return None
    values = model.tensor(op.inputs[pos]).constant_values()
    return None if values is None else [int(v) for v in values.reshape(-1)]


def _rank(model: TfliteModel, op: OperatorInfo, pos: int = 0) -> int:
    return len(model.tensor(op.inputs[pos]).shape)


def _touches_batch(axes: list[int], rank: int) -> bool:
    """True when the axes include the batch (first) dimension of an NHWC-style tensor."""
    return rank >= 4 and any(a % rank == 0 for a in axes)


def _limit_fused_activation(model: TfliteModel, op: OperatorInfo) -> Verdict:
    if op.name in _CELL_ACTIVATION:
        return None
    act = op.options.get("fused_activation_function", "NONE")
    if op.name in _NO_FUSED_ACTIVATION and act != "NONE":
        return UNSPECIFIED, f"{op.name} with fused activation {act} (docs: no fused activation)"
    if act not in _FUSABLE:
        return UNSPECIFIED, f"fused activation {act} is not supported"
    return None


def _limit_dilation(model: TfliteModel, op: OperatorInfo) -> Verdict:
    w, h = op.options.get("dilation_w_factor", 1), op.options.get("dilation_h_factor", 1)
    if w != h:
        return UNSPECIFIED, f"dilation {h}x{w}: must be the same in x and y"
    return None


def _limit_fully_connected(model: TfliteModel, op: OperatorInfo) -> Verdict:
    if op.options.get("weights_format", "DEFAULT") != "DEFAULT":
        return UNSPECIFIED, "only the default format is supported for fully-connected weights"
    out = model.tensor(op.outputs[0]).shape
    if any(d != 1 for d in out[:-1]):
        return UNSPECIFIED, f"output shape {list(out)}: the output tensor must be one-dimensional"
    return None


def _limit_concatenation(model: TfliteModel, op: OperatorInfo) -> Verdict:
    consts = [model.tensor(i) for i in op.inputs if i >= 0 and model.tensor(i).is_constant]
    if not consts:
        return None
    values = consts[0].constant_values()
    zeros = values is not None and not values.any()
    if len(op.inputs) != 2 or len(consts) != 1 or not zeros:
        return UNSPECIFIED, "a constant input is allowed only as the second of 2 inputs, all zeros"
    return None


def _limit_mean(model: TfliteModel, op: OperatorInfo) -> Verdict:
    axes, rank = _const(model, op, 1), _rank(model, op)
    if axes is None:
        return NOT_CONSTANT, "MEAN axes are not a constant"
    if _touches_batch(axes, rank):
        return UNSPECIFIED, "no reduction in the batch dimension"
    depth = model.tensor(op.inputs[0]).shape[-1]
    if any(a % rank == rank - 1 for a in axes) and depth % 4:
        return UNSPECIFIED, f"a z-reduction needs a depth that is a multiple of 4 (is {depth})"
    return None


def _limit_batch_axis(model: TfliteModel, op: OperatorInfo) -> Verdict:
    """PAD / SPLIT / PACK / REDUCE_MAX / REDUCE_MIN / SUM: nothing along the batch axis."""
    if op.name == "PAD":
        pads, rank = _const(model, op, 1), _rank(model, op)
        if pads is None:
            return NOT_CONSTANT, "PAD paddings are not a constant"
        if rank >= 4 and any(pads[:2]):
            return UNSPECIFIED, "no padding in the batch dimension"
        return None
    if op.name == "SPLIT":
        axis, rank = _const(model, op, 0), _rank(model, op, 1)
        if axis is None:
            return NOT_CONSTANT, "SPLIT axis is not a constant"
        if _touches_batch(axis, rank):
            return UNSPECIFIED, "no splitting in the batch dimension"
        return None
    if op.name == "PACK":
        rank = len(model.tensor(op.outputs[0]).shape)
        axis = int(op.options.get("axis", 0))
        if _touches_batch([axis], rank):
            return UNSPECIFIED, "no packing in the batch dimension"
        return None
    axes, rank = _const(model, op, 1), _rank(model, op)
    if axes is None:
        return NOT_CONSTANT, f"{op.name} axes are not a constant"
    if _touches_batch(axes, rank):
        return UNSPECIFIED, f"{op.name} cannot operate on the batch dimension"
    return None


def _limit_prelu(model: TfliteModel, op: OperatorInfo) -> Verdict:
    alpha = model.tensor(op.inputs[1]).shape
    if any(d > 1 for d in alpha[:-1]):
        return UNSPECIFIED, (
            f"alpha shape {list(alpha)}: only its innermost dimension may be > 1 "
            f"(Keras PReLU needs shared_axes=[1, 2])"
        )
    return None


def _limit_resize(model: TfliteModel, op: OperatorInfo) -> Verdict:
    # half_pixel_centers=True (TF2's tf.image.resize default) was refused by compilers
    # before 16 ("Operation version not supported", edgetpu issues #187, #396); compiler 16
    # maps it for RESIZE_BILINEAR (movenet pair). Nearest-neighbour: see _WARNINGS.
    for t in (model.tensor(op.inputs[0]), model.tensor(op.outputs[0])):
        if len(t.shape) != 4 or t.shape[0] != 1:
            return UNSPECIFIED, f"input/output must be a 3-dimensional tensor (is {list(t.shape)})"
    if op.name != "RESIZE_BILINEAR":
        return None
    size, factor = _resize_size(model, op)
    limit = SIZE_LIMITS["RESIZE_BILINEAR"]
    if size >= limit.cpu and factor > RESIZE_MAPPED_FACTOR:
        return UNSPECIFIED, (
            f"bilinear resize by {factor:g}x to {size} elements: compiler 16 left every such "
            f"resize seen (>= {limit.cpu} elements, > {RESIZE_MAPPED_FACTOR}x) on the CPU "
            f"({limit.cpu_seen})")
    return None


def _limit_softmax(model: TfliteModel, op: OperatorInfo) -> Verdict:
    # Coral's table says "1-D input tensor with a max of 16,000 elements", but compiler 16
    # maps softmax over the last axis of larger tensors: YOLOv8n's DFL softmax on
    # [1, 4, 756, 16] at 192 px (its log: every op mapped), and at 640 px its log reports the
    # [1, 4, 8400, 16] softmax as blocked only by the subgraph rule, not by a limitation.
    shape = model.tensor(op.inputs[0]).shape
    if shape and shape[-1] > SOFTMAX_MAX_ELEMENTS:
        return UNSPECIFIED, (
            f"input shape {list(shape)}: at most {SOFTMAX_MAX_ELEMENTS} elements on the "
            f"softmax axis")
    return None


def _limit_squeeze(model: TfliteModel, op: OperatorInfo) -> Verdict:
    shape = model.tensor(op.inputs[0]).shape
    dims = op.options.get("squeeze_dims") or ()
    if dims:
        squeezed = {d % len(shape) for d in dims}
    else:  # no squeeze_dims: every size-1 dimension goes
        squeezed = {i for i, d in enumerate(shape) if d == 1}
    leading = 0
    while leading < len(shape) and shape[leading] == 1:
        leading += 1
    if any(d >= leading for d in squeezed):
        return UNSPECIFIED, f"squeezing {sorted(squeezed)} of {list(shape)} needs a relayout"
    return None


def _limit_strided_slice(model: TfliteModel, op: OperatorInfo) -> Verdict:
    strides = _const(model, op, 3)
    if strides is None:
        return NOT_CONSTANT, "STRIDED_SLICE strides are not a constant"
    if any(s != 1 for s in strides):
        return UNSPECIFIED, f"strides {strides}: all strides must be 1"
    if op.options.get("ellipsis_mask", 0) or op.options.get("new_axis_mask", 0):
        return UNSPECIFIED, "ellipsis_mask and new_axis_mask must be 0"
    return None


# --- warnings: limits the compiler does not document ----------------------------------------
# Each is a public data point, not a rule: the op is still predicted to map.


def _elements(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= max(int(d), 1)
    return n


def _warn_mean(model: TfliteModel, op: OperatorInfo) -> str:
    n = _elements(model.tensor(op.inputs[0]).shape)
    if n > 24576:
        return (f"MEAN over {n} elements: compiler 16 left a MEAN over 1x256x128x3 (98304) on "
                f"the CPU and mapped 1x64x128x3 (edgetpu issue #461)")
    return ""


def _warn_lstm(model: TfliteModel, op: OperatorInfo) -> str:
    features = model.tensor(op.inputs[0]).shape[-1]
    if features > 900:
        return (f"LSTM input of {features} features: the compiler failed on LSTM inputs "
                f"above about 900 (edgetpu issue #598)")
    return ""


def _warn_nearest_half_pixel(model: TfliteModel, op: OperatorInfo) -> str:
    if op.options.get("half_pixel_centers", False):
        return ("RESIZE_NEAREST_NEIGHBOR with half_pixel_centers: refused by compilers before "
                "16 (edgetpu issues #187, #396); compiler 16 maps the bilinear form, the "
                "nearest form is unverified")
    return ""


def _largest_activation(model: TfliteModel, op: OperatorInfo) -> int:
    return max((_elements(t.shape) for t in _activations(model, op)), default=0)


def _resize_size(model: TfliteModel, op: OperatorInfo) -> tuple[int, float]:
    """(output elements, largest per-axis upscale factor) of a RESIZE op."""
    src, dst = model.tensor(op.inputs[0]).shape, model.tensor(op.outputs[0]).shape
    factor = max(dst[1] / max(src[1], 1), dst[2] / max(src[2], 1))
    return _elements(dst), factor


def _limit_data_movement(model: TfliteModel, op: OperatorInfo) -> Verdict:
    """TRANSPOSE / RESHAPE on a large tensor: left on the CPU by compiler 16."""
    size, limit = _largest_activation(model, op), SIZE_LIMITS[op.name]
    if size >= limit.cpu:
        return UNSPECIFIED, (
            f"{op.name} on {size} elements: compiler 16 leaves {op.name} from {limit.cpu} "
            f"elements on the CPU ({limit.cpu_seen})")
    return None


def _warn_data_movement(model: TfliteModel, op: OperatorInfo) -> str:
    size, limit = _largest_activation(model, op), SIZE_LIMITS[op.name]
    if size > limit.mapped:
        return (f"{op.name} on {size} elements: between the largest seen mapped "
                f"({limit.mapped}, {limit.mapped_seen}) and the smallest seen on the CPU "
                f"({limit.cpu}); the data cannot decide")
    return ""


def _warn_resize_bilinear(model: TfliteModel, op: OperatorInfo) -> str:
    size, factor = _resize_size(model, op)
    limit = SIZE_LIMITS["RESIZE_BILINEAR"]
    if size > limit.mapped or factor > RESIZE_MAPPED_FACTOR:
        return (f"bilinear resize by {factor:g}x to {size} elements: beyond the largest seen "
                f"mapped ({limit.mapped} elements, {RESIZE_MAPPED_FACTOR}x; "
                f"{limit.mapped_seen}); the data cannot decide")
    return ""


# Op-specific "known limitations" from the supported-op table that a static check can see.
_LIMITS: dict[str, tuple[Callable[[TfliteModel, OperatorInfo], Verdict], ...]] = {
    "CONV_2D": (_limit_dilation,),
    "DEPTHWISE_CONV_2D": (_limit_dilation,),
    "FULLY_CONNECTED": (_limit_fully_connected,),
    "CONCATENATION": (_limit_concatenation,),
    "MEAN": (_limit_mean,),
    "PAD": (_limit_batch_axis,),
    "SPLIT": (_limit_batch_axis,),
    "PACK": (_limit_batch_axis,),
    "REDUCE_MAX": (_limit_batch_axis,),
    "REDUCE_MIN": (_limit_batch_axis,),
    "SUM": (_limit_batch_axis,),
    "PRELU": (_limit_prelu,),
    "RESIZE_BILINEAR": (_limit_resize,),
    "RESIZE_NEAREST_NEIGHBOR": (_limit_resize,),
    "RESHAPE": (_limit_data_movement,),
    "SOFTMAX": (_limit_softmax,),
    "SQUEEZE": (_limit_squeeze,),
    "STRIDED_SLICE": (_limit_strided_slice,),
    "TRANSPOSE": (_limit_data_movement,),
}

_WARNINGS: dict[str, Callable[[TfliteModel, OperatorInfo], str]] = {
    "MEAN": _warn_mean,
    "LSTM": _warn_lstm,
    "UNIDIRECTIONAL_SEQUENCE_LSTM": _warn_lstm,
    "RESIZE_NEAREST_NEIGHBOR": _warn_nearest_half_pixel,
    "RESIZE_BILINEAR": _warn_resize_bilinear,
    "TRANSPOSE": _warn_data_movement,
    "RESHAPE": _warn_data_movement,
}


# General rules, in the order their findings take precedence.
_GENERAL = (
    _check_quantize_input,
    _check_data_types,
    _check_supported,
    _check_version,
    _check_dynamic,
    _check_rank,
    _check_constant_params,
    _limit_fused_activation,
)


def op_verdict(model: TfliteModel, op: OperatorInfo) -> Verdict:
    """Why `op` cannot map on its own (ignoring the partition rule), or None if it can."""
    for rule in _GENERAL + _LIMITS.get(op.name, ()):
        verdict = rule(model, op)
        if verdict is not None:
            return verdict
    return None


def _partition(model: TfliteModel) -> list[OpCheck]:
    """Each op's own verdict, then the one-Edge-TPU-subgraph rule along data dependencies.

    Data may flow CPU -> Edge TPU -> CPU once: ops on the CPU before the Edge TPU part (a
    float input's CAST/QUANTIZE) feed it, but an op that needs the output of a CPU op which
    itself depends on the Edge TPU part stays on the CPU even if it could map, since
    mapping it would need a second Edge TPU subgraph. Ops in other branches are not
    affected, whatever their position in the op list (movenet pair).
    """
    on_tpu: set[int] = set()  # tensors produced on the Edge TPU
    # tensors downstream of the Edge TPU part through a CPU op -> the CPU op where it left
    crossed: dict[int, int] = {}
    checks: list[OpCheck] = []
    for op in model.operators:  # execution order is a topological order
        verdict = op_verdict(model, op)
        inputs = [i for i in op.inputs if i >= 0 and not model.tensor(i).is_constant]
        origins = [crossed[i] for i in inputs if i in crossed]
        if verdict is None and not origins:
            on_tpu.update(i for i in op.outputs if i >= 0)
            warn = _WARNINGS.get(op.name)
            checks.append(OpCheck(op.index, op.name, op.version, MAPPED,
                                  warning=warn(model, op) if warn else ""))
            continue
        if verdict is None:
            first = model.operators[min(origins)]
            reason = f"op {first.index} ({first.name}) stays on the CPU after the Edge TPU part"
            checks.append(OpCheck(op.index, op.name, op.version, SUBGRAPH, reason))
        else:
            checks.append(OpCheck(op.index, op.name, op.version, *verdict))
        if origins or any(i in on_tpu for i in inputs):
            origin = min(origins) if origins else op.index
            crossed.update({i: origin for i in op.outputs if i >= 0})
    return checks


def _model_notes(model: TfliteModel, checks: list[OpCheck]) -> list[str]:
    notes = []
    if model.subgraph_count > 1:
        notes.append(
            f"model has {model.subgraph_count} subgraphs; only the main one is checked"
        )
    if any(c.status == DYNAMIC for c in checks):
        notes.append(
            "edgetpu_compiler aborts on dynamic-sized tensors (\"Attempting to use a delegate "
            "that only supports static-sized tensors\"): convert with a fixed batch size of 1"
        )
    if any(c.status == VERSION and "cannot parse" in c.reason for c in checks):
        notes.append(
            "edgetpu_compiler 16 stops with \"Model could not be parsed\" on op versions newer "
            "than it knows: no op at all would be compiled"
        )
    return notes


def _compiled_report(source: str, model: TfliteModel) -> CheckReport:
    """A model already compiled by edgetpu_compiler: its custom op(s) run on the Edge TPU."""
    ops = tuple(
        OpCheck(op.index, op.name, op.version, COMPILED_MAPPED)
        if op.custom_code == EDGETPU_CUSTOM_CODE
        else OpCheck(op.index, op.name, op.version, COMPILED_CPU, "outside the edgetpu-custom-op")
        for op in model.operators
    )
    n_custom = sum(op.custom_code == EDGETPU_CUSTOM_CODE for op in model.operators)
    return CheckReport(source, ops, compiled=True, edgetpu_custom_ops=n_custom)


def check_model(model: TfliteModel, source: str = "<bytes>") -> CheckReport:
    """Check an already-parsed model."""
    if any(op.custom_code == EDGETPU_CUSTOM_CODE for op in model.operators):
        return _compiled_report(source, model)
    checks = _partition(model)
    return CheckReport(source, tuple(checks), notes=tuple(_model_notes(model, checks)))


def check(path_or_bytes: str | Path | bytes) -> CheckReport:
    """Check a `.tflite` file or its bytes. Raises OSError / NotTfliteError."""
    source = "<bytes>" if isinstance(path_or_bytes, (bytes, bytearray)) else str(path_or_bytes)
    return check_model(read_model(path_or_bytes), source)


# --- truth from a compiled file -----------------------------------------------------------


class NotCompiledFromError(ValueError):
    """The compiled file was not made from this model (its tensors do not match)."""


def placement_from_compiled(model: TfliteModel, compiled: TfliteModel) -> list[bool]:
    """Where edgetpu_compiler put each op of `model`: True = inside the edgetpu-custom-op.

    The compiler keeps tensor names: an op whose output tensor is produced by an op other
    than the custom op in the compiled file stayed on the CPU; every other op was folded
    into the custom op (that includes the QUANTIZE ops at the model's edges).
    """
    if not any(op.custom_code == EDGETPU_CUSTOM_CODE for op in compiled.operators):
        raise NotCompiledFromError("no edgetpu-custom-op: not an edgetpu_compiler output")
    names = {t.name for t in model.tensors}
    cpu_outputs = {
        compiled.tensor(t).name
        for op in compiled.operators
        if op.custom_code != EDGETPU_CUSTOM_CODE
        for t in op.outputs
        if t >= 0
    }
    io = {compiled.tensor(i).name for i in compiled.inputs + compiled.outputs}
    if not io <= names or not cpu_outputs <= names:
        raise NotCompiledFromError("its tensor names are not this model's")
    placement = [
        not any(model.tensor(t).name in cpu_outputs for t in op.outputs if t >= 0)
        for op in model.operators
    ]
    n_cpu = sum(op.custom_code != EDGETPU_CUSTOM_CODE for op in compiled.operators)
    if placement.count(False) != n_cpu:
        raise NotCompiledFromError(
            f"{n_cpu} CPU ops in the compiled file, {placement.count(False)} matched by name")
    return placement


def disagreements(report: CheckReport, placement: list[bool]) -> list[OpCheck]:
    """The ops whose predicted placement differs from the compiler's."""
    return [op for op, tpu in zip(report.ops, placement) if op.mapped != tpu]


@dataclass(frozen=True)
class SizeObservation:
    """Where the compiler put one op that a SIZE_LIMITS row governs, and its size."""

    index: int
    op: str
    size: int  # as SizeLimit counts it
    factor: float  # RESIZE_BILINEAR: largest per-axis upscale; 1 for the others
    mapped: bool
    own: bool  # on the CPU with every input from the Edge TPU or the model's inputs: its own limit
    shapes: str


def size_observations(model: TfliteModel, placement: list[bool]) -> list[SizeObservation]:
    """The evidence a real compiled file gives for SIZE_LIMITS (mapped ops, and CPU ops that
    the compiler left there on their own rather than after a CPU op)."""
    producer = {t: op.index for op in model.operators for t in op.outputs if t >= 0}
    found = []
    for op, tpu in zip(model.operators, placement):
        if op.name not in SIZE_LIMITS:
            continue
        inputs = [i for i in op.inputs if i >= 0 and not model.tensor(i).is_constant]
        own = not tpu and all(i not in producer or placement[producer[i]] for i in inputs)
        if op.name == "RESIZE_BILINEAR":
            size, factor = _resize_size(model, op)
        else:
            size, factor = _largest_activation(model, op), 1.0
        shapes = (f"{list(model.tensor(inputs[0]).shape) if inputs else []} -> "
                  f"{list(model.tensor(op.outputs[0]).shape)}")
        found.append(SizeObservation(op.index, op.name, size, factor, tpu, own, shapes))
    return found


def edgetpu_package(raw: bytes) -> dict[str, int | str] | None:
    """What the compiler wrote about itself in the edgetpu-custom-op's executable package.

    The custom options hold a DarwiNN `Package` flatbuffer (file identifier DWN1, schema in
    google-coral/libedgetpu executable/executable.fbs) behind a short header: field 0 is
    min_runtime_version, field 4 compiler_version. Compiler 16 writes an empty compiler
    version ("cl/"), so the runtime version is the only hint inside the file.
    """
    from flatbuffers import encode, number_types
    from flatbuffers.table import Table

    from yolo_tpu.tflite_file import custom_payloads
    payloads = custom_payloads(raw)
    if not payloads:
        return None
    data = payloads[0][1]
    start = data.find(b"DWN1") - 4
    if start < 0:
        return None
    buf = bytearray(data[start:])
    table = Table(buf, encode.Get(number_types.UOffsetTFlags.packer_type, buf, 0))
    runtime = table.Offset(4)
    version = table.Offset(12)
    return {
        "min_runtime_version": table.Get(number_types.Int32Flags, table.Pos + runtime)
        if runtime else 0,
        "compiler_version": table.String(table.Pos + version).decode() if version else "",
    }


# --- output -------------------------------------------------------------------------------


def format_table(rows: list[tuple[str, int, str]], header: str = "Status") -> str:
    """The compiler's `-s` table layout: op name in 31 columns, count in 11, then the text."""
    lines = [f"{'Operator':<31}{'Count':<11}{header}", ""]
    lines += [f"{name:<31}{count:<11}{text}" for name, count, text in rows]
    return "\n".join(lines)


def verdict_line(report: CheckReport) -> str:
    return (f"Predicted: {report.tpu_count} of {report.total} operations on the Edge TPU "
            f"(a static prediction; edgetpu_compiler has the final word)")


def format_report(report: CheckReport) -> str:
    if report.compiled:
        cpu = report.total - report.edgetpu_custom_ops
        return (
            f"{report.source}: already compiled for the Edge TPU: "
            f"{report.edgetpu_custom_ops} edgetpu-custom-op(s) run on the Edge TPU, "
            f"{cpu} other op(s) run on the CPU"
        )
    rows = [(name, n, PREDICTION[kind]) for name, n, kind in report.table_rows()]
    parts = [format_table(rows, "Predicted placement")]
    failed = [op for op in report.ops if not op.mapped]
    if failed:
        parts.append("\nPredicted on the CPU:")
        parts += [f"  op {op.index} {op.op}: {op.prediction}: {op.reason}" for op in failed]
    if report.warnings:
        parts.append("\nPredicted on the Edge TPU, but near a limit the compiler does not "
                     "document (check with edgetpu_compiler):")
        parts += [f"  op {op.index} {op.op}: {op.warning}" for op in report.warnings]
    parts += [f"Note: {note}" for note in report.notes]
    parts.append("")
    parts.append(verdict_line(report))
    return "\n".join(parts)


def format_comparison(report: CheckReport, placement: list[bool], compiled: str) -> str:
    wrong = disagreements(report, placement)
    lines = [f"Compared with {compiled}: the prediction agrees on "
             f"{report.total - len(wrong)} of {report.total} ops"]
    lines += [f"  op {op.index} {op.op}: predicted {op.prediction}, compiled "
              f"{'Edge TPU' if not op.mapped else 'CPU'}" for op in wrong]
    return "\n".join(lines)


def one_line_error(exc: Exception, name_file: bool = True) -> str:
    """An OSError or parse error as the rest of a one-line message."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename}: {exc.strerror}" if exc.filename and name_file else exc.strerror
    return str(exc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m converters.edgetpu_check",
        description="Predict which ops of a .tflite model edgetpu_compiler maps to the Edge TPU.",
    )
    parser.add_argument("model", help=".tflite file")
    parser.add_argument("--compiled", metavar="EDGETPU_TFLITE",
                        help="edgetpu_compiler's output for MODEL: compare the prediction "
                             "with what the compiler did")
    parser.add_argument("--json", action="store_true", help="print a machine-readable report")
    args = parser.parse_args(argv)
    try:
        report = check(args.model)
    except (OSError, NotTfliteError) as exc:
        print(f"edgetpu_check: {args.model}: {one_line_error(exc, False)}", file=sys.stderr)
        return 2
    placement = None
    if args.compiled:
        try:
            placement = placement_from_compiled(read_model(args.model), read_model(args.compiled))
        except (OSError, NotTfliteError, NotCompiledFromError) as exc:
            print(f"edgetpu_check: {args.compiled}: {one_line_error(exc, False)}", file=sys.stderr)
            return 2
    if args.json:
        data = report.to_dict()
        if placement is not None:
            data["compiled_placement"] = ["edgetpu" if p else "cpu" for p in placement]
            data["disagreements"] = [op.index for op in disagreements(report, placement)]
        print(json.dumps(data, indent=2))
    else:
        print(format_report(report))
        if placement is not None:
            print(format_comparison(report, placement, args.compiled))
    if placement is not None and disagreements(report, placement):
        return 1
    return 0 if report.compiled or report.all_mapped else 1


if __name__ == "__main__":
    sys.exit(main())
