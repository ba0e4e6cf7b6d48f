#!/usr/bin/env python3
"""How solver time grows with work: PGO time against graph size, window BA time against window size.

PGO: generated torus helices (slam.eval.hard_graphs.torus_graph, 100 poses a lap, loop closures to
the previous lap, dead-reckoning start) of 1k to 20k poses, solved by our fp64 and mixed presets and
by GTSAM LM from the same start in the same run. Window BA: generated forward-driving windows
(slam.eval.synthetic_problems.window_ba_problem) of 10 to 100 keyframes, our fp64 and mixed against
Ceres (pycolmap, SPARSE_SCHUR, 2 threads). Each curve's exponent is the slope of log time against
log size (least squares): time ~ size^exponent. The load average is recorded next to every row.
Writes bench_scaling.md and bench_scaling.json into --out.

    python scripts/bench_scaling.py [--out bench_out] [--pgo-sizes 1000,2000,5000,10000,20000]
                                    [--ba-windows 10,20,50,100] [--presets fp64,mixed] [--no-peers]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

# One BLAS thread: on a shared 2-core machine, waking BLAS threads for the solver's many short
# vector operations costs more than they compute (measured: sphere2500 fp64 5.2 s -> 1.4 s at load 9).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from slam.eval.hard_graphs import torus_graph  # noqa: E402
from slam.eval.synthetic_problems import window_ba_problem  # noqa: E402
from slam.io.bal import write_bal  # noqa: E402
from slam.io.g2o import write_g2o  # noqa: E402
from slam.solvers import ba  # noqa: E402
from slam.solvers.lm import SolverOptions, solve  # noqa: E402
from slam.solvers.pgo import from_pose_graph  # noqa: E402


def exponent(sizes: list[float], times: list[float]) -> float:
    """Slope of log(time) against log(size): time grows like size^slope."""
    ok = [(s, t) for s, t in zip(sizes, times) if t and t > 0]
    if len(ok) < 2:
        return float("nan")
    x, y = np.log([s for s, _ in ok]), np.log([t for _, t in ok])
    return float(np.polyfit(x, y, 1)[0])


def pgo_rows(sizes: list[int], presets: list[str], peers: bool, gdir: Path) -> list[dict[str, Any]]:
    """One row per graph size: our presets' and GTSAM's time, iterations and cost."""
    rows = []
    for n in sizes:
        graph, _ = torus_graph(laps=max(n // 100, 2), per_lap=100, seed=n)
        path = gdir / f"torus-{n}.g2o"
        write_g2o(path, graph)
        row: dict[str, Any] = {"poses": len(graph.poses), "edges": len(graph.edges), "load": os.getloadavg()[0]}
        if peers:
            from slam.eval.peers import gtsam_pgo

            g = gtsam_pgo(path)
            row["GTSAM LM"] = {"time_s": g["time_s"], "iterations": g["iterations"], "final_cost": g["final_cost"]}
        for preset in presets:
            s = solve(from_pose_graph(graph), SolverOptions(precision=preset))
            row[preset] = {"time_s": s.time_s, "iterations": s.iterations, "final_cost": s.final_cost,
                           "linear_iterations": s.total_linear_iterations, "termination": s.termination,
                           "stage_times_s": s.stage_times}
        print(f"  pgo {n}: " + ", ".join(f"{k} {v['time_s']:.2f} s" for k, v in row.items() if isinstance(v, dict)),
              file=sys.stderr, flush=True)
        rows.append(row)
    return rows


def ba_rows(windows: list[int], presets: list[str], peers: bool, gdir: Path) -> list[dict[str, Any]]:
    """One row per window size: our presets' and Ceres's time, iterations and cost."""
    rows = []
    for k in windows:
        problem, _ = window_ba_problem(keyframes=k, seed=k)
        path = gdir / f"window-{k}.txt"
        write_bal(path, problem)
        row: dict[str, Any] = {"keyframes": k, "points": len(problem.points), "observations": len(problem.cam_idx),
                               "load": os.getloadavg()[0]}
        if peers:
            from slam.eval.peers import pycolmap_ba

            r = pycolmap_ba(path, threads=2)
            row["Ceres (pycolmap)"] = {"time_s": r["time_s"], "iterations": r["iterations"],
                                       "final_cost": r.get("bal_final_cost", r["final_cost"])}
        for preset in presets:
            s = solve(ba.from_bal(problem), ba.default_options(preset))
            row[preset] = {"time_s": s.time_s, "iterations": s.iterations, "final_cost": s.final_cost,
                           "linear_iterations": s.total_linear_iterations, "termination": s.termination}
        print(f"  ba window {k}: " + ", ".join(f"{n} {v['time_s']:.2f} s" for n, v in row.items()
                                               if isinstance(v, dict)), file=sys.stderr, flush=True)
        rows.append(row)
    return rows


def table(rows: list[dict[str, Any]], size_key: str, solvers: list[str]) -> list[str]:
    """Markdown table of time (iterations, cost gap to the peer) per size, and the exponents."""
    peer = next((s for s in solvers if s in ("GTSAM LM", "Ceres (pycolmap)")), None)
    head = [size_key, "load"] + [f"{s} s (LM its, gap)" for s in solvers]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [str(r[size_key]), f"{r['load']:.1f}"]
        for s in solvers:
            v = r.get(s)
            if v is None:
                cells.append("-")
                continue
            gap = ""
            if peer and peer in r and s != peer:
                gap = f", {(v['final_cost'] - r[peer]['final_cost']) / r[peer]['final_cost']:+.1e}"
            cells.append(f"{v['time_s']:.3f} ({v['iterations']}{gap})")
        out.append("| " + " | ".join(cells) + " |")
    sizes = [r[size_key] for r in rows]
    exps = [f"{s}: {exponent(sizes, [r[s]['time_s'] for r in rows if s in r]):.2f}" for s in solvers
            if all(s in r for r in rows)]
    out += ["", f"Exponent of time against {size_key} (time ~ size^e): " + ", ".join(exps)]
    return out


def main() -> int:
    """Run both scaling studies and write the tables."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="bench_out")
    ap.add_argument("--pgo-sizes", default="1000,2000,5000,10000,20000")
    ap.add_argument("--ba-windows", default="10,20,50,100")
    ap.add_argument("--presets", default="fp64,mixed")
    ap.add_argument("--no-peers", action="store_true")
    args = ap.parse_args()
    out = Path(args.out)
    gdir = out / "generated"
    gdir.mkdir(parents=True, exist_ok=True)
    presets = args.presets.split(",")
    peers = not args.no_peers
    pgo = pgo_rows([int(s) for s in args.pgo_sizes.split(",") if s], presets, peers, gdir)
    bar = ba_rows([int(s) for s in args.ba_windows.split(",") if s], presets, peers, gdir)
    lines = ["# Scaling", "", f"CPUs: {os.cpu_count()}, OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}; "
             "load = 1-minute load average when the row started (other agents share the machine).", "",
             "## PGO: generated torus helices, time against poses", ""]
    lines += table(pgo, "poses", (["GTSAM LM"] if peers else []) + presets)
    lines += ["", "## Window BA: generated forward-driving windows, time against keyframes", ""]
    lines += table(bar, "keyframes", (["Ceres (pycolmap)"] if peers else []) + presets)
    (out / "bench_scaling.json").write_text(json.dumps({"pgo": pgo, "ba": bar}, indent=2, default=str) + "\n")
    (out / "bench_scaling.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
