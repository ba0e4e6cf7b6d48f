"""A finished run folder read back: report.json, trajectories, ground truth, loops, and their evaluation.

The pictures are drawn from the files a run wrote, not from the pipeline's memory, so they show
exactly what a user's own tools will read (and `slam report`-style reuse on an old folder works).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from slam.errors import InputError, ProblemError
from slam.eval.align import associate
from slam.eval.metrics import Evaluation, evaluate
from slam.io.trajectory import Trajectory, read_tum


@dataclass
class Loop:
    """One accepted loop closure: keyframe ids and timestamps of query and match, and its inliers."""

    query_kf: int | None
    query_t: float | None
    match_kf: int | None
    match_t: float | None
    inliers: int | None
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunData:
    """What the report shows of one run folder."""

    folder: Path
    report: dict[str, Any]
    trajectory: Trajectory | None
    keyframes: Trajectory | None
    groundtruth: Trajectory | None
    loops: list[Loop]
    evaluation: Evaluation | None = None
    matched_times: np.ndarray | None = None  # timestamps of the evaluated (ground-truth matched) frames
    ref_positions: np.ndarray | None = None  # (M,3) ground truth at those frames


def _read(path: Path) -> Trajectory | None:
    if not path.is_file():
        return None
    traj = read_tum(path)
    return traj if len(traj) else None


def _loops(path: Path) -> list[Loop]:
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"not JSON ({exc.msg} at line {exc.lineno})", path) from None
    if not isinstance(data, list):
        raise InputError("expected a JSON list of loop closures", path)
    out = []
    for k, e in enumerate(data):
        if not isinstance(e, dict) or not isinstance(e.get("query"), dict) or not isinstance(e.get("match"), dict):
            raise InputError(f"entry {k}: expected {{'query': {{keyframe, timestamp}}, 'match': {{...}}, ...}}", path)
        q, m = e["query"], e["match"]
        num = (lambda d, key, f: None if d.get(key) is None else f(d[key]))
        out.append(Loop(num(q, "keyframe", int), num(q, "timestamp", float), num(m, "keyframe", int),
                        num(m, "timestamp", float), num(e, "inliers", int), e))
    return out


def load_run(folder: str | Path) -> RunData:
    """Read a run folder (report.json must exist) and evaluate the trajectory where ground truth exists."""
    folder = Path(folder)
    rep_path = folder / "report.json"
    if not rep_path.is_file():
        raise InputError("not a run folder (no report.json)", folder)
    report = json.loads(rep_path.read_text(encoding="utf-8"))
    data = RunData(folder, report, _read(folder / "trajectory.tum"), _read(folder / "keyframes.tum"),
                   _read(folder / "groundtruth.tum"), _loops(folder / "loops.json"))
    est, gt = data.trajectory, data.groundtruth
    if est is not None and gt is not None:
        # Both files carry the same frames' timestamps (%.9f): association is exact.
        i_gt, i_est = associate(gt.timestamps, est.timestamps, max_diff=1e-6)
        method = report.get("ate", {}).get("align") or ("sim3" if report.get("sensor") == "mono" else "se3")
        if len(i_gt) >= 3:
            try:
                data.evaluation = evaluate(gt.poses[i_gt], est.poses[i_est], method)
            except ProblemError:  # degenerate (the camera never moved): no aligned plot
                data.evaluation = None
            data.matched_times = est.timestamps[i_est]
            data.ref_positions = gt.positions[i_gt]
    return data


def keyframe_position(data: RunData, kf: int | None, t: float | None) -> np.ndarray | None:
    """Estimated position of a keyframe (by timestamp, else by id), aligned like the trajectory."""
    kfs = data.keyframes
    if kfs is None:
        return None
    row = None
    if t is not None and kfs.timestamps is not None:
        d = np.abs(kfs.timestamps - t)
        k = int(np.argmin(d))
        row = k if d[k] < 1e-6 else None
    if row is None and kf is not None and 0 <= kf < len(kfs):
        row = kf  # keyframes.tum lists keyframes by id
    if row is None:
        return None
    p = kfs.poses[row:row + 1]
    if data.evaluation is not None:
        p = data.evaluation.alignment.apply(p)
    return p[0, :3, 3]
