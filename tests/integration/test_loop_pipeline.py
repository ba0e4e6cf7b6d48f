"""Loop closure inside `slam run`: the loop worker, its write-back while tracking runs, outputs and faults.

Here place recognition is a ground-truth oracle (candidates: keyframes whose true camera centre is
near the query's; verification: the true relative pose), so that these tests check the closing
machinery itself: pose graph, correction of every keyframe and landmark, tracking that continues
in the corrected frame, loops.json / pose_graph.g2o / report.json, and fault isolation.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from slam.config import load_config
from slam.geometry import lie
from slam.io.g2o import read_g2o
from slam.loop import factory
from slam.loop.closer import LoopCloser, Verified
from slam.solvers.pgo import from_pose_graph
from slam.sources.synthetic import SyntheticSource
from slam.system import System

REPO = Path(__file__).resolve().parents[2]
FRAMES = 330  # room_loop: back at the start at 15 s (frame 300)


def _oracle(gt: np.ndarray, radius: float = 0.4, max_angle_deg: float = 25.0):
    """A place-recognition factory answering from ground truth (poses by source frame index)."""

    def make(the_map, rig, mode, cfg):
        def candidates(kf: int, place) -> list[tuple[int, float]]:
            frames = the_map.keyframe_table()[2]
            G = gt[frames]
            old = np.arange(len(frames)) < kf - cfg.recent_keyframes
            d = np.linalg.norm(G[:, :3, 3] - G[kf, :3, 3], axis=1)
            cosang = np.einsum("ni,i->n", G[:, :3, 2], G[kf, :3, 2])
            ok = old & (d < radius) & (cosang > np.cos(np.radians(max_angle_deg)))
            return [(int(k), 1.0 - float(d[k])) for k in np.flatnonzero(ok)[np.argsort(d[ok])]]

        def verify(kf: int, place, match: int) -> Verified:
            frames = the_map.keyframe_table()[2]
            return Verified(lie.se3_inverse(gt[frames[match]]) @ gt[frames[kf]], 150)

        return candidates, verify

    return make


def _run(tmp_path: Path, name: str, loop: bool, monkeypatch, frames: int = FRAMES, make=None) -> tuple[System, dict]:
    cfg = load_config(REPO / "configs" / "synthetic.yaml")
    cfg.odometry.blocking = True  # like-for-like pair: the same keyframes and BA results until the loop
    src = SyntheticSource("room_loop", "stereo", frames=frames)
    if make is not None:
        monkeypatch.setattr(factory, "place_recognition", make(src.poses))
    system = System(cfg, src, "synthetic:room_loop", tmp_path / name, loop=loop, progress=False)
    res = system.run()
    return system, res.report


def test_loop_closure_lowers_ate_and_writes_its_outputs(tmp_path: Path, monkeypatch) -> None:
    _, off = _run(tmp_path, "noloop", False, monkeypatch)
    system, on = _run(tmp_path, "loop", True, monkeypatch, make=_oracle)
    assert off["loop_closure"] == "disabled (--no-loop)"
    lc = on["loop_closure"]
    assert lc["status"] == "ok" and lc["accepted"] >= 1
    assert on["ate"]["rmse"] < off["ate"]["rmse"]
    loops = json.loads((tmp_path / "loop" / "loops.json").read_text())
    assert len(loops) == lc["accepted"]
    times = {round(t, 6) for t in np.loadtxt(tmp_path / "loop" / "keyframes.tum", ndmin=2)[:, 0]}
    for rec in loops:
        q, m = rec["query"], rec["match"]
        assert q["keyframe"] > m["keyframe"] and round(q["timestamp"], 6) in times and round(m["timestamp"], 6) in times
        assert np.asarray(rec["transform"]).shape == (4, 4) and rec["inliers"] == 150
        p = rec["pgo"]
        assert p["vertices"] >= q["keyframe"] + 1 and p["final_cost"] < p["initial_cost"]
        assert p["iterations"] >= 1 and p["cg_iterations"] >= 1 and p["precision"]["name"] == "mixed"
    # the exported graph is the last one solved, at its solution: re-solving starts at the reported cost
    graph = read_g2o(tmp_path / "loop" / "pose_graph.g2o")
    assert len(graph.poses) == loops[-1]["pgo"]["vertices"]
    assert from_pose_graph(graph).cost() == pytest.approx(loops[-1]["pgo"]["final_cost"], rel=1e-6)
    ft = lc["frame_time_ms"]
    assert ft["all"]["count"] == FRAMES and ft["during_pgo"]["count"] >= 0


def test_a_run_without_revisit_accepts_no_loop(tmp_path: Path, monkeypatch) -> None:
    _, rep = _run(tmp_path, "short", True, monkeypatch, frames=120, make=_oracle)
    assert rep["loop_closure"]["accepted"] == 0
    assert json.loads((tmp_path / "short" / "loops.json").read_text()) == []
    assert not (tmp_path / "short" / "pose_graph.g2o").exists()


def test_a_failing_loop_worker_leaves_an_odometry_run(tmp_path: Path, monkeypatch) -> None:
    def boom(self, *args):
        raise RuntimeError("injected loop failure")

    monkeypatch.setattr(LoopCloser, "process", boom)
    _, rep = _run(tmp_path, "fault", True, monkeypatch, frames=60, make=_oracle)
    assert rep["complete"] and rep["error"] is None and rep["frames_lost"] == 0
    lc = rep["loop_closure"]
    assert lc["status"] == "failed" and "injected loop failure" in lc["error"]
    assert rep["ate"]["rmse_percent_of_path"] < 0.5
