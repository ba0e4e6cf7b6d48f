"""Helpers shared by the file-based sources: text tables, images, timestamps, problems, remapping."""

from __future__ import annotations

import os
import re
import struct
import warnings
from decimal import Decimal
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from slam.errors import FormatError, InputError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".pgm", ".ppm", ".bmp", ".tif", ".tiff", ".webp")
TIMESTAMP_NAME = re.compile(r"\d+(\.\d+)?")  # a file stem that is a timestamp (seconds or nanoseconds)


def natural_key(name: str) -> list[Any]:
    """Sort key that orders the digit runs of a name by value: frame2.png before frame10.png."""
    # the split alternates text and digit runs; by position, since str.isdigit() is also true of
    # characters int() refuses ('²')
    return [int(p) if i % 2 else p for i, p in enumerate(re.split(r"(\d+)", name))]


def image_files(folder: Path) -> list[Path]:
    """The image files (IMAGE_EXTENSIONS) of a folder in natural name order, the order every
    image-folder command takes them in (a folder's frames are often numbered without leading zeros).

    Names that are all numbers (timestamps: 1.25.png, 1.5.png) are ordered by their value, exactly
    (Decimal): digit runs alone would put the fraction 5 before 25."""
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
    if files and all(TIMESTAMP_NAME.fullmatch(p.stem) for p in files):
        return sorted(files, key=lambda p: (Decimal(p.stem), p.name))
    return sorted(files, key=lambda p: natural_key(p.name))


class SourceWarning(UserWarning):
    """A problem in a dataset that the source worked around (missing file, unsorted lines...)."""


class ProblemLog:
    """Collects dataset problems; in strict mode a problem that changes the data is an error."""

    def __init__(self, strict: bool = True) -> None:
        self.strict = strict
        self.problems: list[str] = []
        self.missing_files: list[str] = []

    def error(self, message: str, path: str | Path, line: int | None = None) -> None:
        """Raise FormatError when strict; otherwise record the problem and warn."""
        exc = FormatError(message, path, line)
        if self.strict:
            raise exc
        self.warn(str(exc))

    def warn(self, message: str) -> None:
        """Record a problem that is always tolerated (the data stays correct) and warn once."""
        self.problems.append(message)
        warnings.warn(message, SourceWarning, stacklevel=3)

    def missing(self, paths: list[str], listed_in: str | Path) -> None:
        """Record files that a list names but that do not exist (their frames are skipped)."""
        if not paths:
            return
        self.missing_files.extend(paths)
        shown = ", ".join(Path(p).name for p in paths[:5]) + (" ..." if len(paths) > 5 else "")
        self.warn(f"{listed_in}: {len(paths)} listed file(s) do not exist and are skipped: {shown}")


def require_dir(path: str | Path, what: str) -> Path:
    """The folder `path`, or InputError naming it and what was expected there."""
    p = Path(path)
    if not p.is_dir():
        raise InputError(f"no such folder (expected {what})", p)
    return p


