"""`slam eval GT EST`: ATE and RPE of an estimated trajectory against ground truth, as evo computes them."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np

from slam.errors import InputError
from slam.eval.align import ALIGN_METHODS, associate
from slam.eval.metrics import Evaluation, evaluate
from slam.io.trajectory import Trajectory, TrajectoryWarning, read_trajectory

_STATS = ("rmse", "mean", "median", "std", "min", "max")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `slam eval`."""
    parser.add_argument("gt", metavar="GT", help="ground truth: TUM, EuRoC CSV or KITTI poses (detected)")
    parser.add_argument("est", metavar="EST", help="estimated trajectory: TUM, EuRoC CSV or KITTI poses")
    parser.add_argument("--align", choices=ALIGN_METHODS, default="se3",
                        help="Umeyama alignment of the estimate onto the ground truth (default se3)")
    parser.add_argument("--max-diff", type=float, default=0.02, metavar="S",
                        help="largest time difference of an associated pair in seconds (default 0.02)")
    parser.add_argument("--times", metavar="TIMES",
                        help="timestamps (one a line, seconds) for KITTI pose files; by default a "
                             "<name>_times.txt or times.txt beside the pose file is used")
    parser.add_argument("--delta", type=float, default=1.0, metavar="D",
                        help="RPE step between the poses of a pair (default 1)")
    parser.add_argument("--delta-unit", choices=("f", "m"), default="f",
                        help="unit of --delta: f frames (default) or m metres of travelled path")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--plot", metavar="PNG", help="write a figure of trajectories and errors")


