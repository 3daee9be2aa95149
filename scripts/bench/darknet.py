"""darknet itself: Debian's libdarknet through ctypes, from file.
"""
from __future__ import annotations

import subprocess

from .common import CONF, IOU, timed


class DarknetRunner:
    """Darknet's own `detector test` pipeline through libdarknet (file in, boxes out)."""

    modes = ("file",)

    def __init__(self, spec: dict):
        from converters.darknet_ref import Darknet
        self.images = spec["images"]
        self.net = Darknet(spec["cfg"], spec["weights"])
        self.threads = "as Debian builds it (no thread setting)"
        self.thread_count = None

    def time(self, mode: str) -> list[float]:
        return timed(lambda p: self.net.detect(p, CONF, IOU), self.images)

    def detect(self, conf: float) -> list[list[list[float]]]:
        return [[[*d.box, d.score, d.class_id] for d in self.net.detect(p, conf, IOU)]
                for p in self.images]

    @staticmethod
    def versions() -> dict[str, str]:
        out = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "darknet"],
                             capture_output=True, text=True)
        return {"darknet (Debian)": out.stdout.strip() or "unknown"}
