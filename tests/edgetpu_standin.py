"""A stand-in for `edgetpu_compiler` 16: does to a `.tflite` file what the real one does.

The real compiler is x86-64-only and closed; what it does to a file is known from real
outputs (tests/fixtures/edgetpu_real, checked in tests/test_edgetpu_real.py):
- the mapped ops become one CUSTOM op `edgetpu-custom-op` (version 1) whose custom options
  hold the Edge TPU executable; the uint8<->int8 QUANTIZE ops at the model's edges are
  folded into it; its inputs are the tensors the mapped ops read from outside (LSTM state
  included), its outputs the tensors read by CPU ops or by the caller;
- ops left on the CPU stay, in their order, rewritten to version 1;
- tensors and buffers only the mapped ops used are gone (their weights are in the
  executable); the model's inputs and outputs keep their names, types and quantization;
- Model.metadata and the SignatureDefs are dropped; the description becomes
  "Exported from Subgraph.".

The executable here is a marker followed by the mapped ops' constant buffers (so the file
has the real one's size order); it is not something an Edge TPU can run.

Run as a program it mimics the compiler's command line, `edgetpu_compiler -s -o DIR MODEL`:
writes DIR/<stem>_edgetpu.tflite and DIR/<stem>_edgetpu.log and prints the compiler-16
report. Placement comes from the project's checker; the memory lines split the parameter
bytes at STANDIN_CACHE_BYTES (the 6.08 MiB on-chip figure of the real yolov5s log), they
are not the real compiler's allocation.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Sequence

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema

EXECUTABLE_MARKER = b"yolo_tpu edgetpu_compiler stand-in: not an Edge TPU executable\0"
STANDIN_CACHE_BYTES = int(6.08 * 2**20)
VERSION = "16.0.384591198"


def _builtin(code: Any) -> int:
    return max(code.builtinCode, code.deprecatedBuiltinCode)


def _placement(tflite: bytes) -> list[bool]:
    from converters.edgetpu_check import check

    return [op.mapped for op in check(tflite).ops]


def compile_like_edgetpu(tflite: bytes, placement: Sequence[bool] | None = None) -> bytes:
    """The compiled file for `tflite`; `placement[i]` says op i goes to the Edge TPU
    (default: the project's checker's prediction)."""
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(tflite, 0))
    graph = model.subgraphs[0]
    ops = list(graph.operators)
    mapped = list(placement) if placement is not None else _placement(tflite)
    if len(mapped) != len(ops):
        raise ValueError(f"placement for {len(mapped)} ops, model has {len(ops)}")
    buffers = model.buffers or []

    def is_const(t: int) -> bool:
        b = graph.tensors[t].buffer
        return 0 < b < len(buffers) and buffers[b].data is not None and len(buffers[b].data) > 0

    tpu_ops = [op for op, m in zip(ops, mapped) if m]
    cpu_ops = [op for op, m in zip(ops, mapped) if not m]
    produced_on_tpu = {t for op in tpu_ops for t in op.outputs if t >= 0}
    read_outside = {t for op in cpu_ops for t in op.inputs if t >= 0} | set(graph.outputs)
    custom_inputs: list[int] = []
    for op in tpu_ops:
        for t in op.inputs:
            if t >= 0 and not is_const(t) and t not in produced_on_tpu and t not in custom_inputs:
                custom_inputs.append(t)
    custom_outputs = sorted(t for t in produced_on_tpu if t in read_outside)
    weights = b"".join(
        bytes(np.asarray(buffers[graph.tensors[t].buffer].data, dtype=np.uint8))
        for op in tpu_ops for t in op.inputs if t >= 0 and is_const(t)
    )

    codes = model.operatorCodes
    custom = schema.OperatorT()
    custom.inputs, custom.outputs = custom_inputs, custom_outputs
    custom.customOptions = np.frombuffer(EXECUTABLE_MARKER + weights, dtype=np.uint8)
    custom.customOptionsFormat = schema.CustomOptionsFormat.FLEXBUFFERS
    # The custom op runs where its last input is ready: after the CPU ops that feed it.
    producers = {t: i for i, op in enumerate(cpu_ops) for t in op.outputs if t >= 0}
    at = 1 + max((producers[t] for t in custom_inputs if t in producers), default=-1)
    new_ops = cpu_ops[:at] + ([custom] if tpu_ops else []) + cpu_ops[at:]

    # Operator codes: the ones still used, at version 1, then edgetpu-custom-op.
    new_codes: list[Any] = []
    remap_code: dict[int, int] = {}
    for op in cpu_ops:
        if op.opcodeIndex not in remap_code:
            code = codes[op.opcodeIndex]
            code.version = 1
            remap_code[op.opcodeIndex] = len(new_codes)
            new_codes.append(code)
        op.opcodeIndex = remap_code[op.opcodeIndex]
    if tpu_ops:
        code = schema.OperatorCodeT()
        code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
        code.customCode = b"edgetpu-custom-op"
        code.version = 1
        custom.opcodeIndex = len(new_codes)
        new_codes.append(code)

    # Tensors and buffers still referenced, renumbered in their original order.
    used = sorted({t for op in new_ops for t in list(op.inputs) + list(op.outputs) if t >= 0}
                  | set(graph.inputs) | set(graph.outputs))
    remap_tensor = {old: new for new, old in enumerate(used)}
    new_buffers = [buffers[0] if buffers else schema.BufferT()]
    tensors = []
    for old in used:
        t = graph.tensors[old]
        if 0 < t.buffer < len(buffers) and is_const(old):
            new_buffers.append(buffers[t.buffer])
            t.buffer = len(new_buffers) - 1
        else:
            t.buffer = 0
        tensors.append(t)
    for op in new_ops:
        op.inputs = [remap_tensor[t] if t >= 0 else t for t in op.inputs]
        op.outputs = [remap_tensor[t] for t in op.outputs]
        if getattr(op, "intermediates", None) is not None and len(op.intermediates):
            op.intermediates = [remap_tensor[t] for t in op.intermediates if t in remap_tensor]
    graph.tensors = tensors
    graph.inputs = [remap_tensor[t] for t in graph.inputs]
    graph.outputs = [remap_tensor[t] for t in graph.outputs]
    graph.operators = new_ops
    model.subgraphs = [graph]
    model.operatorCodes = new_codes
    model.buffers = new_buffers
    model.metadata = None
    model.metadataBuffer = None
    model.signatureDefs = None
    model.description = b"Exported from Subgraph."
    builder = flatbuffers.Builder(len(tflite) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _mib(n: float) -> str:
    return f"{n / 2**20:.2f}MiB"


def compiler_report(model: Path, out: Path, log: Path, tflite: bytes) -> str:
    """The stdout edgetpu_compiler 16 prints for a compilation (see the fixtures' logs)."""
    from converters.edgetpu_check import COMPILER_STATUS, check_model
    from converters.edgetpu_memory import parameter_bytes
    from yolo_tpu.tflite_file import load_model

    parsed = load_model(tflite)
    report = check_model(parsed)
    params = parameter_bytes(parsed, [op.mapped for op in report.ops])
    cached = min(params, STANDIN_CACHE_BYTES)
    lines = [
        f"Edge TPU Compiler version {VERSION}",
        "Started a compilation timeout timer of 180 seconds.",
        "",
        "Model compiled successfully in 42 ms.",
        "",
        f"Input model: {model}",
        f"Input size: {_mib(len(tflite))}",
        f"Output model: {out}",
        f"Output size: {_mib(out.stat().st_size)}",
        f"On-chip memory used for caching model parameters: {_mib(cached)}",
        f"On-chip memory remaining for caching model parameters: {_mib(STANDIN_CACHE_BYTES - cached)}",
        f"Off-chip memory used for streaming uncached model parameters: {_mib(params - cached)}",
        "Number of Edge TPU subgraphs: 1",
        f"Total number of operations: {report.total}",
        f"Operation log: {log}",
        "",
    ]
    if not report.all_mapped:
        lines += [
            "Model successfully compiled but not all operations are supported by the Edge "
            "TPU. A percentage of the model will instead run on the CPU, which is slower.",
            f"Number of operations that will run on Edge TPU: {report.tpu_count}",
            f"Number of operations that will run on CPU: {report.cpu_count}",
            "",
        ]
    lines += [f"{'Operator':<31}{'Count':<11}Status", ""]
    lines += [f"{name:<31}{n:<11}{COMPILER_STATUS[kind]}" for name, n, kind in report.table_rows()]
    lines += ["Compilation child process completed within timeout period.",
              "Compilation succeeded!"]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    """`edgetpu_compiler -s -o DIR MODEL` (the only form converters.edgetpu_compile uses)."""
    if len(argv) != 4 or argv[0] != "-s" or argv[1] != "-o":
        print("stand-in: expected -s -o DIR MODEL", file=sys.stderr)
        return 2
    out_dir, model = Path(argv[2]), Path(argv[3])
    tflite = model.read_bytes()
    out = out_dir / f"{model.stem}_edgetpu.tflite"
    log = out_dir / f"{model.stem}_edgetpu.log"
    out.write_bytes(compile_like_edgetpu(tflite))
    text = compiler_report(model, out, log, tflite)
    log.write_text(f"Edge TPU Compiler version {VERSION}\nInput: {model}\nOutput: {out}\n\n"
                   + text[text.index("Operator "):])
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
