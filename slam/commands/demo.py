"""`slam demo`: the whole SLAM pipeline on a built-in synthetic loop, with and without loop closure.

No download: synthetic:room_loop (an 8 x 6 m room, one lap around a table back to the start, with
sensor noise, blur and exposure changes) is rendered on the fly. The frames are rendered once and
fed to two runs of the pipeline (tracking, sliding-window bundle adjustment, loop closure):

- OUT (default runs/demo): with loop closure;
- OUT/no_loop: the same frames with loop closure off (`slam run --no-loop`).

Both runs use blocking odometry (`odometry.blocking`: tracking waits for each keyframe's bundle
adjustment and loop check), so they are deterministic and identical up to the first loop closure:
the difference between their ATEs is what loop closure did. The command prints a table of both,
the mixed-precision pose-graph solves of loops.json, the last pose graph re-solved in every
precision, and renders OUT/viewer.png with `slam view OUT --screenshot` (in a child process: a
missing Open3D or a failed rendering is reported and the demo carries on).

OUT is the demo's own folder: an earlier demo (or run) there is replaced; a non-empty folder that
holds anything else is refused unless --overwrite.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np

SCENE = "room_loop"
NO_LOOP = "no_loop"
SCREENSHOT = "viewer.png"
SUMMARY = "demo.json"
DEMO_ENTRIES = (NO_LOOP, SCREENSHOT, SUMMARY)  # what the demo adds to a run folder
RENDER_CACHE_BYTES = 640 * 2**20  # frames kept for the second run (stereo: all 341, 250 MB); the rest are rendered again

# The run configuration per sensor: configs/synthetic.yaml, tum_rgbd.yaml, euroc_mono.yaml with lighter
# odometry (150 features, keyframes at <= 4 Hz, a 6-keyframe window, no anchor alignment): half the
# time of the full settings on two cores, and odometry that drifts enough for loop closure to show.
# With anchor alignment (frontend/anchored.py) the stereo lap's odometry is already at 4.4 mm ATE
# and the loop's pose graph moves it to 5.0 mm (4.6 mm with global BA): a single loop corrects
# less than the pose graph's edge model spreads (docs/architecture.md).
_COMMON: dict[str, Any] = {
    "frontend": {"anchor_alignment": False},
    "keyframes": {"max_rate_hz": 4.0},
    "odometry": {"window": 6, "max_iterations": 3, "precision": "mixed", "blocking": True},
    "loop": {"min_inliers": 30, "export_graphs": True},
}
SENSOR_CONFIG: dict[str, dict[str, Any]] = {
    "stereo": {"source": {"sensor": "stereo", "seed": 0}, "frontend": {"max_features": 150}},
    "rgbd": {"source": {"sensor": "rgbd", "seed": 0},
             "frontend": {"max_features": 150, "max_depth": 6.0, "rgbd_baseline": 0.08}},
    "mono": {"source": {"sensor": "mono", "seed": 0}, "frontend": {"max_features": 150, "init_min_flow": 8.0},
             "odometry": {"relative_cost_tol": 1.0e-5}},
}


def demo_config(sensor: str) -> dict[str, Any]:
    """The demo's run configuration for a sensor (a nested mapping, as a config file would hold)."""
    cfg: dict[str, Any] = {k: dict(v) for k, v in _COMMON.items()}
    for section, values in SENSOR_CONFIG[sensor].items():
        cfg.setdefault(section, {}).update(values)
    return cfg


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `slam demo`."""
    parser.add_argument("--out", default="runs/demo",
                        help="output folder (default runs/demo): an earlier demo or run there is replaced; "
                             f"the run without loop closure goes to OUT/{NO_LOOP}")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into a non-empty --out that holds no earlier demo or run (only the demo's "
                             "own files are replaced)")
    parser.add_argument("--sensor", choices=tuple(SENSOR_CONFIG), default="stereo",
                        help="synthetic rig (default stereo)")
    parser.add_argument("--frames", type=int, metavar="N",
                        help=f"frames of {SCENE} (default: all, one lap and back to the start; "
                             "fewer frames end before the loop can close)")
    parser.add_argument("--no-screenshot", action="store_true", help=f"skip {SCREENSHOT} (the Open3D rendering)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


class RenderOnce:
    """A synthetic source whose frames are rendered once and replayed to the next run (within a memory budget).

    Everything but iteration is the wrapped SyntheticSource's (calibration, kind, sensor, ...).
    """

    def __init__(self, source: Any, budget_bytes: int = RENDER_CACHE_BYTES) -> None:
        self.source, self.budget = source, budget_bytes
        self.cache: dict[int, Any] = {}
        self.used = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.source, name)

    def __len__(self) -> int:
        return len(self.source)

    def __iter__(self) -> Iterator[Any]:
        for i in range(len(self.source)):
            frame = self.cache.get(i)
            if frame is None:
                frame = self.source.render(i)
                size = sum(a.nbytes for a in (frame.left, frame.right, frame.depth) if a is not None)
                if self.used + size <= self.budget:
                    for a in (frame.left, frame.right, frame.depth):
                        if a is not None:
                            a.flags.writeable = False  # a replayed frame must be the frame first delivered
                    self.cache[i] = frame
                    self.used += size
            yield frame

    def close(self) -> None:
        self.cache.clear()
        self.source.close()


def prepare_out(out: Path, overwrite: bool) -> None:
    """Refuse an --out that is a file, or a non-empty folder holding neither an earlier demo nor a run
    (unless overwrite); remove the demo's own files of an earlier demo (the runs clear theirs)."""
    from slam.errors import InputError
    from slam.run_folder import RUN_DIRS, RUN_FILES

    if out.exists() and not out.is_dir():
        raise InputError("the demo folder exists and is not a folder", out)
    if out.is_dir() and not overwrite:
        names = {p.name for p in out.iterdir()}
        if names and "report.json" not in names and not names <= set(RUN_FILES) | set(RUN_DIRS) | set(DEMO_ENTRIES):
            shown = sorted(names)
            raise InputError(f"the demo folder is not empty and holds no earlier demo ({', '.join(shown[:5])}"
                             f"{' ...' if len(shown) > 5 else ''}); choose another --out or pass --overwrite", out)
    for name in (SCREENSHOT, SUMMARY):
        f = out / name
        if f.is_file() or f.is_symlink():
            f.unlink()


