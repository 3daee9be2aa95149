"""Whether `--show` can open a window here, asked before the model and the source open.

The runtime depends on opencv-python-headless (no GUI libraries, so it installs on a bare
Debian or a Raspberry Pi); a window needs an OpenCV built with a GUI (opencv-python) and a
display. Without either, `--serve PORT` shows the same picture in a browser.
"""
from __future__ import annotations

import os
import sys

HEADLESS_HINT = "use --serve PORT to watch in a browser instead (or --save to keep the video)"


def gui_backend(build_info: str) -> str | None:
    """The GUI OpenCV was built with (QT5, GTK3, WIN32UI, ...), None for a headless build,
    read from cv2.getBuildInformation()'s `GUI:` line."""
    for line in build_info.splitlines():
        key, _, value = line.strip().partition(":")
        if key == "GUI":
            value = value.strip()
            return None if not value or value.upper() == "NONE" else value
    return None


def no_x_display() -> str | None:
    """Why there is no X display to open a window on, or None (a local one that exists,
    or a remote one such as ssh's localhost:10.0, which only connecting can tell)."""
    display = os.environ.get("DISPLAY", "")
    if not display:
        return "DISPLAY is not set"
    if display.startswith(":"):
        number = display[1:].split(".")[0]
        if not os.path.exists(f"/tmp/.X11-unix/X{number}"):
            return f"no X server for DISPLAY={display}"
    return None


def show_problem() -> str | None:
    """Why `--show` cannot open a window, as the one error line, or None."""
    import cv2
    if gui_backend(cv2.getBuildInformation()) is None:
        return ("--show: this OpenCV has no GUI (opencv-python-headless, what the runtime "
                f"installs); pip install opencv-python for windows, or {HEADLESS_HINT}")
    # OpenCV's Qt aborts the whole process (no exception) when it finds no X display.
    if sys.platform.startswith("linux") and (why := no_x_display()):
        return f"--show: no display ({why}); {HEADLESS_HINT}"
    return None
