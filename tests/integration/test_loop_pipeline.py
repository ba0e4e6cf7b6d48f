"""Loop closure inside `slam run`: place recognition, verification, the loop worker and its
write-back while tracking runs, the outputs (loops.json, pose_graph.g2o, report.json) and faults.

Runs are blocking (tracking waits for each keyframe's BA and loop check) so that the run with loop
closure and the one without make the same decisions until the loop: a like-for-like pair.
"""

from __future__ import annotations

import json
import resource
import threading
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from slam.config import load_config
from slam.geometry import lie
from slam.io.g2o import read_g2o
from slam.loop import closer as closer_module
from slam.loop import factory
from slam.loop.closer import LoopCloser, PlaceRecognition, Verified
from slam.odometry import global_ba as gba_module
from slam.solvers.pgo import from_pose_graph
from slam.sources.base import Frame, Source
from slam.synthetic import SyntheticSource
from slam.system import System

REPO = Path(__file__).resolve().parents[2]
FRAMES = 320  # room_loop: back at the start at 15 s (frame 300)


def _run(tmp_path: Path, name: str, loop: bool, frames: int = FRAMES, scene: str = "room_loop") -> tuple[System, dict]:
    cfg = load_config(REPO / "configs" / "synthetic.yaml")
    cfg.odometry.blocking = True  # like-for-like pair: the same keyframes and BA results until the loop
    src = SyntheticSource(scene, "stereo", frames=frames)
    system = System(cfg, src, f"synthetic:{scene}", tmp_path / name, loop=loop, progress=False)
    res = system.run()
    return system, res.report


def test_loop_closure_lowers_ate_and_writes_its_outputs(tmp_path: Path) -> None:
    _, off = _run(tmp_path, "noloop", False)
    used = resource.getrusage(resource.RUSAGE_SELF)
    system, on = _run(tmp_path, "loop", True)
    after = resource.getrusage(resource.RUSAGE_SELF)
    used = (after.ru_utime + after.ru_stime) - (used.ru_utime + used.ru_stime)
    assert off["loop_closure"] == "disabled (--no-loop)"
    # report.json's CPU time per thread: every thread worked (the loop thread only with loop closure),
    # each at most one core over the run (its own clock, not the process's), and together no more
    # than the process used over the run (which also counts threads of others, e.g. a BLAS pool)
    for rep, loop in ((off, False), (on, True)):
        cpu = rep["cpu_s"]
        assert (cpu["loop"] is not None) == loop
        for name in ("tracking", "odometry", "reader") + (("loop",) if loop else ()):
            assert 0 < cpu[name] <= rep["wall_time_s"] + 0.5, (name, cpu[name], rep["wall_time_s"])
    threads = sum(v for k, v in on["cpu_s"].items() if k != "process")
    assert threads <= used + 0.05, (threads, used)
    lc = on["loop_closure"]
    assert lc["status"] == "ok" and lc["accepted"] >= 1
    assert on["ate"]["rmse"] < off["ate"]["rmse"]
    loops = json.loads((tmp_path / "loop" / "loops.json").read_text())
    src_poses = SyntheticSource("room_loop", "stereo", frames=FRAMES).poses
    assert len(loops) == lc["accepted"]
    times = {round(t, 6) for t in np.loadtxt(tmp_path / "loop" / "keyframes.tum", ndmin=2)[:, 0]}
    for rec in loops:
        q, m = rec["query"], rec["match"]
        assert q["keyframe"] > m["keyframe"] and round(q["timestamp"], 6) in times and round(m["timestamp"], 6) in times
        assert np.asarray(rec["transform"]).shape == (4, 4) and rec["inliers"] >= 40
        # no false loop: the two keyframes' true camera centres are close
        gt_q, gt_m = (src_poses[int(round(rec[k]["timestamp"] * 20))] for k in ("query", "match"))
        assert np.linalg.norm(gt_q[:3, 3] - gt_m[:3, 3]) < 1.0
        # the verified relative pose agrees with the truth
        Z_true = lie.se3_inverse(gt_m) @ gt_q
        err = lie.se3_log(lie.se3_inverse(Z_true) @ np.asarray(rec["transform"]))
        assert np.linalg.norm(err[:3]) < 0.02 and np.linalg.norm(err[3:]) < 0.05
        p = rec["pgo"]
        assert p["vertices"] >= q["keyframe"] + 1 and p["final_cost"] < p["initial_cost"]
        assert p["iterations"] >= 1 and p["cg_iterations"] >= 1 and p["precision"]["name"] == "mixed"
        assert 0.0 <= p["loop_chi2"] <= p["loop_chi2_bound"]  # an accepted loop agrees with its graph
    # the exported graph is the last one solved, at its solution: re-solving starts at the reported cost
    graph = read_g2o(tmp_path / "loop" / "pose_graph.g2o")
    assert len(graph.poses) == loops[-1]["pgo"]["vertices"]
    assert from_pose_graph(graph).cost() == pytest.approx(loops[-1]["pgo"]["final_cost"], rel=1e-6)
    ft = lc["frame_time_ms"]
    assert ft["all"]["count"] == FRAMES and ft["during_pgo"]["count"] >= 0


