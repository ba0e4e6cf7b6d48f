"""`slam run [CONFIG.yaml] --source SPEC`: visual odometry on a source, written to a run folder."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from pathlib import Path

from slam.config import load_config, source_options
from slam.report.export import check_body_frame
from slam.run_folder import check_run_folder
from slam.solvers.precision import PRESETS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `slam run`."""
    parser.add_argument("config", nargs="?", metavar="CONFIG.yaml",
                        help="run configuration (configs/*.yaml); default: built-in defaults, sensor from the source")
    parser.add_argument("--source", required=True, metavar="SPEC",
                        help="dataset folder (EuRoC/TUM/KITTI), video, image folder, camera:N, URL or synthetic:SCENE")
    parser.add_argument("--out", metavar="DIR",
                        help="run folder (default: runs/<source>-<time>); an earlier run's files there are "
                             "replaced, a folder holding anything else is refused unless --overwrite")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into a non-empty --out that is not a run folder (only the run's own files "
                             "are replaced)")
    parser.add_argument("--viewer", choices=("open3d", "none"), default="none", help="live 3-D viewer (default none)")
    parser.add_argument("--precision", choices=list(PRESETS), default=None,
                        help="bundle-adjustment precision policy (default: the config's, normally mixed)")
    parser.add_argument("--no-loop", action="store_true", help="no loop closure (odometry only)")
    parser.add_argument("--max-frames", type=int, metavar="N", help="stop after N frames")
    parser.add_argument("--frames", metavar="START:END",
                        help="run frames START..END-1 of a recorded source (indices of the source; either may be "
                             "left out); frames outside are not decoded where the source has random access")
    parser.add_argument("--save-map", metavar="DIR",
                        help="write the final map (keyframes, landmarks, covisibility, place database) to DIR "
                             "(docs/maps.md); an earlier map there is replaced")
    parser.add_argument("--load-map", metavar="DIR",
                        help="start in a saved map: the first frames relocalize against it and the trajectory "
                             "is in its frame (the first camera of the run that made it); the map grows")
    parser.add_argument("--localize", action="store_true",
                        help="with --load-map: keep the loaded map fixed (localization only: no keyframes, "
                             "no loop closure)")
    parser.add_argument("--realtime", action="store_true",
                        help="play a recorded source at its sensor rate (default: as fast as tracking runs)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    parser.add_argument("--trajectory-format", choices=("tum", "kitti", "euroc"), default="tum",
                        help="also write trajectory/keyframes/groundtruth as .kitti (+ _times.txt) or .csv "
                             "(EuRoC); trajectory.tum is always written")
    parser.add_argument("--frame", choices=("camera", "body"), default="camera",
                        help="pose frame of those files: camera, or body (sources with a body-to-camera transform, "
                             "e.g. EuRoC's T_BS; not monocular): written as *_body.*")
    parser.add_argument("--calibration", metavar="CAMERA.yaml",
                        help="camera calibration (video, image folder, camera, stream; `slam calibrate` writes it); "
                             "overrides the config's source.calibration")


def _default_out(spec: str) -> Path:
    name = spec.split(":", 1)[1] if spec.startswith("synthetic:") else Path(spec.rstrip("/")).name or "source"
    return Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"


def _terminate_as_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # `kill`, `docker stop`: end like Ctrl-C, writing the run folder


def _pictures_and_exports(out: Path, args: argparse.Namespace, T_body_cam: object) -> None:
    """top_view.png, error.png, report.html and --trajectory-format/--frame files (never fatal to the run)."""
    from slam.report import write_run_report
    from slam.report.export import export_trajectories

    try:
        export_trajectories(out, args.trajectory_format, args.frame, T_body_cam)
    except Exception as exc:  # the run's own files are written already: say what is missing, keep them
        print(f"slam run: warning: no {args.trajectory_format}/{args.frame} trajectory files ({exc})", file=sys.stderr)
    try:
        write_run_report(out)
    except Exception as exc:
        print(f"slam run: warning: no report.html ({exc})", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    """Open the source, run the pipeline, print a summary; 130 when interrupted."""
    from slam.errors import InputError
    from slam.sources.open import open_source
    from slam.system import System

    cfg = load_config(args.config)
    if args.precision is not None:  # the one place the command line overrides the config
        cfg.odometry.precision = args.precision
    if args.calibration is not None:
        cfg.source.calibration = args.calibration
    if args.max_frames is not None and args.max_frames < 1:
        raise InputError(f"--max-frames must be at least 1, got {args.max_frames}")
    opts, stereo = source_options(cfg.source, args.source)
    frames = None
    if getattr(args, "frames", None):
        from slam.sources.slice import parse_frames
        frames = parse_frames(args.frames)
    if getattr(args, "localize", False) and not getattr(args, "load_map", None):
        raise InputError("--localize needs a map to localize in (--load-map DIR)")
    if getattr(args, "save_map", None):
        from slam.map.store import check_save_folder
        check_save_folder(args.save_map)
    source = open_source(args.source, opts, stereo=stereo)
    if frames is not None:
        from slam.sources.slice import SliceSource
        try:
            source = SliceSource(source, *frames)
        except InputError:
            source.close()
            raise
    out = Path(args.out) if args.out else _default_out(args.source)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    viewer = None
    try:
        check_run_folder(out, args.overwrite)
        system = System(cfg, source, args.source, out, max_frames=args.max_frames,
                        progress=not args.quiet, loop=not args.no_loop, realtime=args.realtime,
                        load_map=getattr(args, "load_map", None), save_map=getattr(args, "save_map", None),
                        localize=getattr(args, "localize", False))
        T_body_cam = source.calibration.T_body_cam
        if args.frame == "body":
            check_body_frame(T_body_cam, system.mode, getattr(source, "kind", "this"))
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
    if "live" in rep:
        lv = rep["live"]
        cam = "?" if lv["input_fps"] is None else f"{lv['input_fps']:.1f}"
        line += f"; live: camera {cam} frames/s, {lv['frames_dropped']} of {lv['frames_received']} frames dropped"
    mp = rep.get("map") or {}
    if mp.get("loaded"):
        first = mp.get("first_relocalized_frame")
        line += (f"; map {mp['loaded']['folder']}: never relocalized" if first is None else
                 f"; map {mp['loaded']['folder']}: relocalized at frame {first} "
                 f"(after {mp['frames_before_relocalization']} frames)")
    print(line)
    if mp.get("saved"):
        print(f"slam run: map saved to {mp['saved']}")
    if rep["keyframes"] == 0 and not result.interrupted and result.error is None:
        print(f"slam run: warning: {never_initialized(rep)}", file=sys.stderr)
    _pictures_and_exports(out, args, T_body_cam)
    print(f"slam run: wrote {out}")
    if result.error is not None:
        raise result.error
    return 130 if result.interrupted else 0


def never_initialized(report: dict) -> str:
    """Why a run made no map, from its report: the initializer's refusals, most frequent first."""
    init = report.get("initialization")
    if init is None:  # stereo / RGB-D: a map starts at the first frame with enough features with depth
        return ("no map was started: no frame had enough features with a depth (stereo match or depth "
                "image); check the calibration and the sensor mode")
    counts = sorted(init["rejections"].items(), key=lambda kv: -kv[1])
    if not counts:
        return "no map was started: no frame could be tried for initialization"
    last = init["last_rejection"]
    why = ", ".join(f"{reason} ({n} frames)" for reason, n in counts)
    return (f"the monocular map never initialized: {why}; last: {last['detail']}. A monocular start needs "
            "the camera to move sideways, not only turn, over a textured scene (report.json: initialization)")
