"""The conversion's report as data: `--report-json FILE` writes it for scripts and CI.

One function builds the whole dict, so each figure the converter measures is one more
key here (`map50` with `--data`)."""
from __future__ import annotations

import json
import os


def build_report(edgetpu, fidelity, **more: dict) -> dict:
    """{"edgetpu": {"mapped", "ops"}, "fidelity": {"score", "matched", "reference", "extra",
    "images", "judged"}} from an edgetpu_check.CheckReport and an accuracy.Fidelity (None:
    no images to judge on), plus any further sections given as keywords."""
    data = {"edgetpu": {"mapped": edgetpu.tpu_count, "ops": edgetpu.total}}
    data["fidelity"] = None if fidelity is None else {
        "score": fidelity.score, "matched": fidelity.matched, "reference": fidelity.reference,
        "extra": fidelity.unexplained, "images": list(fidelity.images),
        "judged": fidelity.judged}
    return data | more


def write_report(path: str, data: dict) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
