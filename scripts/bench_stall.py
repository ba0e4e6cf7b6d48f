#!/usr/bin/env python3
"""Does loop closure stall tracking? Stereo 752x480 end to end, with and without loop closure.

Issue 10, point 4: a stereo EuRoC-format sequence (room_loop rendered at 752x480 by
`slam simulate --format euroc`) is run with `slam run CONFIG --source DIR` and with `--no-loop`,
alternating, `--trials` times each, every run in its own process as a user would start it, on the
threads of a live run (not blocking mode). Reported per run: frames/s (frames over the wall time
from the first frame to the end of the workers), tracking frame time p50/p99, loops, the CPU time
the process used (user + system, all threads: what loop closure adds on a machine with 2 cores) and
each thread's share (report.json's cpu_s); and per
setting the median over the trials, the pairwise p99 ratio (loop / no-loop of the same trial) and
its median. A single pair is not a measurement on a shared 2-core machine: consecutive identical
runs differ by 10-15% in frames/s there, hence the alternation and the medians.

`--unthrottled` also runs the config with `odometry.max_lag: -1` and
`frontend.anchor_alignment_max_pending: 0` (tracking never waits for the window BA, which then
skips anchor alignment while behind): the pipeline's throughput without the accuracy-first
defaults, side by side, with the ATE of every run.

    python scripts/bench_stall.py --trials 5 --unthrottled --out bench_out/stall

Prints a table and writes bench_stall.json (with the machine's load average before and after).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

from slam_cli import slam_cli as slam  # scripts/ is on sys.path when a script runs


def unthrottled_config(config: str, out: Path) -> str:
    """The config with odometry.max_lag -1 and anchor alignment only while BA is not behind."""
    import yaml

    c = yaml.safe_load(Path(config).read_text()) or {}
    c.setdefault("odometry", {})["max_lag"] = -1
    c.setdefault("frontend", {})["anchor_alignment_max_pending"] = 0
    path = out / f"unthrottled_{Path(config).name}"
    path.write_text(yaml.safe_dump(c))
    return str(path)


def one_run(config: str, source: Path, out: Path, loop: bool) -> dict:
    """One `slam run`; its report's speed and frame-time numbers, and the CPU time the process used."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    slam("run", config, "--source", str(source), "--out", str(out), "--quiet", *([] if loop else ["--no-loop"]))
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    rep = json.loads((out / "report.json").read_text())
    ft = rep["frame_time_ms"]
    lc = rep.get("loop_closure")
    return {"loop": loop, "fps": rep["fps"], "tracking_fps": rep["tracking_fps"], "frames": rep["frames"],
            "p50_ms": ft["p50"], "p99_ms": ft["p99"], "max_ms": ft["max"],
            "loops": lc.get("accepted", 0) if isinstance(lc, dict) else 0,
            "ate_percent": rep.get("ate", {}).get("rmse_percent_of_path"),
            "ate_mm": 1e3 * rep["ate"]["rmse"] if "ate" in rep else None,
            "lag_wait_s": rep["ba"].get("lag_wait_s", 0.0), "cpu_s": cpu_s,
            "cpu_threads_s": rep.get("cpu_s"),  # per thread: tracking, odometry, loop, reader, process
            "places_queried": lc.get("keyframes_queried") if isinstance(lc, dict) else None}


def _threads(cpu: dict | None) -> str:
    """'tracking 6.2 / odometry 4.7 / ...' from report.json's cpu_s (threads that ran)."""
    if not cpu:
        return "no per-thread CPU"
    return " / ".join(f"{k} {v:.1f}" for k, v in cpu.items() if k != "process" and v is not None)


