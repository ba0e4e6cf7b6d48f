"""What `slam pgo` and `slam ba` share: solver options on the command line, progress, summary, JSON."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Callable

from slam.errors import InputError
from slam.io.text import write_text_atomic
from slam.solvers.backend import get_backend
from slam.solvers.lm import SolverOptions, Summary, solve
from slam.solvers.problem import LeastSquaresProblem
from slam.solvers.precision import PRESETS


def add_solver_arguments(parser: argparse.ArgumentParser) -> None:
    """--precision, --backend, --max-iterations, --json, --quiet."""
    parser.add_argument("--precision", default="mixed", choices=list(PRESETS),
                        help="precision policy (default: mixed = fp16 linear algebra, fp32 residuals, fp64 update)")
    parser.add_argument("--backend", default="numpy", choices=("numpy", "cupy", "auto"),
                        help="array backend; numpy emulates fp16 (default: numpy)")
    parser.add_argument("--max-iterations", type=int, default=None, metavar="N", help="LM iteration cap")
    parser.add_argument("--json", metavar="STATS.json", help="write solver statistics as JSON")
    parser.add_argument("--quiet", action="store_true", help="no per-iteration progress on stderr")


def options_from_args(args: argparse.Namespace, base: SolverOptions | None = None) -> SolverOptions:
    """SolverOptions from parsed arguments, on top of a problem's own defaults."""
    opt = base or SolverOptions()
    opt.precision = args.precision
    try:
        opt.backend = get_backend(args.backend).name  # 'auto' resolved here, so reports say what ran
    except RuntimeError as exc:
        raise InputError(f"--backend {args.backend}: {exc}") from None
    if args.max_iterations is not None:
        opt.max_iterations = args.max_iterations
    if not args.quiet:
        opt.callback = _progress
    return opt


def _progress(info: dict[str, Any]) -> None:
    print(f"  iter {info['iteration']:3d}  cost {info['cost']:.10g}  lambda {info['lambda']:.2e}  "
          f"cg {info['cg_iterations']}", file=sys.stderr, flush=True)


def solve_and_write(problem: LeastSquaresProblem, opt: SolverOptions, out: str | None,
                    write: Callable[[str], None]) -> Summary | None:
    """Solve, then write the estimate to `out` (if given) even after Ctrl-C; None when interrupted."""
    summary = None
    try:
        summary = solve(problem, opt)
    except KeyboardInterrupt:
        pass
    if out:
        write(out)
    if summary is None:
        print(f"interrupted: wrote the current estimate{' to ' + out if out else ''}")
    return summary


def print_summary(summary: Summary, title: str) -> None:
    """A compact human-readable summary (Ceres's FullReport in spirit)."""
    p = summary.precision
    stages = ", ".join(f"{k}={p[k]}" for k in ("residual", "jacobian", "matvec", "precond", "vector", "update"))
    print(f"{title}")
    print(f"  precision     {p['name']} ({stages}); backend {p['backend']}"
          f"{', fp16 emulated' if p.get('emulated_fp16') else ''}")
    start = f" -> {summary.cost_history[1]:.10g} ({summary.initialization} start)" \
        if summary.initialization != "none" and len(summary.cost_history) > 1 else ""
    print(f"  cost          {summary.initial_cost:.10g}{start} -> {summary.final_cost:.10g}")
    print(f"  iterations    {summary.iterations} LM, {summary.total_linear_iterations} CG "
          f"({summary.accepted_steps} accepted, {summary.rejected_steps} rejected steps)")
    times = "  ".join(f"{k} {v:.3f}" for k, v in summary.stage_times.items())
    print(f"  time          {summary.time_s:.3f} s  ({times})")
    print(f"  termination   {summary.termination}")


def write_json(path: str | None, stats: dict[str, Any]) -> None:
    """Write statistics JSON (no-op without a path)."""
    if path:
        write_text_atomic(path, json.dumps(stats, indent=2) + "\n")
