"""Parameter memory against the Edge TPU's on-chip cache: what streams over USB per inference.

The Edge TPU has about 8 MiB of SRAM; what is left after the activations caches the
model's parameters (weights, biases). Parameters that do not fit are streamed from the host
on every inference, which costs USB bandwidth and time. The compiler prints its own
allocation (real logs: yolov5s at 224 px "On-chip memory used for caching model parameters:
6.08MiB ... remaining 0.00B ... streaming uncached model parameters: 1.70MiB"; a model in
google-coral/edgetpu issue #60: 6.86 MiB cached with 7.75 KiB left). Without the compiler
this module estimates from the parameter bytes of the ops predicted to map, with the
cache taken as CACHE_LOW..CACHE_HIGH (the range those logs show). A smaller input does not
shrink the weights; segmenting the model across several Edge TPUs
(`python -m converters ... --segments N`, one segment per Edge TPU) does.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from yolo_tpu.tflite_file import TfliteModel

MIB = 2**20
SRAM_BYTES = 8 * MIB
CACHE_LOW = int(6.08 * MIB)  # yolov5s-224 log: 6.08 MiB used, 0 B remaining
CACHE_HIGH = int(6.86 * MIB + 7.75 * 1024)  # edgetpu issue #60: 6.86 MiB used + 7.75 KiB left

_UNITS = {"B": 1, "KiB": 1024, "MiB": MIB, "GiB": 1024 * MIB}
_SIZE = re.compile(r"^\s*([0-9.]+)\s*(B|KiB|MiB|GiB)\s*$")
_MEMORY_LINES = {
    "On-chip memory used for caching model parameters": "cached",
    "On-chip memory remaining for caching model parameters": "remaining",
    "Off-chip memory used for streaming uncached model parameters": "streamed",
}


def parameter_bytes(model: TfliteModel, mapped: Sequence[bool] | None = None) -> int:
    """Bytes of the constant tensors (weights, biases) of the ops that run on the Edge TPU.

    `mapped[i]` selects op i (default: every op); a constant read by several ops counts once.
    """
    seen: set[int] = set()
    total = 0
    for op in model.operators:
        if mapped is not None and not mapped[op.index]:
            continue
        for i in op.inputs:
            t = model.tensor(i) if i >= 0 else None
            if t is not None and t.is_constant and i not in seen:
                seen.add(i)
                total += len(t.data or b"")
    return total


@dataclass(frozen=True)
class MemoryEstimate:
    parameters: int  # bytes

    @property
    def streamed_low(self) -> int:
        return max(0, self.parameters - CACHE_HIGH)

    @property
    def streamed_high(self) -> int:
        return max(0, self.parameters - CACHE_LOW)

    def lines(self) -> list[str]:
        p = self.parameters / MIB
        head = (f"parameters on the Edge TPU: {p:.2f} MiB against a parameter cache of about "
                f"{CACHE_LOW / MIB:.1f}-{CACHE_HIGH / MIB:.1f} MiB (of {SRAM_BYTES // MIB} MiB "
                f"SRAM)")
        if self.streamed_high == 0:
            return [head, "  all of them fit in the cache (estimate): nothing streams per inference"]
        lo, hi = self.streamed_low / MIB, self.streamed_high / MIB
        return [head,
                f"  estimate: {lo:.2f}-{hi:.2f} MiB streamed over USB/PCIe on every inference; "
                "a smaller input does not shrink the weights, segmenting across Edge TPUs "
                "(python -m converters ... --segments N) does"]


def parse_sizes(text: str) -> dict[str, int]:
    """The compiler's memory lines -> {"cached", "remaining", "streamed"} in bytes."""
    found: dict[str, int] = {}
    for raw in text.splitlines():
        key, sep, value = raw.strip().partition(":")
        if sep and key in _MEMORY_LINES and (m := _SIZE.match(value)):
            found[_MEMORY_LINES[key]] = round(float(m.group(1)) * _UNITS[m.group(2)])
    return found


def compiler_lines(sizes: dict[str, int]) -> list[str]:
    """The compiler's own figures, in its words."""
    if not sizes:
        return []
    out = ["edgetpu_compiler:"]
    if "cached" in sizes:
        out.append(f"  On-chip memory used for caching model parameters: "
                   f"{sizes['cached'] / MIB:.2f}MiB")
    if "streamed" in sizes:
        out.append(f"  Off-chip memory used for streaming uncached model parameters: "
                   f"{sizes['streamed'] / MIB:.2f}MiB")
    return out


def summary_lines(model: TfliteModel, mapped: Sequence[bool],
                  compiler_sizes: dict[str, int] | None = None) -> list[str]:
    """The conversion summary's memory lines: our estimate, then the compiler's figures."""
    return MemoryEstimate(parameter_bytes(model, mapped)).lines() + compiler_lines(
        compiler_sizes or {})
