"""`python -m converters.segment MODEL.tflite --segments N [-o DIR]`: one model -> N pipeline segments.

Cuts a TFLite model at tensor boundaries into N `.tflite` files, `<stem>_segment_<i>_of_<N>.tflite`
(Coral's naming), whose parameter bytes are balanced, so that each segment's weights fit one
Edge TPU's on-chip cache and the segments run as a pipeline, one TPU each (the cut Coral's
partitioner makes before `edgetpu_compiler` compiles each segment).

The cut is made on the flatbuffer itself (no TensorFlow): the first subgraph's operators are
taken in execution order and split into N runs with the smallest largest run of parameter
bytes. When one convolution holds most of the weights (tiny-YOLOv3's 3x3x512x1024 layer is
53% of them), no cut between operators can balance the segments; that convolution is then split
along its output channels into pieces plus a CONCATENATION, which is exact in int8: per-channel
quantization makes every output channel independent, and a concatenation of tensors sharing
the output's scale and zero point copies bytes.

Each segment is a valid model of its own. Its inputs and outputs are tensors of the original
model with their names, types and quantization, so the runtime chains the segments by tensor
name: segment i reads the model input or what earlier segments produced. Every segment holds a
`yolo_tpu_segment` metadata entry (index, count, tensor names in and out, the model's outputs),
and the last one the `yolo_tpu` head metadata.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys
from dataclasses import dataclass

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema

from yolo_tpu.meta import METADATA_KEY
from yolo_tpu.tflite_file import (FILE_IDENTIFIER, NotTfliteError, _buffer_bytes,
                                  _builtin_code, _OP_NAMES, _unpack, read_metadata)

SEGMENT_KEY = "yolo_tpu_segment"
SEGMENT_FORMAT = "yolo_tpu_segment/1"
BALANCE = 1.25  # the largest segment's parameter bytes at most this times the smallest's
CHANNEL_ALIGN = 8  # split convolutions at multiples of 8 output channels where possible


class SegmentError(ValueError):
    """A model that cannot be cut as asked: the message says why."""


@dataclass(frozen=True)
class Segment:
    """One written segment: its file, parameter bytes, and the tensor names it reads/writes."""
    path: str
    parameter_bytes: int
    ops: int
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


def segment_name(stem: str, index: int, count: int) -> str:
    return f"{stem}_segment_{index}_of_{count}.tflite"


# ---------------------------------------------------------------- reading the graph

class _Graph:
    """The model's first subgraph with the raw bytes of every constant, editable in place."""

    def __init__(self, raw: bytes):
        self.model = _unpack(raw)
        if not self.model.subgraphs:
            raise NotTfliteError("TFLite flatbuffer without a subgraph")
        if len(self.model.subgraphs) > 1:
            raise SegmentError(f"{len(self.model.subgraphs)} subgraphs (control flow); only "
                               "single-subgraph models can be segmented")
        self.graph = self.model.subgraphs[0]
        self.tensors: list = list(self.graph.tensors or [])
        self.ops: list = list(self.graph.operators or [])
        self.codes: list = list(self.model.operatorCodes or [])
        buffers = self.model.buffers or []
        self.data: dict[int, bytes] = {}  # tensor index -> constant bytes
        for i, t in enumerate(self.tensors):
            if 0 < t.buffer < len(buffers):
                data = _buffer_bytes(buffers[t.buffer], raw)
                if data:
                    self.data[i] = data
        self.inputs = [int(i) for i in self.graph.inputs]
        self.outputs = [int(i) for i in self.graph.outputs]

    def op_name(self, op) -> str:
        return _OP_NAMES.get(_builtin_code(self.codes[op.opcodeIndex]), "?")

    def constants(self, op) -> set[int]:
        return {i for i in _ints(op.inputs) if i in self.data}

    def op_bytes(self, op) -> int:
        return sum(len(self.data[i]) for i in self.constants(op))

    def name(self, index: int) -> str:
        n = self.tensors[index].name
        return n.decode() if isinstance(n, bytes) else str(n)

    def add_tensor(self, tensor, data: bytes | None = None) -> int:
        self.tensors.append(tensor)
        index = len(self.tensors) - 1
        if data is not None:
            self.data[index] = data
        return index

    def opcode(self, builtin: int, version: int) -> int:
        for i, code in enumerate(self.codes):
            if _builtin_code(code) == builtin:
                return i
        code = schema.OperatorCodeT()
        code.builtinCode = builtin
        code.deprecatedBuiltinCode = min(builtin, 127)
        code.version = version
        self.codes.append(code)
        return len(self.codes) - 1


