#!/usr/bin/env python3
"""A long run with loop closure: memory over the run, bytes per keyframe, PGO and query times.

    python scripts/bench_long.py [--scene room_loop] [--sensor stereo] [--frames 10000]
                                 [--every 5] [--out DIR]

A closed synthetic scene is played `--frames` frames long (room_loop: one lap is 341 frames, so
10,000 frames are ~29 laps; every lap revisits the start), `slam run` style (threads as in a live
run, loop closure on). A sampler thread reads the process's resident memory (VmRSS) and the map's
keyframe count every `--every` seconds while the run goes (resident memory is what the allocator
holds: freed memory is not always returned to the system). Reported: memory at each quarter of the run, a
least-squares fit of memory against keyframes (bytes per keyframe), PGO time per loop against the
graph's size, place-recognition time per keyframe, frames/s. Prints a table and writes
DIR/bench_long.json. Times depend on the machine's load (recorded).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from slam.priority import one_blas_thread  # noqa: E402

one_blas_thread()  # as `slam` does; OPENBLAS_NUM_THREADS=2 measures the other setting

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from slam.config import load_config  # noqa: E402
from slam.io.text import write_text_atomic  # noqa: E402
from slam.synthetic import SyntheticSource  # noqa: E402
from slam.system import System  # noqa: E402

CONFIGS = {"stereo": "synthetic.yaml", "rgbd": "tum_rgbd.yaml", "mono": "euroc_mono.yaml"}


def rss_bytes() -> int:
    """Resident memory of this process (VmRSS of /proc/self/status)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status (Linux only)")


def main() -> int:
    """Run, sample, print, write JSON."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scene", default="room_loop")
    ap.add_argument("--sensor", default="stereo", choices=list(CONFIGS))
    ap.add_argument("--frames", type=int, default=10000)
    ap.add_argument("--every", type=float, default=5.0, help="sampling period, s")
    ap.add_argument("--out", default="bench_out/long")
    args = ap.parse_args()
    out = Path(args.out)
    cfg = load_config(REPO / "configs" / CONFIGS[args.sensor])
    src = SyntheticSource(args.scene, args.sensor, frames=args.frames)
    system = System(cfg, src, f"synthetic:{args.scene} x{args.frames}", out / "run", loop=True, progress=True)
    samples: list[tuple[float, int, int]] = []  # (time s, rss bytes, keyframes)
    stop = threading.Event()
    t0 = time.perf_counter()

    def sample() -> None:
        while not stop.is_set():
            samples.append((time.perf_counter() - t0, rss_bytes(), system.map.n_keyframes))
            stop.wait(args.every)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        rep = system.run().report
    finally:
        stop.set()
        sampler.join()
    end_rss = rss_bytes()  # after the run folder was written (plots, report): reported, not fitted
    t, rss, kfs = (np.array(c, dtype=float) for c in zip(*samples))
    grown = kfs > kfs.max() * 0.1  # past the start-up (imports, first allocations)
    slope, icpt = np.polyfit(kfs[grown], rss[grown], 1) if grown.sum() >= 2 else (float("nan"), float("nan"))
    lc = rep.get("loop_closure") if isinstance(rep.get("loop_closure"), dict) else {}
    solve_s = np.array(lc.get("pgo_solve_s") or [], float)
    verts = np.array(lc.get("pgo_vertices") or [], float)
    loops = json.loads((out / "run" / "loops.json").read_text())
    graph_kf = np.array([r["pgo"].get("keyframes", r["pgo"]["vertices"]) for r in loops], float)
    bounded = verts < graph_kf if len(graph_kf) == len(verts) else np.zeros(len(verts), bool)
    quarters = [int(np.argmin(np.abs(t - q * t[-1]))) for q in (0.0, 0.25, 0.5, 0.75, 1.0)]
    res = {"scene": args.scene, "sensor": args.sensor, "frames": rep["frames"], "frames_lost": rep["frames_lost"],
           "keyframes": rep["keyframes"], "landmarks": rep["landmarks"], "fps": rep["fps"],
           "loops": lc.get("accepted"), "rejected": lc.get("rejected"),
           "rss_mb_at_quarters": [rss[i] / 2**20 for i in quarters], "keyframes_at_quarters": [kfs[i] for i in quarters],
           "rss_mb_after_outputs": end_rss / 2**20, "bytes_per_keyframe": slope, "rss_fit_intercept_mb": icpt / 2**20,
           "pgo_solve_s": solve_s.tolist(), "pgo_vertices": verts.tolist(), "pgo_map_keyframes": graph_kf.tolist(),
           "pgo_bounded": bounded.tolist(),
           "place_features_ms_mean": lc.get("place_features_ms_mean"), "keyframe_ms_mean": lc.get("keyframe_ms_mean"),
           "keyframes_queried": lc.get("keyframes_queried"), "keyframes_checked": lc.get("keyframes_checked"),
           "ate": rep.get("ate"), "samples": samples, "load_average": os.getloadavg()}
    print(f"\n{args.scene} {args.sensor}, {rep['frames']} frames ({rep['frames_lost']} lost), {rep['keyframes']} keyframes, "
          f"{rep['landmarks']} landmarks, {rep['fps']:.1f} frames/s, {lc.get('accepted')} loops")
    print("| run fraction | 0 | 1/4 | 1/2 | 3/4 | end |\n|---|---|---|---|---|---|")
    print("| resident MB | " + " | ".join(f"{x:.0f}" for x in res["rss_mb_at_quarters"]) + " |")
    print("| keyframes | " + " | ".join(f"{x:.0f}" for x in res["keyframes_at_quarters"]) + " |")
    print(f"memory against keyframes: {slope / 1024:.1f} KiB per keyframe (least squares over the run past its first "
          f"10% of keyframes); {end_rss / 2**20:.0f} MB after writing the run folder")
    if len(solve_s):
        print(f"PGO solve: median {np.median(solve_s):.3f} s, max {solve_s.max():.3f} s; largest graph "
              f"{verts.max():.0f} vertices; the last quarter of the loops: median {np.median(solve_s[-max(1, len(solve_s) // 4):]):.3f} s")
        print("| graph | loops | vertices median | solve median s | max s |\n|---|---|---|---|---|")
        for name, m in (("whole", ~bounded), ("bounded (loop.pgo_max_keyframes)", bounded)):
            if m.any():
                print(f"| {name} | {m.sum()} | {np.median(verts[m]):.0f} | {np.median(solve_s[m]):.3f} | {solve_s[m].max():.3f} |")
    print(f"place recognition on {lc.get('keyframes_queried')} of {lc.get('keyframes_checked')} keyframes (loop.place_rate_hz); "
          f"per queried keyframe: place features {lc.get('place_features_ms_mean') or float('nan'):.1f} ms, loop work "
          f"{lc.get('keyframe_ms_mean') or float('nan'):.1f} ms (mean); ATE {(rep.get('ate') or {}).get('rmse_percent_of_path', float('nan')):.3f}% of path")
    write_text_atomic(out / "bench_long.json", json.dumps(res, indent=2, default=float) + "\n")
    print(f"wrote {out / 'bench_long.json'} (load average {os.getloadavg()[0]:.1f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
