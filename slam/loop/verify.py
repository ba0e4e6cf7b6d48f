"""Geometric verification of a loop candidate: the query keyframe's features against the candidate's landmarks.

API (stable):

    QueryFeatures(uv (N,2) px, descriptors (N,32) uint8, points (N,3) | None, ids (N,) | None)
        points: 3-D positions in the QUERY CAMERA frame (stereo/RGB-D depth, or the query's own
        landmarks moved into its camera), NaN rows where unknown; needed for mode "mono".
        ids: the query's track/landmark ids (carried along for the caller, e.g. to fuse duplicates).
    CandidateLandmarks(ids (M,), positions (M,3) world of the candidate's map, descriptors (M,32),
                       primary (M,) bool | None)
        the landmarks of the candidate keyframe AND of its covisible keyframes; `primary` marks
        those the candidate keyframe itself sees (used for the first, descriptor-only matching;
        None: all of them); the rest only join in the second look.
    verify_loop(query, candidate, K, mode, params=VerifyParams(), T_world_candidate=None) -> Verification
        (T_world_candidate, the candidate keyframe's pose, is only used with params.max_distance)
    match_in_radius(uv, desc, proj, lm_desc, radius, max_distance=64) -> (keypoint idx, landmark idx)
    Verification: accepted, reason ("accepted" or one of REJECTIONS), T_world_query (4x4 rigid
        camera-to-world pose of the query camera in the candidate's map frame, or None), scale
        (1.0 for SE(3); for Sim(3) the world length of one unit of the query's map), inliers,
        matches (K,2) int64 rows [query feature index, landmark id], S_world_query (the 4x4
        similarity [scale*R t; 0 1] mapping query-camera points, in query-map units, to the world).

Stereo and RGB-D (mode "stereo"/"rgbd"): descriptor matches (ratio test) to the primary landmarks,
RANSAC P3P (cv2.solvePnPRansac), robust pose-only refinement on the inliers. Monocular ("mono"): a
monocular map's scale drifts, so the 3-D/3-D matches (query points vs. landmarks) give a Sim(3) by
RANSAC (slam.geometry.registration.ransac_sim3; the tolerance grows with the query depth), whose
rigid part is then refined on the reprojection of the landmarks in the query image and whose scale is
re-estimated on the inliers. Then a second look (ORB-SLAM's SearchByProjection): every candidate
landmark is projected with the estimate, matched by descriptor within `search_radius` pixels, the
pose refined on all of those; the loop is accepted only with `min_inliers` inliers then. Degenerate
input never raises: it is a rejection with a reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from slam.geometry.pose import pnp_ransac, project, refine_pose
from slam.geometry.matching import match_descriptors
from slam.geometry.registration import ransac_sim3

REJECTIONS = ("bad_input", "too_few_matches", "ransac_failed", "too_few_inliers", "second_look_failed", "too_far")
MODES = ("stereo", "rgbd", "mono")


@dataclass
class QueryFeatures:
    """The query keyframe's features: pixels, ORB descriptors, 3-D points in its camera frame (NaN: unknown)."""

    uv: np.ndarray
    descriptors: np.ndarray
    points: np.ndarray | None = None
    ids: np.ndarray | None = None


@dataclass
class CandidateLandmarks:
    """Landmarks around the candidate: ids, world positions, descriptors, which the candidate itself sees."""

    ids: np.ndarray
    positions: np.ndarray
    descriptors: np.ndarray
    primary: np.ndarray | None = None


@dataclass(frozen=True)
class VerifyParams:
    """Thresholds of the verification (pixels for image errors)."""

    ratio: float = 0.85               # Lowe's ratio for the first descriptor matches
    min_matches: int = 20             # descriptor matches needed to try RANSAC
    ransac_threshold: float = 4.0     # px, PnP RANSAC
    sim3_relative_threshold: float = 0.08  # 3-D/3-D tolerance as a fraction of the query depth (mono)
    ransac_iterations: int = 300
    min_ransac_inliers: int = 15
    threshold: float = 3.0            # px, refinement inliers
    search_radius: float = 8.0        # px, second look
    max_hamming: int = 64             # Hamming distance, second look
    min_inliers: int = 40             # inliers after the second look
    min_scale: float = 1e-3           # Sim(3) scales outside [min_scale, 1/min_scale] are not credible
    max_distance: float | None = None  # reject ("too_far") a query camera farther than this from the
    #                                    candidate keyframe (needs T_world_candidate), in world units


@dataclass
class Verification:
    """Outcome of a verification: the estimate and its support, or a rejection reason."""

    accepted: bool
    reason: str
    T_world_query: np.ndarray | None = None
    scale: float = 1.0
    inliers: int = 0
    matches: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.int64))

    @property
    def S_world_query(self) -> np.ndarray | None:
        """4x4 similarity [scale*R t; 0 1] (query camera, query-map units -> candidate world)."""
        if self.T_world_query is None:
            return None
        S = self.T_world_query.copy()
        S[:3, :3] *= self.scale
        return S


def _reject(reason: str, inliers: int = 0) -> Verification:
    return Verification(False, reason, inliers=inliers)


