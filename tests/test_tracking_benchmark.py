"""scripts/benchmark_tracking.py on motmetrics' real ground truth (issue 22): our tracker
against trackers' ByteTrack and OC-SORT and norfair, on the same detections, in one run."""
from __future__ import annotations

import importlib.util
import sys

import pytest

from conftest import ROOT

for module in ("motmetrics", "trackers", "norfair", "scipy"):
    pytest.importorskip(module, reason="make test installs the benchmark's peers")


def _load():
    spec = importlib.util.spec_from_file_location("benchmark_tracking",
                                                  ROOT / "scripts" / "benchmark_tracking.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["benchmark_tracking"] = module
    spec.loader.exec_module(module)
    return module


def test_ours_against_the_peers_on_both_sequences():
    bench = _load()
    results = bench.evaluate()
    for seq, per in results.items():
        ours = per["yolo_tpu"]
        peers = {k: v for k, v in per.items() if not k.startswith("yolo_tpu")}
        assert ours["mota"] >= max(p["mota"] for p in peers.values()), (seq, per)
        # IDF1: above trackers' ByteTrack and OC-SORT; norfair's is higher (README)
        for name in ("trackers ByteTrack", "trackers OC-SORT"):
            assert ours["idf1"] >= peers[name]["idf1"], (seq, per)
