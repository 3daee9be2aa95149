"""Keep native libraries' log lines off the user's screen.

LiteRT and TensorFlow write some lines straight to file descriptor 2, past Python and past
`TF_CPP_MIN_LOG_LEVEL`: `INFO: Created TensorFlow Lite XNNPACK delegate for CPU.` when an
interpreter allocates, the oneDNN notice when TensorFlow loads, `fully_quantize: 0, ...`
when it quantizes. They are captured here and shown only if the block fails, where they
may explain why.
"""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator


@contextlib.contextmanager
def native_stderr_captured() -> Iterator[None]:
    """Send what C++ code writes to fd 2 to a temporary file, replayed only if the block
    raises; Python's own `sys.stderr` (our warnings, progress bars) still reaches the user."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no fd 2 (embedded use): nothing to protect
        yield
        return
    real = os.fdopen(os.dup(saved), "w", buffering=1, encoding="utf-8", errors="replace")
    with tempfile.TemporaryFile() as log:
        os.dup2(log.fileno(), 2)
        try:
            with contextlib.redirect_stderr(real):
                yield
        except BaseException:
            log.seek(0)
            real.write(log.read().decode(errors="replace"))
            raise
        finally:
            real.close()
            os.dup2(saved, 2)
            os.close(saved)
