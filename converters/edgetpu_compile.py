"""Compile a `.tflite` model with Coral's `edgetpu_compiler` and check its verdict.

`python -m converters.edgetpu_compile MODEL.tflite [MODEL2.tflite ...] [-o DIR]`

Several models (the segments `converters.segment` writes) are compiled one by one, each on
its own, so that a segment's parameters fill one Edge TPU's cache.

Runs `edgetpu_compiler -s -o DIR MODEL`, parses the report it prints (and the `.log` it
writes next to the compiled model), prints the compiler's op table and memory figures, and
exits 1 when any op is left on the CPU or compilation failed. It also prints where the
compiler's verdict differs from the prediction (`converters.edgetpu_check`), op by op from
the compiled file, so the static rules can be kept honest.

The compiler drops Model.metadata (and the SignatureDefs) from its output, so the runtime
could not find the anchors, classes and names; this puts the `yolo_tpu` entry back into
the compiled file and checks that the Edge TPU executable (the custom op's payload) is
byte-identical before replacing the file. `--metadata-from UNCOMPILED COMPILED` does only
that, for a model compiled elsewhere.

The compiler is only distributed for x86-64 Debian/Ubuntu (package `edgetpu-compiler` from
Coral's apt repository, https://coral.ai/docs/edgetpu/compiler/); without it this exits 2.

The report format parsed here is the compiler's (version 16) stdout with `-s`:

    Edge TPU Compiler version 16.0.384591198
    ...
    Model compiled successfully in 1142 ms.
    Input model: m.tflite
    ...
    Number of Edge TPU subgraphs: 1
    Total number of operations: 21
    Operation log: out/m_edgetpu.log
    [Model successfully compiled but not all operations are supported ...
    Number of operations that will run on Edge TPU: 11
    Number of operations that will run on CPU: 10]

    Operator                       Count      Status

    CONV_2D                        11         Mapped to Edge TPU
    ...

and the `.log` file, which holds the version, "Input:"/"Output:" lines and the full table.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from converters.edgetpu_check import (
    COMPILER_STATUS,
    MAPPED,
    CheckReport,
    NotCompiledFromError,
    check,
    disagreements,
    format_table,
    one_line_error,
    placement_from_compiled,
)
from converters.edgetpu_memory import compiler_lines, parse_sizes
from yolo_tpu.meta import METADATA_KEY
from yolo_tpu.pipeline import SEGMENT_KEY
from yolo_tpu.tflite_file import (
    NotTfliteError,
    add_metadata,
    custom_payloads,
    read_metadata,
    read_model,
)

COMPILER = "edgetpu_compiler"
NOT_INSTALLED = (
    "edgetpu_compile: edgetpu_compiler is not installed; install package edgetpu-compiler "
    "from Coral's apt repository (x86-64 Debian/Ubuntu only, see "
    "https://coral.ai/docs/edgetpu/compiler/)"
)

# One table row: the op name, its count, then the status text (the rest of the line).
_ROW = re.compile(r"^([A-Z][A-Z0-9_]*)\s+(\d+)\s+(\S.*?)\s*$")
_INT_FIELDS = {
    "Number of Edge TPU subgraphs": "subgraphs",
    "Total number of operations": "total_ops",
    "Number of operations that will run on Edge TPU": "tpu_ops",
    "Number of operations that will run on CPU": "cpu_ops",
}
_TEXT_FIELDS = {
    "Input model": "input_model",
    "Input": "input_model",  # the .log file's spelling
    "Output model": "output_model",
    "Output": "output_model",
    "Operation log": "log_file",
}
# Lines that mean the compiler produced no model at all.
_FATAL = (
    "Compilation failed",
    "Model could not be parsed",
    "Internal compiler error",
    "Invalid model",
)
# Error lines worth repeating; on their own (e.g. while searching segments) not fatal.
_ERRORS = _FATAL + ("ERROR:",)


@dataclass(frozen=True)
class CompilerRow:
    op: str
    count: int
    status: str

    @property
    def mapped(self) -> bool:
        return self.status == COMPILER_STATUS[MAPPED]


@dataclass(frozen=True)
class CompilerReport:
    """What edgetpu_compiler said about one model (from its stdout or its .log file)."""

    version: str | None = None
    compiled: bool = False  # "Model compiled successfully" seen
    errors: tuple[str, ...] = ()
    input_model: str | None = None
    output_model: str | None = None
    log_file: str | None = None
    subgraphs: int | None = None
    total_ops: int | None = None
    tpu_ops: int | None = None
    cpu_ops: int | None = None
    rows: tuple[CompilerRow, ...] = field(default=())
    # Compiler 16 may list only the unmapped ops and end the table with
    # "... All other operators were mapped successfully. See X.log."
    others_mapped: bool = False
    # The memory lines in bytes: "cached", "remaining", "streamed" (see edgetpu_memory).
    memory: dict = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return not self.compiled or any(e.startswith(_FATAL) for e in self.errors)

    @property
    def tpu_count(self) -> int | None:
        """Ops on the Edge TPU: the compiler's own count, else derived from the report."""
        if self.tpu_ops is not None:
            return self.tpu_ops
        if self.rows and not self.others_mapped:
            return sum(r.count for r in self.rows if r.mapped)
        if self.compiled and self.total_ops is not None and self.cpu_ops is None:
            return self.total_ops  # no "will run on CPU" lines: everything mapped
        return None

    @property
    def all_mapped(self) -> bool:
        if self.failed:
            return False
        if self.cpu_ops is not None:
            return self.cpu_ops == 0
        return all(r.mapped for r in self.rows)


