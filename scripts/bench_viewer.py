#!/usr/bin/env python3
"""Tracking speed with the live 3-D viewer open against `--viewer none`.

    python scripts/bench_viewer.py [--frames N] [--pairs P] [--out DIR]

A synthetic room_loop sequence is written once in EuRoC format (`slam simulate`, N frames, default
300) under DIR/data; then `slam run configs/euroc_stereo.yaml` processes it P times with
`--viewer none` and P times with `--viewer open3d`, alternating (none, open3d, none, ...) so that
changes of the machine's load hit both alike. Frames are processed as fast as tracking runs (the
case where the viewer competes most for the CPU). Each run is its own process, so the viewer's
start (its process, Open3D's import, the window) is inside the measurement. Without a display an
Xvfb server is started for the runs (`make system-deps` installs xvfb).

Reported per mode: report.json's tracking_fps of every run, the median, and the ratio of the
medians; for the viewer runs, the viewer's line (updates sent/dropped, time taking map snapshots,
for which the map's lock is held, time the tracking thread spent per update, the viewer process's
CPU time). Prints a table and writes DIR/bench_viewer.json with the host's CPU count and load.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from slam_cli import slam_cli  # scripts/ is on sys.path when a script runs


def _start_xvfb() -> tuple[subprocess.Popen | None, str]:
    if os.environ.get("DISPLAY"):
        return None, os.environ["DISPLAY"]
    if shutil.which("Xvfb") is None:
        sys.exit("bench_viewer: no DISPLAY and no Xvfb (`make system-deps` installs it)")
    for n in range(90, 140):
        if not Path(f"/tmp/.X11-unix/X{n}").exists() and not Path(f"/tmp/.X{n}-lock").exists():
            proc = subprocess.Popen(["Xvfb", f":{n}", "-screen", "0", "1600x1000x24", "-nolisten", "tcp"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for _ in range(50):
                if Path(f"/tmp/.X11-unix/X{n}").exists():
                    return proc, f":{n}"
                time.sleep(0.1)
            proc.terminate()
    sys.exit("bench_viewer: could not start Xvfb")


def main() -> int:
    """Run the pairs, print the table, write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--out", default="bench_out/viewer")
    args = ap.parse_args()
    out = Path(args.out).resolve()
    data = out / "data"
    if not (data / "mav0").exists():
        slam_cli("simulate", "room_loop", "--format", "euroc", "--out", str(data), "--frames", str(args.frames))
    xvfb, display = _start_xvfb()
    env = dict(os.environ, DISPLAY=display)
    rows: list[dict] = []
    try:
        for i in range(args.pairs):
            for mode in ("none", "open3d"):
                run_dir = out / f"run_{mode}_{i}"
                shutil.rmtree(run_dir, ignore_errors=True)
                load = os.getloadavg()[0]
                r = slam_cli("run", "configs/euroc_stereo.yaml", "--source", str(data), "--viewer", mode, "--quiet",
                             "--out", str(run_dir), env=env)
                rep = json.loads((run_dir / "report.json").read_text())
                line = next((ln for ln in r.stderr.splitlines() if "viewer:" in ln), "")
                m = re.search(r"(\d+) updates sent, (\d+) dropped.*snapshot ([\d.]+) ms mean, ([\d.]+) ms max"
                              r".*per update ([\d.]+) ms mean.*CPU ([\d.]+) s \(([\d.]+) s to open", line)
                row = {"mode": mode, "pair": i, "tracking_fps": rep["tracking_fps"], "fps": rep["fps"],
                       "frames": rep["frames"], "load_before": load}
                if m:
                    row.update(sent=int(m[1]), dropped=int(m[2]), snapshot_ms_mean=float(m[3]),
                               snapshot_ms_max=float(m[4]), update_ms_mean=float(m[5]), viewer_cpu_s=float(m[6]),
                               viewer_start_cpu_s=float(m[7]))
                rows.append(row)
                print(f"{mode:7s} run {i}: tracking {rep['tracking_fps']:6.2f} frames/s  (load {load:.1f})  "
                      f"{line.replace('slam run: ', '')}", flush=True)
    finally:
        if xvfb is not None:
            xvfb.terminate()
            xvfb.wait(5)
    import numpy as np

    med = {m: float(np.median([r["tracking_fps"] for r in rows if r["mode"] == m])) for m in ("none", "open3d")}
    ratio = med["open3d"] / med["none"]
    print("\n| viewer | runs | tracking fps (each) | median |")
    print("| --- | --- | --- | --- |")
    for m in ("none", "open3d"):
        each = ", ".join(f"{r['tracking_fps']:.2f}" for r in rows if r["mode"] == m)
        print(f"| {m} | {args.pairs} | {each} | {med[m]:.2f} |")
    print(f"\nopen3d / none (medians): {ratio:.3f}  ({100 * (ratio - 1):+.1f}%; the requirement is within -10%)")
    result = {"frames": args.frames, "pairs": args.pairs, "runs": rows, "median_tracking_fps": med,
              "ratio_open3d_over_none": ratio, "cpu_count": os.cpu_count(), "loadavg_end": os.getloadavg()}
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_viewer.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out / 'bench_viewer.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
