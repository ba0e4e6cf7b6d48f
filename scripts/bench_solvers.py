#!/usr/bin/env python3
"""Benchmark the least-squares engine: every pose graph and BA problem of ../shared/data, every preset.

For each problem and precision preset: final cost, gap to fp64, LM and CG iterations, time per
stage. In the same run, side by side: GTSAM Levenberg-Marquardt on the same g2o files and Ceres
(through pycolmap) on the BAL files where those are importable (`pip install -e '.[bench]'`), and,
for pose graphs, the mixed preset without preconditioner (what the static incomplete Cholesky buys).
Writes bench_solvers.md (tables) and bench_solvers.json into --out.

    python scripts/bench_solvers.py [--out bench_out] [--problems sphere2500,problem-49] [--presets fp64,mixed]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from slam.solvers.lm import SolverOptions, solve  # noqa: E402
from slam.solvers.precision import PRESETS  # noqa: E402
from slam.io.text import write_text_atomic  # noqa: E402

DATA = ROOT.parent / "shared" / "data"


def pgo_cases(filter_: set[str] | None) -> list[tuple[str, Path]]:
    """(name, path) of every g2o file in ../shared/data/pgo."""
    return [(p.stem, p) for p in sorted((DATA / "pgo").glob("*.g2o")) if not filter_ or p.stem in filter_]


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
        opt = ba.default_options(preset)
        opt.preconditioner = preconditioner
    t0 = time.perf_counter()
    s = solve(problem, opt)
    wall = time.perf_counter() - t0
    out = s.as_dict()
    out["wall_s"] = wall
    out.pop("cost_history", None)
    return out


def run_peer(kind: str, path: Path) -> dict[str, Any] | None:
    """GTSAM LM (pose graphs) or Ceres via pycolmap (BAL), or None when not importable."""
    from slam.eval import peers

    try:
        if kind == "pgo":
            r = peers.gtsam_pgo(path)
            return {"name": "GTSAM LM", "initial_cost": r["initial_cost"], "final_cost": r["final_cost"],
                    "iterations": r["iterations"], "time_s": r["time_s"]}
        r = peers.pycolmap_ba(path, threads=2)
        return {"name": "Ceres (pycolmap)", "initial_cost": r.get("bal_initial_cost", r["initial_cost"]),
                "final_cost": r.get("bal_final_cost", r["final_cost"]), "ceres_final_cost": r["final_cost"],
                "iterations": r["iterations"], "time_s": r["time_s"], "linear_solver": r.get("linear_solver")}
    except ImportError as exc:
        print(f"  (peer skipped: {exc})", file=sys.stderr)
        return None


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
    args = ap.parse_args()
    if not DATA.is_dir():
        print(f"benchmark data folder {DATA} is absent; nothing to benchmark", file=sys.stderr)
        return 0
    filt = set(args.problems.split(",")) if args.problems else None
    presets = args.presets.split(",")
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"machine": {"python": platform.python_version(), "cpu": platform.processor(),
                                           "platform": platform.platform()}, "problems": {}}
    lines = ["# Solver benchmark", "",
             "cost = 1/2 sum e^T Omega e (PGO) or 1/2 sum r^2 (BA), evaluated in fp64 on the result; "
             "fp16 is emulated on NumPy (accuracy, not speed).", ""]
    for kind, cases in (("pgo", pgo_cases(filt)), ("ba", ba_cases(filt))):
        for name, path in cases:
            print(f"== {name}", file=sys.stderr, flush=True)
            entry: dict[str, Any] = {"kind": kind, "path": str(path), "runs": {}}
            for preset in presets:
                entry["runs"][preset] = run_ours(kind, path, preset)
                r = entry["runs"][preset]
                print(f"  {preset:6s} {r['final_cost']:.10g} in {r['wall_s']:.3f} s, {r['iterations']} LM, "
                      f"{r['linear_iterations']} CG", file=sys.stderr, flush=True)
            if kind == "pgo" and "mixed" in presets:
                # What each part of the preconditioner buys: the static IC(0) alone, and nothing at all.
                entry["runs"]["mixed, IC(0) only"] = run_ours(kind, path, "mixed", coarse_clusters=0)
                entry["runs"]["mixed, no preconditioner"] = run_ours(kind, path, "mixed", preconditioner="none")
            peer = None if args.no_peers else run_peer(kind, path)
            entry["peer"] = peer
            results["problems"][name] = entry
            ref = entry["runs"].get("fp64", {}).get("final_cost")
            lines += [f"## {name} ({kind})", "",
                      fmt_row(["run", "initial cost", "final cost", "gap to fp64", "gap to peer", "LM its", "CG its",
                               "wall s", "residual s", "jacobian s", "precond s", "linear s", "update s",
                               "termination"]),
                      fmt_row(["---"] * 14)]
            for label, r in entry["runs"].items():
                st = r["stage_times_s"]
                gap = f"{(r['final_cost'] - ref) / ref:+.2e}" if ref else "-"
                pgap = f"{(r['final_cost'] - peer['final_cost']) / peer['final_cost']:+.2e}" if peer else "-"
                lines.append(fmt_row([label, f"{r['initial_cost']:.6g}", f"{r['final_cost']:.10g}", gap, pgap,
                                      r["iterations"], r["linear_iterations"], f"{r['wall_s']:.3f}",
                                      *(f"{st[k]:.3f}" for k in ("residual", "jacobian", "preconditioner",
                                                                  "linear_solve", "update")),
                                      r["termination"]]))
            if peer:
                lines.append(fmt_row([peer["name"], f"{peer['initial_cost']:.6g}", f"{peer['final_cost']:.10g}",
                                      f"{(peer['final_cost'] - ref) / ref:+.2e}" if ref else "-", "0",
                                      peer["iterations"], "-", f"{peer['time_s']:.3f}", "-", "-", "-", "-", "-", "-"]))
            if kind == "pgo" and "mixed, no preconditioner" in entry["runs"]:
                a = entry["runs"]["mixed"]["linear_iterations"]
                ic = entry["runs"]["mixed, IC(0) only"]["linear_iterations"]
                b = entry["runs"]["mixed, no preconditioner"]["linear_iterations"]
                lines += ["", f"CG iterations, mixed: none {b}, static block IC(0) {ic} ({b / max(ic, 1):.1f}x fewer), "
                              f"IC(0) + coarse level {a} ({b / max(a, 1):.1f}x fewer)."]
            if peer:
                # On NumPy the mixed run pays for emulating fp16, so fp64 is the fair CPU comparison
                for prec in ("fp64", "mixed"):
                    if prec in entry["runs"]:
                        note = " (fp16 emulated)" if prec == "mixed" else ""
                        lines.append(f"{prec}{note} / {peer['name']} wall time: "
                                     f"{entry['runs'][prec]['wall_s'] / peer['time_s']:.2f}x")
            lines.append("")
            write_text_atomic(out_dir / "bench_solvers.json", json.dumps(results, indent=2, default=str) + "\n")
            write_text_atomic(out_dir / "bench_solvers.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {out_dir / 'bench_solvers.md'} and {out_dir / 'bench_solvers.json'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
