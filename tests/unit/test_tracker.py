"""The Tracker without the odometry worker: keyframes go to a map that only stores them (no bundle
adjustment), so what is checked is tracking itself against the renderer's ground truth: stereo
tracking, loss and relocalization, and a monocular start applied by the tracker."""

from __future__ import annotations

import numpy as np

from slam.eval.align import align
from slam.frontend.config import FrontendConfig, KeyframeConfig
from slam.geometry.pinhole import Rig
from slam.geometry.pinhole import backproject
from slam.frontend.tracker import TRACKING, Tracker
from slam.map.keyframe import KeyframeData
from slam.map.map import NONE, Map
from slam.synthetic import SyntheticSource


class Store:
    """Keyframes into the map, with the landmarks tracking measured (what the worker does before BA)."""

    def __init__(self, the_map: Map, K: np.ndarray) -> None:
        self.map, self.K = the_map, K
        self.keyframes: list[KeyframeData] = []

    def __call__(self, kf: KeyframeData) -> None:
        self.keyframes.append(kf)
        self.map.insert_keyframe(kf)
        self.map.create_landmarks(kf.new_ids, kf.new_points, kf.id, if_states=(NONE,))
        d = np.isfinite(kf.depth)
        self.map.create_landmarks(kf.ids[d], backproject(kf.uv[d], kf.depth[d], self.K, kf.pose), kf.id,
                                  if_states=(NONE,))


def _tracker(src: SyntheticSource, mode: str, **frontend) -> tuple[Tracker, Store, Map]:
    cam, cal = src.calibration.camera, src.calibration
    rig = Rig(cam.K, int(cam.width), int(cam.height), mode, float(cal.baseline or 0.0))
    m = Map()
    store = Store(m, cam.K)
    return Tracker(FrontendConfig(**frontend), KeyframeConfig(), rig, m, store), store, m


def _relative_error(results, frames) -> float:
    """Largest camera-centre error (m) against ground truth, both relative to the first frame."""
    g0 = np.linalg.inv(frames[0].gt_pose)
    err = [np.linalg.norm(r.T_wc[:3, 3] - (g0 @ frames[r.index].gt_pose)[:3, 3]) for r in results if r.ok]
    return float(max(err))


def test_stereo_tracking_follows_ground_truth_and_hands_on_keyframes() -> None:
    src = SyntheticSource("room_loop", "stereo", frames=50)
    frames = list(src)
    tracker, store, m = _tracker(src, "stereo")
    results = [r for fr in frames for r in tracker.process(fr)]
    assert [r.index for r in results] == list(range(50)) and all(r.ok for r in results)
    assert results[0].status == "keyframe" and tracker.state == TRACKING
    assert [kf.id for kf in store.keyframes] == list(range(len(store.keyframes))) and len(store.keyframes) >= 5
    assert m.n_keyframes == len(store.keyframes)
    assert all(kf.ref_kf == kf.id - 1 for kf in store.keyframes[1:])  # chained to the previous keyframe
    assert _relative_error(results, frames) < 0.02  # 2 cm after 2.5 s without bundle adjustment
    assert tracker.keyframe_reasons and sum(tracker.keyframe_reasons.values()) == len(store.keyframes) - 1


def test_old_tracks_continue_as_new_landmarks() -> None:
    """frontend.max_track_keyframes: no landmark is observed by more than that many keyframes; a
    renewed track keeps its pixel and gets a new id with this keyframe's depth."""
    src = SyntheticSource("room_loop", "stereo", frames=60)
    frames = list(src)
    tracker, store, m = _tracker(src, "stereo", max_track_keyframes=3)
    plain, plain_store, _ = _tracker(src, "stereo", max_track_keyframes=0)
    results = [r for fr in frames for r in tracker.process(fr)]
    for fr in frames:
        plain.process(fr)
    assert all(r.ok for r in results) and len(store.keyframes) >= 6
    obs_kf = np.concatenate([np.full(len(kf.ids), kf.id) for kf in store.keyframes])
    obs_id = np.concatenate([kf.ids for kf in store.keyframes])
    _, seen_by = np.unique(obs_id, return_counts=True)
    assert seen_by.max() <= 3
    plain_id = np.concatenate([kf.ids for kf in plain_store.keyframes])
    assert np.unique(plain_id, return_counts=True)[1].max() > 3  # without it, tracks outlive 3 keyframes
    # renewed tracks are handed on as new landmarks of the keyframe that renewed them
    kf = store.keyframes[4]
    assert np.isin(kf.new_ids, kf.ids).all() and len(kf.new_ids) > len(plain_store.keyframes[4].new_ids)
    assert _relative_error(results, frames) < 0.02


def test_lost_frames_then_relocalization() -> None:
    src = SyntheticSource("room_loop", "stereo", frames=40)
    frames = list(src)
    tracker, store, m = _tracker(src, "stereo")
    for fr in frames[25:28]:
        fr.left = np.zeros_like(fr.left)
        fr.right = np.zeros_like(fr.right)
    results = [r for fr in frames for r in tracker.process(fr)]
    status = {r.index: r.status for r in results}
    assert [status[i] for i in (25, 26, 27)] == ["lost"] * 3
    assert status[28] == "relocalized" and tracker.state == TRACKING and tracker.segment == 0
    assert _relative_error(results, frames) < 0.03
    assert store.keyframes[-1].segment == 0


