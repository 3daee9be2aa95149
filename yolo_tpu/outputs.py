"""Outputs that are whole or absent, and one writer per output folder.

Every file a run produces is written under a hidden partial name in its final folder
(`out/.clip.partial.TAG.jsonl`) and renamed (`os.replace`, atomic on one file system) only
once it is complete: flushed, `fsync`ed, closed without error and, for a video, opened
again and found to hold every frame written. A write error (a full disk, a quota, an I/O
error) removes the partial file and becomes an `OutputError` whose one-line message names
the file, the reason and the space left, so outputs finished earlier stay and nothing
incomplete ever carries a final name.

`FolderLock` is an `fcntl` lock on `DIR/.yolo_tpu.lock`: one run writes into a folder at a
time (the kernel releases it when the holder dies, even by SIGKILL), and trying to take it
is also how a folder that cannot be written (read-only, no permission) is found out before
any work.
"""
from __future__ import annotations

import errno
import fcntl
import os
from typing import IO

__all__ = ["PARTIAL", "LOCK_NAME", "OutputError", "FolderBusy", "FolderLock", "AtomicFile",
           "LineFile",
           "partial_path", "run_tag", "write_error", "free_space", "write_atomic",
           "video_problem", "remove", "folder_problem"]

PARTIAL = ".partial"
LOCK_NAME = ".yolo_tpu.lock"
# Errors that mean "no room": the message then says how much room there is.
_NO_ROOM = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


class OutputError(OSError):
    """An output that cannot be written: the message names the file and the reason."""


class FolderBusy(OutputError):
    """Another run holds the folder's lock."""


def run_tag() -> str:
    """A tag for this run's partial names: two runs (or a run and a cluster task) never
    write, rename or remove each other's partial files."""
    return os.urandom(4).hex()


def partial_path(path: str, tag: str = "") -> str:
    """`out/clip.mp4` -> `out/.clip.partial.mp4` (`.clip.partial.TAG.mp4` with a tag):
    same folder (atomic rename), same extension (OpenCV picks the container from it),
    hidden from `ls` and from globs."""
    folder, name = os.path.split(path)
    stem, ext = os.path.splitext(name)
    return os.path.join(folder, f".{stem}{PARTIAL}{'.' + tag if tag else ''}{ext}")


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def free_space(path: str) -> str:
    """`12.0 KiB free on /mnt/out`: the space an unprivileged writer has left there."""
    folder = os.path.dirname(os.path.abspath(path))
    while folder and not os.path.isdir(folder):
        folder = os.path.dirname(folder)
    try:
        st = os.statvfs(folder or "/")
    except OSError:
        return "free space unknown"
    return f"{_size(st.f_bavail * st.f_frsize)} free on {folder}"


def write_error(path: str, e: BaseException) -> OutputError:
    """The one-line error for a failed write of `path` (with the free space when the
    disk or the quota is full)."""
    if isinstance(e, OutputError):
        return e
    reason = getattr(e, "strerror", None) or str(e) or type(e).__name__
    no_room = getattr(e, "errno", None) in _NO_ROOM
    err = OutputError(f"{path}: cannot write: {reason}"
                      + (f" ({free_space(path)})" if no_room else ""))
    err.errno = getattr(e, "errno", None)
    return err


def folder_problem(folder: str) -> str | None:
    """Why no file can be made in `folder` (`Read-only file system`, `Permission denied`),
    or None: found by making (and removing) an empty hidden file, since root passes every
    permission check (`os.access`) but not a read-only mount, and a check can then name the
    reason before any work is done."""
    probe = os.path.join(folder or ".", f".yolo_tpu.probe.{run_tag()}")
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError as e:
        return e.strerror or str(e)
    remove(probe)
    return None


def remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
    except OSError:
        pass  # a folder gone read-only: nothing more to do about it here


class AtomicFile:
    """A text or binary file written under its partial name; `commit()` makes it the
    final one, `abort()` drops it. Every failure is an `OutputError` and leaves no
    partial file behind."""

    def __init__(self, path: str, tag: str = "", binary: bool = False):
        self.path, self.partial = path, partial_path(path, tag)
        self.error: OutputError | None = None
        try:
            self._f: IO = open(self.partial, "wb") if binary else \
                open(self.partial, "w", encoding="utf-8")
        except OSError as e:
            raise write_error(path, e) from None

    def write(self, data) -> None:
        try:
            self._f.write(data)
        except OSError as e:
            self.error = write_error(self.path, e)
            self.abort()
            raise self.error from None

    def flush(self) -> None:
        try:
            self._f.flush()
        except OSError as e:
            self.error = write_error(self.path, e)
            self.abort()
            raise self.error from None

    @property
    def closed(self) -> bool:
        return self._f.closed

    def commit(self) -> None:
        """Flush, fsync (the data is on disk before the name says "done"), close, rename."""
        if self.error is not None:
            raise self.error
        try:
            self._f.flush()
            os.fsync(self._f.fileno())
            self._f.close()
            os.replace(self.partial, self.path)
        except OSError as e:
            self.error = write_error(self.path, e)
            self.abort()
            raise self.error from None

    def abort(self) -> None:
        try:
            self._f.close()
        except OSError:
            pass  # the buffered rest could not be written: it is being dropped anyway
        remove(self.partial)

    def __enter__(self) -> "AtomicFile":
        return self

    def __exit__(self, exc_type, *_: object) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


