"""`slam simulate`: list the synthetic scenes or render one into a dataset folder (EuRoC/TUM/KITTI)."""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from slam.errors import InputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `slam simulate`."""
    parser.add_argument("scene", nargs="?", metavar="SCENE", help="scene name (see --list)")
    parser.add_argument("--list", action="store_true", help="print the scene names, one a line, and exit")
    parser.add_argument("--format", choices=("euroc", "tum", "kitti"), default="euroc",
                        help="dataset format: euroc (stereo 752x480 20 Hz), tum (RGB-D 640x480 30 Hz), "
                             "kitti (stereo 1226x370 10 Hz); default euroc")
    parser.add_argument("--out", metavar="DIR", help="output folder (default: ./SCENE_FORMAT)")
    parser.add_argument("--frames", type=int, metavar="N", help="number of frames (default: the whole trajectory)")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="texture and noise seed (default 0)")
    parser.add_argument("--clean", action="store_true", help="no noise, blur or exposure change")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into a non-empty --out: the dataset files and folders found there "
                             "(mav0/, rgb/, depth/, image_0/, image_1/, *.txt and calibration.yaml of the three "
                             "formats) are deleted first, so that two sequences never mix")


# What the writers put into a dataset folder, in any of the three formats.
DATASET_ENTRIES = ("mav0", "rgb", "depth", "rgb.txt", "depth.txt", "groundtruth.txt", "calibration.yaml",
                   "image_0", "image_1", "calib.txt", "times.txt", "poses.txt")


def prepare_dataset_folder(out: Path, overwrite: bool) -> None:
    """Refuse a non-empty output folder (its sequence would mix with the new one, and a loader would
    read either) unless overwrite; then remove the dataset entries found there."""
    if out.exists() and not out.is_dir():
        raise InputError("the output exists and is not a folder", out)
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not overwrite:
        shown = sorted(p.name for p in out.iterdir())
        raise InputError(f"the output folder is not empty ({', '.join(shown[:5])}{' ...' if len(shown) > 5 else ''});"
                         " choose another --out, or pass --overwrite to replace the dataset in it", out)
    for name in DATASET_ENTRIES:
        p = out / name
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()


def run(args: argparse.Namespace) -> int:
    """List scenes or write one sequence; prints where it went and how fast it rendered."""
    from slam.synthetic import list_scenes, write_sequence

    if args.list:
        for name in list_scenes():
            print(name)
        return 0
    if not args.scene:
        raise InputError("give a SCENE (one of: " + ", ".join(list_scenes()) + ") or --list")
    if args.frames is not None and args.frames < 1:
        raise InputError(f"--frames must be at least 1, got {args.frames}")
    out = Path(args.out) if args.out else Path(f"{args.scene}_{args.format}")
    from slam.synthetic import FORMATS, SyntheticSource
    if args.format not in FORMATS:
        raise InputError(f"unknown format '{args.format}'; expected one of {', '.join(FORMATS)}")
    # scene and frame count are checked before anything in the output folder is touched
    n = len(SyntheticSource(args.scene, FORMATS[args.format], frames=args.frames, seed=args.seed))
    prepare_dataset_folder(out, args.overwrite)
    t0 = time.perf_counter()
    path = write_sequence(args.scene, args.format, out, frames=args.frames, seed=args.seed, clean=args.clean)
    dt = time.perf_counter() - t0
    print(f"wrote {n} frames of '{args.scene}' ({args.format}{', clean' if args.clean else ''}, seed {args.seed}) "
          f"to {path} in {dt:.1f} s")
    return 0
