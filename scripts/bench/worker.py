"""The worker process: load one contestant, warm it up, answer JSON-line commands.
"""
from __future__ import annotations

import json
import os
import sys
import time
from typing import IO

from .ceiling import CeilingRunner
from .common import cpu_seconds, one_line, peak_rss_mb
from .darknet import DarknetRunner
from .opencv import OpencvRunner
from .tflite import TfliteRunner


RUNNERS = {"tflite": TfliteRunner, "darknet": DarknetRunner, "opencv": OpencvRunner,
           "ceiling": CeilingRunner}


def reply(proto: IO[str], message: dict) -> None:
    proto.write(json.dumps(message) + "\n")
    proto.flush()


def serve(spec: dict) -> int:
    """Worker: load the contestant, warm it up, answer JSON-line commands until 'quit'."""
    proto = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # C libraries' printf (darknet's) must not mix into the protocol
    try:
        runner = RUNNERS[spec["kind"]](spec)
        for mode in runner.modes:  # warm-up: numba's cache, allocators, page cache
            runner.time(mode)
    except Exception as e:  # noqa: BLE001 - reported to the parent as one line
        reply(proto, {"error": one_line(e)})
        return 1
    reply(proto, {"ready": True, "threads": runner.threads,
                  "thread_count": runner.thread_count, "modes": list(runner.modes),
                  "versions": runner.versions(), "tensorflow": "tensorflow" in sys.modules})
    for line in sys.stdin:
        command = json.loads(line)
        op = command["op"]
        if op == "time":
            cpu0, wall0 = cpu_seconds(), time.perf_counter()
            ms = runner.time(command["mode"])
            reply(proto, {"ms": ms, "cpu_s": cpu_seconds() - cpu0,
                          "wall_s": time.perf_counter() - wall0})
        elif op == "rss":
            reply(proto, {"peak_rss_mb": peak_rss_mb()})
        elif op == "detect":
            reply(proto, {"detections": runner.detect(command["conf"])})
        elif op == "quit":
            break
    return 0