def _ints(values) -> list[int]:
    return [int(v) for v in (values if values is not None else ())]


# ---------------------------------------------------------------- splitting a convolution

def _splittable(g: _Graph, op) -> bool:
    """A CONV_2D whose filter and bias are int8/int32 constants quantized per tensor or
    per output channel (axis 0): cutting its output channels changes no value."""
    if g.op_name(op) != "CONV_2D":
        return False
    ins = _ints(op.inputs)
    if len(ins) < 3 or ins[1] not in g.data or ins[2] not in g.data:
        return False
    filt, out = g.tensors[ins[1]], g.tensors[_ints(op.outputs)[0]]
    q = filt.quantization
    return (filt.type == schema.TensorType.INT8 and q is not None and q.scale is not None
            and len(q.scale) in (1, int(filt.shape[0])) and int(q.quantizedDimension) == 0
            and out.type in (schema.TensorType.INT8, schema.TensorType.UINT8)
            and int(filt.shape[0]) >= 2)


def _slice_quant(q, lo: int, hi: int):
    q = copy.deepcopy(q)
    if q is not None and q.scale is not None and len(q.scale) > 1:
        q.scale = np.asarray(q.scale)[lo:hi].copy()
        q.zeroPoint = np.asarray(q.zeroPoint)[lo:hi].copy()
    return q


def split_conv(g: _Graph, position: int, cuts: list[int]) -> list[int]:
    """Replace the CONV_2D at `position` by one per channel range [0, c1), [c1, c2), ... and
    a CONCATENATION of their outputs into the original output tensor; the new op positions."""
    op = g.ops[position]
    x, f, b = _ints(op.inputs)[:3]
    (y,) = _ints(op.outputs)
    filt, bias, out = g.tensors[f], g.tensors[b], g.tensors[y]
    channels = int(filt.shape[0])
    weights = np.frombuffer(g.data[f], np.int8).reshape(channels, -1)
    biases = np.frombuffer(g.data[b], np.int32)
    bounds = [0, *cuts, channels]
    pieces, parts = [], []
    for k, (lo, hi) in enumerate(zip(bounds, bounds[1:])):
        tf = copy.deepcopy(filt)
        tf.shape = np.asarray([hi - lo, *filt.shape[1:]], np.int32)
        tf.name = f"{g.name(f)}/part{k}".encode()
        tf.quantization = _slice_quant(filt.quantization, lo, hi)
        tb = copy.deepcopy(bias)
        tb.shape = np.asarray([hi - lo], np.int32)
        tb.name = f"{g.name(b)}/part{k}".encode()
        tb.quantization = _slice_quant(bias.quantization, lo, hi)
        to = copy.deepcopy(out)
        to.shape = np.asarray([*out.shape[:-1], hi - lo], np.int32)
        if to.shapeSignature is not None and len(to.shapeSignature):
            to.shapeSignature = np.asarray([*out.shapeSignature[:-1], hi - lo], np.int32)
        to.name = f"{g.name(y)}/part{k}".encode()
        piece = copy.deepcopy(op)
        piece.inputs = np.asarray([x, g.add_tensor(tf, weights[lo:hi].tobytes()),
                                   g.add_tensor(tb, biases[lo:hi].tobytes())], np.int32)
        parts.append(g.add_tensor(to))
        piece.outputs = np.asarray([parts[-1]], np.int32)
        pieces.append(piece)
    concat = schema.OperatorT()
    concat.opcodeIndex = g.opcode(schema.BuiltinOperator.CONCATENATION, 2)
    concat.inputs = np.asarray(parts, np.int32)
    concat.outputs = np.asarray([y], np.int32)
    concat.builtinOptionsType = schema.BuiltinOptions.ConcatenationOptions
    concat.builtinOptions = schema.ConcatenationOptionsT()
    concat.builtinOptions.axis = len(out.shape) - 1
    g.ops[position:position + 1] = [*pieces, concat]
    return list(range(position, position + len(pieces) + 1))


