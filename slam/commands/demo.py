"""`slam demo`: the built-in demo. For now: the mixed-precision solver on a pose graph it generates.

No download needed: a robot snakes through a 3-D grid with odometry and loop-closure edges; the
graph is solved in every precision preset and compared with fp64 and with the ground truth.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from slam.eval.metrics import ErrorStats, ate_errors
from slam.eval.synthetic_problems import grid_pose_graph
from slam.io.g2o import write_g2o
from slam.io.text import atomic_output
from slam.solvers.lm import SolverOptions, solve
from slam.solvers.pgo import from_pose_graph
from slam.solvers.precision import PRESETS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `slam demo`."""
    parser.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    parser.add_argument("--size", type=int, default=8, help="grid side length (default 8)")
    parser.add_argument("--layers", type=int, default=4, help="grid layers (default 4)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG")


def run(args: argparse.Namespace) -> int:
    """Generate, solve in each preset, print a table, write graphs and a plot."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    graph, gt = grid_pose_graph(args.size, args.layers, seed=args.seed)
    write_g2o(out / "demo_graph.g2o", graph)
    print(f"pose graph: {len(graph.poses)} poses, {len(graph.edges)} edges (written to {out / 'demo_graph.g2o'})")
    print(f"{'preset':7s} {'final cost':>14s} {'gap to fp64':>12s} {'pos. RMSE [m]':>14s} {'LM':>4s} {'CG':>5s} "
          f"{'time [s]':>9s}  fp16")
    results = {}
    ref = None
    for name in PRESETS:
        problem = from_pose_graph(graph)
        s = solve(problem, SolverOptions(precision=name))
        rmse = ErrorStats.of(ate_errors(gt[:, :3, 3], problem.poses[:, :3, 3])).rmse
        ref = s.final_cost if name == "fp64" else ref
        gap = "-" if ref is None or name == "fp64" else f"{(s.final_cost - ref) / ref:+.1e}"
        fp16 = "emulated" if s.precision["emulated_fp16"] else "-"
        print(f"{name:7s} {s.final_cost:14.6f} {gap:>12s} {rmse:14.4f} {s.iterations:4d} "
              f"{s.total_linear_iterations:5d} {s.time_s:9.3f}  {fp16}")
        results[name] = problem.poses
        write_g2o(out / f"result_{name}.g2o", graph, poses=problem.poses)
    init_rmse = ErrorStats.of(ate_errors(gt[:, :3, 3], graph.poses[:, :3, 3])).rmse
    print(f"initial guess (dead reckoning) position RMSE: {init_rmse:.4f} m")
    if not args.no_plot:
        _plot(out / "demo.png", gt, graph.poses, results["mixed"])
        print(f"plot: {out / 'demo.png'}")
    return 0


def _plot(path: Path, gt: np.ndarray, init: np.ndarray, est: np.ndarray) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 6))
    ax = fig.add_subplot(projection="3d")
    for poses, style, label in ((gt, "k-", "ground truth"), (init, "r:", "initial (odometry)"),
                                (est, "b-", "optimized (mixed)")):
        ax.plot(*poses[:, :3, 3].T, style, lw=1, label=label)
    ax.set_xlabel("x [m]")
    ax.set_ylabel("y [m]")
    ax.set_zlabel("z [m]")
    ax.legend(loc="upper left")
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
