"""report.json and trajectory.png of a run, from the System that ran it."""

from __future__ import annotations

import sys
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from slam.errors import InputError
from slam.frontend.state import FrameResult
from slam.odometry.worker import timing_stats
from slam.system.readers import LatestFrameReader


def _percentiles(x: np.ndarray) -> dict[str, Any]:
    """count, p50, p90, p99, max of durations in milliseconds."""
    if x.size == 0:
        return {"count": 0}
    return {"count": int(x.size), "p50": float(np.percentile(x, 50)), "p90": float(np.percentile(x, 90)),
            "p99": float(np.percentile(x, 99)), "max": float(x.max())}


def _frame_times(system: Any) -> tuple[np.ndarray, np.ndarray]:
    """(start, duration in ms) of tracking each frame."""
    ft = np.array(system.frame_times).reshape(-1, 2)
    return ft[:, 0], (ft[:, 1] - ft[:, 0]) * 1e3


def _loop_report(system: Any) -> Any:
    """report.json's loop_closure: loops accepted / rejected, PGO times, tracking during PGO."""
    if not system.loop:
        return "disabled (--localize: the map is fixed)" if system.localize else "disabled (--no-loop)"
    if system.loop_worker is None:
        return system.loop_unavailable
    rep = system.loop_worker.summary()
    start, dur = _frame_times(system)
    during = np.zeros(len(start), bool)
    for a, b in system.loop_worker.closer.pgo_intervals:  # per loop, a handful
        during |= (start + dur / 1e3 >= a) & (start <= b)
    rep["frame_time_ms"] = {"all": _percentiles(dur), "during_pgo": _percentiles(dur[during])}
    return rep


def json_default(o: Any) -> Any:
    """JSON for NumPy scalars and arrays (anything else as its text)."""
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def _ranges(idx: list[int]) -> list[list[int]]:
    """[[first, last], ...] of runs of consecutive frame indices."""
    if not idx:
        return []
    a = np.asarray(idx)
    cut = np.flatnonzero(np.diff(a) != 1) + 1
    return [[int(g[0]), int(g[-1])] for g in np.split(a, cut)]


def cpu_report(system: Any) -> dict[str, float | None]:
    """CPU seconds of each thread of the run (None: not run, or not ended) and of the whole process.

    On a machine whose cores the run saturates, frames/s follows the sum; the threads say where it goes.
    """
    try:
        import resource  # Unix only
        ru = resource.getrusage(resource.RUSAGE_SELF)
        process: float | None = ru.ru_utime + ru.ru_stime
    except ImportError:
        process = None
    return {"tracking": system.tracking_cpu_s, "odometry": system.worker.cpu_s,
            "loop": None if system.loop_worker is None else system.loop_worker.cpu_s,
            "reader": None if system.reader is None else system.reader.cpu_s,
            "process": process}