def test_monocular_start_is_applied_by_the_tracker() -> None:
    src = SyntheticSource("room_loop", "mono", frames=45)
    frames = list(src)
    tracker, store, m = _tracker(src, "mono")
    steps = [tracker.process(fr) for fr in frames]
    assert all(st[-1].index == fr.index for st, fr in zip(steps, frames))  # each list ends with its own frame
    results = list({r.index: r for st in steps for r in st}.values())  # pending frames are settled later
    assert sorted(r.index for r in results) == list(range(45))
    assert {r.status for r in steps[0]} == {"pending"}
    first, second = store.keyframes[:2]
    assert (first.id, second.id, first.segment, tracker.segment) == (0, 1, 0, 0)
    assert first.frame_index == 0 and np.array_equal(first.pose, np.eye(4)) and len(first.new_ids) >= 60
    assert all(r.ok for r in results) and tracker.state == TRACKING
    by_index = {r.index: r for r in results}
    assert by_index[second.frame_index].status == "keyframe"
    assert all(by_index[i].status == "tracking" for i in range(second.frame_index))  # pending frames posed
    est = np.stack([by_index[i].T_wc[:3, 3] for i in range(45)])
    g0 = np.linalg.inv(frames[0].gt_pose)
    gt = np.stack([(g0 @ fr.gt_pose)[:3, 3] for fr in frames])
    a = align(gt, est, "sim3")
    res = (a.scale * est) @ a.rotation.T + a.translation - gt
    path = np.sum(np.linalg.norm(np.diff(gt, axis=0), axis=1))
    assert np.sqrt(np.mean(np.sum(res ** 2, axis=1))) < 0.02 * path


def test_a_tracker_that_stays_lost_starts_a_new_segment() -> None:
    src = SyntheticSource("room_loop", "stereo", frames=30)
    frames = list(src)
    tracker, store, m = _tracker(src, "stereo", new_map_after=0.2)
    for fr in frames[10:20]:
        fr.left = np.zeros_like(fr.left)
        fr.right = np.zeros_like(fr.right)
    results = [r for fr in frames for r in tracker.process(fr)]
    status = [r.status for r in results]
    # lost for new_map_after seconds of sensor time, then each black frame fails to start a segment
    n_lost = sum(fr.timestamp - frames[10].timestamp < 0.2 for fr in frames[10:20])
    assert n_lost in (4, 5) and status[10:20] == ["lost"] * n_lost + ["init"] * (10 - n_lost)
    assert status[20] == "keyframe" and tracker.segment == 1 and tracker.state == TRACKING
    first_new = next(kf for kf in store.keyframes if kf.segment == 1)
    assert first_new.frame_index == 20 and first_new.ref_kf == -1  # not chained across the gap
    # the new segment starts at the last known pose (the gap itself is not estimated)
    np.testing.assert_allclose(first_new.pose, results[9].T_wc, atol=1e-12)
    assert all(r.ok for r in results[20:])


def test_anchor_alignment_runs_only_while_the_worker_keeps_up_and_not_for_mono_by_default() -> None:
    """Every keyframe by default (recorded runs bound the worker's lag instead); with
    anchor_alignment_max_pending 0, only while the odometry worker has nothing queued."""
    src = SyntheticSource("room_loop", "stereo", frames=40)
    frames = list(src)
    cam, cal = src.calibration.camera, src.calibration
    rig = Rig(cam.K, int(cam.width), int(cam.height), "stereo", float(cal.baseline or 0.0))
    counts = {}
    for max_pending, behind in ((0, 0), (0, 3), (-1, 3)):
        m = Map()
        tr = Tracker(FrontendConfig(anchor_alignment_max_pending=max_pending), KeyframeConfig(), rig, m,
                     Store(m, cam.K), lambda b=behind: b)
        for fr in frames:
            tr.process(fr)
        counts[max_pending, behind] = (tr.anchors.aligned, tr.anchors.skipped, tr.next_kf)
    aligned, skipped, n_kf = counts[0, 0]
    assert aligned > 0 and skipped == 0 and n_kf >= 5
    aligned, skipped, n_kf = counts[0, 3]  # the worker 3 keyframes behind: tracking spends nothing on it
    assert aligned == 0 and skipped == n_kf
    aligned, skipped, n_kf = counts[-1, 3]  # the default: aligned whatever the worker's backlog
    assert aligned > 0 and skipped == 0
    assert FrontendConfig().anchor_alignment_max_pending < 0
    mono_rig = Rig(cam.K, int(cam.width), int(cam.height), "mono", 0.0)
    assert not Tracker(FrontendConfig(), KeyframeConfig(), mono_rig, Map(), lambda kf: None).anchors.enabled
    assert Tracker(FrontendConfig(anchor_alignment_mono=True), KeyframeConfig(), mono_rig, Map(), lambda kf: None).anchors.enabled


def test_the_klt_check_runs_on_every_level_unless_configured() -> None:
    cam = SyntheticSource("room_loop", "stereo", frames=2).calibration.camera

    def levels(mode: str, **frontend) -> int:
        rig = Rig(cam.K, int(cam.width), int(cam.height), mode, 0.1 if mode == "stereo" else 0.0)
        return Tracker(FrontendConfig(**frontend), KeyframeConfig(), rig, Map(), lambda kf: None).check_levels

    assert levels("stereo") == levels("rgbd") == levels("mono") == 3 and levels("mono", klt_levels=4) == 4
    assert levels("stereo", klt_check_levels=1) == 1 and levels("mono", klt_check_levels=0) == 0