def require_file(path: str | Path, what: str) -> Path:
    """The file `path`, or InputError naming it and what was expected there."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"no such file (expected {what})", p)
    return p


def ordered(t: np.ndarray, path: Path, lines: np.ndarray, log: ProblemLog) -> np.ndarray:
    """Indices that put timestamps in strictly increasing order; disorder or duplicates are problems.

    Strict mode raises on the first offending line; otherwise rows are sorted and duplicates dropped.
    """
    if t.size < 2:
        return np.arange(t.size)
    d = np.diff(t)
    bad = np.flatnonzero(d <= 0)
    if bad.size == 0:
        return np.arange(t.size)
    k = int(bad[0]) + 1
    kind = "duplicated" if d[k - 1] == 0 else "out of order"
    log.error(f"timestamp {t[k]} is {kind} (previous line {int(lines[k - 1])} has {t[k - 1]}); "
              f"{bad.size} such line(s); timestamps must increase strictly", path, int(lines[k]))
    order = np.argsort(t, kind="stable")
    keep = np.ones(t.size, dtype=bool)
    keep[1:] = np.diff(t[order]) > 0
    return order[keep]


def existing(folder: Path, names: list[str]) -> np.ndarray:
    """Boolean mask of which relative file names exist under folder (one directory listing each)."""
    present = np.zeros(len(names), dtype=bool)
    parents = np.array([os.path.dirname(n) for n in names], dtype=object)
    bases = np.array([os.path.basename(n) for n in names], dtype=str)
    for sub in set(parents.tolist()):
        d = folder / sub
        listing = np.array(os.listdir(d) if d.is_dir() else [], dtype=str)
        sel = parents == sub
        present[sel] = np.isin(bases[sel], listing)
    return present


def read_image(path: str | Path, flags: int = cv2.IMREAD_UNCHANGED,
               size: tuple[int, int] | None = None) -> np.ndarray:
    """Decode an image file; unreadable, truncated or wrongly sized (w, h) files raise FormatError."""
    return EncodedImage(path).decode(flags, size)


class EncodedImage:
    """An image file's bytes, read and checked for truncation now, decoded on demand.

    A stereo run decodes the right image only at keyframes (the only frames that match stereo):
    the reader thread reads and checks the file, so a missing or truncated file is still reported
    where the frame is read, but half of the PNG decoding (~3.5 ms per 752x480 image on these CPUs)
    is never done.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.data = np.fromfile(self.path, dtype=np.uint8)
        except OSError as exc:
            raise FormatError(f"cannot read image ({exc.strerror})", self.path) from None
        ext = self.path.suffix.lower()
        # libjpeg fills a truncated JPEG with gray and only prints a warning; catch it by the end marker.
        if ext == ".png" and b"IEND" not in self.data[-16:].tobytes():
            raise FormatError("truncated PNG (no IEND chunk at the end of the file)", self.path)
        if ext in (".jpg", ".jpeg") and b"\xff\xd9" not in self.data[-32:].tobytes():
            raise FormatError("truncated JPEG (no end-of-image marker)", self.path)

    def decode(self, flags: int = cv2.IMREAD_UNCHANGED, size: tuple[int, int] | None = None) -> np.ndarray:
        """The decoded image; FormatError naming the file when it cannot be decoded or has another size (w, h)."""
        img = cv2.imdecode(self.data, flags) if self.data.size else None
        if img is None:
            raise FormatError("not a readable image", self.path)
        if size is not None and (img.shape[1], img.shape[0]) != tuple(size):
            raise FormatError(f"image is {img.shape[1]}x{img.shape[0]}, expected {size[0]}x{size[1]} "
                              "(the calibrated resolution)", self.path)
        return img


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of an image: from the PNG header when possible, else by decoding it."""
    path = Path(path)
    if path.suffix.lower() == ".png":
        with open(path, "rb") as f:
            head = f.read(24)
        if len(head) == 24 and head[:8] == b"\x89PNG\r\n\x1a\n":
            w, h = struct.unpack(">II", head[16:24])
            return int(w), int(h)
    img = read_image(path)
    return img.shape[1], img.shape[0]


def nearest(t_query: np.ndarray, t_ref: np.ndarray, max_dt: float) -> np.ndarray:
    """Index into sorted t_ref of the nearest timestamp to each query, -1 where none is closer than max_dt."""
    t_query = np.asarray(t_query, dtype=np.float64)
    t_ref = np.asarray(t_ref, dtype=np.float64)
    if t_ref.size == 0:
        return np.full(t_query.shape, -1, dtype=np.int64)
    hi = np.clip(np.searchsorted(t_ref, t_query), 1, t_ref.size - 1) if t_ref.size > 1 else np.zeros(t_query.shape, np.int64)
    lo = np.maximum(hi - 1, 0)
    pick = np.where(np.abs(t_ref[lo] - t_query) <= np.abs(t_ref[hi] - t_query), lo, hi)
    # Strictly below max_dt, as the TUM tools (associate.py) do.
    return np.where(np.abs(t_ref[pick] - t_query) < max_dt, pick, -1).astype(np.int64)


def rate_from(t: np.ndarray, fallback: float = 0.0) -> float:
    """Frame rate (Hz) from the median spacing of timestamps in seconds."""
    if t.size < 2:
        return fallback
    dt = float(np.median(np.diff(t)))
    return 1.0 / dt if dt > 0 else fallback


class Remap:
    """Undistortion/rectification of one camera: maps computed once, applied per image."""

    def __init__(self, maps: tuple[np.ndarray, np.ndarray] | None) -> None:
        self.maps = maps

    def __call__(self, img: np.ndarray, nearest_neighbour: bool = False) -> np.ndarray:
        """The remapped image (nearest neighbour for depth, so no depth is blended across edges)."""
        if self.maps is None:
            return img
        interp = cv2.INTER_NEAREST if nearest_neighbour else cv2.INTER_LINEAR
        return cv2.remap(img, self.maps[0], self.maps[1], interp, borderMode=cv2.BORDER_CONSTANT)


def base_info(kind: str, calibration: Any, frames: int | None, ground_truth: int, log: ProblemLog,
              depth: bool = False, sensors: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    """The `slam info` dictionary with the keys every source reports."""
    cam = calibration.camera
    d = {
        "kind": kind, "frames": frames, "rate_hz": float(calibration.rate_hz),
        "resolution": [int(cam.width), int(cam.height)], "stereo": bool(calibration.stereo),
        "depth": bool(depth), "ground_truth": int(ground_truth), "sensors": sensors or [],
        "missing_files": list(log.missing_files), "problems": list(log.problems),
        "calibration": calibration.as_dict(),
    }
    d.update(extra)
    return d
