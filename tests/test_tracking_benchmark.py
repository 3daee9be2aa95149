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


def test_ours_at_least_the_best_peer_on_idf1_and_mota_on_both_sequences():
    bench = _load()
    results = bench.evaluate()
    assert set(results) == set(bench.SEQUENCES)
    for seq, per in results.items():
        ours = per["yolo_tpu"]
        peers = {k: v for k, v in per.items() if not k.startswith("yolo_tpu")}
        assert set(peers) == {"trackers ByteTrack", "trackers OC-SORT", "norfair"}, peers
        for metric in ("idf1", "mota"):
            best = max(peers, key=lambda name: peers[name][metric])
            assert ours[metric] >= peers[best][metric], (seq, metric, best, per)
