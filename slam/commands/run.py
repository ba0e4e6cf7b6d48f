"""`slam run [CONFIG.yaml] --source SPEC`: visual odometry on a source, written to a run folder."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from pathlib import Path

from slam.config import load_config, source_options
from slam.solvers.precision import PRESETS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `slam run`."""
    parser.add_argument("config", nargs="?", metavar="CONFIG.yaml",
                        help="run configuration (configs/*.yaml); default: built-in defaults, sensor from the source")
    parser.add_argument("--source", required=True, metavar="SPEC",
                        help="dataset folder (EuRoC/TUM/KITTI), video, image folder, camera:N, URL or synthetic:SCENE")
    parser.add_argument("--out", metavar="DIR", help="run folder (default: runs/<source>-<time>)")
    parser.add_argument("--viewer", choices=("open3d", "none"), default="none", help="live 3-D viewer (default none)")
    parser.add_argument("--precision", choices=list(PRESETS), default=None,
                        help="bundle-adjustment precision policy (default: the config's, normally mixed)")
    parser.add_argument("--no-loop", action="store_true", help="no loop closure (odometry only)")
    parser.add_argument("--max-frames", type=int, metavar="N", help="stop after N frames")
    parser.add_argument("--realtime", action="store_true",
                        help="play a recorded source at its sensor rate (default: as fast as tracking runs)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def _default_out(spec: str) -> Path:
    name = spec.split(":", 1)[1] if spec.startswith("synthetic:") else Path(spec.rstrip("/")).name or "source"
    return Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"


def _terminate_as_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # `kill`, `docker stop`: end like Ctrl-C, writing the run folder


def run(args: argparse.Namespace) -> int:
    """Open the source, run the pipeline, print a summary; 130 when interrupted."""
    from slam.errors import InputError
    from slam.sources.open import open_source
    from slam.system import System

    cfg = load_config(args.config)
    if args.max_frames is not None and args.max_frames < 1:
        raise InputError(f"--max-frames must be at least 1, got {args.max_frames}")
    opts, stereo = source_options(cfg.source, args.source)
    source = open_source(args.source, opts, stereo=stereo)
    out = Path(args.out) if args.out else _default_out(args.source)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    viewer = None
    try:
        system = System(cfg, source, args.source, out, precision=args.precision, max_frames=args.max_frames,
                        progress=not args.quiet, loop=not args.no_loop, realtime=args.realtime)
        if args.viewer == "open3d":
            from slam.viewer.live import LiveViewer

            viewer = system.viewer = LiveViewer(system.rig.K, (system.rig.width, system.rig.height),
                                                with_scale=system.mode == "mono", title=f"slam run {args.source}")
            print("slam run: viewer open (q or Esc in its window ends the run like Ctrl-C)", file=sys.stderr)
        result = system.run()
    finally:
        if viewer is not None:
            viewer.close()
            print(f"slam run: {viewer.summary()}", file=sys.stderr)
        source.close()
    rep = result.report
    line = (f"slam run: {rep['frames']} frames ({rep['frames_lost']} lost), {rep['keyframes']} keyframes, "
            f"{rep['landmarks']} landmarks, {rep['fps']:.1f} frames/s")
    if "ate" in rep and "rmse" in rep["ate"]:
        a = rep["ate"]
        line += f"; ATE RMSE {a['rmse']:.4f} m ({a['align']}, {a['rmse_percent_of_path']:.2f}% of {a['path_length_m']:.1f} m)"
    print(line)
    print(f"slam run: wrote {out}")
    if result.error is not None:
        raise result.error
    return 130 if result.interrupted else 0
