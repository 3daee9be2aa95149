"""Read (and add metadata to) a `.tflite` flatbuffer without TensorFlow.

The Edge TPU checker and the runtime only need the model's structure: its operators in
execution order, its tensors and its metadata entries. The flatbuffer schema module that
ships in the ai-edge-litert wheel (`ai_edge_litert.schema_py_generated`) reads all of that,
so nothing here imports TensorFlow.

Only the first subgraph is described in detail: it is the one the interpreter (and the
Edge TPU compiler) runs; further subgraphs belong to control-flow ops (WHILE, IF, ...).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema

FILE_IDENTIFIER = b"TFL3"

# Enum value -> name tables, built once from the generated enum classes.
_OP_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
_TYPE_NAMES = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
_ACTIVATION_NAMES = {
    v: k for k, v in vars(schema.ActivationFunctionType).items() if not k.startswith("_")
}
_PADDING_NAMES = {v: k for k, v in vars(schema.Padding).items() if not k.startswith("_")}
_WEIGHTS_FORMAT_NAMES = {
    v: k
    for k, v in vars(schema.FullyConnectedOptionsWeightsFormat).items()
    if not k.startswith("_")
}
# Options whose integer value is an enum: reported by name, which is what the docs use.
_ENUM_OPTIONS = {
    "fused_activation_function": _ACTIVATION_NAMES,
    "padding": _PADDING_NAMES,
    "weights_format": _WEIGHTS_FORMAT_NAMES,
}


class NotTfliteError(ValueError):
    """The bytes are not a TFLite flatbuffer (wrong identifier or unparsable)."""


@dataclass(frozen=True)
class Quantization:
    """Affine quantization of a tensor: real = scale * (q - zero_point), per axis or not."""

    scale: tuple[float, ...]
    zero_point: tuple[int, ...]
    quantized_dimension: int = 0


@dataclass(frozen=True)
class TensorInfo:
    index: int
    name: str
    shape: tuple[int, ...]
    # The shape with -1 for dimensions left dynamic at conversion (e.g. an unset batch);
    # None when the converter wrote no signature (then `shape` is the whole truth).
    shape_signature: tuple[int, ...] | None
    dtype: str  # TensorType name: "INT8", "UINT8", "INT32", "FLOAT32", ...
    quantization: Quantization | None
    is_constant: bool  # backed by a non-empty buffer: weights, biases, op parameters
    data: bytes | None = field(default=None, repr=False)  # the buffer, for constants
    is_variable: bool = False  # state kept between invocations (LSTM cell/output state)

    @property
    def is_dynamic(self) -> bool:
        """True when any dimension is only known at run time."""
        dims = self.shape_signature if self.shape_signature is not None else self.shape
        return any(d < 0 for d in dims)

    def constant_values(self) -> np.ndarray | None:
        """The constant's values as a numpy array (for op parameters such as axes)."""
        if self.data is None:
            return None
        dtype = _NUMPY_DTYPES.get(self.dtype)
        if dtype is None:
            return None
        return np.frombuffer(self.data, dtype=dtype).reshape(self.shape)


_NUMPY_DTYPES = {
    "FLOAT32": np.float32,
    "FLOAT16": np.float16,
    "INT32": np.int32,
    "INT64": np.int64,
    "INT16": np.int16,
    "INT8": np.int8,
    "UINT8": np.uint8,
    "BOOL": np.bool_,
}


@dataclass(frozen=True)
class OperatorInfo:
    index: int  # position in execution order
    name: str  # builtin op name, "CUSTOM" for custom ops
    custom_code: str | None
    version: int
    inputs: tuple[int, ...]  # tensor indices; -1 marks an omitted optional input
    outputs: tuple[int, ...]
    options: dict[str, Any]  # builtin options, snake_case keys, enums by name
    intermediates: tuple[int, ...] = ()  # tensors inside the op (quantized LSTM gates)


