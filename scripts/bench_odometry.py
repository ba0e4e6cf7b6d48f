#!/usr/bin/env python3
"""Benchmark of the odometry pipeline, fp64 and mixed side by side: throughput, window BA, accuracy.

    python scripts/bench_odometry.py [--source SPEC] [--config CFG] [--repeat R] [--window N]
                                     [--accuracy [--seeds K] [--control]] [--skip-throughput]
                                     [--skip-window] [--out DIR]

Throughput: `slam run` end to end (reader thread, tracking, odometry worker; no viewer) on a stereo
752x480 EuRoC-format sequence, frames per second and the per-stage medians of report.json. Without
--source a synthetic room_loop sequence is written once in EuRoC format (`slam simulate`) under
DIR/data, so images are decoded and rectified by the EuRoC loader as real data would be.
Window BA: every window problem of a deterministic run (tracking waits for each keyframe's BA)
with an N-keyframe window (default 50) is recorded and solved again offline in each precision, so
the median is the solver's time, not the thread scheduler's.
--accuracy: the done-when runs (synthetic room_loop stereo / RGB-D / mono, and KITTI 07 head
when ../shared/data is present), each deterministic, in fp64 and mixed, with the ATE of both;
--seeds K repeats the synthetic ones on K renderings, --control adds fp32 as the yardstick of how
far any change of rounding in BA moves a whole run's ATE.
Prints tables and writes DIR/bench_odometry.json. Times depend on the machine and its load; the
JSON records the host's CPU count and load average next to them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from slam.config import load_config, source_options  # noqa: E402
from slam.io.text import write_text_atomic  # noqa: E402
from slam.odometry.rig_ba import StereoBundleAdjustment  # noqa: E402
from slam.odometry.window import WindowData, solver_options  # noqa: E402
from slam.solvers.lm import solve  # noqa: E402
from slam.sources.open import open_source  # noqa: E402
from slam.system import System  # noqa: E402

PRECISIONS = ("fp64", "mixed")


def _run(spec: str, cfg_path: str | Path, out: Path, precision: str, blocking: bool = False,
         window: int | None = None, observer: Any = None, seed: int | None = None) -> dict[str, Any]:
    cfg = load_config(cfg_path)
    cfg.odometry.blocking = blocking
    cfg.odometry.precision = precision
    if seed is not None:
        cfg.source.seed = seed
    if window is not None:
        cfg.odometry.window = window
    opts, stereo = source_options(cfg.source, spec)
    source = open_source(spec, opts, stereo=stereo)
    try:
        system = System(cfg, source, spec, out, progress=False)
        system.worker.observer = observer
        return system.run().report
    finally:
        source.close()


def throughput(spec: str, cfg: str, out: Path, repeat: int) -> dict[str, Any]:
    """End-to-end frames/s and stage medians, per precision (best and median of `repeat` runs)."""
    res: dict[str, Any] = {}
    for prec in PRECISIONS:
        runs = [_run(spec, cfg, out / f"run_{prec}_{i}", prec) for i in range(repeat)]
        fps = [r["fps"] for r in runs]
        best = runs[int(np.argmax(fps))]
        res[prec] = {
            "fps_median": float(np.median(fps)), "fps_all": fps, "frames": best["frames"],
            "frames_lost": [r["frames_lost"] for r in runs],
            "ate_rmse_m": [r.get("ate", {}).get("rmse") for r in runs],
            "stage_median_ms": {k: v.get("median") for k, v in best["timings_ms"].items()},
            "ba_solve_median_ms": best["ba"]["solve_ms"].get("median"), "ba_solves": best["ba"]["solves"],
            "keyframes": best["keyframes"], "resolution": best["resolution"],
        }
    return res


def window_ba(spec: str, cfg_path: str, out: Path, window: int, max_problems: int = 40) -> dict[str, Any]:
    """Median time of N-keyframe window solves, recorded from a deterministic run, per precision."""
    problems: list[WindowData] = []
    rep = _run(spec, cfg_path, out / "window_run", "fp64", blocking=True, window=window,
               observer=problems.append)
    full = [p for p in problems if p.n_window == window]
    sel = full[:: max(1, len(full) // max_problems)][:max_problems]
    cfg = load_config(cfg_path)
    opts, stereo = source_options(cfg.source, spec)
    src = open_source(spec, opts, stereo=stereo)
    K, baseline = src.calibration.camera.K, float(src.calibration.baseline or 0.0)
    src.close()
    res: dict[str, Any] = {"window": window, "problems": len(sel), "of": len(full),
                           "run_ate_rmse_m": rep.get("ate", {}).get("rmse")}
    if not sel:
        return res
    res["observations_median"] = float(np.median([len(p.rows) for p in sel]))
    res["points_median"] = float(np.median([len(p.point_ids) for p in sel]))
    res["stereo_fraction"] = float(np.mean([np.isfinite(p.ur).mean() for p in sel]))
    c = cfg.odometry
    for prec in PRECISIONS:
        for pre in ("jacobi", "schur"):
            times, its, cgs, costs = [], [], [], []
            for p in sel:
                prob = StereoBundleAdjustment(p.T_cw, p.points, p.cam, p.pt, p.uv, p.ur, K, baseline, p.fixed,
                                              loss=c.loss, loss_scale=c.loss_scale)
                t0 = time.perf_counter()
                s = solve(prob, solver_options(dataclasses.replace(c, preconditioner=pre), prec))
                times.append(time.perf_counter() - t0)
                its.append(s.iterations)
                cgs.append(s.total_linear_iterations)
                costs.append(s.final_cost / max(s.initial_cost, 1e-300))
            res[f"{prec}/{pre}"] = {"median_ms": 1e3 * float(np.median(times)), "p90_ms": 1e3 * float(np.percentile(times, 90)),
                                    "lm_iterations": float(np.mean(its)), "cg_iterations": float(np.mean(cgs)),
                                    "final_over_initial_cost": float(np.median(costs))}
    return res


def accuracy(out: Path, data: Path, seeds: int = 1, control: bool = False) -> list[dict[str, Any]]:
    """Done-when accuracy runs in fp64 and mixed (deterministic: tracking waits for BA).

    seeds > 1 renders the synthetic runs again with seeds 1..seeds-1 (other textures and noise);
    control adds fp32, whose difference to fp64 shows how much any change in the BA's rounding
    moves the ATE of the whole pipeline (keyframe, outlier and culling decisions branch on it).
    """
    runs = [("synthetic:room_loop", "configs/synthetic.yaml", "stereo, SE3"),
            ("synthetic:room_loop", "configs/tum_rgbd.yaml", "RGB-D, SE3"),
            ("synthetic:room_loop", "configs/euroc_mono.yaml", "mono, Sim3")]
    kitti = data / "kitti" / "07_head"
    if kitti.is_dir():
        runs.append((str(kitti), "configs/kitti_mono.yaml", "KITTI 07 head mono, Sim3"))
    precisions = PRECISIONS + (("fp32",) if control else ())
    rows = []
    for spec, cfg, what in runs:
        for seed in range(seeds if spec.startswith("synthetic:") else 1):
            row: dict[str, Any] = {"source": spec, "config": cfg, "what": what, "seed": seed}
            for prec in precisions:
                rep = _run(spec, REPO / cfg, out / f"acc_{Path(cfg).stem}_{seed}_{prec}", prec, blocking=True,
                           seed=seed if spec.startswith("synthetic:") else None)
                row[prec] = {"ate_rmse_m": rep["ate"]["rmse"], "percent_of_path": rep["ate"]["rmse_percent_of_path"],
                             "lost": rep["frames_lost"], "keyframes": rep["keyframes"],
                             "path_m": rep["ate"]["path_length_m"]}
            a = row["fp64"]["ate_rmse_m"]
            for prec in precisions[1:]:
                row[f"{prec}_vs_fp64_percent"] = 100.0 * (row[prec]["ate_rmse_m"] - a) / a
            rows.append(row)
    return rows


def _print_accuracy(acc: list[dict[str, Any]]) -> None:
    control = any("fp32" in r for r in acc)
    print(f"\n{'run':28s} {'seed':>4s} {'fp64 ATE m':>11s} {'mixed ATE m':>11s} {'diff %':>7s} "
          f"{'fp32 diff %':>11s} {'% of path':>10s} {'lost':>5s}")
    for row in acc:
        c = f"{row['fp32_vs_fp64_percent']:11.2f}" if control else f"{'-':>11s}"
        print(f"{row['what']:28s} {row['seed']:4d} {row['fp64']['ate_rmse_m']:11.4f} {row['mixed']['ate_rmse_m']:11.4f} "
              f"{row['mixed_vs_fp64_percent']:7.2f} {c} {row['mixed']['percent_of_path']:10.3f} {row['mixed']['lost']:5d}")
    for what in dict.fromkeys(r["what"] for r in acc):
        rs = [r for r in acc if r["what"] == what]
        if len(rs) > 1:
            m64, mmx = (float(np.mean([r[p]["ate_rmse_m"] for r in rs])) for p in ("fp64", "mixed"))
            d = [r["mixed_vs_fp64_percent"] for r in rs]
            line = (f"{what}: mean over {len(rs)} seeds fp64 {m64:.4f} m, mixed {mmx:.4f} m ({100 * (mmx - m64) / m64:+.2f}%); "
                    f"per seed mixed vs fp64 {min(d):+.1f}% .. {max(d):+.1f}%")
            if control:
                d32 = [r["fp32_vs_fp64_percent"] for r in rs]
                line += f", fp32 vs fp64 {min(d32):+.1f}% .. {max(d32):+.1f}%"
            print(line)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", help="stereo source SPEC (default: synthetic room_loop in EuRoC format)")
    ap.add_argument("--config", default=str(REPO / "configs" / "euroc_stereo.yaml"))
    ap.add_argument("--repeat", type=int, default=3, help="end-to-end runs per precision (default 3)")
    ap.add_argument("--window", type=int, default=50, help="keyframes of the window BA benchmark (default 50)")
    ap.add_argument("--accuracy", action="store_true", help="also the done-when accuracy runs, fp64 vs mixed")
    ap.add_argument("--seeds", type=int, default=1, help="--accuracy: synthetic runs for seeds 0..N-1 (default 1)")
    ap.add_argument("--control", action="store_true", help="--accuracy: also fp32, the run-to-run sensitivity control")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--skip-window", action="store_true")
    ap.add_argument("--out", default=str(REPO / "bench_out" / "odometry"))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    spec = args.source
    if spec is None:
        spec = str(out / "data" / "room_loop_euroc")
        if not (Path(spec) / "mav0").is_dir():
            from slam.synthetic import write_sequence
            print(f"writing the synthetic EuRoC sequence to {spec} ...", file=sys.stderr)
            write_sequence("room_loop", "euroc", spec)
    result: dict[str, Any] = {"source": spec, "config": args.config, "host": {
        "cpus": os.cpu_count(), "load_average_before": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(), "machine": platform.machine()}}
    if not args.skip_throughput:
        tp = throughput(spec, args.config, out, args.repeat)
        result["throughput"] = tp
        print(f"\nend to end, {args.repeat} runs each ({spec})")
        print(f"{'precision':10s} {'fps median':>10s} {'all runs':>22s} {'lost':>8s} {'klt':>6s} {'pose':>6s} "
              f"{'kf':>6s} {'read':>6s} {'BA med':>8s} {'ATE m':>8s}")
        for prec, r in tp.items():
            st = r["stage_median_ms"]
            print(f"{prec:10s} {r['fps_median']:10.1f} {' '.join(f'{f:.1f}' for f in r['fps_all']):>22s} "
                  f"{max(r['frames_lost']):8d} {st.get('klt', 0):6.1f} {st.get('pose', 0):6.1f} "
                  f"{st.get('keyframe', 0):6.1f} {st.get('read', 0):6.1f} {r['ba_solve_median_ms'] or 0:8.1f} "
                  f"{np.median([a for a in r['ate_rmse_m'] if a is not None]):8.4f}")
    if not args.skip_window:
        wb = window_ba(spec, args.config, out, args.window)
        result["window_ba"] = wb
        print(f"\n{args.window}-keyframe window BA: {wb['problems']} of {wb['of']} recorded full windows, "
              f"median {wb.get('observations_median', 0):.0f} observations, {wb.get('points_median', 0):.0f} points")
        print(f"{'solver':18s} {'median ms':>10s} {'p90 ms':>8s} {'LM its':>7s} {'CG its':>7s} {'cost ratio':>11s}")
        for key, r in wb.items():
            if isinstance(r, dict):
                print(f"{key:18s} {r['median_ms']:10.1f} {r['p90_ms']:8.1f} {r['lm_iterations']:7.2f} "
                      f"{r['cg_iterations']:7.1f} {r['final_over_initial_cost']:11.5f}")
    if args.accuracy:
        acc = accuracy(out, REPO.parent / "shared" / "data", args.seeds, args.control)
        result["accuracy"] = acc
        _print_accuracy(acc)
    path = out / "bench_odometry.json"
    write_text_atomic(path, json.dumps(result, indent=2, default=float) + "\n")
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