def _terminate_as_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # `docker stop`: end like Ctrl-C, writing the run folder


def run_once(cfg_dict: dict[str, Any], source: Any, spec: str, out: Path, loop: bool, quiet: bool) -> dict[str, Any]:
    """One pipeline run into out (plus its pictures and report.html); returns its report."""
    from slam.config import config_from_dict
    from slam.report import write_run_report
    from slam.system import System

    cfg = config_from_dict(cfg_dict, "<slam demo>")
    result = System(cfg, source, spec, out, progress=not quiet, loop=loop).run()
    try:
        write_run_report(out)
    except Exception as exc:  # the run's own files are written: say what is missing, keep them
        print(f"slam demo: warning: no report.html in {out} ({exc})", file=sys.stderr)
    if result.error is not None:
        raise result.error
    if result.interrupted:
        raise KeyboardInterrupt
    return result.report


def resolve_precisions(graph_path: Path, out: Path) -> list[dict[str, Any]]:
    """The pose graph of a loop closure (at its initial estimate) solved in every precision preset."""
    from slam.eval.metrics import evaluate
    from slam.io.g2o import read_g2o
    from slam.io.trajectory import read_tum
    from slam.solvers.lm import SolverOptions, solve
    from slam.solvers.pgo import from_pose_graph
    from slam.solvers.precision import PRESETS

    graph = read_g2o(graph_path)
    gt = read_tum(out / "groundtruth.tum")
    kf = read_tum(out / "keyframes.tum")  # row k: keyframe k (vertex ids are keyframe ids)
    t = kf.timestamps[np.asarray(graph.ids)]
    ref = gt.poses[np.clip(np.searchsorted(gt.timestamps, t - 1e-6), 0, len(gt.timestamps) - 1)]
    group = from_pose_graph(graph).group  # Sim(3) for a monocular run's graph
    rows = []
    for name in PRESETS:
        problem = from_pose_graph(graph)
        s = solve(problem, SolverOptions(precision=name))
        try:
            ate = evaluate(ref, problem.poses, group).ate.rmse
        except Exception:  # a degenerate graph: no alignment
            ate = None
        rows.append({"precision": name, "initial_cost": s.initial_cost, "final_cost": s.final_cost,
                     "iterations": s.iterations, "cg_iterations": s.total_linear_iterations, "time_s": s.time_s,
                     "keyframe_ate_rmse": ate, "emulated_fp16": bool(s.precision["emulated_fp16"])})
    return rows


