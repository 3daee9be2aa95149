"""Static Edge TPU check: which ops of a `.tflite` model the Edge TPU compiler will map.

`python -m converters.edgetpu_check MODEL.tflite [--json]`

The compiler (`edgetpu_compiler`) only runs on x86-64 Debian/Ubuntu, so this module applies
its documented rules to the flatbuffer instead, with no TensorFlow, and prints the table
`edgetpu_compiler -s` prints, in its format and wording. Exit 0 when every op maps, 1 when
some op would run on the CPU, 2 (one-line error) when the file is not a readable TFLite model.

Where the rules come from:
- Coral, "TensorFlow models on the Edge TPU", sections "Model requirements" and "Supported
  operations": https://coral.ai/docs/edgetpu/models-intro/#supported-operations
  (8-bit tensors, static sizes, constant parameters, at most 3 innermost dimensions > 1,
  the supported-op table and each op's "known limitations").
- The compiler's one-partition rule (one Edge TPU subgraph: once an op cannot map, every
  later op runs on the CPU, status "More than one subgraph is not supported"), as described
  by Coral's maintainers: https://github.com/google-coral/edgetpu/issues/461
- Status wording as `edgetpu_compiler -s` prints it (compiler logs quoted in
  https://github.com/google-coral/edgetpu/issues/60, /490, /420, /396 and others).
- Op versions the compiler can parse: edgetpu_compiler 16.0 rejects the whole model ("Didn't
  find op for builtin opcode ... Model could not be parsed") for op versions newer than its
  TFLite (seen: CONV_2D v6, QUANTIZE v3, TRANSPOSE_CONV v4; edgetpu issues #631, #879, #845).
  The limits below are each op's highest version with a minimum runtime <= TFLite 2.5.0 in
  tensorflow/lite/tools/versioning/runtime_version.cc (compiler 15 already failed on 2.5.0
  versions, so this is the conservative reading for compiler 16).
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
    NotTfliteError,
    OperatorInfo,
    TensorInfo,
    TfliteModel,
    read_model,
)

# Status strings as edgetpu_compiler prints them in its -s table. MAPPED, SUBGRAPH,
# DATA_TYPE, VERSION and UNSPECIFIED are verbatim from published compiler logs; the other
# four are the compiler's wording as far as known but were not found in a published log
# (the real compiler aborts outright on dynamic-sized tensors instead of listing them).
MAPPED = "Mapped to Edge TPU"
NOT_SUPPORTED = "Operation not supported"
SUBGRAPH = "More than one subgraph is not supported"
DATA_TYPE = "Operation is working on an unsupported data type"
VERSION = "Operation version not supported"
UNSPECIFIED = "Operation is otherwise supported, but not mapped due to some unspecified limitation"
RANK = "Tensor has unsupported rank (up to 3 innermost dimensions mapped)"
DYNAMIC = "Attempted to use a dynamic-sized tensor"
NOT_CONSTANT = "Filter, bias, or other param is not constant at compile-time"

EDGETPU_CUSTOM_CODE = "edgetpu-custom-op"
# What a compiled model's CPU ops are reported as: the compiler left them out on purpose.
COMPILED_CPU = "Left on the CPU by the compiler"

# The supported-op table (Coral docs, runtime 14 / compiler 16), as TFLite op names, with the
# highest op version edgetpu_compiler 16 can parse (see the module docstring).
MAX_VERSION: dict[str, int] = {
    "ADD": 3,
    "AVERAGE_POOL_2D": 3,
    "CONCATENATION": 3,
    "CONV_2D": 5,
    "DEPTHWISE_CONV_2D": 6,
    "EXPAND_DIMS": 1,
    "FULLY_CONNECTED": 9,
    "L2_NORMALIZATION": 2,
    "LOGISTIC": 3,
    "LSTM": 4,
    "UNIDIRECTIONAL_SEQUENCE_LSTM": 3,  # the docs' "LSTM: Unidirectional LSTM only"
    "MAXIMUM": 4,
    "MAX_POOL_2D": 3,
    "MEAN": 3,
    "MINIMUM": 4,
    "MUL": 4,
    "PACK": 3,
    "PAD": 3,
    "PRELU": 1,
    "QUANTIZE": 2,
    "REDUCE_MAX": 3,
    "REDUCE_MIN": 3,
    "RELU": 3,
    "RELU6": 3,
    "RELU_N1_TO_1": 1,
    "RESHAPE": 1,
    "RESIZE_BILINEAR": 4,
    "RESIZE_NEAREST_NEIGHBOR": 4,
    "RSQRT": 2,
    "SLICE": 5,
    "SOFTMAX": 3,
    "SPACE_TO_DEPTH": 2,
    "SPLIT": 4,
    "SQUARED_DIFFERENCE": 2,
    "SQUEEZE": 2,
    "STRIDED_SLICE": 5,
    "SUB": 5,
    "SUM": 2,
    "TANH": 3,
    "TRANSPOSE": 5,
    "TRANSPOSE_CONV": 3,
}
SUPPORTED_OPS = frozenset(MAX_VERSION)

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
SOFTMAX_MAX_ELEMENTS = 16000


@dataclass(frozen=True)
class OpCheck:
    """One operator's verdict: the compiler status it would get and why."""

    index: int
    op: str
    version: int
    status: str
    reason: str = ""

    @property
    def mapped(self) -> bool:
        return self.status == MAPPED


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

    def table_rows(self) -> list[tuple[str, int, str]]:
        """(op, count, status) rows like the compiler's table, in first-seen order."""
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
            "ops": [asdict(op) | {"mapped": op.mapped} for op in self.ops],
            "table": [
                {"op": name, "count": n, "status": status} for name, n, status in self.table_rows()
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
    # half_pixel_centers=True (TF2's tf.image.resize default) is what the compiler rejects
    # with "Operation version not supported" (edgetpu issues #187, #206, #396, #420).
    if op.options.get("half_pixel_centers", False):
        return VERSION, f"{op.name} with half_pixel_centers=True is not supported"
    for t in (model.tensor(op.inputs[0]), model.tensor(op.outputs[0])):
        if len(t.shape) != 4 or t.shape[0] != 1:
            return UNSPECIFIED, f"input/output must be a 3-dimensional tensor (is {list(t.shape)})"
    return None


def _limit_softmax(model: TfliteModel, op: OperatorInfo) -> Verdict:
    shape = model.tensor(op.inputs[0]).shape
    if any(d != 1 for d in shape[:-1]) or (shape and shape[-1] > SOFTMAX_MAX_ELEMENTS):
        return UNSPECIFIED, (
            f"input shape {list(shape)}: only a 1-D input of at most "
            f"{SOFTMAX_MAX_ELEMENTS} elements"
        )
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
    "SOFTMAX": (_limit_softmax,),
    "SQUEEZE": (_limit_squeeze,),
    "STRIDED_SLICE": (_limit_strided_slice,),
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
    """Apply the one-Edge-TPU-subgraph rule on top of each op's own verdict.

    Ops before the first mappable op simply stay on the CPU (the segment starts later); the
    segment then ends at the first op that cannot map, and every later op runs on the CPU.
    """
    checks: list[OpCheck] = []
    started, cut_at = False, None
    for op in model.operators:
        verdict = op_verdict(model, op)
        if verdict is None and cut_at is None:
            started = True
            checks.append(OpCheck(op.index, op.name, op.version, MAPPED))
        elif verdict is None:
            first = model.operators[cut_at]
            reason = f"runs on the CPU after op {cut_at} ({first.name}) ended the Edge TPU segment"
            checks.append(OpCheck(op.index, op.name, op.version, SUBGRAPH, reason))
        else:
            if started and cut_at is None:
                cut_at = op.index
            checks.append(OpCheck(op.index, op.name, op.version, *verdict))
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
        OpCheck(op.index, op.name, op.version, MAPPED)
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


# --- output -------------------------------------------------------------------------------


def format_table(rows: list[tuple[str, int, str]]) -> str:
    """The compiler's `-s` table: op name in 31 columns, count in 11, then the status."""
    lines = [f"{'Operator':<31}{'Count':<11}Status", ""]
    lines += [f"{name:<31}{count:<11}{status}" for name, count, status in rows]
    return "\n".join(lines)


def verdict_line(report: CheckReport) -> str:
    return f"{report.tpu_count} of {report.total} operations will run on the Edge TPU"


def format_report(report: CheckReport) -> str:
    if report.compiled:
        cpu = report.total - report.edgetpu_custom_ops
        return (
            f"{report.source}: already compiled for the Edge TPU: "
            f"{report.edgetpu_custom_ops} edgetpu-custom-op(s) run on the Edge TPU, "
            f"{cpu} other op(s) run on the CPU"
        )
    parts = [format_table(report.table_rows())]
    failed = [op for op in report.ops if not op.mapped]
    if failed:
        parts.append("\nNot mapped:")
        parts += [f"  op {op.index} {op.op}: {op.status}: {op.reason}" for op in failed]
    parts += [f"Note: {note}" for note in report.notes]
    parts.append("")
    parts.append(verdict_line(report))
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m converters.edgetpu_check",
        description="Static check of which ops of a .tflite model map to the Edge TPU.",
    )
    parser.add_argument("model", help=".tflite file")
    parser.add_argument("--json", action="store_true", help="print a machine-readable report")
    args = parser.parse_args(argv)
    try:
        report = check(args.model)
    except (OSError, NotTfliteError) as exc:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        print(f"edgetpu_check: {args.model}: {detail}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(format_report(report))
    return 0 if report.compiled or report.all_mapped else 1


if __name__ == "__main__":
    sys.exit(main())