def _channel_cuts(channels: int, fractions: list[float]) -> list[int]:
    """Output-channel indices at these fractions of a convolution, aligned where possible."""
    align = CHANNEL_ALIGN if channels >= 4 * CHANNEL_ALIGN else 1
    cuts = sorted({min(max(int(round(f * channels / align)) * align, align), channels - align)
                   for f in fractions})
    return [c for c in cuts if 0 < c < channels]


def split_heavy_convs(g: _Graph, count: int) -> int:
    """Split every convolution that an ideal segment boundary (k/N of the parameter bytes)
    falls well inside of, at that boundary; the number of convolutions split."""
    sizes = [g.op_bytes(op) for op in g.ops]
    total = sum(sizes)
    margin = 0.05 * total / count
    plan: dict[int, list[float]] = {}
    start = 0
    for position, size in enumerate(sizes):
        for k in range(1, count):
            boundary = k * total / count
            if start + margin < boundary < start + size - margin:
                plan.setdefault(position, []).append((boundary - start) / size)
        start += size
    split = 0
    for position in sorted(plan, reverse=True):  # from the end: positions before stay valid
        op = g.ops[position]
        if not _splittable(g, op):
            continue
        channels = int(g.tensors[_ints(op.inputs)[1]].shape[0])
        cuts = _channel_cuts(channels, plan[position])
        if cuts:
            split_conv(g, position, cuts)
            split += 1
    return split


# ---------------------------------------------------------------- choosing the cuts

def balanced_cuts(sizes: list[int], count: int) -> list[int]:
    """Op positions where segments 1..N-1 start: contiguous runs, each holding at least one
    op, with the smallest possible largest run of bytes (ties: the smallest spread)."""
    n = len(sizes)
    if count > n:
        raise SegmentError(f"{count} segments asked for a model of {n} operators")
    prefix = np.concatenate([[0], np.cumsum(sizes)])
    best: dict[tuple[int, int], tuple[tuple[int, int], list[int]]] = {}

    def solve(start: int, parts: int) -> tuple[tuple[int, int], list[int]]:
        """(max bytes, -min bytes), cuts for ops[start:] in `parts` runs."""
        if (start, parts) in best:
            return best[(start, parts)]
        if parts == 1:
            rest = int(prefix[n] - prefix[start])
            result = ((rest, -rest), [])
        else:
            result = None
            for end in range(start + 1, n - parts + 2):
                here = int(prefix[end] - prefix[start])
                (hi, neg_lo), cuts = solve(end, parts - 1)
                score = (max(hi, here), -min(-neg_lo, here))
                if result is None or score < result[0]:
                    result = (score, [end, *cuts])
        best[(start, parts)] = result
        return result

    return solve(0, count)[1]


def _groups(g: _Graph, cuts: list[int]) -> list[list[int]]:
    bounds = [0, *cuts, len(g.ops)]
    return [list(range(a, b)) for a, b in zip(bounds, bounds[1:])]


def _segment_bytes(g: _Graph, group: list[int]) -> int:
    constants = set().union(*(g.constants(g.ops[i]) for i in group))
    return sum(len(g.data[i]) for i in constants)


def plan_segments(g: _Graph, count: int, split: bool = True) -> tuple[list[list[int]], int]:
    """The op positions of each segment, and how many convolutions were split to get there."""
    groups = _groups(g, balanced_cuts([g.op_bytes(op) for op in g.ops], count))
    sizes = [_segment_bytes(g, grp) for grp in groups]
    if not split or count == 1 or max(sizes) <= BALANCE * min(sizes):
        return groups, 0
    split_count = split_heavy_convs(g, count)
    groups = _groups(g, balanced_cuts([g.op_bytes(op) for op in g.ops], count))
    return groups, split_count


