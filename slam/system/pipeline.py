"""The pipeline: source reader thread -> tracking (this thread) -> odometry worker thread -> map,
and the loop-closing thread beside them.

System.run() processes a source to its end (or --max-frames, Ctrl-C, an error) and always leaves a
complete run folder: trajectory.tum, keyframes.tum, map.ply, loops.json, report.json (and
trajectory.png with ground truth). Workers are stopped in order: the reader first, then the
odometry worker after its last window solve, then the loop worker.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from slam.config import RunConfig
from slam.errors import InputError
from slam.frontend.state import FrameResult
from slam.frontend.tracker import Tracker
from slam.geometry.pinhole import Rig
from slam.io.text import write_text_atomic
from slam.loop.worker import LoopWorker
from slam.map.export import frame_poses, write_ply, write_trajectories
from slam.map.map import Map
from slam.odometry.config import iterations_for, lag_for
from slam.odometry.worker import OdometryWorker
from slam.priority import short_gil_switch
from slam.progress import ProgressLine, ProgressStats
from slam.run_folder import clear_run_files
from slam.sources.base import Frame, Source
from slam.system.closing import make_loop_worker
from slam.system.maps import load_run_map, place_database, save_run_map
from slam.system.readers import LatestFrameReader, Prefetcher
from slam.system.run_report import build_report, json_default

def choose_mode(sensor: str, source: Source) -> str:
    """The pipeline's sensor mode: the configured one, or stereo / rgbd / mono from the source."""
    cal = source.calibration
    has_depth = cal.depth_scale is not None or bool(getattr(getattr(source, "sensor", None), "depth", False))
    if sensor == "auto":
        if cal.stereo:
            return "stereo"
        return "rgbd" if has_depth else "mono"
    if sensor == "stereo" and not cal.stereo:
        raise InputError("the configuration asks for stereo (source.sensor: stereo) but the source has one camera")
    if sensor == "rgbd" and not has_depth:
        raise InputError("the configuration asks for RGB-D (source.sensor: rgbd) but the source has no depth "
                         "images (a TUM folder needs depth.txt); use a monocular configuration")
    return sensor


def make_rig(source: Source, mode: str, cfg: RunConfig) -> Rig:
    """Pinhole rig of the delivered images for a mode."""
    cam = source.calibration.camera
    if cam.distortion_model not in ("none", "") and np.any(np.asarray(cam.distortion) != 0):
        raise InputError(f"the source delivers distorted images ({cam.distortion_model}); the pipeline needs "
                         "undistorted pinhole frames (sources undistort when given a calibration)")
    baseline = {"stereo": source.calibration.baseline or 0.0, "rgbd": cfg.frontend.rgbd_baseline, "mono": 0.0}[mode]
    return Rig(cam.K, int(cam.width), int(cam.height), mode, float(baseline))


@dataclass
class RunResult:
    """What a run produced (the report is also written to report.json)."""

    out: Path
    report: dict[str, Any]
    interrupted: bool = False
    error: BaseException | None = None
    results: list[FrameResult] = field(default_factory=list)


