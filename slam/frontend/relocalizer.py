"""Relocalization of a lost frame against the map: ORB matching to recent landmarks, RANSAC PnP."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

from slam.frontend.features import ORB_BORDER, detect, orb_descriptors
from slam.geometry.guard import attempt
from slam.geometry.matching import match_descriptors
from slam.geometry.pose import pnp_ransac, project, refine_pose
from slam.map.map import Map


@dataclass
class Relocalization:
    """A recovered pose (T_cam_world) with the landmark tracks to continue from."""

    T_cw: np.ndarray
    ids: np.ndarray   # landmark ids of the inlier matches
    uv: np.ndarray    # their pixels in the frame (N,2) float32
    inliers: int


def match_by_projection(uv: np.ndarray, desc: np.ndarray, proj: np.ndarray, lm_desc: np.ndarray,
                        radius: float, max_distance: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(keypoint index, landmark index): for each landmark projecting within `radius` px of some
    keypoints, the one with the smallest Hamming distance (at most max_distance); one landmark per
    keypoint."""
    if len(uv) == 0 or len(proj) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    d2 = np.sum((proj[:, None, :] - uv[None, :, :]) ** 2, axis=2)  # (L, Q): only while lost, L, Q ~ 1e3
    li, qi = np.nonzero(d2 < radius * radius)
    if li.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    ham = np.unpackbits(lm_desc[li] ^ desc[qi], axis=1).sum(axis=1)
    ok = ham <= max_distance
    li, qi, ham = li[ok], qi[ok], ham[ok]
    order = np.lexsort((ham, li))  # best keypoint per landmark
    _, first = np.unique(li[order], return_index=True)
    li, qi, ham = li[order][first], qi[order][first], ham[order][first]
    order = np.lexsort((ham, qi))  # then best landmark per keypoint
    _, first = np.unique(qi[order], return_index=True)
    return qi[order][first], li[order][first]


