"""Synthetic sequences: the rendered images, depth and poses agree with each other and with peers.

References: photometric consistency of two views warped with the ground-truth poses and rendered
depth; OpenCV semi-global block matching against the disparity of the rendered depth; brute-force
ray casting in float64 against the z-buffer; an SVD of the finite-difference texture Jacobian
against the mip level; point-to-rectangle distances for the camera paths.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from slam.synthetic import SENSORS, SyntheticSource, build_world, list_scenes

SCENES = list_scenes()


def gray(img: np.ndarray) -> np.ndarray:
    return img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)


def depth_of(src: SyntheticSource, T: np.ndarray) -> np.ndarray:
    """Rendered z-depth (0 where nothing) of the left camera at pose T."""
    _, iz = src.renderer.render(T)
    d = np.zeros(iz.shape, np.float32)
    np.divide(1.0, iz, out=d, where=iz > 1e-9)
    return d


def warp_error(gi, di, Ti, gj, dj, Tj, cam) -> tuple[float, float]:
    """Median |I_j(p) - I_i(w(p))| over pixels of j that i sees (depth test), and their fraction."""
    h, w = dj.shape
    u, v = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    X = np.stack([(u - cam.cx) / cam.fx * dj, (v - cam.cy) / cam.fy * dj, dj], axis=-1)
    T = np.linalg.inv(Ti) @ Tj
    Y = X @ T[:3, :3].T + T[:3, 3]
    z = np.where(dj > 0, Y[..., 2], -1.0)
    zs = np.where(z > 0.05, z, 1.0)
    ui = (cam.fx * Y[..., 0] / zs + cam.cx).astype(np.float32)
    vi = (cam.fy * Y[..., 1] / zs + cam.cy).astype(np.float32)
    inside = (z > 0.05) & (ui >= 1) & (ui < w - 2) & (vi >= 1) & (vi < h - 2)
    zi = cv2.remap(di, ui, vi, cv2.INTER_NEAREST)
    seen = inside & (np.abs(zi - z) < 0.01 * z)
    val = cv2.remap(gi.astype(np.float32), ui, vi, cv2.INTER_LINEAR)
    err = np.abs(val - gj.astype(np.float32))[seen]
    return float(np.median(err)), float(seen.mean())


@pytest.mark.parametrize("sensor", ["stereo", "rgbd", "kitti"])
@pytest.mark.parametrize("scene", SCENES)
def test_ground_truth_warps_one_view_onto_another(scene, sensor):
    src = SyntheticSource(scene, sensor, clean=True)
    rate = SENSORS[sensor].rate_hz
    i = int(4.0 * rate)
    j = i + int(round(0.3 * rate))  # 0.3 s apart: 0.3 m walking, 2.4 m driving
    fi, fj = src.render(i), src.render(j)
    di = fi.depth if fi.depth is not None else depth_of(src, fi.gt_pose)
    dj = fj.depth if fj.depth is not None else depth_of(src, fj.gt_pose)
    cam = src.calibration.camera
    med, seen = warp_error(gray(fi.left), di, fi.gt_pose, gray(fj.left), dj, fj.gt_pose, cam)
    assert seen > 0.5
    assert med < 2.0, f"median warp error {med:.2f} gray levels"
    if sensor == "stereo":  # the right image is the left camera moved by the baseline
        dr = depth_of(src, fj.gt_pose @ src.T_cam0_cam1)
        med_lr, _ = warp_error(gray(fj.left), dj, fj.gt_pose, fj.right, dr, fj.gt_pose @ src.T_cam0_cam1, cam)
        assert med_lr < 2.0


def test_warp_check_fails_with_a_slightly_wrong_pose():
    src = SyntheticSource("room_loop", "stereo", clean=True)
    fi, fj = src.render(80), src.render(86)
    di, dj = depth_of(src, fi.gt_pose), depth_of(src, fj.gt_pose)
    cam = src.calibration.camera
    good, _ = warp_error(fi.left, di, fi.gt_pose, fj.left, dj, fj.gt_pose, cam)
    wrong = fj.gt_pose.copy()
    wrong[:3, 3] += wrong[:3, :3] @ np.array([0.01, 0.0, 0.0])  # 1 cm sideways
    bad, _ = warp_error(fi.left, di, fi.gt_pose, fj.left, dj, wrong, cam)
    assert good < 1.0 and bad > 2.5 * good


def block_matching_error(src: SyntheticSource, i: int, num_disp: int) -> tuple[float, float]:
    """Median |SGBM - fx b / z| on textured pixels away from depth edges, and their fraction."""
    f = src.render(i)
    _, iz = src.renderer.render(f.gt_pose)
    d_gt = (src.calibration.camera.fx * src.calibration.baseline * iz).astype(np.float32)
    bs = 5
    sgbm = cv2.StereoSGBM_create(0, num_disp, bs, P1=8 * bs * bs, P2=32 * bs * bs, uniquenessRatio=10,
                                 mode=cv2.STEREO_SGBM_MODE_HH)
    d = sgbm.compute(f.left, f.right).astype(np.float32) / 16.0
    textured = cv2.blur(np.abs(cv2.Sobel(f.left, cv2.CV_32F, 1, 0, ksize=3)), (bs, bs)) > 10
    smooth = cv2.morphologyEx(d_gt, cv2.MORPH_GRADIENT, np.ones((7, 7), np.uint8)) < 1.0
    ok = (d > 0) & textured & smooth & (d_gt < num_disp - 1) & (iz > 1e-9)
    return float(np.median(np.abs(d - d_gt)[ok])), float(ok.mean())


@pytest.mark.parametrize("scene", SCENES)
def test_stereo_disparity_matches_semi_global_block_matching(scene):
    sensor, ndisp = ("kitti", 128) if scene.startswith("street") else ("stereo", 64)
    for clean, bound in ((True, 0.3), (False, 0.5)):
        src = SyntheticSource(scene, sensor, clean=clean)
        med, frac = block_matching_error(src, int(3.0 * src.sensor.rate_hz), ndisp)
        assert frac > 0.1
        assert med < bound, f"{scene} clean={clean}: median |SGBM - truth| {med:.3f} px"


def ray_cast(world, T: np.ndarray, cam, px: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Float64 z-depth and hit quad of pixel rays (N, 2) against every front-facing quad."""
    q = world.quadset
    R, c = T[:3, :3], T[:3, 3]
    rays = np.stack([(px[:, 0] - cam.cx) / cam.fx, (px[:, 1] - cam.cy) / cam.fy, np.ones(len(px))], 1) @ R.T
    u = q.corners[:, 1] - q.corners[:, 0]
    v = q.corners[:, 3] - q.corners[:, 0]
    denom = rays @ q.normal.T  # (N, Q)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = ((q.origin - c) * q.normal).sum(1)[None] / denom
    hit = c[None, None] + t[..., None] * rays[:, None]  # (N, Q, 3)
    a = ((hit - q.origin) * u).sum(-1) / (u * u).sum(-1)
    b = ((hit - q.origin) * v).sum(-1) / (v * v).sum(-1)
    ok = (denom < 0) & (t > 0.05) & (a >= 0) & (a <= 1) & (b >= 0) & (b <= 1)
    t = np.where(ok, t, np.inf)
    k = np.argmin(t, axis=1)
    return t[np.arange(len(px)), k], np.where(np.isfinite(t.min(1)), k, -1)


