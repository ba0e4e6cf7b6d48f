#!/usr/bin/env python3
"""Map segments merged by a loop: a run with black frames in the middle (issue 10, point 8).

    python scripts/bench_segments.py [--scene room_loop] [--sensors stereo rgbd mono]
                                     [--black START:END] [--new-map-after S] [--out DIR]

The synthetic scene is played with frames START..END-1 black (default 120:140, 1 s at 20 Hz):
tracking is lost; after `frontend.new_map_after` seconds (default here 0.5 s, shorter than the
blackout, so that a new map segment starts instead of relocalizing against the old one) tracking
starts a new segment whose frame is unrelated to the first. When the camera comes back to a
place seen before the blackout, a loop between the two segments merges them into one frame.
Reported per run: segments started, loops, whether a loop joined two segments (merged: both are
then solved in one pose graph and share one frame), and ATE over the whole run with one alignment
(what report.json scores), beside the same run without loop closure (where the second segment is
only chained at the last pose before the loss: the motion across the gap is not estimated).
Runs are deterministic (`odometry.blocking`). Prints a table and writes DIR/bench_segments.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from slam.priority import keep_freed_memory, one_blas_thread  # noqa: E402

one_blas_thread()  # as `slam` does; OPENBLAS_NUM_THREADS=2 measures the other setting
keep_freed_memory()  # as `slam` does


REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from slam.config import load_config  # noqa: E402
from slam.io.text import write_text_atomic  # noqa: E402
from slam.sources.edited import EditedSource  # noqa: E402
from slam.synthetic import SyntheticSource  # noqa: E402
from slam.system import System  # noqa: E402

CONFIGS = {"stereo": "synthetic.yaml", "rgbd": "tum_rgbd.yaml", "mono": "euroc_mono.yaml"}


def one_run(scene: str, sensor: str, black: range, new_map_after: float, out: Path, loop: bool = True) -> dict:
    """One blocking run (with loop closure unless loop=False); its segment history and report."""
    cfg = load_config(REPO / "configs" / CONFIGS[sensor])
    cfg.odometry.blocking = True
    cfg.loop.blocking = True
    cfg.frontend.new_map_after = new_map_after
    src = EditedSource(SyntheticSource(scene, sensor), blank=black, blank_depth=True)  # a covered lens
    system = System(cfg, src, f"synthetic:{scene} (black {black.start}:{black.stop})", out, loop=loop, progress=False)
    rep = system.run().report
    snap = system.map.snapshot()
    loops = json.loads((out / "loops.json").read_text())
    seg_of = dict(zip(snap.keyframe_ids.tolist(), snap.keyframe_segments.tolist()))
    made = int(system.tracker.segment) + 1  # segment ids count from 0
    pairs = [(seg_of.get(r["query"]["keyframe"]), seg_of.get(r["match"]["keyframe"])) for r in loops]
    return {"sensor": sensor, "loop_closure_on": loop, "frames": rep["frames"], "lost": len(rep["lost_frames"]),
            "keyframes": rep["keyframes"], "segments_started": made,
            "loops": len(loops), "loop_pairs": [(r["query"]["keyframe"], r["match"]["keyframe"]) for r in loops],
            "segments_of_loop_pairs": pairs, "merged": any(p != q for p, q in pairs),
            "ate": rep.get("ate"), "loop_closure": rep.get("loop_closure")}


def main() -> int:
    """Run each sensor, print the table, write JSON."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scene", default="room_loop")
    ap.add_argument("--sensors", nargs="+", default=["stereo", "rgbd", "mono"], choices=list(CONFIGS))
    ap.add_argument("--black", default="120:140", help="START:END frames made black (default 120:140)")
    ap.add_argument("--new-map-after", type=float, default=0.5)
    ap.add_argument("--out", default="bench_out/segments")
    args = ap.parse_args()
    a, b = (int(x) for x in args.black.split(":"))
    out = Path(args.out)
    rows = []
    for sensor in args.sensors:
        for loop in (True, False):
            tag = f"{args.scene}-{sensor}" + ("" if loop else "-noloop")
            r = one_run(args.scene, sensor, range(a, b), args.new_map_after, out / tag, loop)
            rows.append(r)
            ate = r["ate"] or {}
            print(f"{tag:22s} frames {r['frames']} lost {r['lost']} keyframes {r['keyframes']} segments "
                  f"{r['segments_started']} loops {r['loops']} (segments {r['segments_of_loop_pairs']}) merged "
                  f"{'yes' if r['merged'] else 'no'}  ATE {ate.get('rmse', float('nan')):.4f} m ({ate.get('align')}, "
                  f"{ate.get('rmse_percent_of_path', float('nan')):.3f}% of path)", flush=True)
    write_text_atomic(out / "bench_segments.json", json.dumps({"rows": rows, "load_average": os.getloadavg()},
                                                              indent=2, default=float) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