def multiscale_features(gray: np.ndarray, orb: cv2.ORB, n_features: int,
                        scales: tuple[float, ...] = (1.0, 1 / 1.3, 1 / 1.69)) -> tuple[np.ndarray, np.ndarray]:
    """Corners and ORB descriptors of an image and of smaller copies of it, in full-size pixels.

    Landmark descriptors come from one keyframe at one scale; a camera that moved closer sees the
    same texture larger, which the reduced copies bring back to the keyframe's scale.
    """
    uvs, descs = [], []
    for s in scales:
        img = gray if s == 1.0 else attempt(cv2.resize, gray, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
        if img is None:
            continue  # an image too small to reduce
        pts = detect(img, np.zeros((0, 2)), int(n_features * s * s), 8, 6, 7, 0.005, ORB_BORDER + 2)
        d, ok = orb_descriptors(img, pts.astype(np.float64), orb)
        uvs.append(pts[ok].astype(np.float64) / s)
        descs.append(d[ok])
    if not uvs:
        return np.zeros((0, 2)), np.zeros((0, 32), np.uint8)
    return np.concatenate(uvs), np.concatenate(descs)


def relocalize(gray: np.ndarray, the_map: Map, K: np.ndarray, orb: cv2.ORB, n_keyframes: int,
               min_inliers: int, threshold: float, n_features: int = 1000) -> Relocalization | None:
    """Pose of a frame from the landmarks of the newest keyframes, or None.

    Corners are detected and described the way keyframe features are (Shi-Tomasi + ORB at level
    0), matched to landmark descriptors with a ratio test, a RANSAC P3P pose is found from those,
    and a guided search (landmarks projected with that pose, matched by descriptor within a few
    pixels) gathers the inliers the pose must have (ORB-SLAM's relocalization in spirit).
    """
    ids, X, desc = the_map.local_landmarks(n_keyframes)
    if len(ids) < min_inliers:
        return None
    uv, d = multiscale_features(gray, orb, n_features)
    return pose_from_landmarks(uv, d, ids, X, desc, gray.shape[:2], K, min_inliers, threshold)


def relocalize_by_place(gray: np.ndarray, the_map: Map, K: np.ndarray, orb: cv2.ORB,
                        query: Callable[[np.ndarray], list[int]], min_inliers: int, threshold: float,
                        n_features: int = 1000, n_candidates: int = 3, n_covisible: int = 10) -> Relocalization | None:
    """Pose of a frame in a loaded map, or None: place recognition (`query`: descriptors -> keyframe ids,
    best first) names candidate keyframes; each candidate's landmarks and those of its most covisible
    keyframes go through the same matching, PnP RANSAC and guided search as `relocalize`."""
    uv, d = multiscale_features(gray, orb, n_features)
    if len(uv) < min_inliers:
        return None
    for kf in query(d)[:n_candidates]:
        neigh = sorted(the_map.covisible(kf).items(), key=lambda kv: -kv[1])[:n_covisible]
        ids, X, desc = the_map.keyframes_landmarks(np.array([kf] + [k for k, _ in neigh], np.int64))
        if len(ids) < min_inliers:
            continue
        res = pose_from_landmarks(uv, d, ids, X, desc, gray.shape[:2], K, min_inliers, threshold)
        if res is not None:
            return res
    return None


def pose_from_landmarks(uv: np.ndarray, d: np.ndarray, ids: np.ndarray, X: np.ndarray, desc: np.ndarray,
                        shape: tuple[int, int], K: np.ndarray, min_inliers: int,
                        threshold: float) -> Relocalization | None:
    """Pose of an image's features (uv, ORB d) against landmarks (ids, X, desc): ratio-test matches,
    RANSAC P3P, refinement, guided search by projection; None without min_inliers inliers."""
    h, w = shape
    if len(uv) < min_inliers or len(ids) < min_inliers:
        return None
    qi, ti = match_descriptors(d, desc, ratio=0.9)
    seed = max(10, min_inliers // 2)
    if len(qi) < seed:
        return None
    res = pnp_ransac(X[ti], uv[qi], K, 1.5 * threshold, iterations=5000)
    if res is None or res[1].sum() < seed:
        return None
    keep = res[1]  # refined from RANSAC's inliers: Gauss-Newton on every match can be pulled off by the outliers
    T, inl = refine_pose(res[0], X[ti[keep]], uv[qi[keep]], K, threshold)
    if inl.sum() < seed:
        return None
    proj, z = project(T, X, K)
    vis = np.flatnonzero((z > 0) & (proj[:, 0] >= 0) & (proj[:, 0] < w) & (proj[:, 1] >= 0) & (proj[:, 1] < h))
    q2, l2 = match_by_projection(uv, d, proj[vis], desc[vis], radius=2.5 * threshold)
    if len(q2) < min_inliers:
        return None
    l2 = vis[l2]
    T, inl = refine_pose(T, X[l2], uv[q2], K, threshold)
    if inl.sum() < min_inliers:
        return None
    return Relocalization(T, ids[l2[inl]], uv[q2[inl]].astype(np.float32), int(inl.sum()))


def local_map_matches(uv: np.ndarray, d: np.ndarray, T_cw: np.ndarray, ids: np.ndarray, X: np.ndarray,
                      desc: np.ndarray, shape: tuple[int, int], K: np.ndarray,
                      threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(feature index, landmark index) of landmarks found by projection with a known pose T_cw and
    descriptor, kept where the pose refined from them holds them as inliers."""
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64))
    if len(uv) == 0 or len(ids) == 0:
        return empty
    h, w = shape
    proj, z = project(T_cw, X, K)
    vis = np.flatnonzero((z > 0) & (proj[:, 0] >= 0) & (proj[:, 0] < w) & (proj[:, 1] >= 0) & (proj[:, 1] < h))
    q, l = match_by_projection(uv, d, proj[vis], desc[vis], radius=2.5 * threshold)
    if len(q) < 4:
        return empty
    l = vis[l]
    _, inl = refine_pose(T_cw, X[l], uv[q], K, threshold)
    return q[inl], l[inl]
