"""`slam calibrate --source SPEC --board COLSxROWS --square METRES --out CAMERA.yaml`: chessboard calibration.

Reads a video, an image folder, camera:N or a stream URL; finds the board's inner corners in every
step-th frame; chooses up to --max-views views spread over the image, the distance and the tilt;
solves pinhole + radtan (OpenCV calibrateCamera) and writes the YAML `slam run --calibration` reads,
with the views used and the RMS reprojection error in its `calibration_info` section.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

from slam.errors import InputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `slam calibrate`."""
    parser.add_argument("--source", required=True, metavar="SPEC",
                        help="video file, image folder, camera:N or stream URL showing a chessboard")
    parser.add_argument("--board", required=True, metavar="COLSxROWS",
                        help="inner corners per row x per column (a board of 10x7 squares is 9x6)")
    parser.add_argument("--square", required=True, type=float, metavar="METRES", help="side of one square in metres")
    parser.add_argument("--out", required=True, metavar="CAMERA.yaml", help="calibration file to write")
    parser.add_argument("--max-views", type=int, default=30, metavar="N",
                        help="views used by the solve, chosen to be well spread (default 30)")
    parser.add_argument("--min-views", type=int, default=8, metavar="N",
                        help="fewer views with the whole board found is an error (default 8)")
    parser.add_argument("--step", type=int, default=None, metavar="K",
                        help="try every K-th frame (default: 1; videos: about 400 frames tried)")
    parser.add_argument("--duration", type=float, default=60.0, metavar="S",
                        help="camera/stream: seconds of collection (default 60; Ctrl-C ends it early)")
    parser.add_argument("--k3", action="store_true", help="also estimate k3 (default: k1 k2 p1 p2, as Kalibr's radtan)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def run(args: argparse.Namespace) -> int:
    """Collect board views, calibrate, write the YAML and print the result."""
    from slam.sources.calibration_file import write_calibration
    from slam.sources.chessboard import BoardView, calibrate, detect_board, parse_board, select_views
    from slam.sources.raw import open_raw

    pattern = parse_board(args.board)
    if not (args.square > 0 and math.isfinite(args.square)):
        raise InputError(f"--square must be a positive length in metres, got {args.square}")
    if args.max_views < 3 or args.min_views < 3:
        raise InputError("--max-views and --min-views must be at least 3")
    out = Path(args.out)
    if not out.parent.is_dir():
        raise InputError("the folder of --out does not exist", out.parent)
    raw = open_raw(args.source)
    step = args.step or (max(1, math.ceil(raw.count / 400)) if raw.kind == "video" and raw.count else 1)
    if step < 1:
        raise InputError(f"--step must be at least 1, got {step}")
    if raw.live and not args.quiet:
        print(f"slam calibrate: collecting for {args.duration:.0f} s: show the whole board near and far, in every "
              "part of the image, tilted left/right/up/down (Ctrl-C ends early)", file=sys.stderr)
    views: list[BoardView] = []
    tried, last = 0, time.monotonic()
    try:
        for i, img in raw.frames(step, args.duration if raw.live else None):
            if (img.shape[1], img.shape[0]) != raw.size:
                raise InputError(f"frame {i} is {img.shape[1]}x{img.shape[0]}, expected {raw.size[0]}x{raw.size[1]}",
                                 args.source)
            tried += 1
            corners = detect_board(img, pattern)
            if corners is not None:
                views.append(BoardView(i, corners))
            if not args.quiet and time.monotonic() - last > 2.0:
                last = time.monotonic()
                tot = f"/{raw.count}" if raw.count else ""
                print(f"slam calibrate: frame {i + 1}{tot}, board found in {len(views)} of {tried} tried",
                      file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        if not raw.live:
            raise
    chosen = select_views(views, pattern, raw.size, args.max_views)
    res = calibrate([views[k] for k in chosen], pattern, args.square, raw.size, k3=args.k3, min_views=args.min_views)
    cam = res.camera
    info = {
        "tool": "slam calibrate", "source": args.source, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "board": {"inner_corners": list(pattern), "square_m": args.square},
        "rms_reprojection_error_px": round(res.rms_px, 6),
        "frames_tried": tried, "views_found": len(views), "views_used": len(res.views),
        "frames_used": [v.frame for v in res.views],
        "per_view_rms_px": [round(float(e), 6) for e in res.per_view_rms_px],
        "rejected_frames": res.rejected_frames,
        "std_dev": {k: float(f"{v:.4g}") for k, v in res.std.items()},
    }
    write_calibration(out, cam, raw.rate_hz, info,
                      comment=f"Camera calibration by `slam calibrate` ({len(res.views)} views, "
                              f"RMS {res.rms_px:.3f} px). Read by: slam run --calibration {out.name}")
    print(f"slam calibrate: {len(views)} views of the board in {tried} frames tried; used {len(res.views)}"
          + (f" (dropped {len(res.rejected_frames)} outlier views)" if res.rejected_frames else ""))
    s = res.std
    print(f"slam calibrate: RMS reprojection error {res.rms_px:.3f} px; fx {cam.fx:.2f} ± {s['fx']:.2f}  "
          f"fy {cam.fy:.2f} ± {s['fy']:.2f}  cx {cam.cx:.2f} ± {s['cx']:.2f}  cy {cam.cy:.2f} ± {s['cy']:.2f}  "
          f"distortion radtan [{', '.join(f'{d:.5f}' for d in cam.distortion)}]")
    if res.rms_px > 1.0:
        print("slam calibrate: warning: RMS above 1 px: check --board and --square, hold the board still, "
              "light it evenly", file=sys.stderr)
    print(f"slam calibrate: wrote {out}")
    return 0