def _load(path: str, times: str | None) -> tuple[Trajectory, str]:
    """Read a trajectory, turning file warnings into lines on stderr."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", TrajectoryWarning)
        traj, fmt = read_trajectory(path, times=times if times else None)
    for w in caught:
        if issubclass(w.category, TrajectoryWarning):
            print(f"slam eval: warning: {w.message}", file=sys.stderr)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return traj, fmt


def _span(t: np.ndarray | None) -> str:
    return "no timestamps" if t is None else f"{t[0]:.6f} .. {t[-1]:.6f} s"


def _pair(gt: Trajectory, est: Trajectory, gt_fmt: str, est_fmt: str,
          args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, str]:
    """Matched indices into gt and est and how they were paired ('time' or 'index')."""
    if gt.timestamps is not None and est.timestamps is not None:
        i_gt, i_est = associate(gt.timestamps, est.timestamps, args.max_diff)
        if i_gt.size == 0:
            overlap = min(gt.timestamps[-1], est.timestamps[-1]) >= max(gt.timestamps[0], est.timestamps[0])
            hint = "" if overlap else " (the time ranges do not overlap: different clocks or units?)"
            raise InputError(f"no pose of {args.est} is within {args.max_diff} s of a pose of {args.gt}: "
                             f"ground truth spans {_span(gt.timestamps)} ({len(gt)} poses), estimate "
                             f"spans {_span(est.timestamps)} ({len(est)} poses){hint}")
        return i_gt, i_est, "time"
    if gt_fmt == "kitti" and est_fmt == "kitti":
        if len(gt) != len(est):
            raise InputError(f"cannot pair KITTI poses by index: {args.gt} has {len(gt)} poses, {args.est} "
                             f"has {len(est)}; give timestamps with --times or a times.txt beside the files")
        return np.arange(len(gt)), np.arange(len(est)), "index"
    kitti_name, other_fmt = (args.gt, est_fmt) if gt.timestamps is None else (args.est, gt_fmt)
    raise InputError(f"KITTI poses without timestamps cannot be paired with a {other_fmt} file (pairing by "
                     "index needs two KITTI files): put <name>_times.txt or times.txt beside the poses "
                     "or pass --times", kitti_name)


def _row(label: str, stats: dict[str, float]) -> str:
    return f"{label:<10}" + "".join(f"{stats[k]:>12.6g}" for k in _STATS)


def _report(args: argparse.Namespace, gt: Trajectory, est: Trajectory, fmts: tuple[str, str],
            pairing: str, ev: Evaluation) -> dict:
    rpe = ev.rpe_trans.as_dict()
    rpe["rot"] = ev.rpe_rot_deg.as_dict()
    return {
        "ate": ev.ate.as_dict(),
        "rpe": rpe,
        "matched": int(ev.ate_errors.size),
        "align": ev.method,
        "scale": float(ev.alignment.scale),
        "pairing": pairing,
        "max_diff": args.max_diff if pairing == "time" else None,
        "rpe_pairs": int(ev.rpe_pairs.shape[0]),
        "delta": args.delta,
        "delta_unit": args.delta_unit,
        "gt": {"path": args.gt, "format": fmts[0], "poses": len(gt)},
        "est": {"path": args.est, "format": fmts[1], "poses": len(est)},
    }


def _print_table(rep: dict, gt: Trajectory, est: Trajectory) -> None:
    print(f"ground truth {rep['gt']['path']} ({rep['gt']['format']}, {len(gt)} poses, {_span(gt.timestamps)})")
    print(f"estimate     {rep['est']['path']} ({rep['est']['format']}, {len(est)} poses, {_span(est.timestamps)})")
    how = (f"by time (max diff {rep['max_diff']} s)" if rep["pairing"] == "time"
           else "by index (KITTI poses without timestamps)")
    print(f"matched {rep['matched']} pairs {how}; alignment {rep['align']}, scale {rep['scale']:.6f}")
    unit = "frame(s)" if rep["delta_unit"] == "f" else "m"
    print(f"RPE over {rep['rpe_pairs']} pairs, delta {rep['delta']:g} {unit}")
    print(" " * 10 + "".join(f"{k:>12}" for k in _STATS))
    print(_row("ATE [m]", rep["ate"]))
    print(_row("RPE [m]", rep["rpe"]))
    print(_row("RPE [deg]", rep["rpe"]["rot"]))


def run(args: argparse.Namespace) -> int:
    """Evaluate EST against GT; print a table or one JSON object; optionally write a plot."""
    if not args.max_diff >= 0:
        raise InputError(f"--max-diff must be >= 0 seconds, got {args.max_diff}")
    if not args.delta > 0 or (args.delta_unit == "f" and args.delta != int(args.delta)):
        raise InputError(f"--delta must be a positive {'integer' if args.delta_unit == 'f' else 'number'} "
                         f"for --delta-unit {args.delta_unit}, got {args.delta:g}")
    if args.times and not Path(args.times).is_file():
        raise InputError("times file does not exist", args.times)
    gt, gt_fmt = _load(args.gt, args.times)
    est, est_fmt = _load(args.est, args.times)
    if args.times and "kitti" not in (gt_fmt, est_fmt):
        raise InputError(f"--times is for KITTI pose files, but {args.gt} is {gt_fmt} and {args.est} is {est_fmt}")
    i_gt, i_est, pairing = _pair(gt, est, gt_fmt, est_fmt, args)
    ref_m, est_m = gt.subset(i_gt), est.subset(i_est)
    ev = evaluate(ref_m.poses, est_m.poses, args.align, args.delta, args.delta_unit)
    rep = _report(args, gt, est, (gt_fmt, est_fmt), pairing, ev)
    if args.plot:
        from slam.eval.plots import plot_evaluation

        title = f"{Path(args.est).name} vs {Path(args.gt).name} ({args.align}, ATE rmse {ev.ate.rmse:.4g} m)"
        times = ref_m.timestamps if pairing == "time" else None
        plot_evaluation(args.plot, ref_m.positions, ev.est_aligned[:, :3, 3], times, ev.ate_errors,
                        ev.rpe_pairs[:, 1], ev.rpe_trans_errors, title)
    if args.json:
        print(json.dumps(rep))
    else:
        _print_table(rep, gt, est)
        if args.plot:
            print(f"plot written to {args.plot}")
    return 0