# ---------------------------------------------------------------- writing the segments

def _unique_names(g: _Graph) -> None:
    """Tensor names are how segments are chained: make any repeated name unique."""
    seen: dict[str, int] = {}
    for i in range(len(g.tensors)):
        name = g.name(i)
        if name in seen:
            g.tensors[i].name = f"{name}#{i}".encode()
        seen[g.name(i)] = i


def _io(g: _Graph, groups: list[list[int]]) -> list[tuple[list[int], list[int]]]:
    """Per segment, the non-constant tensors it reads from outside and the ones it must hand
    on (read by a later segment or an output of the model), in tensor-index order."""
    produced = [{o for i in grp for o in _ints(g.ops[i].outputs) if o >= 0} for grp in groups]
    consumed = [{t for i in grp for t in _ints(g.ops[i].inputs)
                 if t >= 0 and t not in g.data} for grp in groups]
    model_outputs = set(g.outputs)
    result = []
    for k in range(len(groups)):
        later = set().union(*consumed[k + 1:]) if k + 1 < len(groups) else set()
        ins = sorted(consumed[k] - produced[k])
        outs = sorted(t for t in produced[k] if t in later or t in model_outputs)
        result.append((ins, outs))
    return result


def _build(g: _Graph, group: list[int], ins: list[int], outs: list[int],
           metadata: dict[str, bytes]) -> bytes:
    """A standalone model of these ops: their tensors and constants, the codes they use."""
    ops = [g.ops[i] for i in group]
    used = sorted({t for op in ops for t in (*_ints(op.inputs), *_ints(op.outputs),
                                             *_ints(op.intermediates)) if t >= 0})
    tensor_map = {old: new for new, old in enumerate(used)}
    code_map: dict[int, int] = {}
    buffers = [schema.BufferT()]  # buffer 0: the empty buffer every non-constant points to
    tensors = []
    for old in used:
        t = copy.copy(g.tensors[old])
        t.buffer = 0
        if old in g.data:
            buf = schema.BufferT()
            buf.data = np.frombuffer(g.data[old], np.uint8)
            buffers.append(buf)
            t.buffer = len(buffers) - 1
        tensors.append(t)
    new_ops = []
    for op in ops:
        o = copy.copy(op)
        o.opcodeIndex = code_map.setdefault(op.opcodeIndex, len(code_map))
        o.inputs = np.asarray([tensor_map[t] if t >= 0 else -1 for t in _ints(op.inputs)],
                              np.int32)
        o.outputs = np.asarray([tensor_map[t] for t in _ints(op.outputs)], np.int32)
        if op.intermediates is not None and len(op.intermediates):
            o.intermediates = np.asarray([tensor_map[t] for t in _ints(op.intermediates)],
                                         np.int32)
        new_ops.append(o)
    sub = schema.SubGraphT()
    sub.tensors, sub.operators = tensors, new_ops
    sub.inputs = np.asarray([tensor_map[t] for t in ins], np.int32)
    sub.outputs = np.asarray([tensor_map[t] for t in outs], np.int32)
    sub.name = g.graph.name
    model = schema.ModelT()
    model.version = g.model.version
    model.description = g.model.description
    model.operatorCodes = [g.codes[old] for old, _ in sorted(code_map.items(),
                                                             key=lambda kv: kv[1])]
    model.subgraphs = [sub]
    model.metadata = []
    for name, payload in metadata.items():
        buf = schema.BufferT()
        buf.data = np.frombuffer(payload, np.uint8)
        buffers.append(buf)
        entry = schema.MetadataT()
        entry.name = name.encode()
        entry.buffer = len(buffers) - 1
        model.metadata.append(entry)
    model.buffers = buffers
    builder = flatbuffers.Builder(sum(len(v) for v in g.data.values()) + (1 << 16))
    builder.Finish(model.Pack(builder), file_identifier=FILE_IDENTIFIER)
    return bytes(builder.Output())


