"""Place recognition and verification as the loop closer's two callables, for one run.

`candidates(kf, place)` asks the run's own place database (no vocabulary to download) for
consistent candidates, never the newest `recent_keyframes` keyframes nor keyframes covisible with
the query, then indexes the keyframe (detector.py). `verify(kf, place, match)` checks one candidate
against the landmarks of the match and of its covisible keyframes (verify.py: PnP for stereo /
RGB-D, Sim(3) for monocular, then a second look by projection) and returns the loop edge
Z = X_match^-1 X_query, with X_query the verified Sim(3) [s R, t] of the query camera in the
match's map (s = 1 for SE(3)).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from slam.loop.config import LoopConfig
from slam.geometry import lie
from slam.loop.closer import PlaceRecognition, Verified
from slam.map.map import ALIVE

CONNECTED = 15        # shared landmarks that make two keyframes neighbours (ORB-SLAM's connected keyframes)
SECOND_LOOK_KFS = 10  # the match's most covisible keyframes whose landmarks join the second look


def query_features(the_map: Any, kf_id: int, place: Any, mode: str) -> Any:
    """verify.QueryFeatures of a keyframe: its place features, with 3-D points in its camera frame
    (stereo/RGB-D depth; monocular: its own landmarks moved into the camera)."""
    from slam.loop.verify import QueryFeatures

    pts = np.asarray(place.xyz, np.float64).copy()
    if mode == "mono":
        pts[:] = np.nan
        have = place.ids >= 0
        if have.any():
            pos, st, _, _ = the_map.landmarks(the_map.resolve(place.ids[have]))
            T_cw = lie.se3_inverse(the_map.keyframe_pose(kf_id))
            cam = pos @ T_cw[:3, :3].T + T_cw[:3, 3]
            cam[st != ALIVE] = np.nan
            pts[have] = cam
    return QueryFeatures(place.uv, place.descriptors, pts)


def second_look_keyframes(the_map: Any, match: int) -> list[int]:
    """The match's SECOND_LOOK_KFS most covisible keyframes, most shared landmarks first."""
    return [k for k, _ in sorted(the_map.covisible(match).items(), key=lambda kv: -kv[1])[:SECOND_LOOK_KFS]]


def candidate_landmarks(the_map: Any, match: int) -> Any:
    """verify.CandidateLandmarks: the match's landmarks (primary) and those of its most covisible keyframes."""
    from slam.loop.verify import CandidateLandmarks

    own = the_map.keyframe_observations(match)[0]
    ids = [own] + [the_map.keyframe_observations(k)[0] for k in second_look_keyframes(the_map, match)]
    ids = np.unique(np.concatenate(ids))
    pos, st, _, desc = the_map.landmarks(ids)
    keep = (st == ALIVE) & desc.any(axis=1)  # a landmark without a descriptor cannot be matched
    ids, pos, desc = ids[keep], pos[keep], desc[keep]
    return CandidateLandmarks(ids, pos, desc, np.isin(ids, own))


def nearest_keyframe(the_map: Any, match: int, T_world_query: np.ndarray,
                     max_angle_deg: float = 30.0) -> tuple[int, float]:
    """(keyframe, distance) of the keyframe nearest to the verified query camera among the match and
    its most covisible keyframes, looking within max_angle_deg of the query's direction.

    Place recognition fires as soon as a view is recognised, which on a path retraced forward is
    while the camera is still approaching the matched place (street_loop, monocular: 1.5 m behind
    the match, where the match's predecessor was 0.7 m away). The loop edge is better measured,
    and the revisit is what it claims to be, between the two nearest cameras of the same view."""
    ids = np.array([match] + second_look_keyframes(the_map, match), np.int64)
    T = np.stack([the_map.keyframe_pose(int(k)) for k in ids])
    dist = np.linalg.norm(T[:, :3, 3] - T_world_query[:3, 3], axis=1)
    cos = np.einsum("i,ki->k", T_world_query[:3, 2], T[:, :3, 2])  # optical axes
    ok = cos >= np.cos(np.radians(max_angle_deg))
    ok[0] = True  # the match itself verified: always eligible
    i = int(np.flatnonzero(ok)[np.argmin(dist[ok])])
    return int(ids[i]), float(dist[i])