def build_report(system: Any, res: list[FrameResult], ok: list[FrameResult], poses: np.ndarray, snap: Any,
                 n: int, wall: float, t_track: float, read_times: list[float], interrupted: bool,
                 error: BaseException | None) -> dict[str, Any]:
    """report.json: frames, lost frames, keyframes, fps, per-stage timings, BA statistics, ATE."""
    tr = system.tracker
    lost = [r.index for r in res if not r.ok]
    stages = {k: timing_stats(v) for k, v in tr.times.items()}
    stages["read"] = timing_stats(read_times)
    report: dict[str, Any] = {
        "source": system.spec, "source_kind": getattr(system.source, "kind", "unknown"), "sensor": system.mode,
        "resolution": [system.rig.width, system.rig.height], "baseline_m": system.rig.baseline,
        "complete": error is None and not interrupted, "interrupted": interrupted,
        "error": None if error is None else "".join(traceback.format_exception_only(type(error), error)).strip(),
        "frames": n, "frames_tracked": len(ok), "frames_lost": len(lost), "lost_frames": lost,
        "lost_ranges": _ranges(lost),
        "keyframes": int(len(snap.keyframe_ids)), "landmarks": int(len(snap.points)),
        "observations": snap.n_observations,
        "segments": int(len(np.unique(snap.keyframe_segments))) if len(snap.keyframe_segments) else 0,
        "relocalizations": sum(1 for r in res if r.status == "relocalized"),
        "keyframe_reasons": dict(tr.keyframe_reasons),
        # features of keyframes aligned to their anchor keyframe's patch (frontend/anchored.py)
        "anchor_alignment": tr.anchors.report(),
        "realtime_playback": system.realtime, "wall_time_s": wall, "tracking_time_s": t_track,
        "fps": n / wall if wall > 0 else 0.0,
        "tracking_fps": n / t_track if t_track > 0 else 0.0,
        "timings_ms": stages, "frame_time_ms": _percentiles(_frame_times(system)[1]), "ba": system.worker.summary(),
        "cpu_s": cpu_report(system),
        "loop_closure": _loop_report(system),
        "map": getattr(system, "map_info", None),
        "config": system.cfg.as_dict(),
    }
    if tr.mono is not None:  # monocular: why frames did not initialize (a run that never does says why)
        last = tr.mono.last_rejection
        report["initialization"] = {
            "rejections": dict(tr.mono.rejections),
            "last_rejection": None if last is None else {"reason": last.reason, "detail": last.detail}}
    if isinstance(system.reader, LatestFrameReader):
        own = int(getattr(system.source, "dropped_frames", 0) or 0)
        report["live"] = {"frames_received": system.reader.frames_read + own,
                          "frames_dropped": system.dropped_frames(), "input_fps": system.reader.input_fps}
    gt_idx = [i for i, r in enumerate(ok) if r.gt_pose is not None]
    all_gt = [r for r in res if r.gt_pose is not None]
    if len(gt_idx) >= 3:
        from slam.eval.metrics import evaluate
        from slam.io.trajectory import Trajectory, write_tum
        ref = np.stack([ok[i].gt_pose for i in gt_idx])
        est = poses[gt_idx]
        method = "sim3" if system.mode == "mono" else "se3"
        gt_all = np.stack([r.gt_pose for r in all_gt])
        length = float(np.sum(np.linalg.norm(np.diff(gt_all[:, :3, 3], axis=0), axis=1)))
        write_tum(system.out / "groundtruth.tum", Trajectory(np.array([r.timestamp for r in all_gt]), gt_all))
        try:
            ev = evaluate(ref, est, method)
            report["ate"] = {"align": method, "matched": len(gt_idx), **ev.ate.as_dict(),
                             "path_length_m": length,
                             "rmse_percent_of_path": 100.0 * ev.ate.rmse / length if length > 0 else None,
                             "scale": ev.alignment.scale}
            _plot(system.out / "trajectory.png", ref, ev, [ok[i].timestamp for i in gt_idx], system)
        except InputError as exc:  # degenerate (e.g. the camera never moved): no alignment possible
            report["ate"] = {"align": method, "matched": len(gt_idx), "error": str(exc), "path_length_m": length}
    if len(poses):
        report["trajectory_extent_m"] = float(np.linalg.norm(np.ptp(poses[:, :3, 3], axis=0)))
    return report


def _plot(path: Path, ref: np.ndarray, ev: Any, times: list[float], system: Any) -> None:
    """trajectory.png (skipped quietly if matplotlib cannot draw here)."""
    try:
        from slam.eval.plots import plot_evaluation
        plot_evaluation(path, ref[:, :3, 3], ev.est_aligned[:, :3, 3], np.asarray(times), ev.ate_errors,
                        ev.rpe_pairs[:, 1], ev.rpe_trans_errors,
                        title=f"{system.spec} ({system.mode}, ATE {ev.ate.rmse:.3f} m)")
    except Exception as exc:  # a figure must not cost the run its report
        print(f"slam run: warning: no trajectory.png ({exc})", file=sys.stderr)
