#!/usr/bin/env python3
"""Loop-closure benchmark on the synthetic scenes: accuracy, revisits found, false loops, stalls, precision.

For every (scene, sensor) pair it runs `slam run` twice on the same rendering, with and without
loop closure, in blocking mode (tracking waits for each keyframe's BA and loop check: a
like-for-like pair), and reports (issue 10's done-when points):

1. ATE RMSE (% of path) with and without loops, and their ratio;
2. revisit segments from the ground truth (a keyframe whose true camera centre comes within
   `--revisit-radius` m of a keyframe at least `--revisit-gap` s older, looking the same way
   within 60 degrees), how many got a loop (a loop query inside the segment or within 2 s after
   it), and false loops (true centres of the two keyframes more than 1 m apart); corridor_repeat
   (identical corridor modules, walked once) has no revisit and look-alike places everywhere;
4. tracking frame time p99 with and without loops (meaningful with `--nonblocking`, where the
   worker threads compete with tracking as in a live run instead of tracking waiting for them);
5. for every PGO, the relative difference of its final cost to an fp64 solve of the same graph;
   and GTSAM's cost of the exported pose_graph.g2o (SE(3) or Sim(3)) against the last loop's
   final cost in loops.json (where GTSAM is installed: pip install -e '.[bench]').

    python scripts/bench_loop.py --scenes room_loop --sensors stereo rgbd mono --out bench_out/loop

Prints a table and writes bench_loop.json. Timings depend on the machine's load (reported).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from slam.priority import keep_freed_memory, one_blas_thread  # noqa: E402

one_blas_thread()  # as `slam` does; OPENBLAS_NUM_THREADS=2 measures the other setting
keep_freed_memory()  # as `slam` does

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from slam.config import load_config  # noqa: E402
from slam.synthetic import SyntheticSource  # noqa: E402
from slam.system import System  # noqa: E402

CONFIGS = {"stereo": "synthetic.yaml", "rgbd": "tum_rgbd.yaml", "mono": "euroc_mono.yaml"}


GLOBAL_BA: bool | None = None  # --global-ba / --no-global-ba override the config


def _config(scene: str, sensor: str, blocking: bool, seed: int) -> object:
    name = "kitti_mono.yaml" if (scene == "street_loop" and sensor == "mono") else CONFIGS[sensor]
    cfg = load_config(REPO / "configs" / name)
    cfg.odometry.blocking = blocking
    cfg.loop.check_fp64 = True
    cfg.source.seed = seed
    if GLOBAL_BA is not None:
        cfg.loop.global_ba = GLOBAL_BA
    return cfg


def revisits(gt: np.ndarray, times: np.ndarray, radius: float, gap_s: float) -> list[tuple[int, int]]:
    """[first, last] keyframe index ranges whose true pose revisits an older keyframe's place."""
    c = gt[:, :3, 3]
    z = gt[:, :3, 2]
    d = np.linalg.norm(c[:, None] - c[None], axis=2)
    same_way = (z @ z.T) > np.cos(np.radians(60))
    older = (times[:, None] - times[None]) >= gap_s
    hit = ((d < radius) & same_way & older).any(axis=1)
    idx = np.flatnonzero(hit)
    if idx.size == 0:
        return []
    cut = np.flatnonzero(np.diff(idx) > 1) + 1
    return [(int(g[0]), int(g[-1])) for g in np.split(idx, cut)]


def one_run(scene: str, sensor: str, loop: bool, blocking: bool, frames: int | None, seed: int, out: Path) -> dict:
    """One `slam run` with the report and loops it wrote, plus ground truth of its keyframes."""
    src_sensor = "kitti" if (scene == "street_loop" and sensor == "mono") else sensor
    src = SyntheticSource(scene, src_sensor, frames=frames, seed=seed)
    cfg = _config(scene, sensor, blocking, seed)
    t0 = time.perf_counter()
    system = System(cfg, src, f"synthetic:{scene}", out, loop=loop, progress=False)
    res = system.run()
    rep = res.report
    snap = system.map.snapshot()
    gt_kf = src.poses[snap.keyframe_frames]
    wall = time.perf_counter() - t0
    loops = json.loads((out / "loops.json").read_text())
    return {"report": rep, "loops": loops, "wall_s": wall, "gtsam_gap": gtsam_gap(out, loops),
            "kf_times": snap.keyframe_timestamps, "kf_gt": gt_kf, "rate": src.sensor.rate_hz, "gt": src.poses}


