"""`slam ba PROBLEM.txt`: bundle adjustment of a BAL problem in a chosen precision."""

from __future__ import annotations

import argparse

from slam.commands.solver_cli import (add_solver_arguments, options_from_args, print_summary, solve_and_write,
                                     write_json)
from slam.io.bal import read_bal, write_bal
from slam.solvers.ba import BundleAdjustmentProblem, default_options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `slam ba`."""
    parser.add_argument("problem", metavar="PROBLEM.txt", help="Bundle Adjustment in the Large (BAL) problem")
    parser.add_argument("--out", metavar="RESULT.txt", help="write the optimized problem in BAL format (full precision)")
    parser.add_argument("--loss", default="none", choices=("none", "huber", "cauchy"),
                        help="robust loss on the reprojection error (default none)")
    parser.add_argument("--loss-scale", type=float, default=1.0, metavar="PX", help="robust loss scale in pixels")
    add_solver_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Read, optimize, report, write; outputs are written even when interrupted."""
    bal = read_bal(args.problem)
    problem = BundleAdjustmentProblem.from_bal(bal, loss=args.loss, loss_scale=args.loss_scale)
    opt = options_from_args(args, default_options(args.precision))
    summary = solve_and_write(problem, opt, args.out, lambda out: write_bal(out, problem.to_bal()))
    if summary is None:
        return 130
    stats = summary.as_dict()
    stats.update({"problem": str(args.problem), "cameras": int(len(bal.cameras)), "points": int(len(bal.points)),
                  "observations": int(len(bal.observations)), "loss": args.loss,
                  "reprojection_cost": problem.reprojection_cost()})
    print_summary(summary, f"slam ba {args.problem}: {len(bal.cameras)} cameras, {len(bal.points)} points, "
                           f"{len(bal.observations)} observations")
    write_json(args.json, stats)
    return 0