class LineFile:
    """Lines flushed one by one under the final name (`tail -f` follows a live run); a
    write error cuts the file back to its last whole line and is raised as OutputError
    saying how many lines are kept. Later writes are refused with the same error."""

    def __init__(self, path: str):
        self.path, self.lines, self.error = path, 0, None
        self._good = 0  # bytes up to the end of the last whole line
        try:
            self._f: IO[str] = open(path, "w", encoding="utf-8")
        except OSError as e:
            raise write_error(path, e) from None

    def write_line(self, line: str) -> None:
        if self.error is not None:
            raise self.error
        try:
            self._f.write(line + "\n")
            self._f.flush()
        except OSError as e:
            raise self._cut(e) from None
        self._good += len(line.encode()) + 1
        self.lines += 1

    def _cut(self, e: OSError) -> OutputError:
        try:
            self._f.close()
        except OSError:
            pass  # the unwritten rest of the buffer: dropped by the truncation below
        try:
            os.truncate(self.path, self._good)
        except OSError:
            pass
        self.error = OutputError(f"{write_error(self.path, e)}; its first "
                                 f"{self.lines} lines are kept")
        return self.error

    def close(self) -> None:
        if self.error is not None or self._f.closed:
            return
        try:
            self._f.close()
        except OSError as e:
            raise self._cut(e) from None


def write_atomic(path: str, text: str, tag: str = "") -> None:
    """`path` holds `text` in full, or is left as it was (OutputError)."""
    with AtomicFile(path, tag) as f:
        f.write(text)


def fsync_path(path: str) -> None:
    """The file's data on disk (a file another library wrote, e.g. OpenCV's video)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def video_problem(path: str, frames: int) -> str | None:
    """Why the video at `path` is not a playable file of `frames` frames, or None:
    OpenCV's writer reports no write error (a full disk only shows as a file without its
    index), so a video is read back before it is called complete."""
    import cv2
    cap = cv2.VideoCapture(path, cv2.CAP_FFMPEG)
    try:
        if not cap.isOpened():
            return "is not playable (no index: written incompletely, is the disk full?)"
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        if count != frames:
            return f"holds {count} of the {frames} frames written"
        ok, _ = cap.read()
        if not ok:
            return "does not decode (its first frame)"
    finally:
        cap.release()
    return None


class FolderLock:
    """The exclusive lock of an output folder (`DIR/.yolo_tpu.lock`, holding the pid of
    its holder). The folder is made if missing."""

    def __init__(self, folder: str, flag: str = "--out"):
        self.folder, self.flag = folder, flag
        self.path = os.path.join(folder, LOCK_NAME)
        self._fd: int | None = None

    def acquire(self, wait: bool = False, on_wait=None) -> "FolderLock":
        """Take the lock; FolderBusy when another run holds it (unless `wait`: then block
        until it is free, calling `on_wait(message)` once first). OutputError when the
        folder cannot be made or written."""
        try:
            os.makedirs(self.folder, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise OutputError(f"{self.flag} {self.folder}: cannot write there: "
                              f"{e.strerror or e}") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                busy = (f"{self.flag} {self.folder}: another run is writing there "
                        f"({self._holder(fd)})")
                if not wait:
                    raise FolderBusy(f"{busy}; wait for it, pass --wait, or choose another "
                                     "folder") from None
                if on_wait is not None:
                    on_wait(f"{busy}; waiting for it to end")
                fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            except OSError:
                pass  # the pid is only informative; the lock is what counts
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    @staticmethod
    def _holder(fd: int) -> str:
        try:
            pid = os.pread(fd, 32, 0).decode().strip()
        except (OSError, UnicodeDecodeError):
            pid = ""
        return f"pid {pid}" if pid.isdigit() else "pid unknown"

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the lock; the file stays (see module doc)
            self._fd = None

    def __enter__(self) -> "FolderLock":
        return self.acquire() if self._fd is None else self

    def __exit__(self, *_: object) -> None:
        self.release()
