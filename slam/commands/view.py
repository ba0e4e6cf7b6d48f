"""`slam view RUN_DIR [--screenshot FILE.png]`: a finished run in the 3-D viewer, or rendered to a PNG."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `slam view`."""
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a folder written by `slam run`")
    parser.add_argument("--screenshot", metavar="FILE.png",
                        help="render to a PNG without opening a window (no display needed)")
    parser.add_argument("--width", type=int, default=1280, metavar="W", help="image / window width (default 1280)")
    parser.add_argument("--height", type=int, default=800, metavar="H", help="image / window height (default 800)")


def run(args: argparse.Namespace) -> int:
    """Load the run folder; write the screenshot or open the window."""
    from slam.errors import InputError
    from slam.viewer.run_folder import load_run

    if not (16 <= args.width <= 8192 and 16 <= args.height <= 8192):
        raise InputError(f"--width/--height must be between 16 and 8192 pixels, got {args.width}x{args.height}")
    if args.screenshot is not None and Path(args.screenshot).suffix.lower() != ".png":
        raise InputError(f"--screenshot {args.screenshot}: expected a .png file name")
    scene = load_run(args.run_dir)
    if args.screenshot is not None:
        from slam.viewer.render import save_screenshot

        save_screenshot(scene, args.screenshot, args.width, args.height)
        print(f"slam view: wrote {args.screenshot} ({args.width}x{args.height})")
        return 0
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise InputError("no display to open a window on (DISPLAY is not set); use --screenshot FILE.png, "
                         "or run under a virtual screen: `xvfb-run slam view RUN_DIR`")
    from slam.viewer.open3d_viewer import show_run

    print("slam view: q or Esc closes the window", file=sys.stderr)
    show_run(scene, f"slam view {args.run_dir}", args.width, args.height)
    return 0
