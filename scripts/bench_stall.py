#!/usr/bin/env python3
"""Does loop closure stall tracking? Stereo 752x480 end to end, with and without loop closure.

Issue 10, point 4: a stereo EuRoC-format sequence (room_loop rendered at 752x480 by
`slam simulate --format euroc`) is run with `slam run CONFIG --source DIR` and with `--no-loop`,
alternating, `--trials` times each, every run in its own process as a user would start it, on the
threads of a live run (not blocking mode). Reported per run: frames/s (frames over the wall time
from the first frame to the end of the workers), tracking frame time p50/p99, loops; and per
setting the median over the trials, the pairwise p99 ratio (loop / no-loop of the same trial) and
its median. A single pair is not a measurement on a shared 2-core machine: consecutive identical
runs differ by 10-15% in frames/s there, hence the alternation and the medians.

    python scripts/bench_stall.py --trials 5 --out bench_out/stall

Prints a table and writes bench_stall.json (with the machine's load average before and after).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from slam_cli import slam_cli as slam  # scripts/ is on sys.path when a script runs


def one_run(config: str, source: Path, out: Path, loop: bool) -> dict:
    """One `slam run`; its report's speed and frame-time numbers."""
    slam("run", config, "--source", str(source), "--out", str(out), "--quiet", *([] if loop else ["--no-loop"]))
    rep = json.loads((out / "report.json").read_text())
    ft = rep["frame_time_ms"]
    lc = rep.get("loop_closure")
    return {"loop": loop, "fps": rep["fps"], "tracking_fps": rep["tracking_fps"], "frames": rep["frames"],
            "p50_ms": ft["p50"], "p99_ms": ft["p99"], "max_ms": ft["max"],
            "loops": lc.get("accepted", 0) if isinstance(lc, dict) else 0,
            "ate_percent": rep.get("ate", {}).get("rmse_percent_of_path")}


def main() -> int:
    """Render once, run the alternating trials, print the table, write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scene", default="room_loop")
    ap.add_argument("--config", default="configs/euroc_stereo.yaml")
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--out", default="bench_out/stall")
    a = ap.parse_args()
    out = Path(a.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    seq = out / f"{a.scene}_euroc"
    if not (seq / "mav0").is_dir():
        print(f"rendering {a.scene} (EuRoC format, 752x480) -> {seq}", flush=True)
        slam("simulate", a.scene, "--format", "euroc", "--out", str(seq))
    load_before = os.getloadavg()
    rows = []
    t0 = time.time()
    for trial in range(a.trials):
        for loop in (True, False) if trial % 2 == 0 else (False, True):  # alternate which goes first
            r = one_run(a.config, seq, out / f"run_{'loop' if loop else 'noloop'}", loop)
            r["trial"] = trial
            rows.append(r)
            print(f"trial {trial} {'loop   ' if loop else 'no-loop'}  {r['fps']:5.1f} frames/s  "
                  f"p50 {r['p50_ms']:5.1f} ms  p99 {r['p99_ms']:5.1f} ms  loops {r['loops']}", flush=True)
    on = [r for r in rows if r["loop"]]
    off = [r for r in rows if not r["loop"]]
    ratios = [x["p99_ms"] / y["p99_ms"] for x, y in zip(on, off)]
    summary = {
        "fps_loop_median": float(np.median([r["fps"] for r in on])),
        "fps_noloop_median": float(np.median([r["fps"] for r in off])),
        "p99_loop_median_ms": float(np.median([r["p99_ms"] for r in on])),
        "p99_noloop_median_ms": float(np.median([r["p99_ms"] for r in off])),
        "p99_ratio_pairwise": ratios, "p99_ratio_median": float(np.median(ratios)),
        "loops_per_run": [r["loops"] for r in on],
    }
    print("\n| setting | frames/s (median) | frames/s (min-max) | p99 ms (median) | loops |")
    print("|---|---|---|---|---|")
    for name, rs in (("loop closure", on), ("--no-loop", off)):
        f = [r["fps"] for r in rs]
        print(f"| {name} | {np.median(f):.1f} | {min(f):.1f}-{max(f):.1f} | "
              f"{np.median([r['p99_ms'] for r in rs]):.1f} | {'/'.join(str(r['loops']) for r in rs)} |")
    print(f"\np99 ratio loop/no-loop per trial: {' '.join(f'{x:.2f}' for x in ratios)} "
          f"(median {summary['p99_ratio_median']:.2f}); {time.time() - t0:.0f} s; "
          f"load {load_before[0]:.2f} -> {os.getloadavg()[0]:.2f}")
    (out / "bench_stall.json").write_text(json.dumps(
        {"scene": a.scene, "config": a.config, "trials": a.trials, "rows": rows, "summary": summary,
         "load_average": {"before": load_before, "after": os.getloadavg()}}, indent=2) + "\n")
    print(f"wrote {out / 'bench_stall.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