def steps_behind(the_map: Any, target: int, T_world_query: np.ndarray, half_span: int = 5) -> float:
    """How far the query camera is behind keyframe `target` along the target's optical axis, in
    units of the typical distance between consecutive keyframes around it (scale-free: a monocular
    map's units are its own); 0 when the query is level with or ahead of it."""
    first = max(0, target - half_span)
    near = [the_map.keyframe_pose(int(k)) for k in range(first, target + half_span + 1)]
    C = np.array([T[:3, 3] for T in near if T is not None])
    step = np.median(np.linalg.norm(np.diff(C, axis=0), axis=1)) if len(C) > 1 else 0.0
    Tt = near[target - first]  # the target itself, fetched with its neighbours
    z = float(Tt[:3, 2] @ (T_world_query[:3, 3] - Tt[:3, 3]))  # query centre along the target's axis
    if z >= 0.0:
        return 0.0
    return float("inf") if step <= 0.0 else -z / float(step)


def moving_towards(the_map: Any, kf_id: int, T_world_query: np.ndarray, target: int) -> bool:
    """True when the query keyframe's last step (from keyframe kf_id - 1, in its own camera frame,
    turned into the verified frame) points along keyframe `target`'s optical axis: the camera is
    driving towards the place, and waiting brings it nearer."""
    T_q, T_p, T_t = (the_map.keyframe_pose(k) for k in (kf_id, kf_id - 1, target))
    if T_q is None or T_p is None or T_t is None:
        return False
    d = T_world_query[:3, :3] @ (T_q[:3, :3].T @ (T_q[:3, 3] - T_p[:3, 3]))
    n = float(np.linalg.norm(d))
    return n > 0.0 and float(T_t[:3, 2] @ d) > 0.5 * n


def place_recognition(the_map: Any, rig: Any, mode: str, cfg: LoopConfig,
                      database: Any = None) -> PlaceRecognition:
    """Candidates and verification for LoopCloser; ImportError when the modules are missing.
    database: a PlaceDatabase to start from (a loaded map's), else an empty one."""
    from slam.loop.detector import LoopDetector
    from slam.loop.verify import VerifyParams, verify_loop

    detector = LoopDetector(database=database, min_score=cfg.min_score)
    # a metric map (stereo / RGB-D) rejects verified loops between cameras farther apart than max_distance
    max_distance = cfg.max_distance if mode != "mono" and cfg.max_distance > 0 else None
    params = VerifyParams(min_inliers=cfg.min_inliers)

    def neighbours(k: int) -> set[int]:
        return set(the_map.covisible(k, CONNECTED))

    def candidates(kf_id: int, place: Any) -> list[tuple[int, float]]:
        excluded = np.union1d(np.arange(max(0, kf_id - cfg.recent_keyframes), kf_id + 1),
                              np.fromiter(the_map.covisible(kf_id).keys(), np.int64))
        return detector.detect(kf_id, place.descriptors, excluded, neighbours)

    def verify(kf_id: int, place: Any, match: int) -> Verified | str:
        res = verify_loop(query_features(the_map, kf_id, place, mode), candidate_landmarks(the_map, match),
                          rig.K, mode, params)
        if not res.accepted:
            return res.reason
        target, gap = nearest_keyframe(the_map, match, res.T_world_query)
        if max_distance is not None and not gap <= max_distance:
            return "too_far"
        if (mode == "mono" and cfg.max_steps_behind > 0
                and steps_behind(the_map, target, res.T_world_query) > cfg.max_steps_behind
                and moving_towards(the_map, kf_id, res.T_world_query, target)):
            # A monocular map has no metric distance to test, but a camera still driving towards
            # the recognised place will be nearer at the next keyframes: wait for them.
            return "approaching"
        Z = lie.se3_inverse(the_map.keyframe_pose(target)) @ res.S_world_query
        return Verified(Z, int(res.inliers), res.matches, float(res.scale), None if target == match else target)

    return PlaceRecognition(candidates, verify, detector.rejections, detector.database)