@dataclass(frozen=True)
class TfliteModel:
    schema_version: int
    description: str
    subgraph_count: int
    operators: tuple[OperatorInfo, ...]  # first subgraph, in execution order
    tensors: tuple[TensorInfo, ...]  # first subgraph
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    metadata: dict[str, bytes]

    def tensor(self, index: int) -> TensorInfo:
        return self.tensors[index]


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _plain(value: Any) -> Any:
    """Flatbuffer object-API values as plain Python (tuples instead of arrays/lists)."""
    if isinstance(value, np.ndarray):
        return tuple(value.tolist())
    if isinstance(value, (list, tuple)):
        return tuple(_plain(v) for v in value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def _options_dict(options: Any) -> dict[str, Any]:
    """Builtin options object -> {snake_case_name: value}, enums replaced by their names."""
    if options is None:
        return {}
    out: dict[str, Any] = {}
    for key, value in vars(options).items():
        if key.startswith("_"):
            continue
        if not isinstance(value, (int, float, bool, str, bytes, list, tuple, np.ndarray)) and (
            value is not None
        ):
            continue  # nested tables (rare, e.g. stablehlo options): not needed here
        name = _snake(key)
        names = _ENUM_OPTIONS.get(name)
        if names is not None and isinstance(value, int):
            value = names.get(value, str(value))
        out[name] = _plain(value)
    return out


def _decode(text: bytes | str | None) -> str:
    if text is None:
        return ""
    return text.decode("utf-8", "replace") if isinstance(text, bytes) else text


def _buffer_bytes(buffer: Any, raw: bytes) -> bytes | None:
    """A buffer's contents: inline data, or (models over 2 GB) an offset into the file."""
    if buffer is None:
        return None
    if buffer.data is not None and len(buffer.data) > 0:
        return bytes(np.asarray(buffer.data, dtype=np.uint8).tobytes())
    if buffer.offset and buffer.offset > 1 and buffer.size:
        return raw[buffer.offset : buffer.offset + buffer.size]
    return None


def _unpack(raw: bytes) -> Any:
    """bytes -> schema.ModelT, or NotTfliteError (the file identifier is checked first)."""
    if len(raw) < 8 or raw[4:8] != FILE_IDENTIFIER:
        raise NotTfliteError("not a TFLite flatbuffer (no TFL3 file identifier)")
    try:
        return schema.ModelT.InitFromObj(schema.Model.GetRootAs(raw, 0))
    except Exception as exc:  # a truncated/corrupt flatbuffer fails in many ways
        raise NotTfliteError(f"corrupt TFLite flatbuffer ({type(exc).__name__})") from exc


def _metadata(model: Any, raw: bytes) -> dict[str, bytes]:
    entries: dict[str, bytes] = {}
    for md in model.metadata or []:
        buffers = model.buffers or []
        buf = buffers[md.buffer] if 0 <= md.buffer < len(buffers) else None
        entries[_decode(md.name)] = _buffer_bytes(buf, raw) or b""
    return entries


def _builtin_code(code: Any) -> int:
    # Op codes above 127 live only in `builtin_code`; older files only fill the
    # deprecated byte field. TFLite's own GetBuiltinCode takes the larger of the two.
    return max(code.builtinCode, code.deprecatedBuiltinCode)


def _tensor_info(index: int, tensor: Any, buffers: list[Any], raw: bytes) -> TensorInfo:
    q = tensor.quantization
    quant = None
    if q is not None and q.scale is not None and len(q.scale) > 0:
        quant = Quantization(
            scale=tuple(float(s) for s in q.scale),
            zero_point=tuple(int(z) for z in (q.zeroPoint if q.zeroPoint is not None else ())),
            quantized_dimension=int(q.quantizedDimension),
        )
    buf = buffers[tensor.buffer] if 0 < tensor.buffer < len(buffers) else None
    data = _buffer_bytes(buf, raw)
    shape = tuple(int(d) for d in (tensor.shape if tensor.shape is not None else ()))
    sig = tensor.shapeSignature
    return TensorInfo(
        index=index,
        name=_decode(tensor.name),
        shape=shape,
        shape_signature=None if sig is None or len(sig) == 0 else tuple(int(d) for d in sig),
        dtype=_TYPE_NAMES.get(tensor.type, str(tensor.type)),
        quantization=quant,
        is_constant=data is not None,
        data=data,
        is_variable=bool(tensor.isVariable),
    )


def _operator_info(index: int, op: Any, codes: list[Any]) -> OperatorInfo:
    code = codes[op.opcodeIndex]
    builtin = _builtin_code(code)
    options = _options_dict(op.builtinOptions)
    options.update(_options_dict(op.builtinOptions2))
    return OperatorInfo(
        index=index,
        name=_OP_NAMES.get(builtin, f"BUILTIN_{builtin}"),
        custom_code=_decode(code.customCode) if builtin == schema.BuiltinOperator.CUSTOM else None,
        version=int(code.version),
        inputs=tuple(int(i) for i in (op.inputs if op.inputs is not None else ())),
        outputs=tuple(int(i) for i in (op.outputs if op.outputs is not None else ())),
        options=options,
        intermediates=tuple(int(i) for i in (op.intermediates if op.intermediates is not None
                                             else ())),
    )


def load_model(raw: bytes) -> TfliteModel:
    """Describe a TFLite flatbuffer given as bytes; NotTfliteError if it is not one."""
    model = _unpack(raw)
    subgraphs = model.subgraphs or []
    if not subgraphs:
        raise NotTfliteError("TFLite flatbuffer without a subgraph")
    graph = subgraphs[0]
    buffers = model.buffers or []
    codes = model.operatorCodes or []
    try:
        tensors = tuple(
            _tensor_info(i, t, buffers, raw) for i, t in enumerate(graph.tensors or [])
        )
        operators = tuple(
            _operator_info(i, op, codes) for i, op in enumerate(graph.operators or [])
        )
    except IndexError as exc:  # an op/tensor pointing past the tables
        raise NotTfliteError("corrupt TFLite flatbuffer (index out of range)") from exc
    return TfliteModel(
        schema_version=int(model.version),
        description=_decode(model.description),
        subgraph_count=len(subgraphs),
        operators=operators,
        tensors=tensors,
        inputs=tuple(int(i) for i in (graph.inputs if graph.inputs is not None else ())),
        outputs=tuple(int(i) for i in (graph.outputs if graph.outputs is not None else ())),
        metadata=_metadata(model, raw),
    )


def _read_bytes(path_or_bytes: str | Path | bytes) -> bytes:
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        return bytes(path_or_bytes)
    return Path(path_or_bytes).read_bytes()


def read_model(path_or_bytes: str | Path | bytes) -> TfliteModel:
    """Describe a `.tflite` file (or its bytes). OSError / NotTfliteError on failure."""
    return load_model(_read_bytes(path_or_bytes))


def read_metadata(path_or_bytes: str | Path | bytes) -> dict[str, bytes]:
    """The model's metadata entries, name -> the bytes of the buffer each one points to."""
    raw = _read_bytes(path_or_bytes)
    return _metadata(_unpack(raw), raw)


def add_metadata(tflite_bytes: bytes, entries: dict[str, bytes]) -> bytes:
    """A new flatbuffer with `entries` added to the metadata table (same names replaced).

    Each entry gets a buffer of its own appended to the buffer table; a replaced entry's old
    buffer is emptied when nothing else points to it, so the file does not keep stale data.
    """
    model = _unpack(bytes(tflite_bytes))
    buffers = list(model.buffers or [])
    metadata = list(model.metadata or [])
    in_use = {t.buffer for g in model.subgraphs or [] for t in g.tensors or []}
    for name, payload in entries.items():
        key = name.encode("utf-8")
        for old in [m for m in metadata if _decode(m.name) == name]:
            metadata.remove(old)
            still_used = old.buffer in in_use or any(m.buffer == old.buffer for m in metadata)
            if not still_used and 0 < old.buffer < len(buffers):
                buffers[old.buffer].data = None
        buf = schema.BufferT()
        buf.data = np.frombuffer(bytes(payload), dtype=np.uint8)
        buffers.append(buf)
        entry = schema.MetadataT()
        entry.name = key
        entry.buffer = len(buffers) - 1
        metadata.append(entry)
    model.buffers = buffers
    model.metadata = metadata
    builder = flatbuffers.Builder(len(tflite_bytes) + sum(len(v) for v in entries.values()) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=FILE_IDENTIFIER)
    return bytes(builder.Output())


def read_summary(path_or_bytes: str | Path | bytes) -> tuple[dict[str, bytes], set[str]]:
    """(metadata entries, custom op codes): what the runtime needs at start-up.

    Reads the two tables straight from the flatbuffer instead of unpacking the whole model
    (its weights included) into Python objects, so loading a model stays fast.
    """
    raw = _read_bytes(path_or_bytes)
    if len(raw) < 8 or raw[4:8] != FILE_IDENTIFIER:
        raise NotTfliteError("not a TFLite flatbuffer (no TFL3 file identifier)")
    try:
        model = schema.Model.GetRootAs(raw, 0)
        custom = set()
        for i in range(model.OperatorCodesLength()):
            code = model.OperatorCodes(i).CustomCode()
            if code:
                custom.add(_decode(code))
        metadata = {}
        for i in range(model.MetadataLength()):
            md = model.Metadata(i)
            buf = model.Buffers(md.Buffer()) if md.Buffer() < model.BuffersLength() else None
            data = b""
            if buf is not None:
                if buf.DataLength():
                    data = buf.DataAsNumpy().tobytes()
                elif buf.Offset() > 1 and buf.Size():
                    data = raw[buf.Offset():buf.Offset() + buf.Size()]
            metadata[_decode(md.Name())] = data
    except Exception as exc:  # a truncated/corrupt flatbuffer fails in many ways
        raise NotTfliteError(f"corrupt TFLite flatbuffer ({type(exc).__name__})") from exc
    return metadata, custom


EDGETPU_CUSTOM_CODE = "edgetpu-custom-op"


@dataclass(frozen=True)
class IoTensor:
    """A model input or output as the interpreter sees it: what must not change on compile."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: tuple[float, ...]
    zero_point: tuple[int, ...]


def _io_tensor(graph: Any, index: int) -> IoTensor:
    t = graph.Tensors(index)
    q = t.Quantization()
    scale = tuple(float(v) for v in q.ScaleAsNumpy()) if q is not None and q.ScaleLength() else ()
    zero = (tuple(int(v) for v in q.ZeroPointAsNumpy())
            if q is not None and q.ZeroPointLength() else ())
    return IoTensor(_decode(t.Name()), tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength()
                    else (), _TYPE_NAMES.get(t.Type(), str(t.Type())), scale, zero)


def read_io(path_or_bytes: str | Path | bytes) -> tuple[tuple[IoTensor, ...], tuple[IoTensor, ...]]:
    """(inputs, outputs) of the main subgraph, read without unpacking the weights."""
    raw = _read_bytes(path_or_bytes)
    if len(raw) < 8 or raw[4:8] != FILE_IDENTIFIER:
        raise NotTfliteError("not a TFLite flatbuffer (no TFL3 file identifier)")
    try:
        graph = schema.Model.GetRootAs(raw, 0).Subgraphs(0)
        inputs = tuple(_io_tensor(graph, int(i)) for i in graph.InputsAsNumpy())
        outputs = tuple(_io_tensor(graph, int(i)) for i in graph.OutputsAsNumpy())
    except Exception as exc:  # a truncated/corrupt flatbuffer fails in many ways
        raise NotTfliteError(f"corrupt TFLite flatbuffer ({type(exc).__name__})") from exc
    return inputs, outputs


def custom_payloads(raw: bytes, custom_code: str = EDGETPU_CUSTOM_CODE) -> list[tuple[int, bytes]]:
    """(file offset, bytes) of every `custom_code` op's custom options, in op order.

    For `edgetpu-custom-op` this is the Edge TPU executable the compiler wrote; a file edit
    (adding metadata) must leave it byte-identical, and the offset shows its alignment.
    """
    if len(raw) < 8 or raw[4:8] != FILE_IDENTIFIER:
        raise NotTfliteError("not a TFLite flatbuffer (no TFL3 file identifier)")
    model = schema.Model.GetRootAs(raw, 0)
    found = []
    for g in range(model.SubgraphsLength()):
        graph = model.Subgraphs(g)
        for i in range(graph.OperatorsLength()):
            op = graph.Operators(i)
            if _decode(model.OperatorCodes(op.OpcodeIndex()).CustomCode()) != custom_code:
                continue
            field_offset = op._tab.Offset(14)  # Operator.custom_options (vtable slot 5)
            if not field_offset:
                found.append((0, b""))
                continue
            start, size = op._tab.Vector(field_offset), op._tab.VectorLen(field_offset)
            found.append((start, raw[start:start + size]))
    return found
