"""Monocular initialization on its own: a two-view start against the renderer's ground truth, a
camera that does not move, and the hand-over of the pending frames."""

from __future__ import annotations

import numpy as np

from slam.frontend.config import FrontendConfig
from slam.frontend.features import build_pyramid, to_gray
from slam.frontend.mono_init import MonoInitializer, pose_from_points
from slam.geometry import lie
from slam.synthetic import SyntheticSource


class Ids:
    """Track ids as the map hands them out: increasing, never repeated."""

    def __init__(self) -> None:
        self.next = 0

    def __call__(self, n: int) -> np.ndarray:
        self.next += n
        return np.arange(self.next - n, self.next)


def _run(init: MonoInitializer, frames: list) -> list:
    steps, prev = [], None
    for fr in frames:
        gray = to_gray(fr.left)
        pyr = build_pyramid(gray, init.f.klt_window, init.f.klt_levels)
        steps.append(init.process(fr, gray, prev, pyr))
        prev = pyr
        if steps[-1].start is not None:
            break
    return steps


def test_two_view_start_matches_ground_truth() -> None:
    src = SyntheticSource("room_loop", "mono", frames=40)
    cfg = FrontendConfig()
    init = MonoInitializer(cfg, src.calibration.camera.K, Ids())
    frames = list(src)
    steps = _run(init, frames)
    st = steps[-1].start
    assert st is not None and all(s.start is None for s in steps[:-1])
    n = len(steps)
    # every earlier frame was pending; the ones between reference and current are handed over
    assert [u for s in steps[:-1] for u in s.unposed] == [(frames[i], "pending") for i in range(n - 1)]
    assert st.ref_frame.index == 0 and [p[0].index for p in st.pending] == list(range(1, n - 1))
    T_true = lie.se3_inverse(frames[n - 1].gt_pose) @ frames[0].gt_pose  # current camera from reference
    R_err = st.T_cur_ref[:3, :3] @ T_true[:3, :3].T
    assert np.degrees(np.arccos(np.clip((np.trace(R_err) - 1) / 2, -1, 1))) < 0.2
    t_est, t_true = st.T_cur_ref[:3, 3], T_true[:3, 3]
    cos = t_est @ t_true / np.linalg.norm(t_est) / np.linalg.norm(t_true)
    assert cos > np.cos(np.radians(3.0))  # direction; the scale is the map's gauge
    assert abs(np.median(st.points[:, 2]) - 1.0) < 1e-9  # median depth normalized to 1
    K = src.calibration.camera.K
    uv_ref = st.points @ K.T
    assert np.median(np.linalg.norm(uv_ref[:, :2] / uv_ref[:, 2:] - st.ref_uv[st.good], axis=1)) < 0.5
    assert init.ref is None and len(init.tracks) == 0  # the tracks now belong to the start
    # pending frames get their pose from the initial points: against ground truth, up to the map's scale
    s = np.linalg.norm(t_true) / np.linalg.norm(t_est)
    fr, ids, uv = st.pending[len(st.pending) // 2]
    T_cw, inl = pose_from_points(st.points, st.tracks.ids[st.good], ids, uv, K, cfg)
    T_true_mid = lie.se3_inverse(fr.gt_pose) @ frames[0].gt_pose
    assert inl >= cfg.min_inliers
    assert np.linalg.norm(s * T_cw[:3, 3] - T_true_mid[:3, 3]) < 0.05 * np.linalg.norm(t_true)


def test_a_still_camera_never_starts_and_gives_up_its_reference() -> None:
    frame = next(iter(SyntheticSource("room_loop", "mono", frames=1)))
    cfg = FrontendConfig(init_max_frames=5)
    init = MonoInitializer(cfg, np.array([[458.0, 0, 367], [0, 458, 248], [0, 0, 1]]), Ids())
    steps = _run(init, [frame] * 8)
    statuses = [[s for _, s in st.unposed] for st in steps]
    # reference + 5 pending frames, then the 7th frame gives them up and becomes the new reference
    assert statuses == [["pending"]] * 6 + [["lost"] * 6 + ["pending"], ["pending"]]
    assert all(st.start is None for st in steps)


def test_too_few_corners_is_reported_as_init() -> None:
    frame = next(iter(SyntheticSource("room_loop", "mono", frames=1)))
    frame.left = np.full_like(frame.left, 90)
    init = MonoInitializer(FrontendConfig(), np.eye(3), Ids())
    assert _run(init, [frame])[0].unposed == [(frame, "init")] and init.ref is None
