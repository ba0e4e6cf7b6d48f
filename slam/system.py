"""The pipeline: source reader thread -> tracking (this thread) -> odometry worker thread -> map.

System.run() processes a source to its end (or --max-frames, Ctrl-C, an error) and always leaves a
complete run folder: trajectory.tum, keyframes.tum, map.ply, loops.json, report.json (and
trajectory.png with ground truth). Workers are stopped in order: the reader first, then the
odometry worker after its last window solve.
"""

from __future__ import annotations

import json
import queue
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

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
from slam.odometry.worker import OdometryWorker, timing_stats
from slam.progress import ProgressLine, ProgressStats
from slam.run_folder import clear_run_files
from slam.sources.base import Frame, Source

_END = object()


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


class Prefetcher:
    """Reads frames on a thread, a few ahead of tracking (image decoding releases the GIL)."""

    def __init__(self, source: Source, depth: int, max_frames: int | None) -> None:
        self.source, self.max_frames = source, max_frames
        self.q: queue.Queue = queue.Queue(maxsize=max(depth, 1))
        self.stop_event = threading.Event()
        self.read_times: list[float] = []
        self._thread = threading.Thread(target=self._run, name="reader", daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self.stop_event.is_set():
            try:
                self.q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            it = iter(self.source)
            n = 0
            while self.max_frames is None or n < self.max_frames:
                t0 = time.perf_counter()
                try:
                    frame = next(it)
                except StopIteration:
                    break
                self.read_times.append(time.perf_counter() - t0)
                n += 1
                if not self._put(frame):
                    return
            self._put(_END)
        except BaseException as exc:  # handed to the main thread
            self._put(exc)

    def __iter__(self) -> Iterator[Frame]:
        while True:
            try:
                item = self.q.get(timeout=0.1)  # a timeout keeps Ctrl-C responsive
            except queue.Empty:
                continue
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def stop(self) -> None:
        """Stop reading and wait for the thread."""
        self.stop_event.set()
        self._thread.join(timeout=5.0)


class LatestFrameReader(Prefetcher):
    """Reader of a live source: holds only the newest frame, so tracking that falls behind skips frames.

    A camera does not wait for tracking: a queue would grow (or, bounded, hand over ever older
    frames). Here a frame not yet taken when the next one arrives is dropped and counted.
    """

    def __init__(self, source: Source, max_frames: int | None) -> None:
        self.frames_read = 0
        self.dropped = 0
        self.first_read: float | None = None
        self.last_read: float | None = None
        super().__init__(source, 1, max_frames)

    def _put(self, item: Any) -> bool:
        if not isinstance(item, Frame):
            return super()._put(item)  # the end or an error waits for the consumer: nothing is lost
        now = time.perf_counter()
        self.first_read = now if self.first_read is None else self.first_read
        self.last_read = now
        self.frames_read += 1
        try:
            self.q.get_nowait()  # this thread is the only producer: afterwards the queue is empty
            self.dropped += 1
        except queue.Empty:
            pass
        self.q.put_nowait(item)
        return not self.stop_event.is_set()

    def stop(self) -> None:
        """Stop the source's own grabber too: a stalled camera must not hold the reader in a read."""
        self.stop_event.set()
        stop_source = getattr(self.source, "stop", None)
        if callable(stop_source):
            stop_source()
        super().stop()

    @property
    def input_fps(self) -> float | None:
        """Rate at which frames arrived from the source (None before two frames)."""
        if self.frames_read < 2 or self.last_read is None or self.first_read is None:
            return None
        dt = self.last_read - self.first_read
        return (self.frames_read - 1) / dt if dt > 0 else None


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
            self.loaded = _load_map(self.load_dir, self)
            self.map = self.loaded.map
        if localize:
            loop = False  # a fixed map: no keyframes, nothing to close
        cfg.loop.enabled = cfg.loop.enabled and loop
        self.loop = cfg.loop.enabled
        self.loop_worker: LoopWorker | None = None
        self.place_database: Any = None  # the loop worker's (slam.loop.database.PlaceDatabase), saved with the map
        self.loop_unavailable: str | None = None
        if self.loop:
            self.loop_worker, self.loop_unavailable = _make_loop_worker(self, cfg.odometry.precision)
        on_inserted = None if self.loop_worker is None else self._to_loop
        self.worker = OdometryWorker(self.map, self.rig, cfg.odometry, on_inserted=on_inserted)
        self.tracker = Tracker(cfg.frontend, cfg.keyframes, self.rig, self.map, self.worker.submit, self.worker.pending,
                               max_reprojection_error=cfg.odometry.max_reprojection_error,
                               min_parallax=cfg.odometry.min_parallax,
                               place=self.loop_worker is not None and cfg.loop.place_features > 0)
        if self.loaded is not None:
            db = _place_database(self.map, self.loaded.places, self.load_dir)
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
        try:
            for frame in reader:
                if self.realtime:
                    # As a camera would deliver them (ORB-SLAM3's examples do the same): wait while
                    # ahead of the sensor clock, never drop a frame when behind.
                    t0_sensor = frame.timestamp if t0_sensor is None else t0_sensor
                    ahead = (frame.timestamp - t0_sensor) - (time.perf_counter() - t_start)
                    if ahead > 0:
                        time.sleep(ahead)
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
                self.map_info["saved"] = str(self._save_map())
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

    def _save_map(self) -> Path:
        """Write the final map with its place database (slam/map/store.py); the header says which frame it is in."""
        from slam.map.store import save_map

        assert self.save_dir is not None
        ok = [self.results[k] for k in sorted(self.results) if self.results[k].ok]
        if self.loaded is not None:
            world = self.loaded.header.get("world")
        else:
            first = ok[0] if ok else None
            world = {"origin": "the camera of the first tracked frame of the run that made the map",
                     "source": self.spec, "frame": None if first is None else first.index,
                     "timestamp": None if first is None else first.timestamp,
                     "T_groundtruth_world": None if first is None or first.gt_pose is None else first.gt_pose.tolist()}
        db = self.place_database if self.place_database is not None else _place_database(self.map, None)
        header = {"sensor": self.mode,
                  "camera": {"K": self.rig.K.tolist(), "width": self.rig.width, "height": self.rig.height,
                             "baseline": self.rig.baseline},
                  "source": self.spec, "frames": [ok[0].index, ok[-1].index] if ok else None,
                  "world": world, "loaded_from": None if self.load_dir is None else str(self.load_dir),
                  "places_from": "loop closure" if self.place_database is not None else "landmark descriptors",
                  "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        return save_map(self.save_dir, self.map, header, db.state())

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
                                snap.keyframe_poses, np.stack([r.T_wc for r in ok]))
        else:
            poses = np.zeros((0, 4, 4))
        write_trajectories(self.out, times, poses, snap)
        centers = snap.keyframe_poses[:, :3, 3] if len(snap.keyframe_poses) else None
        write_ply(self.out / "map.ply", snap.points, centers)
        write_text_atomic(self.out / "loops.json", json.dumps(self.loops, indent=2, default=_json_default) + "\n")
        sol = None if self.loop_worker is None else self.loop_worker.closer.last_solution
        if sol is not None:
            from slam.loop.posegraph import export_g2o
            export_g2o(self.out / "pose_graph.g2o", sol)
        report = build_report(self, res, ok, poses, snap, n, wall, t_track, read_times, interrupted, error)
        write_text_atomic(self.out / "report.json", json.dumps(report, indent=2, default=_json_default) + "\n")
        return report


def _load_map(folder: Path, system: System) -> Any:
    """The saved map, checked against this run's sensor and camera (InputError naming map.json otherwise)."""
    from slam.map.store import HEADER, load_map

    loaded = load_map(folder)
    head, rig = loaded.header, system.rig
    cam = head.get("camera") if isinstance(head.get("camera"), dict) else {}
    problems = []
    if head.get("sensor") != system.mode:
        problems.append(f"sensor {head.get('sensor')!r}, this run {system.mode!r}")
    if [cam.get("width"), cam.get("height")] != [rig.width, rig.height]:
        problems.append(f"images {cam.get('width')}x{cam.get('height')}, this run {rig.width}x{rig.height}")
    try:
        K = np.asarray(cam.get("K", np.zeros((3, 3))), np.float64)
        baseline = float(cam.get("baseline") or 0.0)
    except (TypeError, ValueError, AttributeError):
        from slam.errors import FormatError
        raise FormatError("camera must hold K (3x3 numbers), width, height and baseline", folder / HEADER) from None
    if K.shape != (3, 3) or not np.allclose(K, rig.K, rtol=1e-6, atol=1e-6):
        problems.append("other camera intrinsics K")
    if abs(baseline - float(rig.baseline)) > 1e-9:
        problems.append(f"baseline {cam.get('baseline')} m, this run {rig.baseline} m")
    if problems:
        raise InputError("the map was made with another camera: " + "; ".join(problems), folder / HEADER)
    return loaded


def _place_database(the_map: Map, places: dict[str, np.ndarray] | None, folder: Path | None = None) -> Any:
    """The place database of a loaded map: the saved one, or (a map saved without one) one made from the
    descriptors of the landmarks each keyframe observes."""
    from slam.loop.database import PlaceDatabase

    if places is not None:
        from slam.errors import FormatError
        try:
            return PlaceDatabase.from_state(places)
        except ValueError as exc:
            raise FormatError(f"the place database does not load: {exc}",
                              (folder or Path(".")) / "places.npz") from None
    db = PlaceDatabase()
    for k in range(the_map.n_keyframes):  # per keyframe
        ids = the_map.keyframe_observations(k)[0]
        desc = the_map.landmarks(ids)[3]
        db.add(k, desc[desc.any(axis=1)])
    return db


def _make_loop_worker(system: System, precision: str) -> tuple[LoopWorker | None, str | None]:
    """The loop worker with place recognition and verification, or (None, why it is not available)."""
    from slam.loop.closer import LoopCloser
    try:
        from slam.loop.factory import place_recognition
    except ImportError as exc:
        return None, f"not available: {exc}"
    from slam.frontend.features import make_orb
    from slam.frontend.place import place_features

    cfg = system.cfg.loop
    db = None if system.loaded is None else _place_database(system.map, system.loaded.places, system.load_dir)
    candidates, verify = place_recognition(system.map, system.rig, system.mode, cfg, database=db)
    # the database behind `candidates` (saved with the map); a stand-in place recognizer may have none
    system.place_database = getattr(candidates, "database", None)
    orb = make_orb()  # the loop thread's own extractor
    rig, fcfg = system.rig, system.cfg.frontend
    closer = LoopCloser(system.map, system.mode, cfg, cfg.precision or precision, candidates, verify,
                        notify=system._on_loop, export_dir=system.out / "pose_graphs" if cfg.export_graphs else None,
                        features=lambda inp: place_features(inp, cfg.place_features, rig, fcfg, orb))
    if cfg.global_ba:
        from slam.odometry.global_ba import global_ba

        prec = cfg.precision or precision
        closer.global_ba = lambda abort: global_ba(system.map, rig.K, rig.baseline, system.cfg.odometry, prec,
                                                   cfg.global_ba_iterations, abort)
    return LoopWorker(closer, blocking=cfg.blocking or system.cfg.odometry.blocking, nice=cfg.nice,
                      max_backlog=cfg.max_backlog), None


def _percentiles(x: np.ndarray) -> dict[str, Any]:
    """count, p50, p90, p99, max of durations in milliseconds."""
    if x.size == 0:
        return {"count": 0}
    return {"count": int(x.size), "p50": float(np.percentile(x, 50)), "p90": float(np.percentile(x, 90)),
            "p99": float(np.percentile(x, 99)), "max": float(x.max())}


def _frame_times(system: System) -> tuple[np.ndarray, np.ndarray]:
    """(start, duration in ms) of tracking each frame."""
    ft = np.array(system.frame_times).reshape(-1, 2)
    return ft[:, 0], (ft[:, 1] - ft[:, 0]) * 1e3


def _loop_report(system: System) -> Any:
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


def _json_default(o: Any) -> Any:
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


def build_report(system: System, res: list[FrameResult], ok: list[FrameResult], poses: np.ndarray, snap: Any,
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
        "realtime_playback": system.realtime, "wall_time_s": wall, "tracking_time_s": t_track,
        "fps": n / wall if wall > 0 else 0.0,
        "tracking_fps": n / t_track if t_track > 0 else 0.0,
        "timings_ms": stages, "frame_time_ms": _percentiles(_frame_times(system)[1]), "ba": system.worker.summary(),
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


def _plot(path: Path, ref: np.ndarray, ev: Any, times: list[float], system: System) -> None:
    """trajectory.png (skipped quietly if matplotlib cannot draw here)."""
    try:
        from slam.eval.plots import plot_evaluation
        plot_evaluation(path, ref[:, :3, 3], ev.est_aligned[:, :3, 3], np.asarray(times), ev.ate_errors,
                        ev.rpe_pairs[:, 1], ev.rpe_trans_errors,
                        title=f"{system.spec} ({system.mode}, ATE {ev.ate.rmse:.3f} m)")
    except Exception as exc:  # a figure must not cost the run its report
        print(f"slam run: warning: no trajectory.png ({exc})", file=sys.stderr)
