#!/usr/bin/env python3
"""Benchmark the least-squares engine: every pose graph and BA problem of ../shared/data, every preset.

For each problem and precision preset: final cost, gap to fp64, LM and CG iterations, time per
stage. In the same run, side by side: GTSAM Levenberg-Marquardt on the same g2o files and Ceres
(through pycolmap) on the BAL files where those are importable (`pip install -e '.[bench]'`), and,
for pose graphs, the mixed preset with each static factor forced (block IC(0), and the complete
minimum-degree factor: what the automatic choice between them buys).
Generated hard pose graphs (slam.eval.hard_graphs: two torus helices, two noisy lattices and a
planar Manhattan drive, solved in SE(2) against GTSAM's Pose2; thousands of poses, all started from
dead reckoning; sphere2500's own start already is one) are written to --out/generated and run like
the shared ones (--no-hard skips them). The peer runs before and after
ours and its faster time is used; ours is the fastest of --repeat solves (2; a problem's first
solve in a process also pays for warming up, which made fp64, run first, look 10-40% slower than
fp32 on the same iterations). The 1-minute load average is recorded with every problem (other
jobs share the machine). A summary table gives each preset's time as a multiple of the peer's.
Pose graphs also get a reference row: GTSAM LM started from GTSAM's own chordal estimate
(InitializePose3, LAGO for 2-D; best of two, its time included), since our solver starts chordally
when the file's start is poor and GTSAM's LM never does by itself.
With --starts K, each BA problem is also solved by every preset from K initial LM dampings (0.4x to
3x the default, geometric): LM's path on a BAL problem is chaotic in every precision (ladybug-49:
7 to 35 iterations from those starts), so the mean over starts compares presets where one start is
one sample of that chaos.
Writes bench_solvers.md (tables) and bench_solvers.json into --out.

    python scripts/bench_solvers.py [--out bench_out] [--problems sphere2500,problem-49] [--presets fp64,mixed]
                                    [--starts 8]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

# One BLAS thread: on a shared 2-core machine, waking BLAS threads for the solver's many short
# vector operations costs more than they compute (measured: sphere2500 fp64 5.2 s -> 1.4 s at load 9).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from slam.priority import keep_freed_memory  # noqa: E402

keep_freed_memory()  # as `slam` does (fresh mmaps for every large temporary cost page faults)

import numpy as np  # noqa: E402

from slam.solvers.lm import SolverOptions, solve  # noqa: E402
from slam.solvers.precision import PRESETS  # noqa: E402
from slam.io.text import write_text_atomic  # noqa: E402

DATA = ROOT.parent / "shared" / "data"


def pgo_cases(filter_: set[str] | None) -> list[tuple[str, Path]]:
    """(name, path) of every g2o file in ../shared/data/pgo."""
    return [(p.stem, p) for p in sorted((DATA / "pgo").glob("*.g2o")) if not filter_ or p.stem in filter_]


def hard_cases(filter_: set[str] | None, out_dir: Path) -> list[tuple[str, Path]]:
    """(name, path) of the generated hard pose graphs, written as g2o under out_dir/generated."""
    from slam.eval.hard_graphs import hard_suite
    from slam.io.g2o import write_g2o

    suite = hard_suite("bench")
    (out_dir / "generated").mkdir(parents=True, exist_ok=True)
    cases = []
    for name, graph in suite.items():
        if filter_ and name not in filter_:
            continue
        path = out_dir / "generated" / f"{name}.g2o"
        write_g2o(path, graph)
        cases.append((name, path))
    return cases


def ba_cases(filter_: set[str] | None) -> list[tuple[str, Path]]:
    """(name, path) of every BAL file in ../shared/data/ba."""
    return [(p.stem, p) for p in sorted((DATA / "ba").glob("*.txt")) if not filter_ or p.stem in filter_]


def run_ours(kind: str, path: Path, preset: str, preconditioner: str = "auto", **extra: Any) -> dict[str, Any]:
    """Build the problem fresh and solve it; returns the summary dict plus the cost of the result."""
    if kind == "pgo":
        from slam.io.g2o import read_g2o
        from slam.solvers.pgo import from_pose_graph

        problem = from_pose_graph(read_g2o(path))
        opt = SolverOptions(precision=preset, preconditioner=preconditioner, **extra)
    else:
        from slam.io.bal import read_bal
        from slam.solvers import ba

        problem = ba.from_bal(read_bal(path))
        opt = ba.default_options(preset, **extra)
        opt.preconditioner = preconditioner
    t0 = time.perf_counter()
    s = solve(problem, opt)
    wall = time.perf_counter() - t0
    out = s.as_dict()
    out["wall_s"] = wall
    out.pop("cost_history", None)
    return out


def run_peer(kind: str, path: Path, initialize: bool = False) -> dict[str, Any] | None:
    """GTSAM LM (pose graphs; initialize: from GTSAM's own chordal start, InitializePose3 / LAGO) or
    Ceres via pycolmap (BAL), or None when not importable."""
    from slam.eval import peers

    try:
        if kind == "pgo":
            r = peers.gtsam_pgo(path, initialize=initialize)
            return {"name": "GTSAM chordal start + LM" if initialize else "GTSAM LM", "initial_cost": r["initial_cost"],
                    "start_cost": r["start_cost"], "final_cost": r["final_cost"], "iterations": r["iterations"],
                    "time_s": r["time_s"], "init_s": r["init_s"]}
        r = peers.pycolmap_ba(path, threads=2)
        return {"name": "Ceres (pycolmap)", "initial_cost": r.get("bal_initial_cost", r["initial_cost"]),
                "final_cost": r.get("bal_final_cost", r["final_cost"]), "ceres_final_cost": r["final_cost"],
                "iterations": r["iterations"], "time_s": r["time_s"], "linear_solver": r.get("linear_solver")}
    except (ImportError, ValueError) as exc:  # not installed; no chordal start for a Sim(3) graph
        print(f"  (peer skipped: {exc})", file=sys.stderr)
        return None


def start_sweep(path: Path, presets: list[str], k: int, entry: dict[str, Any]) -> list[str]:
    """Each preset solved from k initial dampings (geometric, x0.4 .. x3 the default): a table of mean
    and median time and LM iterations, and each preset's mean time over fp32's (kept in entry)."""
    base = SolverOptions().initial_lambda
    lams = [base * f for f in np.geomspace(0.4, 3.0, k)] if k > 1 else [base]
    rows = {p: [run_ours("ba", path, p, initial_lambda=float(lam)) for lam in lams] for p in presets}
    entry["starts"] = {p: [{"initial_lambda": float(lam), "time_s": r["time_s"], "iterations": r["iterations"],
                            "final_cost": r["final_cost"]} for lam, r in zip(lams, rs)] for p, rs in rows.items()}
    ref = np.mean([r["time_s"] for r in rows["fp32"]]) if "fp32" in rows else None
    out = ["", f"LM from {len(lams)} initial dampings ({lams[0]:.1e} .. {lams[-1]:.1e}; the default is {base:.0e}):", "",
           fmt_row(["preset", "time s mean", "time s median", "LM its", "mean time / fp32's", "final cost max"]),
           fmt_row(["---"] * 6)]
    for p, rs in rows.items():
        t = [r["time_s"] for r in rs]
        out.append(fmt_row([p, f"{np.mean(t):.3f}", f"{np.median(t):.3f}", " ".join(str(r["iterations"]) for r in rs),
                            f"{np.mean(t) / ref:.2f}" if ref else "-", f"{max(r['final_cost'] for r in rs):.10g}"]))
    return out


def fmt_row(cells: list[Any]) -> str:
    """One markdown table row."""
    return "| " + " | ".join(str(c) for c in cells) + " |"


def main() -> int:
    """Run the benchmark and write the tables."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="bench_out", help="output folder (default bench_out)")
    ap.add_argument("--problems", help="comma-separated problem names (file stems) to run")
    ap.add_argument("--presets", default=",".join(PRESETS), help="comma-separated presets (default all)")
    ap.add_argument("--no-peers", action="store_true", help="skip GTSAM/pycolmap")
    ap.add_argument("--no-hard", action="store_true", help="skip the generated hard pose graphs")
    ap.add_argument("--no-ablation", action="store_true", help="skip the preconditioner ablation runs (PGO)")
    ap.add_argument("--starts", type=int, default=0,
                    help="BA: also solve each preset from this many initial LM dampings spread around the default "
                         "(x0.4 .. x3), and report mean and median time and iterations (LM's path on a BAL problem "
                         "is chaotic: one start is one sample of it)")
    ap.add_argument("--repeat", type=int, default=2,
                    help="solves per preset, each from a fresh problem; the fastest is reported (default 2, "
                         "as the peer's best of two: a problem's first solve also pays for warming up)")
    args = ap.parse_args()
    if not DATA.is_dir():
        print(f"benchmark data folder {DATA} is absent; nothing to benchmark", file=sys.stderr)
        return 0
    filt = set(args.problems.split(",")) if args.problems else None
    presets = args.presets.split(",")
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"machine": {"python": platform.python_version(), "cpu": platform.processor(),
                                           "platform": platform.platform(), "cpus": os.cpu_count(),
                                           "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS")},
                               "problems": {}}
    summary = [f"## Summary: time / peer time (same run; ours the fastest of {max(1, args.repeat)} solves, the peer "
               "the faster of two), final cost gap to the peer", "",
               fmt_row(["problem", "load", "peer s", *[f"{p} x (gap)" for p in presets]]),
               fmt_row(["---"] * (3 + len(presets)))]
    lines = ["# Solver benchmark", "",
             "cost = 1/2 sum e^T Omega e (PGO) or 1/2 sum r^2 (BA), evaluated in fp64 on the result; "
             "fp16 is emulated on NumPy (accuracy, not speed).", ""]
    pgo = pgo_cases(filt) + ([] if args.no_hard else hard_cases(filt, out_dir))
    for kind, cases in (("pgo", pgo), ("ba", ba_cases(filt))):
        for name, path in cases:
            print(f"== {name}", file=sys.stderr, flush=True)
            load = os.getloadavg()[0]
            entry: dict[str, Any] = {"kind": kind, "path": str(path), "runs": {}, "load_before": load}
            peer_first = None if args.no_peers else run_peer(kind, path)
            for preset in presets:
                tries = [run_ours(kind, path, preset) for _ in range(max(1, args.repeat))]
                r = min(tries, key=lambda t: t["time_s"])
                r["times_s"] = [t["time_s"] for t in tries]
                entry["runs"][preset] = r
                print(f"  {preset:6s} {r['final_cost']:.10g} in {r['wall_s']:.3f} s, {r['iterations']} LM, "
                      f"{r['linear_iterations']} CG", file=sys.stderr, flush=True)
            if kind == "pgo" and "mixed" in presets and not args.no_ablation:
                # What the choice of static factor buys ('auto' picks one of these by its fill):
                # block IC(0) on A's pattern, and the complete factor in minimum-degree order.
                entry["runs"]["mixed, fill=zero"] = run_ours(kind, path, "mixed", ichol_fill="zero")
                entry["runs"]["mixed, fill=amd"] = run_ours(kind, path, "mixed", ichol_fill="amd")
            peer = None if args.no_peers else run_peer(kind, path)
            if peer and peer_first and peer_first["time_s"] < peer["time_s"]:
                peer = peer_first
            entry["peer"] = peer
            # GTSAM with its own chordal start, for reference: our solver starts chordally when the
            # file's start is poor (SolverOptions.initialization), GTSAM's LM never does by itself.
            chordal = None
            if kind == "pgo" and peer is not None:
                tries = [t for t in (run_peer(kind, path, initialize=True) for _ in range(2)) if t]
                chordal = min(tries, key=lambda t: t["time_s"]) if tries else None
            entry["peer_chordal"] = chordal
            entry["load_after"] = os.getloadavg()[0]
            if peer:
                cells = []
                for prec in presets:
                    r = entry["runs"][prec]
                    cells.append(f"{r['time_s'] / peer['time_s']:.2f} "
                                 f"({(r['final_cost'] - peer['final_cost']) / peer['final_cost']:+.1e})")
                summary.append(fmt_row([name, f"{load:.1f}", f"{peer['time_s']:.3f}", *cells]))
            results["problems"][name] = entry
            ref = entry["runs"].get("fp64", {}).get("final_cost")
            lines += [f"## {name} ({kind}), load {load:.1f} -> {entry['load_after']:.1f}", "",
                      fmt_row(["run", "initial cost", "final cost", "gap to fp64", "gap to peer", "LM its", "CG its",
                               "wall s", "start s", "residual s", "jacobian s", "precond s", "linear s", "update s",
                               "termination"]),
                      fmt_row(["---"] * 15)]
            for label, r in entry["runs"].items():
                st = r["stage_times_s"]
                gap = f"{(r['final_cost'] - ref) / ref:+.2e}" if ref else "-"
                pgap = f"{(r['final_cost'] - peer['final_cost']) / peer['final_cost']:+.2e}" if peer else "-"
                lines.append(fmt_row([label, f"{r['initial_cost']:.6g}", f"{r['final_cost']:.10g}", gap, pgap,
                                      r["iterations"], r["linear_iterations"], f"{r['wall_s']:.3f}",
                                      *(f"{st.get(k, 0.0):.3f}" for k in ("initialization", "residual", "jacobian",
                                                                           "preconditioner", "linear_solve", "update")),
                                      r["termination"] + (f", {r['initialization']} start"
                                                          if r.get("initialization", "none") != "none" else "")]))
            if peer:
                lines.append(fmt_row([peer["name"], f"{peer['initial_cost']:.6g}", f"{peer['final_cost']:.10g}",
                                      f"{(peer['final_cost'] - ref) / ref:+.2e}" if ref else "-", "0",
                                      peer["iterations"], "-", f"{peer['time_s']:.3f}", "-", "-", "-", "-", "-", "-",
                                      "-"]))
            if chordal:
                lines.append(fmt_row([chordal["name"], f"{chordal['initial_cost']:.6g}", f"{chordal['final_cost']:.10g}",
                                      f"{(chordal['final_cost'] - ref) / ref:+.2e}" if ref else "-",
                                      f"{(chordal['final_cost'] - peer['final_cost']) / peer['final_cost']:+.2e}",
                                      chordal["iterations"], "-", f"{chordal['time_s']:.3f}", f"{chordal['init_s']:.3f}",
                                      "-", "-", "-", "-", "-", f"start cost {chordal['start_cost']:.6g}"]))
            if kind == "pgo" and "mixed, fill=zero" in entry["runs"]:
                m, z, a = (entry["runs"][k] for k in ("mixed", "mixed, fill=zero", "mixed, fill=amd"))
                lines += ["", f"Static factor, mixed: default ({m['preconditioner']}) {m['linear_iterations']} CG "
                              f"{m['time_s']:.2f} s; block IC(0) {z['linear_iterations']} CG {z['time_s']:.2f} s; "
                              f"complete min-degree factor {a['linear_iterations']} CG {a['time_s']:.2f} s "
                              "(all with the coarse level)."]
            if kind == "ba" and args.starts > 0:
                lines += start_sweep(path, presets, args.starts, entry)
            if peer:
                # On NumPy the mixed run pays for emulating fp16, so fp64 is the fair CPU comparison
                for prec in ("fp64", "mixed"):
                    if prec in entry["runs"]:
                        note = " (fp16 emulated)" if prec == "mixed" else ""
                        lines.append(f"{prec}{note} / {peer['name']} wall time: "
                                     f"{entry['runs'][prec]['wall_s'] / peer['time_s']:.2f}x")
                        if chordal:
                            lines.append(f"{prec}{note} / {chordal['name']} wall time: "
                                         f"{entry['runs'][prec]['wall_s'] / chordal['time_s']:.2f}x")
            lines.append("")
            write_text_atomic(out_dir / "bench_solvers.json", json.dumps(results, indent=2, default=str) + "\n")
            write_text_atomic(out_dir / "bench_solvers.md", "\n".join(summary + [""] + lines) + "\n")
    print("\n".join(summary + [""] + lines))
    print(f"wrote {out_dir / 'bench_solvers.md'} and {out_dir / 'bench_solvers.json'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
