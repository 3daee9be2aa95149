"""Command-line pieces the converters' commands share: argument types, the help formatter,
and the --min-fidelity verdict. A module of its own so that darknet, quantize and __main__ all
import it and none imports a ``__main__``.
"""
from __future__ import annotations

import argparse
import sys


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each default, except None: those options say in their help what they default to."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        return action.help if action.default is None else super()._get_help_string(action)


def fidelity_ok(fidelity, min_fidelity: float, leaky: str) -> bool:
    """False, with one error line, when the int8 model is below `min_fidelity` beyond doubt
    (Fidelity.fails). An unscorable report (the reference finds nothing) or one on too few
    reference detections is a warning, not a failure: it says little about the model,
    only about the images."""
    if fidelity is None or fidelity.score is None:
        return True
    losses = (f"loses {fidelity.lost} of the exact float model's {fidelity.reference} "
              f"detections and adds {fidelity.unexplained}")
    if not fidelity.fails(min_fidelity):
        if not fidelity.judged and fidelity.score < min_fidelity:
            print(f"warning: fidelity {fidelity.score:.2f} is below --min-fidelity "
                  f"{min_fidelity:g} (the int8 model {losses}), but {fidelity.reference} "
                  "reference detections are too few to judge; pass --eval with more images "
                  "of your model's subjects", file=sys.stderr)
        return True
    hint = (" (--leaky relu on weights trained with leaky: leave --leaky at its default, auto)"
            if leaky == "relu" else " (try more --calib images from your deployment)"
            if leaky == "auto" else " (try --leaky auto, or more --calib images)")
    print(f"error: fidelity {fidelity.score:.2f} is below --min-fidelity {min_fidelity:g}: "
          f"the int8 model {losses}{hint}", file=sys.stderr)
    return False