def test_a_run_without_revisit_accepts_no_loop(tmp_path: Path) -> None:
    """The first half of the loop: similar-looking places but no revisit, so no loop may be accepted."""
    _, rep = _run(tmp_path, "short", True, frames=150)
    assert rep["loop_closure"]["accepted"] == 0
    assert json.loads((tmp_path / "short" / "loops.json").read_text()) == []
    assert not (tmp_path / "short" / "pose_graph.g2o").exists()


def test_look_alike_places_on_a_path_that_never_returns_close_no_loop(tmp_path: Path) -> None:
    """corridor_repeat: identical 4 m corridor modules, walked once. Place recognition finds the
    modules behind the camera and verification confirms them (the same texture at the same
    relative pose), but each would move the camera back by whole modules along a path of the same
    length: the plausibility test refuses them before any pose graph."""
    _, rep = _run(tmp_path, "corridor", True, frames=300, scene="corridor_repeat")
    lc = rep["loop_closure"]
    assert lc["accepted"] == 0 and lc["rejected"].get("implausible_correction", 0) > 0
    assert "inconsistent_graph" not in lc["rejected"]  # none got as far as a pose-graph solve
    assert rep["ate"]["rmse_percent_of_path"] < 0.1


def test_a_failing_loop_worker_leaves_an_odometry_run(tmp_path: Path, monkeypatch) -> None:
    def boom(self, *args):
        raise RuntimeError("injected loop failure")

    monkeypatch.setattr(LoopCloser, "process", boom)
    _, rep = _run(tmp_path, "fault", True, frames=60)
    assert rep["complete"] and rep["error"] is None and rep["frames_lost"] == 0
    lc = rep["loop_closure"]
    assert lc["status"] == "failed" and "injected loop failure" in lc["error"]
    assert rep["ate"]["rmse_percent_of_path"] < 0.5


def _loops_to_first_keyframe_at(*queries: int):
    """A stand-in for factory.place_recognition: keyframes `queries` match keyframe 0, verified
    with the relative pose the map has now (100 inliers)."""

    def stub(the_map, rig, mode, cfg, database=None):
        def candidates(kf, place):
            return [(0, 1.0)] if kf in queries else []

        def verify(kf, place, match):
            return Verified(lie.se3_inverse(the_map.keyframe_pose(match)) @ the_map.keyframe_pose(kf), 100)

        return PlaceRecognition(candidates, verify)

    return stub


class _InterruptDuringPgo(Source):
    """Frames of room_loop; raises KeyboardInterrupt (Ctrl-C) once the second pose-graph solve is under way."""

    def __init__(self, src: Source, started: threading.Event) -> None:
        self.src, self.started = src, started
        self.calibration, self.kind = src.calibration, "edited"

    def __len__(self) -> int:
        return len(self.src)

    def __iter__(self) -> Iterator[Frame]:
        for f in self.src:
            # Ctrl-C once the solve runs; from frame 80 on, wait for it (the loop thread has a
            # lower priority and may lag behind tracking on a busy machine)
            if f.index >= 80:
                self.started.wait(120.0)
            if self.started.is_set() or f.index >= 80:
                raise KeyboardInterrupt
            yield f