def parse_report(text: str) -> CompilerReport:
    """Parse edgetpu_compiler's `-s` stdout or its `.log` file (pure; no I/O)."""
    values: dict = {}
    rows: list[CompilerRow] = []
    errors: list[str] = []
    compiled = others_mapped = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("Edge TPU Compiler version"):
            values["version"] = line.rsplit(" ", 1)[-1]
        elif line.startswith("Model compiled successfully"):
            compiled = True
        elif line.startswith("... All other operators were mapped"):
            others_mapped = True
        elif line.startswith(_ERRORS):
            errors.append(line)
        elif ":" in line and line.split(":", 1)[0] in _INT_FIELDS:
            key, value = line.split(":", 1)
            values[_INT_FIELDS[key]] = int(value.strip())
        elif ":" in line and line.split(":", 1)[0] in _TEXT_FIELDS:
            key, value = line.split(":", 1)
            values[_TEXT_FIELDS[key]] = value.strip()
        elif (m := _ROW.match(line)) is not None:
            rows.append(CompilerRow(m.group(1), int(m.group(2)), m.group(3)))
    # A .log file has no "compiled successfully" line, but its existence and table say so.
    if not compiled and rows and not any(e.startswith(_FATAL) for e in errors):
        compiled = True
    return CompilerReport(
        compiled=compiled,
        errors=tuple(errors),
        rows=tuple(rows),
        others_mapped=others_mapped,
        memory=parse_sizes(text),
        **values,
    )


def merge_reports(stdout: CompilerReport, log: CompilerReport | None) -> CompilerReport:
    """The stdout report with the log's full table when stdout's was cut short or missing."""
    if log is None or not log.rows:
        return stdout
    if stdout.rows and not stdout.others_mapped:
        return stdout
    return CompilerReport(
        version=stdout.version or log.version,
        compiled=stdout.compiled,
        errors=stdout.errors,
        input_model=stdout.input_model or log.input_model,
        output_model=stdout.output_model or log.output_model,
        log_file=stdout.log_file,
        subgraphs=stdout.subgraphs,
        total_ops=stdout.total_ops,
        tpu_ops=stdout.tpu_ops,
        cpu_ops=stdout.cpu_ops,
        rows=log.rows,
        others_mapped=False,
        memory=stdout.memory or log.memory,
    )