class System:
    """Wires source, tracker, odometry worker and map for one run."""

    def __init__(self, cfg: RunConfig, source: Source, spec: str, out: str | Path,
                 max_frames: int | None = None, progress: bool | ProgressLine = True, loop: bool = False,
                 realtime: bool = False, viewer: Any | None = None, load_map: str | Path | None = None,
                 save_map: str | Path | None = None, localize: bool = False) -> None:
        """load_map: a saved map folder to start in (its first frames relocalize against it); save_map:
        folder the final map is written to (docs/maps.md); localize: keep the loaded map fixed."""
        self.cfg, self.source, self.spec = cfg, source, spec
        self.viewer = viewer  # slam.viewer.live.LiveViewer or None: fed from tracking, never waited for
        self.out = Path(out)
        self.max_frames, self.loop = max_frames, loop
        # True: the default line on stderr (updating on a terminal); False: silent.
        self.progress = ProgressLine() if progress is True else (progress or None)
        self.live = bool(getattr(source, "live", False))  # a camera: newest frame only, drops counted
        self.loops: list[dict[str, Any]] = []  # accepted loop closures, as written to loops.json
        self.reader: Prefetcher | None = None
        self.tracking_cpu_s: float | None = None  # CPU time of this (the tracking) thread over the run
        self.realtime = realtime  # recorded sources: release frames at their timestamps
        self.mode = choose_mode(cfg.source.sensor, source)
        self.rig = make_rig(source, self.mode, cfg)
        self.map = Map()
        self.load_dir = None if load_map is None else Path(load_map)
        self.save_dir = None if save_map is None else Path(save_map)
        if localize and load_map is None:
            raise InputError("--localize needs a map to localize in (--load-map DIR)")
        self.localize = localize
        self.loaded: Any = None  # slam.map.store.LoadedMap
        if self.load_dir is not None:
            self.loaded = load_run_map(self.load_dir, self)
            self.map = self.loaded.map
        if localize:
            loop = False  # a fixed map: no keyframes, nothing to close
        cfg.loop.enabled = cfg.loop.enabled and loop
        self.loop = cfg.loop.enabled
        self.loop_worker: LoopWorker | None = None
        self.place_database: Any = None  # the loop worker's (slam.loop.database.PlaceDatabase), saved with the map
        self.loop_unavailable: str | None = None
        if self.loop:
            self.loop_worker, self.loop_unavailable = make_loop_worker(self, cfg.odometry.precision)
        on_inserted = None if self.loop_worker is None else self._to_loop
        odometry = replace(cfg.odometry, max_lag=lag_for(cfg.odometry, self.rig.mode),  # report: ba.max_lag
                           max_iterations=iterations_for(cfg.odometry, self.rig.mode))  # ba.max_iterations
        self.worker = OdometryWorker(self.map, self.rig, odometry, on_inserted=on_inserted)
        self.tracker = Tracker(cfg.frontend, cfg.keyframes, self.rig, self.map, self.worker.submit, self.worker.pending,
                               max_reprojection_error=cfg.odometry.max_reprojection_error,
                               min_parallax=cfg.odometry.min_parallax,
                               place=self.loop_worker is not None and cfg.loop.place_features > 0)
        if self.loaded is not None:
            db = place_database(self.map, self.loaded.places, self.load_dir)
            self.tracker.start_in_map(lambda desc: [k for k, _ in db.query(desc, 3)], localize=localize)
        self.frame_times: list[tuple[float, float]] = []  # (start, end) of tracking each frame (perf_counter)
        self.results: dict[int, FrameResult] = {}
        try:
            self.total = len(source)
        except TypeError:
            self.total = None
        if max_frames is not None:
            self.total = max_frames if self.total is None else min(self.total, max_frames)

    def run(self) -> RunResult:
        """Process the source; outputs are written whatever happens (then errors are re-raised)."""
        with short_gil_switch():  # the run's threads hand the GIL on within 0.5 ms (priority.py)
            return self._run()

    def _run(self) -> RunResult:
        clear_run_files(self.out)  # an earlier run's files in this folder must not outlive this run
        interrupted, error = False, None
        t_start = time.perf_counter()
        reader = (LatestFrameReader(self.source, self.max_frames) if self.live
                  else Prefetcher(self.source, self.cfg.source.prefetch, self.max_frames))
        self.reader = reader
        if self.loop_worker is not None:
            self.loop_worker.start()
        self.worker.start()
        n = 0
        t0_sensor = None
        cpu0 = time.thread_time()
        try:
            for frame in reader:
                if self.realtime:
                    # As a camera would deliver them (ORB-SLAM3's examples do the same): wait while
                    # ahead of the sensor clock, never drop a frame when behind.
                    t0_sensor = frame.timestamp if t0_sensor is None else t0_sensor
                    ahead = (frame.timestamp - t0_sensor) - (time.perf_counter() - t_start)
                    if ahead > 0:
                        time.sleep(ahead)
                if not self.live:  # a camera does not wait: its reader keeps only the newest frame
                    self.worker.wait_until_caught_up()
                t_f = time.perf_counter()
                rs = self.tracker.process(frame)
                for r in rs:
                    self.results[r.index] = r
                self.frame_times.append((t_f, time.perf_counter()))
                n += 1
                if self.viewer is not None and self._show(frame, rs):
                    raise KeyboardInterrupt  # the window was closed (or q pressed): end like Ctrl-C
                self.worker.check()
                if self.progress is not None and self.progress.due():
                    self.progress.update(self._progress_stats(n, time.perf_counter() - t_start))
        except KeyboardInterrupt:
            interrupted = True
        except BaseException as exc:
            error = exc
        finally:
            reader.stop()
            t_track = time.perf_counter() - t_start
            self.tracking_cpu_s = time.thread_time() - cpu0
            if self.loop_worker is not None and (interrupted or error is not None):
                self.loop_worker.abort()  # keep the last written correction, start no other
            try:
                self.worker.stop()
            except KeyboardInterrupt:
                interrupted = True
            if self.loop_worker is not None:
                try:
                    self.loop_worker.stop()  # after the odometry worker: it hands on the last keyframes
                except KeyboardInterrupt:
                    interrupted = True
                    self.loop_worker.abort()
        wall = time.perf_counter() - t_start
        if error is None and self.worker.error is not None:
            error = self.worker.error
        if self.progress is not None:
            self.progress.finish(self._progress_stats(n, wall))
        self.map_info = self._map_info()
        if self.save_dir is not None:
            try:
                self.map_info["saved"] = str(save_run_map(self))
            except Exception as exc:  # the run folder is still written
                self.map_info["save_error"] = str(exc)
                error = error if error is not None else exc
        report = self._write_outputs(n, wall, t_track, reader.read_times, interrupted, error)
        return RunResult(self.out, report, interrupted, error, [self.results[k] for k in sorted(self.results)])

    def _map_info(self) -> dict[str, Any]:
        """report.json's map: the loaded map and when the run relocalized in it."""
        out: dict[str, Any] = {"loaded": None, "localize": self.localize, "saved": None}
        if self.loaded is not None:
            c = self.loaded.header.get("counts", {})
            out["loaded"] = {"folder": str(self.load_dir), "keyframes": c.get("keyframes"),
                             "landmarks": c.get("landmarks")}
            rel = self.tracker.relocalized_frames
            first = rel[0] if rel else None
            out["first_relocalized_frame"] = first
            out["frames_before_relocalization"] = (None if first is None
                                                   else sum(1 for k in self.results if k < first))
        return out

    def _to_loop(self, kf: Any) -> None:
        """Odometry worker -> loop worker: a keyframe now in the map, with its place-feature input."""
        assert self.loop_worker is not None
        self.loop_worker.submit(kf.id, kf.timestamp, kf.place)

    def _on_loop(self, rec: dict) -> None:
        """The loop worker accepted a loop: record it for loops.json and the progress line, print it."""
        self.loops.append(rec)
        if self.progress is not None:
            p = rec["pgo"]
            self.progress.note(f"loop closed: keyframe {rec['query']['keyframe']} -> {rec['match']['keyframe']} "
                               f"({rec['inliers']} inliers); PGO {p['vertices']} poses, cost "
                               f"{p['initial_cost']:.4g} -> {p['final_cost']:.4g}, {p['iterations']} it, "
                               f"{p['time_s']['total']:.3f} s")

    def _show(self, frame: Frame, rs: list[FrameResult]) -> bool:
        """Hand the live viewer this frame's poses and, at its rate, a map snapshot; True once it was closed."""
        v = self.viewer
        v.record(rs)
        if v.due():
            tr = self.tracker.tracks
            current = next((r.T_wc for r in reversed(rs) if r.T_wc is not None), None)
            v.update(self.map.snapshot, frame.left, tr.uv, np.isfinite(tr.xyz[:, 0]), current, self.loops)
        return v.closed

    def _progress_stats(self, n: int, elapsed: float) -> ProgressStats:
        """Numbers of the progress line (counting lost frames is O(frames), done a few times a second)."""
        lost = sum(1 for r in self.results.values() if not r.ok)
        st = ProgressStats(n, elapsed, self.total, self.tracker.next_kf, len(self.loops), lost, self.live)
        if isinstance(self.reader, LatestFrameReader):
            st.input_fps, st.dropped = self.reader.input_fps, self.dropped_frames()
        return st

    def dropped_frames(self) -> int:
        """Live frames never tracked: skipped by the reader, plus those the source's own grabber skipped."""
        own = int(getattr(self.source, "dropped_frames", 0) or 0)
        return own + (self.reader.dropped if isinstance(self.reader, LatestFrameReader) else 0)

    # ------------------------------------------------------------------ outputs
    def _write_outputs(self, n: int, wall: float, t_track: float, read_times: list[float], interrupted: bool,
                       error: BaseException | None) -> dict[str, Any]:
        """Every file of the run folder; returns the report."""
        snap = self.map.snapshot()
        res = [self.results[k] for k in sorted(self.results)]
        ok = [r for r in res if r.ok]
        times = np.array([r.timestamp for r in ok])
        if ok:
            poses = frame_poses(np.array([r.ref_kf for r in ok]), np.stack([r.T_ref_cam for r in ok]),
                                snap.keyframe_poses, np.stack([r.T_wc for r in ok]),
                                np.array([r.ref_scale for r in ok]), snap.keyframe_scales)
        else:
            poses = np.zeros((0, 4, 4))
        write_trajectories(self.out, times, poses, snap)
        centers = snap.keyframe_poses[:, :3, 3] if len(snap.keyframe_poses) else None
        write_ply(self.out / "map.ply", snap.points, centers)
        write_text_atomic(self.out / "loops.json", json.dumps(self.loops, indent=2, default=json_default) + "\n")
        sol = None if self.loop_worker is None else self.loop_worker.closer.last_solution
        if sol is not None:
            from slam.loop.posegraph import export_g2o
            export_g2o(self.out / "pose_graph.g2o", sol)
        report = build_report(self, res, ok, poses, snap, n, wall, t_track, read_times, interrupted, error)
        write_text_atomic(self.out / "report.json", json.dumps(report, indent=2, default=json_default) + "\n")
        return report