@pytest.mark.parametrize("scene,sensor", [("room_loop", "rgbd"), ("office_walk", "stereo"),
                                          ("street_loop", "kitti")])
def test_depth_equals_brute_force_ray_casting(scene, sensor):
    src = SyntheticSource(scene, sensor, clean=True)
    cam = src.calibration.camera
    rng = np.random.default_rng(0)
    px = np.stack([rng.integers(2, cam.width - 2, 1500), rng.integers(2, cam.height - 2, 1500)], 1)
    T = src.poses[len(src) // 3]
    depth = depth_of(src, T)
    z, k = ray_cast(src.world, T, cam, px.astype(np.float64))
    # pixels whose 8 neighbours hit the same quad: no silhouette, so rasterization cannot differ
    same = np.ones(len(px), bool)
    for dx, dy in ((-1, -1), (-1, 1), (1, -1), (1, 1), (-1, 0), (1, 0), (0, -1), (0, 1)):
        _, kn = ray_cast(src.world, T, cam, (px + [dx, dy]).astype(np.float64))
        same &= kn == k
    inner = same & (k >= 0)
    assert inner.mean() > 0.8
    rel = np.abs(depth[px[inner, 1], px[inner, 0]] - z[inner]) / z[inner]
    assert rel.max() < 2e-5
    assert np.all(depth[px[k < 0, 1], px[k < 0, 0]] == 0)  # sky: no depth


def test_mip_level_follows_the_texel_footprint():
    src = SyntheticSource("office_walk", "mono", clean=True)
    r = src.renderer
    r.render(src.poses[200])
    zb = r.zb.astype(np.float64)
    sx, sy = r.nx / zb, r.ny / zb
    lam = r.lev + r.half_log_r - 1.75 * np.log2(zb)
    ju = np.stack([sx[1:-1, 2:] - sx[1:-1, :-2], sy[1:-1, 2:] - sy[1:-1, :-2]], -1) / 2
    jv = np.stack([sx[2:, 1:-1] - sx[:-2, 1:-1], sy[2:, 1:-1] - sy[:-2, 1:-1]], -1) / 2
    lv = r.lev
    same = ((lv[1:-1, 2:] == lv[1:-1, :-2]) & (lv[2:, 1:-1] == lv[:-2, 1:-1]) & (lv[1:-1, 1:-1] == lv[2:, 1:-1])
            & (zb[1:-1, 1:-1] > 1e-9))
    sv = np.linalg.svd(np.stack([ju, jv], -1)[same], compute_uv=False)  # texels per pixel, both axes
    ref = 0.5 * (np.log2(sv[:, 0]) + 0.5 * np.log2(sv[:, 0] * sv[:, 1]))  # between long axis and area
    d = lam[1:-1, 1:-1][same] - ref
    assert np.median(np.abs(d)) < 0.1 and np.percentile(np.abs(d), 99) < 0.35


def point_quad_distance(P: np.ndarray, world) -> np.ndarray:
    """(M,) distance from points to the nearest quad (rectangles with orthogonal edges)."""
    q = world.quadset
    o = q.corners[:, 0]
    u = q.corners[:, 1] - o
    v = q.corners[:, 3] - o
    d = P[:, None] - o[None]
    a = np.clip((d * u).sum(-1) / (u * u).sum(-1), 0, 1)
    b = np.clip((d * v).sum(-1) / (v * v).sum(-1), 0, 1)
    closest = o[None] + a[..., None] * u[None] + b[..., None] * v[None]
    return np.linalg.norm(P[:, None] - closest, axis=-1).min(1)


@pytest.mark.parametrize("scene", SCENES)
def test_camera_paths_are_smooth_and_clear_of_surfaces(scene):
    world = build_world(scene)
    traj = world.trajectory
    t = np.arange(0.0, traj.duration, 0.05)
    T = traj.poses(t)
    p = T[:, :3, 3]
    assert point_quad_distance(p[::2], world).min() > 0.3
    speed = np.linalg.norm(np.diff(p, axis=0), axis=1) / 0.05
    R = T[:, :3, :3]
    cosang = (np.einsum("nij,nij->n", R[:-1], R[1:]) - 1) / 2
    turn = np.arccos(np.clip(cosang, -1, 1)) / 0.05
    limit = 15.0 if scene.startswith("street") else 2.0  # m/s: car vs walking / drone
    assert speed.max() < limit and turn.max() < 2.0  # rad/s
    assert np.abs(np.diff(speed)).max() / 0.05 < 6.0  # m/s^2, no jumps
    assert np.allclose(np.linalg.det(R), 1.0) and np.abs(R[:, 2, 0]).max() < np.sin(0.2)  # little roll


def test_trajectories_loop_cross_or_do_not_revisit_as_named():
    loop = build_world("room_loop").trajectory
    assert loop.duration > loop.lap_time
    a, b = loop.poses(np.array([0.0, loop.lap_time]))
    assert np.abs(a - b).max() < 1e-9  # back exactly at the start, same orientation

    eight = build_world("room_figure8").trajectory
    t = np.arange(0, eight.lap_time, 0.05)
    p = eight.positions(t)[:, :2]
    far_apart = np.abs(t[:, None] - t[None]) > 3.0
    dist = np.linalg.norm(p[:, None] - p[None], axis=-1)
    assert dist[far_apart].min() < 0.05  # it crosses its own path

    for name, revisits in (("office_walk", 0), ("corridor_repeat", 0), ("office_long", 3)):
        traj = build_world(name).trajectory
        t = np.arange(0, traj.duration, 0.25)
        p = traj.positions(t)[:, :2]
        start_passes = np.flatnonzero((np.linalg.norm(p - p[0], axis=1) < 0.5)[1:] &
                                      (np.linalg.norm(p - p[0], axis=1) >= 0.5)[:-1])
        if revisits == 0:
            dist = np.linalg.norm(p[:, None] - p[None], axis=-1)
            assert dist[np.abs(t[:, None] - t[None]) > 10.0].min() > 1.5
        else:
            assert traj.duration > 180.0 and len(start_passes) >= revisits


def test_same_seed_same_sequence_and_effects_are_what_they_claim():
    a = SyntheticSource("room_loop", "stereo", frames=20, seed=3)
    b = SyntheticSource("room_loop", "stereo", frames=20, seed=3)
    fa, fb = a.render(10), b.render(10)
    assert np.array_equal(fa.left, fb.left) and np.array_equal(fa.right, fb.right)
    clean = SyntheticSource("room_loop", "stereo", frames=20, seed=3, clean=True).render(10)
    other = SyntheticSource("room_loop", "stereo", frames=20, seed=4, clean=True).render(10)
    assert np.array_equal(clean.gt_pose, other.gt_pose)
    assert np.mean(np.abs(clean.left.astype(float) - other.left)) > 10  # other textures
    diff = fa.left.astype(float) - clean.left
    assert 1.0 < np.std(diff - cv2.GaussianBlur(diff, (0, 0), 3)) < 6.0  # noise of a few gray levels
    f11 = a.render(11)
    assert not np.array_equal(f11.left, fa.left)
    assert np.array_equal(a.render(10).left, fa.left)  # random access: frame 10 again is frame 10


def test_quads_sharing_a_texture_key_look_the_same() -> None:
    """corridor_repeat's modules: every quad with the same texture_key (and size) gets the same
    texels and tint; different keys and the unkeyed end walls differ."""
    from slam.synthetic.quads import build_atlas
    from slam.synthetic.scenes import corridor_repeat_layout

    quads = corridor_repeat_layout()
    atlas = build_atlas(quads, seed=3)

    def texels(k: int) -> np.ndarray:
        x, y, w, h = atlas.boxes[k]
        return atlas.mip[y:y + h, x:x + w]

    keys = np.array([q.texture_key for q in quads])
    for key in range(4):
        same = np.flatnonzero(keys == key)
        assert len(same) == 11
        for k in same[1:]:
            np.testing.assert_array_equal(texels(k), texels(same[0]))
            np.testing.assert_array_equal(atlas.tints[k], atlas.tints[same[0]])
    walls = np.flatnonzero(keys == 0)[0], np.flatnonzero(keys == 1)[0]
    assert not np.array_equal(texels(walls[0]), texels(walls[1]))
    ends = np.flatnonzero(keys < 0)
    assert len(ends) == 2 and texels(ends[0]).shape == texels(ends[1]).shape
    assert not np.array_equal(texels(ends[0]), texels(ends[1]))
