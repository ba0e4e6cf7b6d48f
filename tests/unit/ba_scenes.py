"""Small bundle-adjustment problems for the BA tests: cameras around a point cloud, observed by
independent projection code (BAL's own model, OpenCV's projectPoints)."""

from __future__ import annotations

import cv2
import numpy as np

from slam.geometry import lie
from slam.io.bal import bal_project
from slam.solvers.ba import BundleAdjustmentProblem


def scene(projection: str, n_cams: int = 4, n_pts: int = 15, seed: int = 0) -> dict:
    """Cameras around a cloud of points, every point seen by every camera, in front of it."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1.0, 1.0, size=(n_pts, 3))
    w = rng.normal(scale=0.15, size=(n_cams, 3))
    depth = -6.0 if projection == "bal" else 6.0  # BAL cameras look down -z
    t = np.column_stack([rng.normal(scale=0.5, size=(n_cams, 2)), np.full(n_cams, depth)])
    if projection == "bal":
        k = np.column_stack([rng.uniform(400, 600, n_cams), np.full(n_cams, -0.3), np.full(n_cams, 0.2)])
    else:
        k = np.column_stack([rng.uniform(400, 600, n_cams), rng.uniform(400, 600, n_cams),
                             np.full(n_cams, 320.0), np.full(n_cams, 240.0)])
    cam_idx, pt_idx = (a.ravel() for a in np.meshgrid(np.arange(n_cams), np.arange(n_pts), indexing="ij"))
    return {"w": w, "t": t, "k": k, "X": X, "cam_idx": cam_idx, "pt_idx": pt_idx}


def observe(sc: dict, projection: str) -> np.ndarray:
    """Pixels by an independent implementation: BAL's own model, or OpenCV's projectPoints."""
    if projection == "bal":
        cams = np.column_stack([sc["w"], sc["t"], sc["k"]])
        return bal_project(cams, sc["X"], sc["cam_idx"], sc["pt_idx"])
    out = np.zeros((len(sc["cam_idx"]), 2))
    for c in range(len(sc["w"])):  # a handful of cameras in a test
        fx, fy, cx, cy = sc["k"][c]
        K = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]])
        rows = sc["cam_idx"] == c
        px, _ = cv2.projectPoints(sc["X"][sc["pt_idx"][rows]], sc["w"][c], sc["t"][c], K, None)
        out[rows] = px.reshape(-1, 2)
    return out


def make_problem(projection: str = "bal", obs: np.ndarray | None = None, seed: int = 0, **kw) -> BundleAdjustmentProblem:
    """The scene's problem (observations exact unless obs is given); kw go to BundleAdjustmentProblem."""
    sc = scene(projection, seed=seed, **{k: kw.pop(k) for k in ("n_cams", "n_pts") if k in kw})
    obs = observe(sc, projection) if obs is None else obs
    return BundleAdjustmentProblem((sc["w"], sc["t"]), sc["X"], sc["cam_idx"], sc["pt_idx"], obs, sc["k"],
                                   projection=projection, **kw)


def perturb(p: BundleAdjustmentProblem, seed: int = 1, scale: float = 1.0) -> None:
    """Move cameras, points (and focal lengths) off the optimum, in place."""
    rng = np.random.default_rng(seed)
    p.R[...] = lie.so3_exp(rng.normal(scale=0.01 * scale, size=(len(p.R), 3))) @ p.R
    p.t += rng.normal(scale=0.05 * scale, size=p.t.shape)
    p.points += rng.normal(scale=0.05 * scale, size=p.points.shape)
    if p.optimize_intrinsics:
        p.intrinsics[:, 0] *= 1.0 + 0.01 * scale * rng.normal(size=len(p.intrinsics))
