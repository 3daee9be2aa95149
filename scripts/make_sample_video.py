"""Write samples/photos.mp4: a short clip panning over three of darknet's sample photos.

The repository ships no camera footage; this clip gives `detect --video` and the live view
(`--serve`) something real to run on from a fresh clone. It is made from the bundled photos
with OpenCV's own encoder (mp4v), so anyone can rebuild it byte for byte with this script.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ("dog.jpg", "person.jpg", "horses.jpg")


def pan(photo: np.ndarray, size: tuple[int, int], frames: int) -> list[np.ndarray]:
    """`frames` views of `photo` moving from a 90% crop at the top left to the whole photo."""
    h, w = photo.shape[:2]
    out = []
    for k in range(frames):
        t = k / max(frames - 1, 1)
        scale = 0.9 + 0.1 * t
        cw, ch = int(w * scale), int(h * scale)
        x0, y0 = int((w - cw) * (1 - t) * 0.5), int((h - ch) * (1 - t) * 0.5)
        crop = photo[y0:y0 + ch, x0:x0 + cw]
        out.append(cv2.resize(crop, size, interpolation=cv2.INTER_AREA))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-o", "--out", type=Path, default=ROOT / "samples" / "photos.mp4")
    p.add_argument("--size", default="416x312", help="WxH of the clip (default 416x312)")
    p.add_argument("--fps", type=float, default=10.0)
    p.add_argument("--seconds", type=float, default=2.0, help="per photo (default 2)")
    args = p.parse_args()
    size = tuple(int(v) for v in args.size.lower().split("x"))
    writer = cv2.VideoWriter(str(args.out), cv2.VideoWriter_fourcc(*"mp4v"), args.fps, size)
    if not writer.isOpened():
        raise SystemExit(f"error: {args.out}: OpenCV cannot write an mp4v video here")
    n = 0
    for name in PHOTOS:
        for frame in pan(cv2.imread(str(ROOT / "samples" / name)), size,
                         round(args.fps * args.seconds)):
            writer.write(frame)
            n += 1
    writer.release()
    print(f"{args.out}: {n} frames, {size[0]}x{size[1]} at {args.fps:g} fps, "
          f"{args.out.stat().st_size / 1e3:.0f} kB")


if __name__ == "__main__":
    main()