def compare(static: CheckReport, compiled: CompilerReport) -> list[str]:
    """Lines saying where the compiler's table differs from the static check's."""
    if compiled.failed:
        if static.all_mapped:
            return ["the prediction was that every op maps, but the compiler failed"]
        return []
    ours = Counter()
    for name, count, kind in static.table_rows():
        ours[(name, COMPILER_STATUS[kind])] += count
    theirs = Counter()
    for row in compiled.rows:
        theirs[(row.op, row.status)] += row.count
    if compiled.others_mapped:
        # Only the unmapped rows were listed: compare those, and the totals.
        ours = Counter({k: v for k, v in ours.items() if k[1] != COMPILER_STATUS[MAPPED]})
    diffs = [
        f"{name} '{status}': predicted {ours[(name, status)]}, compiler {theirs[(name, status)]}"
        for name, status in sorted(set(ours) | set(theirs))
        if ours[(name, status)] != theirs[(name, status)]
    ]
    tpu = compiled.tpu_count
    if tpu is not None and tpu != static.tpu_count:
        diffs.append(f"ops on the Edge TPU: predicted {static.tpu_count}, compiler {tpu}")
    return diffs


class MetadataError(RuntimeError):
    """The metadata could not be put back without changing the Edge TPU executable."""


def embed_metadata(uncompiled: Path, compiled: Path) -> None:
    """Copy the `yolo_tpu` metadata of `uncompiled` into `compiled`, in place.

    The compiled file is rewritten through the flatbuffer object API; the Edge TPU
    executable must come out byte-identical (checked) and 4-byte aligned like the
    compiler's own output, else the file is left untouched and MetadataError raised.
    """
    entries = {k: v for k, v in read_metadata(uncompiled).items()
               if k in (METADATA_KEY, SEGMENT_KEY)}  # a segment: its place in the chain
    if not entries:
        raise MetadataError(f"{uncompiled}: no {METADATA_KEY} metadata to copy")
    try:
        placement_from_compiled(read_model(uncompiled), read_model(compiled))
    except NotCompiledFromError as exc:
        raise MetadataError(f"{compiled} was not compiled from {uncompiled}: {exc}") from None
    raw = compiled.read_bytes()
    before = custom_payloads(raw)
    new = add_metadata(raw, entries)
    after = custom_payloads(new)
    if [p for _, p in after] != [p for _, p in before]:
        raise MetadataError(f"{compiled}: the Edge TPU executable changed on rewrite")
    if any(offset % 4 for offset, _ in after):
        raise MetadataError(f"{compiled}: the Edge TPU executable lost its 4-byte alignment")
    fd, tmp = tempfile.mkstemp(dir=compiled.parent, prefix=f".{compiled.name}.")
    with os.fdopen(fd, "wb") as f:
        f.write(new)
    os.replace(tmp, compiled)