def gtsam_gap(out: Path, loops: list[dict]) -> dict | None:
    """The exported pose_graph.g2o against the last loop's final PGO cost in loops.json (issue 10,
    point 5), relative: GTSAM's cost at the file's poses ('at_poses') and GTSAM LM re-solving the
    file from them ('resolved'); None without a loop or without GTSAM."""
    path = out / "pose_graph.g2o"
    if not loops or not path.is_file():
        return None
    try:
        import gtsam  # noqa: F401
    except ImportError:
        return None
    from slam.eval.peers import gtsam_cost, gtsam_pgo
    from slam.io.g2o import read_g2o

    reported = loops[-1]["pgo"]["final_cost"]
    try:
        return {"at_poses": (gtsam_cost(path, read_g2o(path).poses) - reported) / reported,
                "resolved": (gtsam_pgo(path)["final_cost"] - reported) / reported}
    except Exception as exc:  # the row still gets its other numbers; the failure is printed
        print(f"  GTSAM check of {path} failed: {exc!r}", file=sys.stderr)
        return {"at_poses": float("nan"), "resolved": float("nan"), "error": repr(exc)}


def summarize(scene: str, sensor: str, off: dict, on: dict, radius: float, gap: float) -> dict:
    """One row of the table."""
    ate = lambda r: r["report"].get("ate", {}).get("rmse_percent_of_path", float("nan"))  # noqa: E731
    gt = on["gt"]
    false, qkf = 0, []
    for rec in on["loops"]:
        q = gt[int(round(rec["query"]["timestamp"] * on["rate"]))]
        m = gt[int(round(rec["match"]["timestamp"] * on["rate"]))]
        false += int(np.linalg.norm(q[:3, 3] - m[:3, 3]) > 1.0)
        qkf.append(rec["query"]["timestamp"])
    segs = revisits(on["kf_gt"], on["kf_times"], radius, gap)
    found = sum(1 for a, b in segs
                if any(on["kf_times"][a] <= t <= on["kf_times"][b] + 2.0 for t in qkf))
    lc = on["report"]["loop_closure"]
    pgo_diff = [r["pgo"].get("fp64_relative_cost_difference") for r in on["loops"]]
    return {
        "scene": scene, "sensor": sensor, "frames": on["report"]["frames"], "keyframes": on["report"]["keyframes"],
        "ate_noloop_pct": ate(off), "ate_loop_pct": ate(on), "ratio": ate(on) / ate(off) if ate(off) else None,
        "loops": len(on["loops"]), "false_loops": false, "revisit_segments": len(segs), "revisits_found": found,
        "rejected": lc.get("rejected") if isinstance(lc, dict) else None,
        "loop_status": lc.get("status") if isinstance(lc, dict) else lc,
        "pgo_solve_s": [r["pgo"]["time_s"]["solve"] for r in on["loops"]],
        "pgo_vertices": [r["pgo"]["vertices"] for r in on["loops"]],
        "pgo_fp64_relative_cost_difference": pgo_diff,
        "gtsam_relative_cost_difference": on["gtsam_gap"],
        "global_ba": [r.get("global_ba") for r in on["loops"]],
        "frame_ms_p99": {"loop": on["report"]["frame_time_ms"].get("p99"),
                         "noloop": off["report"]["frame_time_ms"].get("p99")},
        "frame_ms_p99_during_pgo": lc.get("frame_time_ms", {}).get("during_pgo", {}).get("p99")
        if isinstance(lc, dict) else None,
        "fps_loop": on["report"]["fps"], "fps_noloop": off["report"]["fps"],
        "wall_s": [off["wall_s"], on["wall_s"]],
    }


def pgo_scaling(n: int, precision: str) -> dict:
    """Build and solve the pose graph of an n-keyframe map (a drifted circle, 80 shared landmarks
    between neighbours, one loop): the size of a long run's graph, without the run."""
    from slam.loop.config import LoopConfig
    from slam.geometry import lie
    from slam.loop.posegraph import LoopEdge, build_graph, solve_graph
    from slam.map.keyframe import KeyframeData
    from slam.map.map import Map

    a = 2 * np.pi * np.arange(n) / n
    truth = lie.se3_from_Rt(lie.so3_exp(np.stack([np.zeros(n), a, np.zeros(n)], 1)),
                            np.stack([20 * np.sin(a), np.zeros(n), 20 * np.cos(a)], 1))
    rel = lie.se3_inverse(truth[:-1]) @ truth[1:]
    err = lie.se3_exp(np.array([0.0, 2e-4, 0.0, 0, 0, 0]))
    est = [truth[0]]
    for Z in rel:
        est.append(est[-1] @ err @ Z)
    m = Map()
    ids = m.allocate_ids(40 * n + 120)
    for i, T in enumerate(est):
        obs = ids[i * 40:i * 40 + 120]
        m.insert_keyframe(KeyframeData(id=i, frame_index=i, timestamp=0.1 * i, pose=T, segment=0, ids=obs,
                                       uv=np.zeros((120, 2)), u_right=np.full(120, np.nan),
                                       depth=np.full(120, np.nan)))
    t0 = time.perf_counter()
    g = build_graph(m, [LoopEdge(0, n - 1, lie.se3_inverse(truth[0]) @ truth[-1], 150)],
                    LoopConfig(covisibility_min_shared=60), "se3")
    t1 = time.perf_counter()
    sol = solve_graph(g, precision, 30, build_s=t1 - t0)
    ref = solve_graph(g, "fp64", 30)
    return {"keyframes": n, "edges": int(len(g.edges)), "build_s": t1 - t0, "solve_s": sol.solve_s,
            "iterations": sol.summary.iterations, "cg_iterations": sol.summary.total_linear_iterations,
            "final_cost": sol.summary.final_cost, "fp64_final_cost": ref.summary.final_cost,
            "relative_cost_difference": abs(sol.summary.final_cost - ref.summary.final_cost)
            / max(ref.summary.final_cost, 1e-300)}