def screenshot(out: Path) -> tuple[bool, str]:
    """OUT/viewer.png by `slam view OUT --screenshot` in a child process: (written, message)."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])  # the folder holding this slam, whatever the working directory
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    cmd = [sys.executable, "-m", "slam", "view", str(out), "--screenshot", str(out / SCREENSHOT)]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"the viewer did not finish ({exc})"
    if r.returncode == 0 and (out / SCREENSHOT).is_file():
        return True, f"wrote {out / SCREENSHOT}"
    lines = [ln for ln in (r.stderr or r.stdout).strip().splitlines() if ln.strip()]
    why = lines[-1] if lines else f"exit status {r.returncode}"
    return False, f"no viewer screenshot ({why}); the runs are complete without it"


def _ate(rep: dict[str, Any]) -> tuple[float | None, float | None, float | None]:
    a = rep.get("ate") or {}
    return a.get("rmse"), a.get("rmse_percent_of_path"), a.get("path_length_m")


def _fmt(v: Any, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def print_table(with_loop: dict[str, Any], without: dict[str, Any], loops: list[dict[str, Any]]) -> None:
    """The comparison table of both runs."""
    (a1, p1, length), (a0, p0, _) = _ate(with_loop), _ate(without)
    lc = with_loop["loop_closure"]
    accepted = lc.get("accepted", len(loops)) if isinstance(lc, dict) else len(loops)
    rows = [
        ("ATE RMSE [m]", _fmt(a1, ".4f"), _fmt(a0, ".4f")),
        ("ATE RMSE [% of path]", _fmt(p1, ".3f"), _fmt(p0, ".3f")),
        ("loops accepted", str(accepted), "off"),
        ("keyframes", str(with_loop["keyframes"]), str(without["keyframes"])),
        ("frames tracked", f"{with_loop['frames_tracked']}/{with_loop['frames']}",
         f"{without['frames_tracked']}/{without['frames']}"),
        ("frames/s", f"{with_loop['fps']:.1f}", f"{without['fps']:.1f}"),
        ("wall time [s]", f"{with_loop['wall_time_s']:.1f}", f"{without['wall_time_s']:.1f}"),
    ]
    print(f"\n{'':22s} {'loop closure':>14s} {'no loop closure':>16s}")
    for name, x, y in rows:
        print(f"{name:22s} {x:>14s} {y:>16s}")
    align = "Sim(3)" if with_loop.get("sensor") == "mono" else "SE(3)"
    change = ""
    if a1 is not None and a0 is not None and a0 > 0 and accepted:
        change = f"; loop closure changed it by {100.0 * (a1 - a0) / a0:+.0f}%"
    print(f"(ATE: trajectory {align}-aligned to the ground truth, {_fmt(length, '.1f')} m of path{change})")


def print_loops(loops: list[dict[str, Any]]) -> None:
    """The pose-graph optimizations of loops.json (mixed precision unless configured otherwise)."""
    if not loops:
        print("\nno loop closed (a run needs to come back to where it started: all frames of the scene)")
        return
    print("\nloop closures (loops.json): pose-graph optimization")
    for i, rec in enumerate(loops, 1):
        p = rec["pgo"]
        prec = p.get("precision", {})
        name = prec.get("name", "?") if isinstance(prec, dict) else str(prec)
        print(f"  loop {i}: keyframe {rec['query']['keyframe']} -> {rec['match']['keyframe']} "
              f"({rec['inliers']} inliers): {p['vertices']} poses, {p['edges']} edges, "
              f"cost {p['initial_cost']:.4g} -> {p['final_cost']:.4g}, {p['iterations']} LM iterations "
              f"({p['cg_iterations']} CG), {p['time_s']['total']:.3f} s, precision {name}")


def print_precisions(rows: list[dict[str, Any]], graph: str) -> None:
    """The last loop's pose graph re-solved in each precision preset against fp64."""
    print(f"\nthe last loop's pose graph ({graph}) re-solved in each precision:")
    print(f"  {'preset':7s} {'final cost':>12s} {'gap to fp64':>12s} {'LM':>4s} {'CG':>5s} {'time [s]':>9s} "
          f"{'keyframe ATE [m]':>17s}  fp16")
    ref = next((r["final_cost"] for r in rows if r["precision"] == "fp64"), None)
    for r in rows:
        gap = "-" if ref is None or r["precision"] == "fp64" or ref == 0 else \
            f"{(r['final_cost'] - ref) / ref:+.1e}"
        print(f"  {r['precision']:7s} {r['final_cost']:12.6g} {gap:>12s} {r['iterations']:4d} {r['cg_iterations']:5d} "
              f"{r['time_s']:9.3f} {_fmt(r['keyframe_ate_rmse'], '17.4f')}  "
              f"{'emulated' if r['emulated_fp16'] else '-'}")