def run_compiler(model: Path, out_dir: Path, compiler: str) -> tuple[int, str]:
    """Run `edgetpu_compiler -s -o DIR MODEL`; its return code and combined output."""
    proc = subprocess.run(
        [compiler, "-s", "-o", str(out_dir), str(model)],
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.returncode, proc.stdout + proc.stderr


def _read_log(report: CompilerReport, model: Path, out_dir: Path) -> CompilerReport | None:
    """The compiler's .log (path from its report, else `DIR/<stem>_edgetpu.log`)."""
    candidates = [Path(report.log_file)] if report.log_file else []
    candidates.append(out_dir / f"{model.stem}_edgetpu.log")
    for path in candidates:
        if path.is_file():
            return parse_report(path.read_text(errors="replace"))
    return None


def _compiled_path(report: CompilerReport, model: Path, out_dir: Path) -> Path:
    named = Path(report.output_model) if report.output_model else None
    if named is not None and not named.is_absolute() and not named.exists():
        named = out_dir / named.name
    return named if named is not None and named.is_file() else out_dir / f"{model.stem}_edgetpu.tflite"


def compile_model(model: Path, out_dir: Path) -> tuple[int, CompilerReport | None]:
    """Compile, report, put the metadata back. (exit code, the compiler's report or None)."""
    compiler = shutil.which(COMPILER)
    if compiler is None:
        print(NOT_INSTALLED, file=sys.stderr)
        return 2, None
    try:
        static = check(model)
    except (OSError, NotTfliteError) as exc:
        print(f"edgetpu_compile: {model}: {one_line_error(exc)}", file=sys.stderr)
        return 2, None
    if static.compiled:
        print(f"edgetpu_compile: {model}: already compiled for the Edge TPU", file=sys.stderr)
        return 2, None
    out_dir.mkdir(parents=True, exist_ok=True)
    code, output = run_compiler(model, out_dir, compiler)
    stdout_report = parse_report(output)
    report = merge_reports(stdout_report, _read_log(stdout_report, model, out_dir))
    if code != 0 or report.failed:
        fatal = [e for e in report.errors if e.startswith(_FATAL)] or list(report.errors)
        reason = " / ".join(fatal) if fatal else f"exit status {code}"
        print(f"edgetpu_compile: {model}: compilation failed: {reason}", file=sys.stderr)
        for line in compare(static, report):
            print(f"differs: {line}")
        return 1, report
    print("edgetpu_compiler's report:")
    print(format_table([(r.op, r.count, r.status) for r in report.rows]))
    if report.others_mapped:
        print("... All other operators were mapped successfully.")
    print()
    compiled = _compiled_path(report, model, out_dir)
    diffs = compare(static, report)
    try:
        placement = placement_from_compiled(read_model(model), read_model(compiled))
        wrong = disagreements(static, placement)
        diffs += [f"op {op.index} {op.op}: predicted {op.prediction}, compiled "
                  f"{'CPU' if op.mapped else 'Edge TPU'}" for op in wrong]
    except (OSError, NotTfliteError, NotCompiledFromError) as exc:
        print(f"edgetpu_compile: {compiled}: cannot read the compiled model: {one_line_error(exc)}",
              file=sys.stderr)
        return 1, report
    for line in diffs:
        print(f"differs: {line}")
    if not diffs:
        print(f"The prediction agrees with the compiler on all {static.total} ops.")
    for line in compiler_lines(report.memory):
        print(line)
    total = report.total_ops if report.total_ops is not None else static.total
    tpu = report.tpu_count
    print(f"edgetpu_compiler: {tpu if tpu is not None else '?'} of {total} operations "
          f"will run on the Edge TPU")
    try:
        embed_metadata(model, compiled)
        print(f"Compiled model: {compiled} (yolo_tpu metadata restored)")
    except MetadataError as exc:
        print(f"edgetpu_compile: {exc}; the runtime will read the metadata from {model.name} "
              f"beside it", file=sys.stderr)
    return (0 if report.all_mapped else 1), report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m converters.edgetpu_compile",
        description="Compile a .tflite model with edgetpu_compiler and check that every op maps.",
    )
    parser.add_argument("model", nargs="+",
                        help=".tflite file (full-integer quantized); several (the segments "
                             "from converters.segment) are compiled one by one")
    parser.add_argument("-o", "--out-dir", help="output directory (default: the model's)")
    parser.add_argument("--metadata-from", metavar="UNCOMPILED",
                        help="do not compile: copy the yolo_tpu metadata of UNCOMPILED into "
                             "MODEL (a model edgetpu_compiler made from it)")
    args = parser.parse_args(argv)
    if args.metadata_from and len(args.model) != 1:
        parser.error("--metadata-from takes one compiled MODEL")
    model = Path(args.model[0])
    if args.metadata_from:
        try:
            embed_metadata(Path(args.metadata_from), model)
        except (OSError, NotTfliteError, MetadataError) as exc:
            print(f"edgetpu_compile: {one_line_error(exc)}", file=sys.stderr)
            return 2
        print(f"{model}: yolo_tpu metadata copied from {args.metadata_from}")
        return 0
    if shutil.which(COMPILER) is None:  # said once, not once per model
        print(NOT_INSTALLED, file=sys.stderr)
        return 2
    codes = []
    for one in map(Path, args.model):
        out_dir = Path(args.out_dir) if args.out_dir else one.resolve().parent
        codes.append(compile_model(one, out_dir)[0])
    return max(codes)


if __name__ == "__main__":
    sys.exit(main())
