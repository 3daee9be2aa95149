"""Where frames come from. For now: image paths, expanded from files, folders and globs.

A path named explicitly is always tried (reading it reports what is wrong with it); a folder
or a glob yields only the image files in it, by extension, so `photos/` or `photos/*` next to
a README does not turn the README into an error.
"""
from __future__ import annotations

import glob
import os
from collections.abc import Iterable

__all__ = ["IMAGE_EXTENSIONS", "SourceError", "expand_images", "expand_image_args", "is_image_name"]

# What OpenCV's imread decodes in the usual builds (opencv-python wheels included).
IMAGE_EXTENSIONS = frozenset({
    ".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".dib", ".webp", ".tif", ".tiff",
    ".jp2", ".pbm", ".pgm", ".ppm", ".pnm", ".avif",
})


class SourceError(ValueError):
    """A path, folder or glob that yields no image: the message names it."""


def is_image_name(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in IMAGE_EXTENSIONS


def _is_glob(text: str) -> bool:
    return any(c in text for c in "*?[")


def _folder_images(folder: str) -> list[str]:
    """Image files directly inside `folder`, sorted by name (not recursive)."""
    with os.scandir(folder) as entries:
        return sorted(os.path.join(folder, e.name) for e in entries
                      if is_image_name(e.name) and e.is_file())


def expand_images(path: str) -> list[str]:
    """One --image argument -> image files: a file, a folder's images (sorted) or a glob's."""
    if os.path.isdir(path):
        try:
            found = _folder_images(path)
        except OSError as e:
            raise SourceError(f"{path}: cannot list folder: {e.strerror or e}") from None
        if not found:
            raise SourceError(f"{path}: no images in folder "
                              f"(looked for {', '.join(sorted(IMAGE_EXTENSIONS))})")
        return found
    # An existing file is taken literally, even when its name holds glob characters.
    if os.path.exists(path):
        return [path]
    if not _is_glob(path):
        raise SourceError(f"{path}: no such file or directory")
    matches = sorted(glob.glob(path, recursive=True))
    found = [m for m in matches if is_image_name(m) and os.path.isfile(m)]
    if not found:
        what = "no files" if not matches else f"{len(matches)} paths but no image files"
        raise SourceError(f"{path}: pattern matches {what}")
    return found


def expand_image_args(paths: Iterable[str]) -> tuple[list[str], list[SourceError]]:
    """Expand every argument; the ones that yield nothing come back as errors, in order."""
    files: list[str] = []
    errors: list[SourceError] = []
    for p in paths:
        try:
            files += expand_images(p)
        except SourceError as e:
            errors.append(e)
    return files, errors
