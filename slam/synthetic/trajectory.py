"""Smooth camera trajectories: a cubic B-spline along waypoints plus gentle head motion.

The waypoint polyline is resampled at an even spacing and used as the control polygon of a uniform
cubic B-spline (periodic for closed paths): C2, free of the wiggles an interpolating spline makes,
and it rounds corners the way a walker or a car does. It is traversed at constant parameter speed
that ramps up from rest and back down on open paths; the camera looks along the path a little
ahead of where it is, with sinusoidal yaw, pitch and roll and a vertical bob on top. On a closed path every
sinusoid is given in whole cycles per lap, so the camera pose after a full lap equals the start.
World frame: z up. Camera frame: x right, y down, z forward (OpenCV).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.interpolate import BSpline

Wave = tuple[float, float, float]  # (amplitude, period in seconds, phase in radians)


def _waves(t: np.ndarray, waves: tuple[Wave, ...] | list[Wave]) -> np.ndarray:
    """Sum of amplitude * sin(2 pi t / period + phase)."""
    out = np.zeros_like(t)
    for amp, period, phase in waves:
        out += amp * np.sin(2.0 * np.pi * t / period + phase)
    return out


def look_rotation(yaw: np.ndarray, pitch: np.ndarray, roll: np.ndarray) -> np.ndarray:
    """(N, 3, 3) R_world_cam of a camera looking at heading yaw, elevation pitch, rolled by roll."""
    cy, sy, cp, sp = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch)
    f = np.stack([cy * cp, sy * cp, sp], axis=-1)
    right = np.stack([sy, -cy, np.zeros_like(yaw)], axis=-1)  # f x up, normalized
    down = np.cross(f, right)
    cr, sr = np.cos(roll)[:, None], np.sin(roll)[:, None]
    x = cr * right + sr * down
    y = -sr * right + cr * down
    return np.stack([x, y, f], axis=-1)


@dataclass
class PathTrajectory:
    """Camera T_world_cam(t) along waypoints; `duration` seconds long.

    spacing: metres between B-spline control points (the corner-rounding scale).
    speed (open paths): when given, duration = path length / speed + ramp.
    closed: the waypoints form a loop (first point is not repeated) traversed once per `lap_time`
    seconds at constant parameter speed; otherwise the path is traversed once in `duration` with
    `ramp` seconds of smooth start and stop. The camera looks `look_ahead` seconds ahead along the
    path, turned by yaw_offset + yaw waves, pitched by pitch0 + pitch waves, rolled by roll waves;
    bob waves move it vertically.
    """

    waypoints: np.ndarray
    duration: float = 0.0
    speed: float = 0.0
    closed: bool = False
    lap_time: float = 0.0
    look_ahead: float = 0.5
    heading_span: float = 1.0
    yaw_offset: float = 0.0
    yaw: tuple[Wave, ...] = ()
    pitch0: float = 0.0
    pitch: tuple[Wave, ...] = ()
    roll: tuple[Wave, ...] = ()
    bob: tuple[Wave, ...] = ()
    ramp: float = 2.0
    spacing: float = 0.3
    _spline: BSpline = field(init=False, repr=False)
    _length: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        pts = np.asarray(self.waypoints, dtype=np.float64)
        if self.closed:
            pts = np.vstack([pts, pts[:1]])
        arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))])
        n = max(int(round(arc[-1] / self.spacing)), 4)
        s = np.linspace(0.0, arc[-1], n + 1)
        if self.closed:
            s = s[:-1]
        ctrl = np.stack([np.interp(s, arc, pts[:, k]) for k in range(3)], axis=1)
        if self.closed:  # uniform periodic B-spline over parameter [0, n)
            self._spline = BSpline(np.arange(-3.0, n + 4.0), np.vstack([ctrl, ctrl[:3]]), 3,
                                   extrapolate="periodic")
            self._span = float(n)
        else:  # clamped: starts and ends exactly at the first and last waypoints
            m = len(ctrl)
            knots = np.concatenate([[0.0] * 3, np.arange(0.0, m - 2.0), [m - 3.0] * 3])
            self._spline = BSpline(knots, ctrl, 3)
            self._span = float(m - 3)
        self._length = float(arc[-1])
        if not self.closed and self.speed > 0:
            self.duration = self._length / self.speed + self.ramp

    def _param(self, t: np.ndarray) -> np.ndarray:
        """B-spline parameter at times t; C2 in t."""
        u = self._arc(t) * (self._span / self._length)
        return u if self.closed else np.clip(u, 0.0, self._span)

    def _arc(self, t: np.ndarray) -> np.ndarray:
        """Distance along the control polygon at times t (ramped on open paths)."""
        if self.closed:
            return self._length * t / self.lap_time
        r = min(self.ramp, self.duration / 2)
        v = self._length / (self.duration - r)  # cruise speed, so that the path ends at duration

        def integral(x: np.ndarray) -> np.ndarray:  # of the quintic smoothstep, from 0 to x
            return x ** 6 - 3 * x ** 5 + 2.5 * x ** 4

        tc = np.clip(t, 0.0, self.duration)
        s = v * (tc - r / 2)
        a, b = tc < r, tc > self.duration - r
        s[a] = v * r * integral(tc[a] / r)
        s[b] = self._length - v * r * integral((self.duration - tc[b]) / r)
        return s

    def positions(self, t: np.ndarray) -> np.ndarray:
        """(N, 3) camera centres at times t."""
        t = np.atleast_1d(np.asarray(t, dtype=np.float64))
        p = self._spline(self._param(t))
        p[:, 2] += _waves(t, self.bob)
        return p

    def poses(self, t: np.ndarray) -> np.ndarray:
        """(N, 4, 4) T_world_cam at times t (seconds from the start)."""
        t = np.atleast_1d(np.asarray(t, dtype=np.float64))
        h = self.heading_span / 2
        centre = t + self.look_ahead
        if not self.closed:  # keep the chord inside the path so it never shrinks to a point
            centre = np.clip(centre, h, max(self.duration - h, h))
        tangent = self.positions(centre + h) - self.positions(centre - h)
        yaw = np.arctan2(tangent[:, 1], tangent[:, 0]) + self.yaw_offset + _waves(t, self.yaw)
        pitch = self.pitch0 + _waves(t, self.pitch)
        roll = _waves(t, self.roll)
        T = np.tile(np.eye(4), (t.size, 1, 1))
        T[:, :3, :3] = look_rotation(yaw, pitch, roll)
        T[:, :3, 3] = self.positions(t)
        return T


def body_motion(traj: PathTrajectory, t: np.ndarray, T_cam_body: np.ndarray,
                h: float = 1e-4) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World velocity, body angular rate and body specific force (gravity 9.81 along -z) at times t.

    Central differences of the exact trajectory with step h; the body frame is T_world_cam @ T_cam_body.
    """
    t = np.atleast_1d(np.asarray(t, dtype=np.float64))
    T = [traj.poses(t + k * h) @ T_cam_body for k in (-1, 0, 1)]
    p = [x[:, :3, 3] for x in T]
    vel = (p[2] - p[0]) / (2 * h)
    acc = (p[2] - 2 * p[1] + p[0]) / (h * h)
    R = T[1][:, :3, :3]
    dR = (T[2][:, :3, :3] - T[0][:, :3, :3]) / (2 * h)
    W = np.einsum("nji,njk->nik", R, dR)  # R^T dR/dt = [omega]x in the body frame
    omega = 0.5 * np.stack([W[:, 2, 1] - W[:, 1, 2], W[:, 0, 2] - W[:, 2, 0], W[:, 1, 0] - W[:, 0, 1]], axis=1)
    f = np.einsum("nji,nj->ni", R, acc + np.array([0.0, 0.0, 9.81]))
    return vel, omega, f