def test_interrupt_during_pgo_keeps_the_last_accepted_correction(tmp_path: Path, monkeypatch) -> None:
    """Loops at keyframes 5 and 16 (place recognition stubbed: both match keyframe 0, measured by
    the current poses); the second solve is still running when Ctrl-C arrives. The run folder is
    complete and holds the first loop's correction only."""
    started = threading.Event()
    solves: list[int] = []
    real_solve = closer_module.solve_graph

    def slow_solve(graph, *args, **kwargs):
        solves.append(graph.n)
        if len(solves) == 2:
            started.set()
            time.sleep(3.0)  # a long PGO: the run is interrupted meanwhile
        return real_solve(graph, *args, **kwargs)

    monkeypatch.setattr(factory, "place_recognition", _loops_to_first_keyframe_at(5, 16))
    monkeypatch.setattr(closer_module, "solve_graph", slow_solve)
    cfg = load_config(REPO / "configs" / "synthetic.yaml")
    cfg.loop.min_keyframes_between = 5
    src = _InterruptDuringPgo(SyntheticSource("room_loop", "stereo", frames=100), started)
    system = System(cfg, src, "x", tmp_path, progress=False, loop=True)
    res = system.run()
    assert res.interrupted and len(solves) == 2
    rep = json.loads((tmp_path / "report.json").read_text())
    assert rep["interrupted"] and rep["loop_closure"]["accepted"] == 1
    assert rep["loop_closure"]["rejected"].get("run_stopped") == 1
    loops = json.loads((tmp_path / "loops.json").read_text())
    assert [r["query"]["keyframe"] for r in loops] == [5]
    assert system.map.corrections == 1 and (tmp_path / "pose_graph.g2o").is_file()
    assert not system.loop_worker.alive


def test_interrupt_during_global_ba_stops_it_and_keeps_the_pose_graph_correction(tmp_path: Path, monkeypatch) -> None:
    """A loop at keyframe 5 (place recognition stubbed), global BA after it; Ctrl-C arrives while
    the global BA solves. The solve stops after its current LM iteration ('interrupted') instead of
    finishing, writes nothing, and the run folder is complete with the pose graph's correction."""
    started = threading.Event()
    summaries: list = []
    real_solve = gba_module.solve

    def watched_solve(problem, options):
        run_stopped = options.interrupt
        if run_stopped is None:  # fail at once (the source would otherwise wait for the solve)
            started.set()
            raise AssertionError("global BA must pass the run's abort to the solver")

        def interrupt() -> bool:
            started.set()  # the first LM iteration is done: Ctrl-C now, and wait for the run to stop
            deadline = time.perf_counter() + 60.0
            while not run_stopped() and time.perf_counter() < deadline:
                time.sleep(0.01)
            return run_stopped()

        options.interrupt = interrupt
        options.max_iterations = 1000  # uninterrupted, this solve would run on
        options.relative_cost_tol = 0.0
        summaries.append(real_solve(problem, options))
        return summaries[-1]

    monkeypatch.setattr(factory, "place_recognition", _loops_to_first_keyframe_at(5))
    monkeypatch.setattr(gba_module, "solve", watched_solve)
    cfg = load_config(REPO / "configs" / "synthetic.yaml")
    cfg.loop.global_ba = True
    src = _InterruptDuringPgo(SyntheticSource("room_loop", "stereo", frames=100), started)
    system = System(cfg, src, "x", tmp_path, progress=False, loop=True)
    t0 = time.perf_counter()
    res = system.run()
    assert time.perf_counter() - t0 < 60.0
    assert res.interrupted and len(summaries) == 1
    assert summaries[0].termination == "interrupted" and summaries[0].iterations == 1
    assert system.map.corrections == 1  # the pose graph's; the global BA wrote nothing
    rep = json.loads((tmp_path / "report.json").read_text())
    assert rep["interrupted"] and rep["loop_closure"]["accepted"] == 1
    loops = json.loads((tmp_path / "loops.json").read_text())
    assert [r["query"]["keyframe"] for r in loops] == [5] and loops[0]["global_ba"] is None
    assert (tmp_path / "pose_graph.g2o").is_file() and (tmp_path / "trajectory.tum").is_file()
    assert not system.loop_worker.alive
