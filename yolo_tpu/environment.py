"""The runtime's commands run with a Python that lacks their dependencies (say the system
python3 after `make demo`, which installs into .venv): one line naming the missing module and
the project's environment, instead of a traceback. Standard library only."""
from __future__ import annotations

import importlib.util
import sys

RUNTIME_MODULES = ("numpy", "cv2", "numba")


def missing(modules: tuple[str, ...] = RUNTIME_MODULES) -> list[str]:
    """The modules of `modules` this Python cannot import."""
    return [m for m in modules if importlib.util.find_spec(m) is None]


def require(caller: str, command: str, modules: tuple[str, ...] = RUNTIME_MODULES) -> None:
    """When `caller` (a module's __name__) runs as the command and a dependency is missing:
    one hint line and exit status 2. Imported as a library, nothing: the ImportError stays."""
    if caller != "__main__" or not (absent := missing(modules)):
        return
    print(f"yolo_tpu: missing module {', '.join(absent)} in this Python ({sys.executable}); "
          f"run inside the project's environment: .venv/bin/python -m {command} ... (or "
          "`source .venv/bin/activate` first), or install it here with `pip install .`",
          file=sys.stderr)
    sys.exit(2)
