"""`slam pgo PROBLEM.g2o`: pose-graph optimization in a chosen precision."""

from __future__ import annotations

import argparse
import sys

from slam.commands.solver_cli import (add_solver_arguments, options_from_args, print_summary, solve_and_write,
                                     write_json)
from slam.errors import InputError
from slam.io.g2o import read_g2o, write_g2o
from slam.io.g2o_planar import lift_information, planar_information
from slam.solvers.information import DEFAULT_FLOOR, repair_information
from slam.solvers.pgo import from_pose_graph


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `slam pgo`."""
    parser.add_argument("problem", metavar="PROBLEM.g2o",
                        help="pose graph: 3-D (VERTEX_SE3:QUAT, EDGE_SE3:QUAT, FIX), 2-D (VERTEX_SE2, EDGE_SE2, "
                             "or TORO VERTEX2, EDGE2; solved in SE(2), written back in 2-D) or Sim(3) "
                             "(g2o's VERTEX_SIM3:EXPMAP, EDGE_SIM3:EXPMAP: a monocular run's pose_graph.g2o)")
    parser.add_argument("--out", metavar="RESULT.g2o", help="write the optimized graph (full precision)")
    parser.add_argument("--repair-information", action="store_true",
                        help="project information matrices that are not positive definite onto the nearest "
                             "positive definite one (eigenvalues clamped to --information-floor times the largest) "
                             "instead of refusing the file")
    parser.add_argument("--information-floor", type=float, default=DEFAULT_FLOOR, metavar="REL",
                        help=f"eigenvalue floor of the repair, relative to each matrix's largest (default {DEFAULT_FLOOR:g})")
    parser.add_argument("--init", default="auto", choices=("auto", "chordal", "none"),
                        help="start: the chordal rotation estimate and the translations it implies (chordal), the "
                             "file's poses (none), or chordal only when the file's start is far from any optimum "
                             "(auto, the default: mean whitened squared residual above 10)")
    add_solver_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Read, optimize, report, write; outputs are written even when interrupted."""
    graph = read_g2o(args.problem, check_information=not args.repair_information)
    repaired = []
    if args.repair_information:
        try:
            if graph.planar:  # the file's 3x3 matrices, not the lifted 6x6 (its out-of-plane entries are ours)
                info3, repaired = repair_information(planar_information(graph.information), args.information_floor)
                graph.information = lift_information(info3)
            else:
                graph.information, repaired = repair_information(graph.information, args.information_floor)
        except ValueError as exc:
            raise InputError(f"--repair-information: {exc}", args.problem) from None
        if len(repaired):
            print(f"repaired {len(repaired)} of {len(graph.edges)} information matrices (not positive definite; "
                  f"eigenvalues clamped to >= {args.information_floor:g} x the largest), first at line "
                  f"{int(graph.edge_lines[repaired[0]]) if graph.edge_lines is not None else '?'}")
    problem = from_pose_graph(graph)
    if args.init == "chordal" and problem.group == "sim3":
        print("slam pgo: note: --init chordal has no Sim(3) form (rotations only); starting from the file's poses",
              file=sys.stderr)
    opt = options_from_args(args)
    opt.initialization = args.init
    summary = solve_and_write(problem, opt, args.out, lambda out: write_g2o(out, graph, poses=problem.poses))
    if summary is None:
        return 130
    stats = summary.as_dict()
    stats.update({"problem": str(args.problem), "vertices": int(len(graph.poses)), "edges": int(len(graph.edges)),
                  "gauge_vertices": [int(graph.ids[i]) for i in problem.gauge_vertices],
                  "components": int(problem.n_components), "group": problem.group})
    if args.repair_information:
        stats.update({"repaired_information": int(len(repaired)), "information_floor": float(args.information_floor)})
    print_summary(summary, f"slam pgo {args.problem}: {len(graph.poses)} poses, {len(graph.edges)} edges")
    write_json(args.json, stats)
    return 0
