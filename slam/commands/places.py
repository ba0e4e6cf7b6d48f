"""`slam places FOLDER`: which images of a folder (in name order) revisit an earlier place; no calibration."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from slam.errors import InputError
from slam.sources.common import IMAGE_EXTENSIONS
from slam.sources.common import image_files as _image_files


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `slam places`."""
    from slam.loop.places import PlaceParams

    d = PlaceParams()
    parser.add_argument("folder", metavar="FOLDER",
                        help="folder of images, taken in name order (numbers by value: frame2 before frame10)")
    parser.add_argument("--json", action="store_true", help="print one JSON list instead of one object a line")
    parser.add_argument("--features", type=int, default=d.n_features, metavar="N",
                        help=f"ORB features per image (default {d.n_features})")
    parser.add_argument("--min-inliers", type=int, default=d.min_inliers, metavar="N",
                        help=f"fundamental-matrix inliers needed to accept a revisit (default {d.min_inliers})")
    parser.add_argument("--consistency", type=int, default=d.min_consistency, metavar="N",
                        help="consecutive images that must agree on a place before it is verified "
                             f"(default {d.min_consistency}; 1 for sparse photo sets)")


def image_files(folder: str | Path) -> list[Path]:
    """Image files of a folder in natural name order (as `slam run` takes an image folder: frame2
    before frame10); InputError when there is none."""
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"{root}: not a folder")
    files = _image_files(root)
    if not files:
        raise InputError(f"{root}: no images (expected files ending in {', '.join(IMAGE_EXTENSIONS)})")
    return files


def read_gray(path: Path) -> np.ndarray:
    """An image file as 8-bit grayscale; InputError naming the file when it cannot be decoded."""
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if img is None or img.size == 0:
        raise InputError(f"{path}: not a readable image")
    return img


def _images(files: list[Path]) -> Iterator[tuple[str, np.ndarray]]:
    for f in files:
        yield f.name, read_gray(f)


def run(args: argparse.Namespace) -> int:
    """Print each revisit as a JSON object (or the list with --json); a summary goes to stderr."""
    from slam.loop.places import PlaceParams, PlaceRecognizer

    for name in ("features", "min_inliers", "consistency"):
        if getattr(args, name) < 1:
            raise InputError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    files = image_files(args.folder)
    rec = PlaceRecognizer(PlaceParams(n_features=args.features, min_inliers=args.min_inliers,
                                      min_consistency=args.consistency))
    found = []
    t0 = time.perf_counter()
    try:
        for name, gray in _images(files):
            r = rec.add(name, gray)
            if r is not None:
                found.append(r)
                if not args.json:
                    print(json.dumps(r), flush=True)
    finally:
        # An unreadable image or Ctrl-C ends the scan; the revisits found up to there are still
        # printed (one object a line already is), then the error is reported.
        if args.json:
            print(json.dumps(found, indent=1), flush=True)
        rej = dict(rec.detector.rejections, **rec.rejections)
        done = len(rec.names)  # images the recognizer took
        stopped = "" if done == len(files) else f" (stopped after {done} of them)"
        print(f"slam places: {len(files)} images{stopped}, {len(found)} revisits in {time.perf_counter() - t0:.1f} s "
              f"(candidates rejected: {', '.join(f'{k} {v}' for k, v in rej.items() if v)})", file=sys.stderr)
    return 0
