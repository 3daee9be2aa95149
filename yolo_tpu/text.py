"""Wording shared by the CLIs' summaries."""
from __future__ import annotations


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """`1 detection`, `3 detections`, `1 decode error`, `0 frames`."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"
