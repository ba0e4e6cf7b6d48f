#!/usr/bin/env python3
"""How far the map's observations are from the truth, by track age (issue 10, point 1's floor).

    python scripts/bench_track_error.py [--scene room_loop] [--sensor stereo] [--seed 0] [--out DIR]

One blocking odometry run (no loop closure) per rendering, clean (`SyntheticSource(clean=True)`:
no noise, blur or exposure changes) and as `slam run` sees it. For every landmark, its first
keyframe observation is lifted to 3-D with the rendered depth at that pixel and the true camera
pose; the point is projected with the true poses into every later keyframe that observes the same
track. The distance between that projection and the stored observation is the observation's error
against the truth (the renderer is exact: tests/unit/test_synthetic_truth.py). Binned by the
track's age in keyframes: if tracks drifted step by step, the error would grow like a random walk
and re-tracking each observation from the first keyframe's image (the 'refined' column, KLT seeded
with the observation) would shrink it; if the tracked corner itself moves with the viewpoint
(texture filtering, occlusion edges), it grows with the viewpoint change and re-tracking does not
help. Both are printed, with the run's ATE and the ATE with loop closure and global BA of the same
rendering. Writes DIR/bench_track_error.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from slam.priority import keep_freed_memory, one_blas_thread  # noqa: E402

one_blas_thread()
keep_freed_memory()  # as `slam` does

import cv2  # noqa: E402
import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
from slam.config import load_config  # noqa: E402
from slam.io.text import write_text_atomic  # noqa: E402
from slam.synthetic import SyntheticSource  # noqa: E402
from slam.system import System  # noqa: E402

CONFIGS = {"stereo": "synthetic.yaml", "rgbd": "tum_rgbd.yaml"}
AGES = [(1, 2), (2, 4), (4, 8), (8, 16), (16, 32), (32, 10 ** 6)]
_LK = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 30, 0.01)


def run(scene: str, sensor: str, seed: int, clean: bool, loop: bool, out: Path) -> tuple[dict, object, SyntheticSource]:
    """One blocking run; (report, final map, source)."""
    cfg = load_config(REPO / "configs" / CONFIGS[sensor])
    cfg.odometry.blocking = cfg.loop.blocking = True
    cfg.loop.global_ba = loop
    cfg.loop.global_ba_iterations = 30
    src = SyntheticSource(scene, sensor, seed=seed, clean=clean)
    system = System(cfg, src, f"synthetic:{scene}", out, loop=loop, progress=False)
    return system.run().report, system.map, src


def observation_errors(the_map: object, src: SyntheticSource) -> dict:
    """Error (px) of each later observation against the truth, by track age; with re-tracking from the first keyframe."""
    st = the_map.export_state()
    n_kf = len(st["kf_frame"])
    ok = st["obs_inlier"] & (st["obs_kf"] < n_kf)
    order = np.lexsort((st["obs_kf"][ok], st["obs_lm"][ok]))
    lm, kf, uv = st["obs_lm"][ok][order], st["obs_kf"][ok][order], st["obs_uv"][ok][order]
    first = np.r_[True, lm[1:] != lm[:-1]]
    fi = np.maximum.accumulate(np.where(first, np.arange(len(lm)), 0))  # row of each track's first observation
    T = src.poses[st["kf_frame"]]  # true T_world_cam per keyframe
    c = src.sensor.intrinsics
    images, X = {}, np.full((len(lm), 3), np.nan)
    for k in np.unique(kf):
        img = src.render(int(st["kf_frame"][k])).left  # the image tracking saw (noise, blur unless clean)
        images[k] = img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        s = np.flatnonzero(first & (kf == k))
        if s.size:
            X[s] = src.surface_points(T[k], uv[s])  # lifted with the exact rendered depth
    Tcw = np.linalg.inv(T[kf])
    P = np.einsum("nij,nj->ni", Tcw[:, :3, :3], X[fi]) + Tcw[:, :3, 3]
    proj = np.stack([c.fx * P[:, 0] / P[:, 2] + c.cx, c.fy * P[:, 1] / P[:, 2] + c.cy], 1)
    err = np.linalg.norm(uv - proj, axis=1)
    age = kf - kf[fi]
    # re-tracked from the first keyframe's image, seeded with the observation (one LK call per keyframe pair)
    refined = np.full(len(lm), np.nan)
    later = np.flatnonzero(age > 0)
    pairs = np.unique(np.stack([kf[fi][later], kf[later]], 1), axis=0)
    for a, b in pairs:
        s = later[(kf[fi][later] == a) & (kf[later] == b)]
        p1 = uv[s].astype(np.float32).reshape(-1, 1, 2).copy()
        q, status, _ = cv2.calcOpticalFlowPyrLK(images[a], images[b], uv[fi[s]].astype(np.float32).reshape(-1, 1, 2),
                                                p1, winSize=(21, 21), maxLevel=1, criteria=_LK,
                                                flags=cv2.OPTFLOW_USE_INITIAL_FLOW)
        q = q.reshape(-1, 2)
        good = (status.ravel() == 1) & (np.linalg.norm(q - uv[s], axis=1) < 2.0)
        refined[s[good]] = np.linalg.norm(q[good] - proj[s[good]], axis=1)
    usable = np.isfinite(err) & (err < 5.0)  # a first observation on a depth edge lifts to the wrong surface
    rows = []
    for a0, a1 in AGES:
        s = usable & (age >= a0) & (age < a1)
        r = s & np.isfinite(refined)
        if s.sum():
            rows.append({"age": [a0, a1], "n": int(s.sum()), "median_px": float(np.median(err[s])),
                         "rms_px": float(np.sqrt(np.mean(err[s] ** 2))), "retracked_share": float(r.sum() / s.sum()),
                         "median_px_same_obs": float(np.median(err[r])) if r.any() else None,
                         "median_px_retracked": float(np.median(refined[r])) if r.any() else None})
    return {"observations": int(len(lm)), "usable": int(usable.sum()), "by_age": rows}


def main() -> int:
    """Both renderings; prints the table, writes JSON."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scene", default="room_loop")
    ap.add_argument("--sensor", default="stereo", choices=list(CONFIGS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="bench_out/track_error")
    args = ap.parse_args()
    out = Path(args.out)
    result = {"scene": args.scene, "sensor": args.sensor, "seed": args.seed, "renderings": {}}
    for clean in (True, False):
        name = "clean" if clean else "as rendered for slam run"
        rep, the_map, src = run(args.scene, args.sensor, args.seed, clean, False, out / f"{'clean' if clean else 'noisy'}-noloop")
        loop_rep, _, _ = run(args.scene, args.sensor, args.seed, clean, True, out / f"{'clean' if clean else 'noisy'}-loop-gba")
        errs = observation_errors(the_map, src)
        r = {"ate_no_loop": rep["ate"], "ate_loop_global_ba": loop_rep["ate"], **errs}
        result["renderings"][name] = r
        print(f"\n{args.scene} {args.sensor} seed {args.seed}, {name}: ATE {rep['ate']['rmse'] * 1e3:.1f} mm without "
              f"loop closure, {loop_rep['ate']['rmse'] * 1e3:.1f} mm with loop closure and global BA")
        print("| track age (keyframes) | observations | median error px | rms px | re-tracked share | "
              "median px (same obs.) | median px re-tracked from the first keyframe |")
        print("|---|---|---|---|---|---|---|")
        for b in errs["by_age"]:
            a0, a1 = b["age"]
            rng = f"{a0}-{a1 - 1}" if a1 < 10 ** 6 else f">= {a0}"
            f = lambda x: "-" if x is None else f"{x:.3f}"  # noqa: E731
            print(f"| {rng} | {b['n']} | {b['median_px']:.3f} | {b['rms_px']:.3f} | {b['retracked_share']:.2f} | "
                  f"{f(b['median_px_same_obs'])} | {f(b['median_px_retracked'])} |", flush=True)
    result["load_average"] = os.getloadavg()
    write_text_atomic(out / "bench_track_error.json", json.dumps(result, indent=2, default=float) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
