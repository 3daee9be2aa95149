"""Command-line options for tracking, zones, lines and event outputs (detect and batch).

`--zone` / `--line` turn tracking on (counting follows tracks); `--track` alone gives every
detection its `track_id`. The one-line errors name the option and what is wrong with it.
"""
from __future__ import annotations

import argparse
from typing import Any

from .zones import Region, RegionError, check_names, parse_line, parse_zone

__all__ = ["add_tracking_args", "tracking_wanted", "regions", "make_analysis", "check_tracking"]


def _region(parse):
    def convert(text: str) -> Region:
        try:
            return parse(text)
        except RegionError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    convert.__name__ = parse.__name__.replace("parse_", "")
    return convert


def _queue_size(text: str) -> int:
    """--mqtt-queue: messages, 1 .. 1e6 (each may be a JPEG snapshot: the bound is memory)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 1 <= value <= 1_000_000:
        raise argparse.ArgumentTypeError(f"must be in 1..1000000, got {text}")
    return value


def add_tracking_args(p: argparse.ArgumentParser, batch: bool = False) -> None:
    """--track, --zone, --line; detect also --events and --mqtt (batch writes the events
    of each video beside its JSON lines)."""
    g = p.add_argument_group("tracking and counting")
    g.add_argument("--track", action="store_true",
                   help="follow objects from frame to frame: a track_id per detection in "
                        "the JSON and on the frames (ByteTrack-style; needs scipy: pip "
                        "install '.[track]')")
    g.add_argument("--zone", type=_region(parse_zone), action="append", default=[],
                   metavar="NAME:X1,Y1,X2,Y2,X3,Y3,...",
                   help="a polygon zone: enter/leave events and counts per class (the "
                        "bottom centre of a box counts); pixels, or fractions of the frame "
                        "when every value is within 0..1; repeatable; implies --track")
    g.add_argument("--line", type=_region(parse_line), action="append", default=[],
                   metavar="NAME:X1,Y1,X2,Y2",
                   help="a counting line: crossings per class and direction ('in': to the "
                        "right of the line seen from its first point, so a line drawn left "
                        "to right counts downward motion as in), each track once per "
                        "direction; pixels or fractions as --zone; repeatable; implies --track")
    if batch:
        return
    g.add_argument("--events", metavar="FILE",
                   help="write one JSON line per zone or line event (enter, leave, cross) "
                        "to FILE ('-': stdout)")
    g.add_argument("--mqtt", metavar="mqtt[s]://[USER:PASS@]HOST[:PORT]/PREFIX",
                   help="publish events, counts and a JPEG snapshot per event to an MQTT "
                        "broker (QoS 1, queued while it is away), with Home Assistant "
                        "discovery; user and password also from $YOLO_TPU_MQTT_USER and "
                        "$YOLO_TPU_MQTT_PASSWORD (pip install '.[mqtt]')")
    g.add_argument("--mqtt-queue", type=_queue_size, metavar="N",
                   help="messages --mqtt keeps while the broker is away (default 1000; "
                        "beyond them messages are dropped and counted in the report)")


def regions(args: argparse.Namespace) -> list[Region]:
    return list(getattr(args, "zone", []) or []) + list(getattr(args, "line", []) or [])


def tracking_wanted(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "track", False) or regions(args))


def check_tracking(args: argparse.Namespace) -> str | None:
    """Why the tracking options cannot run, or None: a name used twice, scipy missing,
    --events or --mqtt with nothing to count, --mqtt-queue without --mqtt."""
    if getattr(args, "mqtt_queue", None) is not None and not getattr(args, "mqtt", None):
        return "--mqtt-queue applies to --mqtt only"
    if not tracking_wanted(args):
        for flag in ("events", "mqtt"):
            if getattr(args, flag, None):
                return f"--{flag} needs a --zone or --line (events are zone and line events)"
        return None
    try:
        check_names(regions(args))
    except RegionError as e:
        return str(e)
    if (getattr(args, "events", None) or getattr(args, "mqtt", None)) and not regions(args):
        flag = "--events" if args.events else "--mqtt"
        return f"{flag} needs a --zone or --line (events are zone and line events)"
    try:
        import scipy.optimize  # noqa: F401
    except ImportError:
        return "--track needs scipy (its assignment solver): pip install 'yolo_tpu[track]'"
    return None


def make_analysis(args: argparse.Namespace, source: str, frame_rate: float,
                  sinks: list[Any] = ()) -> Any:
    """The `events.Analysis` the options ask for, or None without tracking."""
    if not tracking_wanted(args):
        return None
    from .events import Analysis
    return Analysis(source, frame_rate, regions(args), list(sinks))