def main() -> int:
    """Render once, run the alternating trials, print the table, write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scene", default="room_loop")
    ap.add_argument("--config", default="configs/euroc_stereo.yaml")
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--unthrottled", action="store_true",
                    help="also run the config with odometry.max_lag -1 (tracking never waits for BA)")
    ap.add_argument("--out", default="bench_out/stall")
    a = ap.parse_args()
    out = Path(a.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    seq = out / f"{a.scene}_euroc"
    if not (seq / "mav0").is_dir():
        print(f"rendering {a.scene} (EuRoC format, 752x480) -> {seq}", flush=True)
        slam("simulate", a.scene, "--format", "euroc", "--out", str(seq))
    load_before = os.getloadavg()
    settings = [("default", a.config)] + ([("unthrottled", unthrottled_config(a.config, out))] if a.unthrottled else [])
    rows = []
    t0 = time.time()
    for trial in range(a.trials):
        for name, config in settings:
            for loop in (True, False) if trial % 2 == 0 else (False, True):  # alternate which goes first
                r = one_run(config, seq, out / f"run_{name}_{'loop' if loop else 'noloop'}", loop)
                r["trial"], r["setting"] = trial, name
                rows.append(r)
                print(f"trial {trial} {name:11s} {'loop   ' if loop else 'no-loop'}  {r['fps']:5.1f} frames/s  "
                      f"p50 {r['p50_ms']:5.1f} ms  p99 {r['p99_ms']:5.1f} ms  loops {r['loops']}  "
                      f"ATE {r['ate_mm']:.2f} mm  waited for BA {r['lag_wait_s']:.1f} s  CPU {r['cpu_s']:.1f} s"
                      f" ({_threads(r['cpu_threads_s'])})"
                      + (f"  places queried {r['places_queried']}" if loop else ""), flush=True)
    summary = {}
    print("\n| setting | frames/s (median) | frames/s (min-max) | p99 ms (median) | ATE mm (median) | CPU s (median) | loops |")
    print("|---|---|---|---|---|---|---|")
    for name, _ in settings:
        on = [r for r in rows if r["loop"] and r["setting"] == name]
        off = [r for r in rows if not r["loop"] and r["setting"] == name]
        ratios = [x["p99_ms"] / y["p99_ms"] for x, y in zip(on, off)]
        summary[name] = {
            "fps_loop_median": float(np.median([r["fps"] for r in on])),
            "fps_noloop_median": float(np.median([r["fps"] for r in off])),
            "p99_loop_median_ms": float(np.median([r["p99_ms"] for r in on])),
            "p99_noloop_median_ms": float(np.median([r["p99_ms"] for r in off])),
            "p99_ratio_pairwise": ratios, "p99_ratio_median": float(np.median(ratios)),
            "ate_mm_loop_median": float(np.median([r["ate_mm"] for r in on])),
            "ate_mm_noloop_median": float(np.median([r["ate_mm"] for r in off])),
            "loops_per_run": [r["loops"] for r in on],
            "cpu_s_loop_median": float(np.median([r["cpu_s"] for r in on])),
            "cpu_s_noloop_median": float(np.median([r["cpu_s"] for r in off])),
        }
        for label, rs in (("loop closure", on), ("--no-loop", off)):
            f = [r["fps"] for r in rs]
            print(f"| {name}, {label} | {np.median(f):.1f} | {min(f):.1f}-{max(f):.1f} | "
                  f"{np.median([r['p99_ms'] for r in rs]):.1f} | {np.median([r['ate_mm'] for r in rs]):.2f} | "
                  f"{np.median([r['cpu_s'] for r in rs]):.1f} | "
                  f"{'/'.join(str(r['loops']) for r in rs)} |")
    for name, _ in settings:
        print(f"{name}: p99 ratio loop/no-loop per trial: "
              f"{' '.join(f'{x:.2f}' for x in summary[name]['p99_ratio_pairwise'])} "
              f"(median {summary[name]['p99_ratio_median']:.2f})")
    print(f"{time.time() - t0:.0f} s; load {load_before[0]:.2f} -> {os.getloadavg()[0]:.2f}")
    (out / "bench_stall.json").write_text(json.dumps(
        {"scene": a.scene, "config": a.config, "trials": a.trials, "settings": [n for n, _ in settings],
         "rows": rows, "summary": summary,
         "load_average": {"before": load_before, "after": os.getloadavg()}}, indent=2) + "\n")
    print(f"wrote {out / 'bench_stall.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
