"""Loop verification on rendered pairs with exact ground truth: SE(3) and Sim(3) recovered, wrong pairs rejected."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from slam.loop.verify import REJECTIONS, CandidateLandmarks, QueryFeatures, match_in_radius, verify_loop
from slam.synthetic import SyntheticSource

K = np.array([[525.0, 0, 319.5], [0, 525.0, 239.5], [0, 0, 1]])


@pytest.fixture(scope="module")
def rendered() -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """ORB pixels, descriptors, camera-frame points (from exact depth) and T_world_cam of a few frames."""
    src = SyntheticSource("room_loop", "rgbd", seed=0)
    orb = cv2.ORB_create(1200)
    out = {}
    for i in (0, 12, 200):
        f = src.render(i)
        kp, d = orb.detectAndCompute(cv2.cvtColor(f.left, cv2.COLOR_BGR2GRAY), None)
        uv = cv2.KeyPoint_convert(kp).astype(np.float64)
        z = f.depth[np.round(uv[:, 1]).astype(int), np.round(uv[:, 0]).astype(int)].astype(np.float64)
        z[z <= 0] = np.nan
        P = np.stack([(uv[:, 0] - K[0, 2]) / K[0, 0] * z, (uv[:, 1] - K[1, 2]) / K[1, 1] * z, z], axis=1)
        out[i] = (uv, d, P, f.gt_pose)
    return out


def _landmarks(rendered, i: int) -> CandidateLandmarks:
    uv, d, P, T = rendered[i]
    ok = np.isfinite(P).all(axis=1)
    X = P[ok] @ T[:3, :3].T + T[:3, 3]
    primary = np.zeros(ok.sum(), bool)
    primary[::2] = True  # half seen by the candidate itself, the rest only by "covisible" keyframes
    return CandidateLandmarks(np.flatnonzero(ok) + 5000, X, d[ok], primary)


def _pose_error(T_est: np.ndarray, T_true: np.ndarray) -> tuple[float, float]:
    D = np.linalg.inv(T_true) @ T_est
    ang = np.degrees(np.arccos(np.clip((np.trace(D[:3, :3]) - 1) / 2, -1, 1)))
    return float(np.linalg.norm(D[:3, 3])), float(ang)


@pytest.mark.parametrize("mode", ["rgbd", "stereo"])
def test_se3_pose_of_a_revisit_is_recovered(rendered, mode: str) -> None:
    uv, d, P, T_true = rendered[12]
    cand = _landmarks(rendered, 0)
    v = verify_loop(QueryFeatures(uv, d, P), cand, K, mode)
    assert v.accepted and v.reason == "accepted"
    dt, dr = _pose_error(v.T_world_query, T_true)
    assert dt < 0.03 and dr < 0.5, (dt, dr)
    assert v.scale == 1.0 and v.inliers >= 40 and len(v.matches) == v.inliers
    # Matched pairs are real: the landmark projects near the query pixel in the true pose.
    lm_index = {int(k): j for j, k in enumerate(cand.ids)}
    X = cand.positions[[lm_index[int(k)] for k in v.matches[:, 1]]]
    Pc = (X - T_true[:3, 3]) @ T_true[:3, :3]
    proj = Pc[:, :2] / Pc[:, 2:] * [K[0, 0], K[1, 1]] + K[:2, 2]
    assert np.median(np.linalg.norm(proj - uv[v.matches[:, 0]], axis=1)) < 2.0
    # The second look found landmarks that the first matching (primary only) could not.
    assert not cand.primary[[lm_index[int(k)] for k in v.matches[:, 1]]].all()


def test_sim3_recovers_the_scale_of_a_drifted_monocular_map(rendered) -> None:
    uv, d, P, T_true = rendered[12]
    v = verify_loop(QueryFeatures(uv, d, 0.4 * P), _landmarks(rendered, 0), K, "mono")
    assert v.accepted
    assert v.scale == pytest.approx(2.5, rel=0.02)
    dt, dr = _pose_error(v.T_world_query, T_true)
    assert dt < 0.03 and dr < 0.5
    S = v.S_world_query
    ok = np.isfinite(P).all(axis=1)
    pred = (0.4 * P[ok]) @ S[:3, :3].T + S[:3, 3]  # query points through the Sim(3) land on the truth
    truth = P[ok] @ T_true[:3, :3].T + T_true[:3, 3]
    assert np.median(np.linalg.norm(pred - truth, axis=1)) < 0.05


@pytest.mark.parametrize("mode", ["rgbd", "mono"])
def test_wrong_pair_is_rejected(rendered, mode: str) -> None:
    uv, d, P, _ = rendered[200]  # the other side of the room
    v = verify_loop(QueryFeatures(uv, d, P), _landmarks(rendered, 0), K, mode)
    assert not v.accepted and v.reason in REJECTIONS and v.T_world_query is None


def test_degenerate_input_is_a_rejection_not_an_exception(rendered) -> None:
    uv, d, P, _ = rendered[12]
    cand = _landmarks(rendered, 0)
    assert verify_loop(QueryFeatures(uv, d, P), cand, K, "fisheye").reason == "bad_input"
    assert verify_loop(QueryFeatures(uv, d[:, :16], P), cand, K, "rgbd").reason == "bad_input"
    bad_uv = uv.copy()
    bad_uv[0] = np.nan
    assert verify_loop(QueryFeatures(bad_uv, d, P), cand, K, "rgbd").reason == "bad_input"
    empty = QueryFeatures(np.zeros((0, 2)), np.zeros((0, 32), np.uint8), None)
    assert verify_loop(empty, cand, K, "rgbd").reason == "too_few_matches"
    assert verify_loop(QueryFeatures(uv, d, None), cand, K, "mono").reason == "too_few_matches"
    # All landmarks at one point: PnP and Sim(3) cannot be solved, the answer is a rejection.
    one = CandidateLandmarks(cand.ids, np.ones_like(cand.positions), cand.descriptors, cand.primary)
    for mode in ("rgbd", "mono"):
        v = verify_loop(QueryFeatures(uv, d, P), one, K, mode)
        assert not v.accepted and v.reason in REJECTIONS
    nan_lm = CandidateLandmarks(cand.ids, np.full_like(cand.positions, np.nan), cand.descriptors, cand.primary)
    assert verify_loop(QueryFeatures(uv, d, P), nan_lm, K, "rgbd").reason == "too_few_matches"


def test_match_in_radius_agrees_with_brute_force() -> None:
    rng = np.random.default_rng(0)
    uv = rng.uniform(0, 200, size=(300, 2))
    desc = rng.integers(0, 256, size=(300, 32), dtype=np.uint8)
    proj = rng.uniform(0, 200, size=(250, 2))
    lm_desc = desc[rng.integers(0, 300, 250)] ^ (rng.random((250, 32)) < 0.02).astype(np.uint8)
    qi, li = match_in_radius(uv, desc, proj, lm_desc, radius=9.0, max_distance=64)
    # brute force with the same rules
    d2 = np.sum((proj[:, None] - uv[None]) ** 2, axis=2)
    ham = np.unpackbits(lm_desc[:, None] ^ desc[None], axis=2).sum(axis=2)
    cost = np.where((d2 < 81) & (ham <= 64), ham, 10_000)
    pairs = set()
    best_q = {}
    for lj in range(250):
        q = int(np.lexsort((np.arange(300), cost[lj]))[0])
        if cost[lj, q] < 10_000:
            best_q.setdefault(q, []).append((cost[lj, q], lj))
    for q, cands in best_q.items():
        pairs.add((q, min(cands)[1]))
    assert set(zip(qi.tolist(), li.tolist())) == pairs


def test_a_distant_but_correct_view_can_be_refused_by_distance(rendered) -> None:
    from slam.loop.verify import VerifyParams

    uv, d, P, T_true = rendered[12]
    T_cand = rendered[0][3]
    gap = float(np.linalg.norm(T_true[:3, 3] - T_cand[:3, 3]))
    near = verify_loop(QueryFeatures(uv, d, P), _landmarks(rendered, 0), K, "rgbd",
                       VerifyParams(max_distance=gap + 0.1), T_world_candidate=T_cand)
    far = verify_loop(QueryFeatures(uv, d, P), _landmarks(rendered, 0), K, "rgbd",
                      VerifyParams(max_distance=gap - 0.1), T_world_candidate=T_cand)
    assert near.accepted and far.reason == "too_far" and far.inliers > 0


@pytest.mark.parametrize(("mode", "setting", "limited"), [
    ("stereo", 1.0, True), ("rgbd", 1.0, True), ("stereo", 0.0, False), ("mono", 1.0, False)])
def test_loop_edge_goes_to_the_nearest_camera_and_max_distance_limits_it(monkeypatch: pytest.MonkeyPatch, mode: str,
                                                                      setting: float, limited: bool) -> None:
    """A verified query 1.5 m from the candidate but 0.5 m from the candidate's covisible neighbour
    is a loop with that neighbour (Z relative to it); 1.5 m from every camera of the place, it is
    'too_far' for a metric map with loop.max_distance 1 m (0: no limit; monocular: no metric scale).
    A nearer neighbour looking the other way is not a camera of the same view."""
    from types import SimpleNamespace

    from slam.geometry import lie
    from slam.loop import factory, verify
    from slam.loop.config import LoopConfig

    def pose(x: float, back: bool = False) -> np.ndarray:
        T = np.eye(4)
        T[:3, 3] = [x, 0.0, 0.0]
        if back:
            T[:3, :3] = np.diag([-1.0, 1.0, -1.0])
        return T

    poses = {3: pose(0.0), 4: pose(1.0), 5: pose(1.4, back=True), 9: pose(-5.0)}
    covis = {3: {4: 80, 5: 90, 9: 20}}
    query = {"T": pose(1.5)}

    def spy(q: object, candidate: object, K: np.ndarray, m: str, params: verify.VerifyParams | None = None,
            T_world_candidate: np.ndarray | None = None) -> verify.Verification:
        assert params.min_inliers == 33
        return verify.Verification(True, "accepted", query["T"], 1.0, 50)

    monkeypatch.setattr(verify, "verify_loop", spy)
    monkeypatch.setattr(factory, "query_features", lambda *a: None)
    monkeypatch.setattr(factory, "candidate_landmarks", lambda *a: None)
    the_map = SimpleNamespace(keyframe_pose=poses.get, covisible=lambda k, *a: covis.get(k, {}))
    pr = factory.place_recognition(the_map, SimpleNamespace(K=np.eye(3)), mode,
                                   LoopConfig(max_distance=setting, min_inliers=33))
    res = pr.verify(40, None, 3)
    assert res.match == 4  # 0.5 m away; keyframe 5 (0.1 m) looks the other way
    np.testing.assert_allclose(res.Z, lie.se3_inverse(poses[4]) @ query["T"], atol=1e-12)
    query["T"] = pose(-2.5)  # 2.5 m from the candidate (at 0) and from keyframe 9 (at -5)
    res = pr.verify(40, None, 3)
    if limited:
        assert res == "too_far"
    else:
        assert res.match is None and np.allclose(res.Z, lie.se3_inverse(poses[3]) @ query["T"])


@pytest.mark.parametrize("mode", ["mono", "stereo"])
def test_a_monocular_query_still_approaching_the_place_waits(monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    """Keyframes 0..10 every 0.5 map units along their optical axis (a path driven forward), and the
    query keyframe 300 that just moved forward from 299. A verified monocular query 3 units behind
    keyframe 0 (6 spacings) is 'approaching'; 0.4 behind (0.8 spacings), beside it, or 3 behind but
    not moving towards it (stopped, or backing away) is a loop. Metric maps use loop.max_distance."""
    from types import SimpleNamespace

    from slam.loop import factory, verify
    from slam.loop.config import LoopConfig

    def pose(z: float, x: float = 0.0) -> np.ndarray:
        T = np.eye(4)
        T[:3, 3] = [x, 0.0, z]
        return T

    poses = {k: pose(0.5 * k) for k in range(11)}
    poses[299], poses[300] = pose(100.0), pose(100.5)  # the query's own last step: forward
    query = {"T": pose(-3.0)}
    monkeypatch.setattr(verify, "verify_loop",
                        lambda *a, **k: verify.Verification(True, "accepted", query["T"], 1.0, 50))
    monkeypatch.setattr(factory, "query_features", lambda *a: None)
    monkeypatch.setattr(factory, "candidate_landmarks", lambda *a: None)
    the_map = SimpleNamespace(keyframe_pose=poses.get, covisible=lambda k, *a: {1: 60} if k == 0 else {})
    pr = factory.place_recognition(the_map, SimpleNamespace(K=np.eye(3)), mode, LoopConfig(max_distance=0.0))
    assert factory.steps_behind(the_map, 0, query["T"]) == pytest.approx(6.0)
    res = pr.verify(300, None, 0)
    assert res == "approaching" if mode == "mono" else res.match is None
    for T in (pose(-0.4), pose(0.2, x=0.8)):  # nearly there; beside the place
        query["T"] = T
        res = pr.verify(300, None, 0)
        assert not isinstance(res, str) and res.match is None  # keyframe 0 is the nearest
    query["T"] = pose(-3.0)
    for last_step in (0.0, -0.5):  # stopped; backing away: waiting would not bring it nearer
        poses[299] = pose(100.5 - last_step)
        assert not isinstance(pr.verify(300, None, 0), str)
    poses[299] = pose(100.0)
    pr = factory.place_recognition(the_map, SimpleNamespace(K=np.eye(3)), mode,
                                   LoopConfig(max_distance=0.0, max_steps_behind=0.0))
    assert not isinstance(pr.verify(300, None, 0), str)  # 0: no limit