def segment_model(raw: bytes, count: int, split: bool = True,
                  source: str = "") -> list[tuple[bytes, Segment]]:
    """The N segment flatbuffers of a model (bytes), each with its description (path "")."""
    if count < 1:
        raise SegmentError(f"--segments must be at least 1, got {count}")
    g = _Graph(raw)
    metadata = read_metadata(raw)
    groups, _ = plan_segments(g, count, split)
    _unique_names(g)
    io = _io(g, groups)
    model_ins = [g.name(t) for t in g.inputs]
    model_outs = [g.name(t) for t in g.outputs]
    result = []
    for k, (group, (ins, outs)) in enumerate(zip(groups, io)):
        info = {"format": SEGMENT_FORMAT, "index": k, "count": count, "source": source,
                "inputs": [g.name(t) for t in ins], "outputs": [g.name(t) for t in outs],
                "model_inputs": model_ins, "model_outputs": model_outs,
                "parameter_bytes": _segment_bytes(g, group)}
        entries = {name: data for name, data in metadata.items()
                   if name != METADATA_KEY or k == count - 1}
        entries[SEGMENT_KEY] = json.dumps(info).encode()
        data = _build(g, group, ins, outs, entries)
        result.append((data, Segment("", info["parameter_bytes"], len(group),
                                     tuple(info["inputs"]), tuple(info["outputs"]))))
    return result


def write_segments(model: str, count: int, out_dir: str | None = None,
                   split: bool = True) -> list[Segment]:
    """Cut `model` into `count` files in `out_dir` (default: beside the model)."""
    try:
        raw = open(model, "rb").read()
    except OSError as e:
        raise SegmentError(f"{model}: cannot read: {e.strerror or e}") from None
    try:
        parts = segment_model(raw, count, split, os.path.basename(model))
    except NotTfliteError as e:
        raise SegmentError(f"{model}: not a TFLite model ({e})") from None
    except SegmentError as e:
        raise SegmentError(f"{model}: {e}") from None
    out_dir = out_dir or os.path.dirname(os.path.abspath(model))
    os.makedirs(out_dir, exist_ok=True)
    stem = os.path.splitext(os.path.basename(model))[0]
    written = []
    for k, (data, seg) in enumerate(parts):
        path = os.path.join(out_dir, segment_name(stem, k, count))
        tmp = path + ".partial"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
        written.append(Segment(path, seg.parameter_bytes, seg.ops, seg.inputs, seg.outputs))
    return written


def report(segments: list[Segment]) -> str:
    """One line per segment (file, ops, parameter MiB, tensors in -> out) and the balance."""
    lines = []
    for s in segments:
        lines.append(f"{os.path.basename(s.path)}: {s.ops} ops, "
                     f"{s.parameter_bytes / 2**20:.2f} MiB parameters, "
                     f"{len(s.inputs)} tensors in, {len(s.outputs)} out")
    sizes = [s.parameter_bytes for s in segments]
    if len(sizes) > 1 and min(sizes) > 0:
        lines.append(f"largest / smallest parameter bytes: {max(sizes) / min(sizes):.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m converters.segment",
                                 description=__doc__.split("\n")[0].split(": ", 1)[1])
    ap.add_argument("model", help="int8 .tflite model (before edgetpu_compiler)")
    ap.add_argument("--segments", type=int, required=True, metavar="N",
                    help="number of segments (one per Edge TPU)")
    ap.add_argument("-o", "--out-dir", metavar="DIR", help="default: beside the model")
    ap.add_argument("--no-split", action="store_true",
                    help="never split a convolution's output channels; cut between ops only")
    args = ap.parse_args(argv)
    try:
        segments = write_segments(args.model, args.segments, args.out_dir, not args.no_split)
    except SegmentError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(report(segments))
    return 0


if __name__ == "__main__":
    sys.exit(main())