def main() -> int:
    """Run the pairs, print the table, write JSON."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenes", nargs="*", default=["room_loop", "room_figure8", "office_long", "street_loop", "corridor_repeat"])
    ap.add_argument("--sensors", nargs="+", default=["stereo", "rgbd", "mono"], choices=list(CONFIGS))
    ap.add_argument("--frames", type=int, default=None, help="limit frames per run (default: whole scene)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--revisit-radius", type=float, default=1.0)
    ap.add_argument("--revisit-gap", type=float, default=10.0, help="s: a revisit is of a keyframe this much older")
    ap.add_argument("--nonblocking", action="store_true",
                    help="tracking does not wait for the workers (live-run timing; pairs are then not like-for-like)")
    ap.add_argument("--global-ba", dest="global_ba", action="store_true", default=None,
                    help="global bundle adjustment after each loop (default: the config's)")
    ap.add_argument("--no-global-ba", dest="global_ba", action="store_false")
    ap.add_argument("--pgo-size", type=int, nargs="*", default=[],
                    help="also time the pose graph of maps of these many keyframes (e.g. 2000)")
    ap.add_argument("--out", default="bench_out/loop")
    args = ap.parse_args()
    global GLOBAL_BA
    GLOBAL_BA = args.global_ba
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows, pgo_rows = [], []
    for n in args.pgo_size:
        r = pgo_scaling(n, "mixed")
        pgo_rows.append(r)
        print(f"pose graph of {n} keyframes: {r['edges']} edges, build {r['build_s']:.3f} s, solve (mixed) "
              f"{r['solve_s']:.3f} s, {r['iterations']} it / {r['cg_iterations']} CG, cost vs fp64 "
              f"{r['relative_cost_difference']:.1e}", flush=True)
    for scene in args.scenes:
        for sensor in args.sensors:
            if scene == "street_loop" and sensor == "rgbd":
                continue  # no depth camera outdoors
            for seed in args.seeds:
                tag = f"{scene}-{sensor}-s{seed}"
                blocking = not args.nonblocking
                off = one_run(scene, sensor, False, blocking, args.frames, seed, out / f"{tag}-noloop")
                on = one_run(scene, sensor, True, blocking, args.frames, seed, out / f"{tag}-loop")
                row = summarize(scene, sensor, off, on, args.revisit_radius, args.revisit_gap)
                row["seed"] = seed
                rows.append(row)
                print(f"{tag:32s} ATE {row['ate_noloop_pct']:.3f}% -> {row['ate_loop_pct']:.3f}%  "
                      f"loops {row['loops']} (false {row['false_loops']})  revisits {row['revisits_found']}/"
                      f"{row['revisit_segments']}  PGO {['%.2f' % t for t in row['pgo_solve_s']]} s", flush=True)
    load = os.getloadavg()
    print(f"\n{'scene':16s} {'sensor':7s} {'noloop%':>8s} {'loop%':>8s} {'ratio':>6s} {'loops':>5s} {'false':>5s} "
          f"{'revisit':>8s} {'fp64 dcost':>10s} {'GTSAM dcost':>11s}")  # GTSAM LM re-solving pose_graph.g2o
    for r in rows:
        d = max([x for x in r["pgo_fp64_relative_cost_difference"] if x is not None], default=float("nan"))
        ratio = f"{r['ratio']:.2f}" if r["ratio"] is not None else "-"
        g = r["gtsam_relative_cost_difference"]
        g = f"{g['resolved']:11.1e}" if g is not None else f"{'-':>11s}"
        print(f"{r['scene']:16s} {r['sensor']:7s} {r['ate_noloop_pct']:8.3f} {r['ate_loop_pct']:8.3f} {ratio:>6s} "
              f"{r['loops']:5d} {r['false_loops']:5d} {r['revisits_found']:>3d}/{r['revisit_segments']:<4d} {d:10.2e} {g}")
    print(f"machine load average: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    (out / "bench_loop.json").write_text(json.dumps({"rows": rows, "pgo_scaling": pgo_rows, "load_average": load}, indent=2, default=float) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
