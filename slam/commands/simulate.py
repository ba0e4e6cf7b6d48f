"""`slam simulate`: list the synthetic scenes or render one into a dataset folder (EuRoC/TUM/KITTI)."""

from __future__ import annotations

import argparse
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
    t0 = time.perf_counter()
    path = write_sequence(args.scene, args.format, out, frames=args.frames, seed=args.seed, clean=args.clean)
    dt = time.perf_counter() - t0
    from slam.synthetic import FORMATS, SyntheticSource
    n = len(SyntheticSource(args.scene, FORMATS[args.format], frames=args.frames, seed=args.seed))
    print(f"wrote {n} frames of '{args.scene}' ({args.format}{', clean' if args.clean else ''}, seed {args.seed}) "
          f"to {path} in {dt:.1f} s")
    return 0