def run(args: argparse.Namespace) -> int:
    """Render the scene, run the pipeline with and without loop closure, print, render the viewer."""
    from slam.errors import InputError
    from slam.synthetic.source import SyntheticSource

    t0 = time.perf_counter()
    if args.frames is not None and args.frames < 2:
        raise InputError(f"--frames must be at least 2, got {args.frames}")
    out = Path(args.out)
    prepare_out(out, args.overwrite)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    cfg = demo_config(args.sensor)
    spec = f"synthetic:{SCENE}"
    source = RenderOnce(SyntheticSource(SCENE, sensor=args.sensor, frames=args.frames,
                                        seed=cfg["source"]["seed"]))
    n = len(source)
    print(f"slam demo: {spec}, {args.sensor}, {n} frames at {source.calibration.rate_hz:g} Hz; "
          f"blocking odometry (deterministic, both runs see the same frames)")
    try:
        print(f"slam demo: [1/2] with loop closure -> {out}", flush=True)
        with_loop = run_once(cfg, source, spec, out, loop=True, quiet=args.quiet)
        print(f"slam demo: [2/2] without loop closure -> {out / NO_LOOP}", flush=True)
        without = run_once(cfg, source, spec, out / NO_LOOP, loop=False, quiet=args.quiet)
    finally:
        source.close()
    loops = json.loads((out / "loops.json").read_text())
    print_table(with_loop, without, loops)
    print_loops(loops)
    graphs = sorted((out / "pose_graphs").glob("*.g2o"))
    precisions: list[dict[str, Any]] = []
    if graphs:
        precisions = resolve_precisions(graphs[-1], out)
        print_precisions(precisions, str(graphs[-1].relative_to(out)))
    shot = {"written": False, "message": "skipped (--no-screenshot)"}
    if not args.no_screenshot:
        ok, msg = screenshot(out)
        shot = {"written": ok, "message": msg}
        print(f"\nslam demo: {msg}" if ok else f"\nslam demo: note: {msg}")
    summary = {
        "source": spec, "sensor": args.sensor, "frames": n, "config": cfg,
        "with_loop_closure": _summary(with_loop, out), "without_loop_closure": _summary(without, out / NO_LOOP),
        "loops": [{"query": r["query"], "match": r["match"], "inliers": r["inliers"],
                   "pgo": {k: r["pgo"].get(k) for k in ("vertices", "edges", "initial_cost", "final_cost",
                                                        "iterations", "cg_iterations", "precision")}}
                  for r in loops],
        "pgo_precisions": precisions, "screenshot": shot, "wall_time_s": time.perf_counter() - t0,
    }
    (out / SUMMARY).write_text(json.dumps(summary, indent=2, default=str) + "\n")
    print(f"slam demo: wrote {out} (report.html, trajectories, map.ply, loops.json, plots"
          f"{', ' + SCREENSHOT if shot['written'] else ''}) and {out / NO_LOOP}; "
          f"{summary['wall_time_s']:.0f} s in all")
    return 0


def _summary(rep: dict[str, Any], folder: Path) -> dict[str, Any]:
    a = rep.get("ate") or {}
    lc = rep["loop_closure"]
    return {"folder": str(folder), "ate_rmse_m": a.get("rmse"), "ate_percent_of_path": a.get("rmse_percent_of_path"),
            "path_length_m": a.get("path_length_m"), "keyframes": rep["keyframes"], "frames": rep["frames"],
            "frames_tracked": rep["frames_tracked"], "fps": rep["fps"], "wall_time_s": rep["wall_time_s"],
            "loops_accepted": lc.get("accepted") if isinstance(lc, dict) else None}