def _valid(query: QueryFeatures, cand: CandidateLandmarks, K: np.ndarray, mode: str) -> bool:
    """Shapes, dtypes and finiteness the verification relies on."""
    try:
        n, m = len(query.uv), len(cand.ids)
        ok = (np.shape(query.uv) == (n, 2) and np.shape(query.descriptors) == (n, 32)
              and np.asarray(query.descriptors).dtype == np.uint8
              and np.shape(cand.positions) == (m, 3) and np.shape(cand.descriptors) == (m, 32)
              and np.asarray(cand.descriptors).dtype == np.uint8 and np.shape(K) == (3, 3)
              and bool(np.isfinite(K).all()) and bool(np.isfinite(query.uv).all()))
        if ok and cand.primary is not None:
            ok = np.shape(cand.primary) == (m,)
        if ok and query.points is not None:
            ok = np.shape(query.points) == (n, 3)
        return bool(ok) and mode in MODES
    except (TypeError, ValueError):
        return False


_POP = np.array([bin(i).count("1") for i in range(256)], np.uint8)


def match_in_radius(uv: np.ndarray, desc: np.ndarray, proj: np.ndarray, lm_desc: np.ndarray, radius: float,
                    max_distance: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(keypoint index, landmark index) pairs: for each landmark projected within `radius` px of
    keypoints, the one of smallest Hamming distance (<= max_distance); one landmark per keypoint.

    Keypoints are bucketed in a grid of radius-sized cells so that only the 3x3 cells around each
    projection are compared (the dense landmark x keypoint distance matrix costs ~100x more).
    """
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64))
    if len(uv) == 0 or len(proj) == 0:
        return empty
    r = float(radius)
    cu = np.floor(uv / r).astype(np.int64)
    cp = np.floor(proj / r).astype(np.int64)
    lo = np.minimum(cu.min(axis=0), cp.min(axis=0)) - 1
    cu -= lo
    cp -= lo
    ncols = int(max(cu[:, 0].max(), cp[:, 0].max())) + 2
    cell = cu[:, 1] * ncols + cu[:, 0]
    order = np.argsort(cell, kind="stable")
    sorted_cell = cell[order]
    li_parts, start_parts, count_parts = [], [], []
    for dy in (-1, 0, 1):  # the 9 neighbouring cells, each a vectorized range lookup
        for dx in (-1, 0, 1):
            c = (cp[:, 1] + dy) * ncols + cp[:, 0] + dx
            a, b = np.searchsorted(sorted_cell, c, "left"), np.searchsorted(sorted_cell, c, "right")
            li_parts.append(np.arange(len(proj)))
            start_parts.append(a)
            count_parts.append(b - a)
    li = np.concatenate(li_parts)
    start = np.concatenate(start_parts)
    count = np.concatenate(count_parts)
    total = int(count.sum())
    if total == 0:
        return empty
    li = np.repeat(li, count)
    qi = order[np.repeat(start - (np.cumsum(count) - count), count) + np.arange(total)]
    near = np.sum((proj[li] - uv[qi]) ** 2, axis=1) < r * r
    li, qi = li[near], qi[near]
    ham = _POP[np.bitwise_xor(lm_desc[li], desc[qi])].sum(axis=1, dtype=np.int64)
    ok = ham <= max_distance
    li, qi, ham = li[ok], qi[ok], ham[ok]
    if len(li) == 0:
        return empty
    order = np.lexsort((ham, li))  # best keypoint per landmark
    _, first = np.unique(li[order], return_index=True)
    li, qi, ham = li[order][first], qi[order][first], ham[order][first]
    order = np.lexsort((ham, qi))  # then best landmark per keypoint
    _, first = np.unique(qi[order], return_index=True)
    return qi[order][first], li[order][first]


def _T_cw(T_wc: np.ndarray) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = T_wc[:3, :3].T
    T[:3, 3] = -T_wc[:3, :3].T @ T_wc[:3, 3]
    return T


def _initial_mono(query: QueryFeatures, X: np.ndarray, qi: np.ndarray, li: np.ndarray,
                  p: VerifyParams) -> tuple[np.ndarray, float, np.ndarray] | None:
    """(T_cw, scale, inlier mask over the matches) from a Sim(3) RANSAC of landmarks onto query points."""
    if query.points is None:
        return None
    P = np.asarray(query.points, np.float64)[qi]
    W = X[li]
    # Registering the world onto the query camera lets the tolerance follow each query depth.
    th = p.sim3_relative_threshold * np.abs(P[:, 2])
    res = ransac_sim3(W, P, th, with_scale=True, iterations=p.ransac_iterations,
                      rng=np.random.default_rng(0), min_inliers=p.min_ransac_inliers)
    if res is None:
        return None
    S_qw, s_qw, inl = res
    T_cw = np.eye(4)
    T_cw[:3, :3] = S_qw[:3, :3] / s_qw
    T_cw[:3, 3] = S_qw[:3, 3] / s_qw  # the query camera expressed in world units
    return T_cw, 1.0 / s_qw, inl


def _scale_on(query: QueryFeatures, X: np.ndarray, qi: np.ndarray, li: np.ndarray, T_cw: np.ndarray,
              fallback: float) -> float:
    """Median world-per-query-unit ratio of inlier depths along the query rays (robust to a few bad points)."""
    if query.points is None:
        return fallback
    P = np.asarray(query.points, np.float64)[qi]
    Pc = X[li] @ T_cw[:3, :3].T + T_cw[:3, 3]  # landmarks in the query camera, world units
    ok = np.isfinite(P).all(axis=1) & (P[:, 2] > 0) & (Pc[:, 2] > 0)
    if ok.sum() < 5:
        return fallback
    r = np.einsum("ij,ij->i", Pc[ok], P[ok]) / np.einsum("ij,ij->i", P[ok], P[ok])
    s = float(np.median(r))
    return s if np.isfinite(s) and s > 0 else fallback


def verify_loop(query: QueryFeatures, candidate: CandidateLandmarks, K: np.ndarray, mode: str,
                params: VerifyParams | None = None, T_world_candidate: np.ndarray | None = None) -> Verification:
    """Verify a loop candidate: SE(3) (stereo/rgbd) or Sim(3) (mono) pose of the query in the candidate's map."""
    p = params or VerifyParams()
    if not _valid(query, candidate, K, mode):
        return _reject("bad_input")
    K = np.asarray(K, np.float64)
    uv = np.asarray(query.uv, np.float64)
    X = np.asarray(candidate.positions, np.float64)
    finite = np.isfinite(X).all(axis=1)
    primary = finite if candidate.primary is None else finite & np.asarray(candidate.primary, bool)
    prim_idx = np.flatnonzero(primary)
    if len(uv) < p.min_matches or len(prim_idx) < p.min_matches:
        return _reject("too_few_matches")
    try:
        qi, ti = match_descriptors(np.ascontiguousarray(query.descriptors),
                                   np.ascontiguousarray(candidate.descriptors[prim_idx]), ratio=p.ratio)
    except cv2.error:
        return _reject("bad_input")
    li = prim_idx[ti]
    if mode == "mono":
        if query.points is not None:
            has = np.isfinite(np.asarray(query.points, np.float64)[qi]).all(axis=1)
            has &= np.asarray(query.points, np.float64)[qi, 2] > 0
            qi, li = qi[has], li[has]
        else:
            qi, li = qi[:0], li[:0]
    if len(qi) < p.min_matches:
        return _reject("too_few_matches")
    scale = 1.0
    if mode == "mono":
        init = _initial_mono(query, X, qi, li, p)
        if init is None:
            return _reject("ransac_failed")
        T_cw, scale, inl = init
        if not (p.min_scale <= scale <= 1.0 / p.min_scale):
            return _reject("ransac_failed")
    else:
        try:
            res = pnp_ransac(X[li], uv[qi], K, p.ransac_threshold, iterations=p.ransac_iterations)
        except cv2.error:
            res = None
        if res is None:
            return _reject("ransac_failed")
        T_cw, inl = res
    if inl.sum() < p.min_ransac_inliers:
        return _reject("too_few_inliers", int(inl.sum()))
    T_cw, inl = refine_pose(T_cw, X[li], uv[qi], K, p.threshold)
    if inl.sum() < p.min_ransac_inliers or not np.isfinite(T_cw).all():
        return _reject("too_few_inliers", int(inl.sum()))
    # Second look: every landmark around the candidate, projected with the estimate.
    h_guess = 2.0 * K[1, 2] + 1.0
    w_guess = 2.0 * K[0, 2] + 1.0
    vis = np.flatnonzero(finite)
    proj, z = project(T_cw, X[vis], K)
    keep = (z > 0) & (proj[:, 0] >= -p.search_radius) & (proj[:, 0] < w_guess + p.search_radius)
    keep &= (proj[:, 1] >= -p.search_radius) & (proj[:, 1] < h_guess + p.search_radius)
    vis, proj = vis[keep], proj[keep]
    q2, l2 = match_in_radius(uv, np.asarray(query.descriptors), proj, candidate.descriptors[vis],
                                 radius=p.search_radius, max_distance=p.max_hamming)
    l2 = vis[l2]
    if len(q2) < p.min_inliers:
        return _reject("second_look_failed", int(inl.sum()))
    T_cw, inl2 = refine_pose(T_cw, X[l2], uv[q2], K, p.threshold)
    n_in = int(inl2.sum())
    if n_in < p.min_inliers or not np.isfinite(T_cw).all():
        return _reject("second_look_failed", n_in)
    q2, l2 = q2[inl2], l2[inl2]
    if mode == "mono":
        scale = _scale_on(query, X, q2, l2, T_cw, scale)
    matches = np.stack([q2.astype(np.int64), np.asarray(candidate.ids, np.int64)[l2]], axis=1)
    T_wq = _T_cw(T_cw)
    if p.max_distance is not None and T_world_candidate is not None:
        gap = float(np.linalg.norm(T_wq[:3, 3] - np.asarray(T_world_candidate, np.float64)[:3, 3]))
        if not gap <= p.max_distance:
            return _reject("too_far", n_in)
    return Verification(True, "accepted", T_wq, float(scale), n_in, matches)
