"""Tracking follows the map's writers: what window BA, loop closure and global BA wrote since the
last frame reaches the tracker's landmarks, keyframe poses, current pose and motion model."""

from __future__ import annotations

from typing import Any

import numpy as np

from slam.frontend.state import inv
from slam.geometry.lie import frame_motion, orthonormalize, scale_translation
from slam.map.map import CULLED


def refresh_from_map(t: Any) -> None:
    """Pick up what the map's writers wrote into tracker t (Tracker): landmark positions and keyframe poses.

    Keyframes still queued for the worker, the provisional positions computed in their frames
    and the current pose are moved with the corrections BA made to the keyframes they were
    tracked against, so that everything tracking uses stays in one consistent frame. A
    monocular Sim(3) correction also rescales a keyframe's camera frame by r (its
    Map.keyframe_scale changed): depths, relative translations and the motion model's
    translation measured in it are multiplied by r, as the map did with its landmarks.
    """
    if t.map.version == t.map_version:
        return
    tr = t.tracks
    view = t.map.tracking_view(tr.ids)  # loop closure may have fused landmarks: ids resolved
    t.map_version = view.version
    states, pos, poses = view.states, view.positions, view.keyframe_poses
    if len(tr) and not np.array_equal(view.ids, tr.ids):
        tr.ids = view.ids  # a track follows its landmark to the one it was fused into
        _, first = np.unique(tr.ids, return_index=True)
        if len(first) < len(tr):  # two tracks of one landmark: keep the first
            keep = np.isin(np.arange(len(tr)), first)
            tr.keep(keep)
            states, pos = states[keep], pos[keep]
    old, old_scale = dict(t.kf_poses), dict(t.kf_scale)
    t.kf_poses.update(enumerate(poses))
    if view.keyframe_scales is not None:
        t.kf_scale.update(enumerate(view.keyframe_scales.tolist()))
    for k in [k for k in t.kf_rel if k < len(poses)]:  # inserted: the map has their poses now
        del t.kf_rel[k]
    for k in sorted(t.kf_rel):  # keyframes still queued for the worker, oldest first
        ref, T_ref_kf, s0 = t.kf_rel[k]
        if ref >= 0:
            s_ref = t.kf_scale.get(ref, s0)
            t.kf_poses[k] = orthonormalize(t.kf_poses[ref] @ scale_translation(T_ref_kf, s_ref / s0))
            t.kf_scale[k] = s_ref

    def rescale(k: int) -> float:
        """r: how a Sim(3) correction rescaled keyframe k's camera frame since the last refresh."""
        now = t.kf_scale.get(k, 1.0)
        return now / old_scale.get(k, now)

    def delta(k: int) -> np.ndarray:
        """The affine map D p of a point in keyframe k's frame: T_k' (r T_k^-1 p)."""
        if k not in old:
            return np.eye(4)
        return frame_motion(t.kf_poses[k], inv(old[k]), rescale(k))

    if len(tr):
        have = np.isfinite(pos[:, 0])
        tr.xyz[have] = pos[have]
        tr.xyz_kf[have] = -1
        prov = ~have & np.isfinite(tr.xyz[:, 0]) & (tr.xyz_kf >= 0)
        for k in np.unique(tr.xyz_kf[prov]):  # per keyframe, a handful
            m = prov & (tr.xyz_kf == k)
            D = delta(int(k))
            tr.xyz[m] = tr.xyz[m] @ D[:3, :3].T + D[:3, 3]
        tr.keep(states != CULLED)
    if t.kf_id >= 0:
        # A world-frame correction (window BA, loop closure) moves the current pose with its
        # keyframe. The motion model V = T_cw(k) T_cw(k-1)^-1 is a camera-frame increment and
        # is unchanged by a rigid one; a monocular Sim(3) correction rescales its translation.
        k, r = t.kf_id, rescale(t.kf_id)
        if r == 1.0 or k not in old:
            t.T_cw = orthonormalize(t.T_cw @ inv(delta(k)))
        else:  # the camera's pose relative to its keyframe keeps its rotation; its translation scales by r
            t.T_cw = orthonormalize(inv(t.kf_poses[k] @ scale_translation(inv(old[k]) @ inv(t.T_cw), r)))
            t.V = scale_translation(t.V, r)
        t.kf_T_wc = t.kf_poses[t.kf_id]
