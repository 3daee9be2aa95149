"""Progress for the converters' slow steps: a line before each (loading TensorFlow, building,
tracing, scoring), and a bar that suits where stderr goes. On a terminal a tqdm bar; in a log
file or a pipe (no terminal to redraw on) a plain line at every tenth, not a line of
carriage-return redraws."""
from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def step(text: str) -> None:
    """One line on stderr before a step that takes seconds, so no stretch is silent."""
    print(f"  {text} ...", file=sys.stderr, flush=True)


def progress(items: Iterable[T], total: int | None, desc: str, unit: str = "img",
             enabled: bool = True) -> Iterator[T]:
    """`items`, reporting progress on stderr: a tqdm bar on a terminal, else `desc: n/total
    (p%)` at each tenth of `total` (or only at the end when the total is unknown)."""
    if not enabled:
        yield from items
        return
    if sys.stderr.isatty():
        from tqdm import tqdm
        yield from tqdm(items, total=total, desc=desc, unit=unit, file=sys.stderr)
        return
    done, shown = 0, 0
    for item in items:
        yield item
        done += 1
        if total and done * 10 // total > shown:
            shown = done * 10 // total
            print(f"{desc}: {done}/{total} {unit} ({100 * done // total}%)", file=sys.stderr,
                  flush=True)
    if not total:
        print(f"{desc}: {done} {unit}", file=sys.stderr, flush=True)
