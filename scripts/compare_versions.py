#!/usr/bin/env python3
"""Behaviour check between two commits: the deterministic odometry runs, side by side.

    python scripts/compare_versions.py BEFORE [AFTER] [--out DIR] [--only NAME ...]

Each commit is checked out into a temporary git worktree and run with this venv's Python (so the
two differ by their code only, never by their packages): `slam run CONFIG --source SPEC --quiet`
with the config's `odometry.blocking: true` (tracking waits for each window solve, so a run does
not depend on thread scheduling or machine load) and, where the commit has loop closure,
`--no-loop` (odometry only, the behaviour both commits share). The runs: synthetic room_loop in
stereo, RGB-D and monocular, and the real KITTI 07 head when ../shared/data holds it.

Prints the summary line each commit's `slam run` printed and a table of report.json's numbers
(frames, lost, keyframes, landmarks, ATE) with `equal` when both print the same digits (all but
frames/s, which measures the machine); writes
DIR/compare_versions.json. AFTER defaults to the work tree's HEAD.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from slam.io.text import write_text_atomic  # noqa: E402

DATA = REPO.parent / "shared" / "data"

RUNS = [  # name, source spec, config (as named in both commits)
    ("stereo room_loop", "synthetic:room_loop", "configs/synthetic.yaml"),
    ("RGB-D room_loop", "synthetic:room_loop", "configs/tum_rgbd.yaml"),
    ("mono room_loop", "synthetic:room_loop", "configs/euroc_mono.yaml"),
    ("KITTI 07 head mono", str(DATA / "kitti" / "07_head"), "configs/kitti_mono.yaml"),
]
FIELDS = ("frames", "frames_lost", "keyframes", "landmarks")
_SPEED = re.compile(r"[0-9.]+ frames/s")  # the one printed number that depends on the machine


def _behaviour(summary: str) -> str:
    """The summary line without its frames/s."""
    return _SPEED.sub("_ frames/s", summary)


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), *args], check=True, capture_output=True, text=True).stdout.strip()


def _run_commit(tree: Path, name: str, spec: str, config: str, out: Path) -> dict[str, Any]:
    """One deterministic `slam run` of the commit checked out in `tree`: its summary line and report."""
    cfg = yaml.safe_load((tree / config).read_text()) or {}
    cfg.setdefault("odometry", {})["blocking"] = True
    cfg_file = out / "config.yaml"
    out.mkdir(parents=True, exist_ok=True)
    cfg_file.write_text(yaml.safe_dump(cfg))
    cmd = [sys.executable, "-m", "slam", "run", str(cfg_file), "--source", spec, "--out", str(out / "run"), "--quiet"]
    help_text = subprocess.run([sys.executable, "-m", "slam", "run", "--help"], cwd=tree, capture_output=True,
                               text=True).stdout
    if "--no-loop" in help_text:
        cmd.append("--no-loop")
    r = subprocess.run(cmd, cwd=tree, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{name}: `{' '.join(cmd)}` in {tree} failed ({r.returncode}):\n{r.stderr[-2000:]}")
    line = next((ln for ln in (r.stdout + r.stderr).splitlines() if ln.startswith("slam run:") and "frames" in ln), "")
    rep = json.loads((out / "run" / "report.json").read_text())
    ate = rep.get("ate") or {}
    return {"summary": line, "command": " ".join(cmd), **{k: rep.get(k) for k in FIELDS},
            "ate_rmse_m": ate.get("rmse"), "ate_align": ate.get("align")}


def main() -> int:
    """Run both commits and print the comparison."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("before")
    ap.add_argument("after", nargs="?", default="HEAD")
    ap.add_argument("--out", default="bench_out/compare_versions")
    ap.add_argument("--only", nargs="*", help="run names (default: all)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    commits = {k: _git("rev-parse", "--short", rev) for k, rev in (("before", args.before), ("after", args.after))}
    runs = [r for r in RUNS if not args.only or r[0] in args.only]
    results: dict[str, Any] = {"commits": commits, "python": sys.executable, "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        trees = {}
        for k, c in commits.items():
            trees[k] = Path(tmp) / k
            _git("worktree", "add", "--detach", "-q", str(trees[k]), c)
        try:
            for name, spec, config in runs:
                if spec.startswith("/") and not Path(spec).is_dir():
                    print(f"{name}: skipped ({spec} is absent)")
                    continue
                row: dict[str, Any] = {"run": name, "source": spec, "config": config}
                for k in commits:
                    row[k] = _run_commit(trees[k], name, spec, config, out / k / name.replace(" ", "_"))
                    print(f"{name} [{k} {commits[k]}]: {row[k]['summary']}", flush=True)
                row["equal"] = _behaviour(row["before"]["summary"]) == _behaviour(row["after"]["summary"]) and all(
                    row["before"][f] == row["after"][f] for f in FIELDS)
                results["runs"].append(row)
        finally:
            for t in trees.values():
                _git("worktree", "remove", "--force", str(t))
    print(f"\n| run | commit | frames | lost | keyframes | landmarks | ATE RMSE [m] | equal |")
    print("|---|---|---|---|---|---|---|---|")
    for row in results["runs"]:
        for k in commits:
            r = row[k]
            ate = "-" if r["ate_rmse_m"] is None else f"{r['ate_rmse_m']:.6f} ({r['ate_align']})"
            eq = ("yes" if row["equal"] else "NO") if k == "after" else ""
            print(f"| {row['run']} | {k} {commits[k]} | {r['frames']} | {r['frames_lost']} | {r['keyframes']} | "
                  f"{r['landmarks']} | {ate} | {eq} |")
    write_text_atomic(out / "compare_versions.json", json.dumps(results, indent=2))
    print(f"\nwrote {out / 'compare_versions.json'}")
    return 0 if all(r["equal"] for r in results["runs"]) else 1


if __name__ == "__main__":
    sys.exit(main())
