"""Optimization problems with known ground truth, generated on the fly (demo, tests, no download)."""

from __future__ import annotations

import numpy as np

from slam.geometry import lie
from slam.io.g2o import PoseGraph


def grid_pose_graph(n_side: int = 6, layers: int = 3, spacing: float = 1.0, rot_sigma: float = 0.01,
                    trans_sigma: float = 0.05, seed: int = 0) -> tuple[PoseGraph, np.ndarray]:
    """A robot snaking through an n_side x n_side x layers grid, odometry plus loop edges to every
    grid neighbour already visited; noisy measurements and a dead-reckoning initial guess.

    Returns (graph with initial poses, ground-truth poses (N,4,4)).
    """
    rng = np.random.default_rng(seed)
    cells = []
    for z in range(layers):
        for y in range(n_side):
            xs = range(n_side) if (y + z * n_side) % 2 == 0 else range(n_side - 1, -1, -1)
            cells += [(x, y if z % 2 == 0 else n_side - 1 - y, z) for x in xs]
    cells = np.array(cells, dtype=float)
    n = len(cells)
    yaw = rng.uniform(-np.pi, np.pi, n)
    w = np.stack([rng.normal(0, 0.05, n), rng.normal(0, 0.05, n), yaw], axis=1)
    gt = lie.se3_from_Rt(lie.so3_exp(w), cells * spacing)
    index = {tuple(c): i for i, c in enumerate(cells.astype(int))}
    edges = [(i, i + 1) for i in range(n - 1)]
    for i, c in enumerate(cells.astype(int)):
        for d in np.eye(3, dtype=int):
            j = index.get(tuple(c + d))
            if j is not None and abs(j - i) > 1:
                edges.append((min(i, j), max(i, j)))
    edges = np.array(sorted(set(edges)), dtype=np.int64)
    sig = np.array([rot_sigma] * 3 + [trans_sigma] * 3)
    noise = rng.normal(size=(len(edges), 6)) * sig
    Z = lie.se3_inverse(gt[edges[:, 0]]) @ gt[edges[:, 1]] @ lie.se3_exp(noise)
    info = np.broadcast_to(np.diag(1.0 / sig**2), (len(edges), 6, 6)).copy()
    init = np.empty_like(gt)
    init[0] = gt[0]
    odo = Z[edges[:, 1] == edges[:, 0] + 1]  # the odometry chain, in order
    for i in range(n - 1):
        init[i + 1] = init[i] @ odo[i]
    graph = PoseGraph(ids=np.arange(n, dtype=np.int64), poses=init, edges=edges, measurements=Z,
                      information=info, fixed=np.zeros(n, bool))
    return graph, gt


def window_ba_problem(keyframes: int = 20, points_per_keyframe: int = 60, track: int = 6, focal: float = 500.0,
                      pixel_sigma: float = 0.5, seed: int = 0) -> tuple["BALProblem", "BALProblem"]:
    """A sliding-window-like BA problem in BAL form: a camera driving forward through a field of
    points, each point seen by the keyframes within `track` of the one that found it.

    Returns (problem with perturbed cameras and points, ground truth with exact observations).
    """
    from slam.io.bal import BALProblem, bal_project

    rng = np.random.default_rng(seed)
    k = np.arange(keyframes)
    centers = np.stack([0.5 * k, 0.4 * np.sin(k / 4.0), 0.1 * np.cos(k / 3.0)], axis=1)
    # BAL cameras look down their -z axis: rows of R0 are the camera axes in the world, -z_cam = +x_world.
    R0 = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, -1.0], [-1.0, 0.0, 0.0]])
    R = lie.so3_exp(rng.normal(0.0, 0.03, (keyframes, 3))) @ R0
    t = -np.einsum("kij,kj->ki", R, centers)
    owner = np.repeat(k, points_per_keyframe)
    depth = rng.uniform(4.0, 20.0, owner.size)
    pts = centers[owner] + np.stack([depth, rng.uniform(-0.5, 0.5, owner.size) * depth,
                                     rng.uniform(-0.3, 0.3, owner.size) * depth], axis=1)
    cams = np.zeros((keyframes, 9))
    cams[:, :3] = lie.so3_log(R)
    cams[:, 3:6] = t
    cams[:, 6] = focal
    # Observations: keyframes within `track` of the owner that see the point in front, inside the image.
    cam_idx = (owner[:, None] + np.arange(-track, track + 1)[None, :]).ravel()
    pt_idx = np.repeat(np.arange(owner.size), 2 * track + 1)
    ok = (cam_idx >= 0) & (cam_idx < keyframes)
    cam_idx, pt_idx = cam_idx[ok], pt_idx[ok]
    P = np.einsum("oij,oj->oi", R[cam_idx], pts[pt_idx]) + t[cam_idx]
    uv = bal_project(cams, pts, cam_idx, pt_idx)
    seen = (P[:, 2] < -1.0) & np.all(np.abs(uv) < 0.8 * focal, axis=1)
    cam_idx, pt_idx, uv = cam_idx[seen], pt_idx[seen], uv[seen]
    used = np.bincount(pt_idx, minlength=owner.size) >= 2  # a point needs two views
    remap = np.cumsum(used) - 1
    keep = used[pt_idx]
    cam_idx, pt_idx, uv = cam_idx[keep], remap[pt_idx[keep]], uv[keep]
    pts = pts[used]
    truth = BALProblem(cameras=cams.copy(), points=pts.copy(), cam_idx=cam_idx, pt_idx=pt_idx, observations=uv.copy())
    noisy_cams = cams.copy()
    noisy_cams[:, :3] = lie.so3_log(lie.so3_exp(rng.normal(0.0, 0.01, (keyframes, 3))) @ R)
    noisy_cams[:, 3:6] += rng.normal(0.0, 0.05, (keyframes, 3))
    noisy_pts = pts + rng.normal(0.0, 0.02, pts.shape) * np.linalg.norm(pts - centers[owner[used]], axis=1,
                                                                         keepdims=True)
    obs = uv + rng.normal(0.0, pixel_sigma, uv.shape)
    return BALProblem(cameras=noisy_cams, points=noisy_pts, cam_idx=cam_idx, pt_idx=pt_idx, observations=obs), truth
