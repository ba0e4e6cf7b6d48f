#!/usr/bin/env python3
"""Saved maps benchmark (issue 12, point 4): the first half of a synthetic loop saves a map, the second
half loads it.

Runs `slam run` (the command line, as a person would) three or four times on one scene:

1. the full sequence with --no-loop: the VO ATE (se3 alignment, as report.json has it), the reference;
2. frames 0:H with --save-map MAP;
3. frames H:N with --load-map MAP (loop closure on, the map grows): frames before relocalization,
   and the ATE of its trajectory.tum against ground truth expressed in the first run's frame
   (T = T_groundtruth_world^-1 of MAP/map.json, the first run's first tracked camera) with NO alignment;
   and the same with --no-loop (odometry in the loaded map only: no loop against it at the end);
4. (--localize-check) a slice inside the first half with --load-map MAP --localize: the map saved
   from that run must hold the same keyframes and landmarks as MAP.

Criterion: second-half ATE <= 2x the full run's VO ATE, relocalization within 5 frames.

    python scripts/bench_maps.py --scene room_loop --out bench_out/maps

Prints a table and writes bench_maps.json in --out.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from slam.eval.align import associate  # noqa: E402
from slam.io.trajectory import read_tum  # noqa: E402
from slam.map.store import load_map  # noqa: E402
from slam_cli import slam_cli  # noqa: E402 (scripts/ is on sys.path when a script runs)


def slam_run(args: list[str]) -> tuple[dict[str, Any], float]:
    """Run `python -m slam run ARGS --quiet`; (report.json, wall seconds). Exits on a failed run."""
    t0 = time.perf_counter()
    slam_cli("run", *args, "--quiet")
    out = Path(args[args.index("--out") + 1])
    return json.loads((out / "report.json").read_text()), time.perf_counter() - t0


def ate_in_map_frame(run: Path, T_gt_world: np.ndarray, scale: float = 1.0) -> dict[str, Any]:
    """ATE (no alignment) of run/trajectory.tum against run/groundtruth.tum moved into the map's frame;
    monocular maps have their own scale: `scale` (metres per map unit, the first run's sim3 scale)
    multiplies the estimate, nothing else is aligned."""
    est, gt = read_tum(run / "trajectory.tum"), read_tum(run / "groundtruth.tum")
    i, j = associate(est.timestamps, gt.timestamps)
    gt_map = np.linalg.inv(T_gt_world)[None] @ gt.poses[j]
    err = np.linalg.norm(scale * est.poses[i, :3, 3] - gt_map[:, :3, 3], axis=1)
    return {"rmse": float(np.sqrt(np.mean(err ** 2))), "max": float(err.max()), "matched": int(len(i)),
            "align": "none"}


def measure(scene: str, config: str, out: Path, split: int | None, localize_check: bool) -> dict[str, Any]:
    """The runs and numbers of one scene."""
    src = f"synthetic:{scene}"
    base = [str(REPO / "configs" / config), "--source", src]
    full, t_full = slam_run(base + ["--out", str(out / "full_vo"), "--no-loop"])
    n = full["frames"]
    h = n // 2 if split is None else split
    mp = out / "map"
    first, t_a = slam_run(base + ["--out", str(out / "first_half"), "--frames", f"0:{h}", "--save-map", str(mp)])
    second, t_b = slam_run(base + ["--out", str(out / "second_half"), "--frames", f"{h}:{n}", "--load-map", str(mp)])
    head = json.loads((mp / "map.json").read_text())
    T_gt_world = np.asarray(head["world"]["T_groundtruth_world"], np.float64)
    gt0 = read_tum(out / "first_half" / "groundtruth.tum").poses[0]  # the brief's T: first run's first camera
    # a monocular map's unit: the first half's sim3 scale (1 for stereo / RGB-D, whose se3 has none)
    scale = float(first["ate"].get("scale") or 1.0) if first["ate"]["align"] == "sim3" else 1.0
    ate2 = ate_in_map_frame(out / "second_half", T_gt_world, scale)
    m = second["map"]
    res: dict[str, Any] = {
        "scene": scene, "config": config, "frames": n, "split": h,
        "full_vo_ate_se3_m": full["ate"]["rmse"], "first_half_ate_se3_m": first["ate"]["rmse"],
        "align_of_full_runs": full["ate"]["align"], "map_scale_m_per_unit": scale,
        "map": {"keyframes": head["counts"]["keyframes"], "landmarks": head["counts"]["landmarks"],
                "bytes": sum(p.stat().st_size for p in mp.iterdir())},
        "gt_origin_matches_first_groundtruth_row": bool(np.allclose(gt0, T_gt_world, atol=1e-6)),
        "second_half": {"ate_no_alignment_map_frame_m": ate2["rmse"], "ate_max_m": ate2["max"],
                        "matched": ate2["matched"], "ate_se3_m": second["ate"]["rmse"],
                        "first_relocalized_frame": m["first_relocalized_frame"],
                        "frames_before_relocalization": m["frames_before_relocalization"],
                        "frames_lost": second["frames_lost"], "keyframes_after": second["keyframes"],
                        "loops": second["loop_closure"].get("accepted") if isinstance(second["loop_closure"], dict)
                        else None},
        "wall_s": {"full_vo": t_full, "first_half": t_a, "second_half": t_b},
    }
    # the same without loop closure (pure VO after relocalization): what the loaded map alone gives
    nl, t_nl = slam_run(base + ["--out", str(out / "second_half_no_loop"), "--frames", f"{h}:{n}", "--load-map",
                                str(mp), "--no-loop"])
    ate_nl = ate_in_map_frame(out / "second_half_no_loop", T_gt_world, scale)
    res["second_half_no_loop"] = {"ate_no_alignment_map_frame_m": ate_nl["rmse"], "ate_max_m": ate_nl["max"],
                                  "frames_before_relocalization": nl["map"]["frames_before_relocalization"],
                                  "frames_lost": nl["frames_lost"], "wall_s": t_nl}
    res["ratio_to_vo"] = res["second_half"]["ate_no_alignment_map_frame_m"] / res["full_vo_ate_se3_m"]
    fb = m["frames_before_relocalization"]
    res["pass"] = bool(res["ratio_to_vo"] <= 2.0 and fb is not None and fb <= 5)
    if localize_check:
        a, b = h // 3, (2 * h) // 3
        loc, t_loc = slam_run(base + ["--out", str(out / "localize"), "--frames", f"{a}:{b}", "--load-map", str(mp),
                                      "--localize", "--save-map", str(out / "map_after_localize")])
        before, after = load_map(mp).map.export_state(), load_map(out / "map_after_localize").map.export_state()
        same = all(np.array_equal(before[k], after[k], equal_nan=before[k].dtype.kind == "f")
                   for k in before if k != "covisibility")
        ate_loc = ate_in_map_frame(out / "localize", T_gt_world, scale)
        res["localize"] = {"frames": [a, b], "map_unchanged": bool(same), "keyframes": loc["keyframes"],
                           "landmarks": loc["landmarks"], "frames_lost": loc["frames_lost"],
                           "frames_before_relocalization": loc["map"]["frames_before_relocalization"],
                           "ate_no_alignment_map_frame_m": ate_loc["rmse"], "wall_s": t_loc}
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scene", default="room_loop")
    ap.add_argument("--config", default="synthetic.yaml", help="configs/ file (default: stereo synthetic.yaml)")
    ap.add_argument("--split", type=int, help="first frame of the second half (default: half the frames)")
    ap.add_argument("--no-localize-check", action="store_true", help="skip the --localize run")
    ap.add_argument("--out", default="bench_out/maps")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    r = measure(a.scene, a.config, out, a.split, not a.no_localize_check)
    s = r["second_half"]
    al = r["align_of_full_runs"]
    rows = [(f"full run VO ATE ({al} aligned)", f"{r['full_vo_ate_se3_m']:.4f} m"),
            (f"first half 0:{r['split']} ATE ({al})", f"{r['first_half_ate_se3_m']:.4f} m"),
            ("saved map", f"{r['map']['keyframes']} keyframes, {r['map']['landmarks']} landmarks, "
                          f"{r['map']['bytes'] / 1e6:.1f} MB"),
            (f"second half {r['split']}:{r['frames']} ATE, no alignment, map frame",
             f"{s['ate_no_alignment_map_frame_m']:.4f} m (max {s['ate_max_m']:.4f}, {s['matched']} poses)"),
            ("  ratio to full-run VO ATE (<= 2)", f"{r['ratio_to_vo']:.2f}"),
            ("  frames before relocalization (<= 5)", str(s["frames_before_relocalization"])),
            ("  frames lost / loops closed", f"{s['frames_lost']} / {s['loops']}")]
    nl = r["second_half_no_loop"]
    rows += [("second half with --no-loop: ATE, no alignment",
              f"{nl['ate_no_alignment_map_frame_m']:.4f} m (max {nl['ate_max_m']:.4f}; ratio "
              f"{nl['ate_no_alignment_map_frame_m'] / r['full_vo_ate_se3_m']:.2f})"),
             ("  frames before relocalization / lost", f"{nl['frames_before_relocalization']} / {nl['frames_lost']}")]
    if al == "sim3":
        rows.insert(3, ("monocular map unit (first half's sim3 scale)", f"{r['map_scale_m_per_unit']:.4f} m"))
    if "localize" in r:
        lo = r["localize"]
        rows += [(f"--localize {lo['frames'][0]}:{lo['frames'][1]}: map unchanged", str(lo["map_unchanged"])),
                 ("  ATE no alignment / frames lost / before reloc",
                  f"{lo['ate_no_alignment_map_frame_m']:.4f} m / {lo['frames_lost']} / "
                  f"{lo['frames_before_relocalization']}")]
    rows.append(("PASS" if r["pass"] else "FAIL", ""))
    w = max(len(k) for k, _ in rows)
    print(f"bench_maps: {r['scene']} ({r['config']}, {r['frames']} frames)")
    for k, v in rows:
        print(f"  {k:<{w}}  {v}")
    (out / "bench_maps.json").write_text(json.dumps(r, indent=2) + "\n")
    print(f"wrote {out / 'bench_maps.json'}")
    return 0 if r["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
