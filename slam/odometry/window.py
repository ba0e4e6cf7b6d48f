"""The sliding window: which keyframes and points one bundle adjustment optimizes, and what it writes back.

The newest N keyframes are free; older keyframes that see the window's points join as fixed
cameras (at most `max_fixed`, those sharing most points), which holds the gauge and the scale
(ORB-SLAM's local BA). The first keyframe of every map segment stays fixed; monocular windows also
fix the second (`gauge_keyframes` = 2), the other end of the initialization baseline, because one
fixed camera leaves the scale free: LM's damping would then let each solve slide along that flat
direction by an amount set by the rounding of the solve, and fp64 and mixed runs would drift
apart in scale. Where a segment has no fixed keyframe, its first keyframe in the window is fixed.
Points seen fewer than twice (counting right-image measurements) are left out: a single ray does
not locate them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from slam.odometry.config import OdometryConfig
from slam.geometry import lie
from slam.map.map import Map
from slam.map.views import ObservationRows
from slam.odometry.rig_ba import StereoBundleAdjustment
from slam.solvers.lm import SolverOptions, solve

FIXED_LOOKBACK = 4  # fixed keyframes are searched among this many windows before the window


@dataclass
class WindowData:
    """A copy of what one window solve needs, taken under the map lock."""

    kf_ids: np.ndarray        # (C,) keyframes in the problem, window first
    fixed: np.ndarray         # (C,) bool
    T_cw: np.ndarray          # (C,4,4)
    point_ids: np.ndarray     # (P,)
    points: np.ndarray        # (P,3)
    rows: np.ndarray          # (O,) observation table rows
    cam: np.ndarray           # (O,) index into kf_ids
    pt: np.ndarray            # (O,) index into point_ids
    uv: np.ndarray            # (O,2)
    ur: np.ndarray            # (O,) right u or NaN
    n_window: int
    corrections: int = 0      # the map's correction count when gathered (a later loop correction makes it stale)


@dataclass
class WindowStats:
    """What one window solve did (for report.json)."""

    keyframes: int
    fixed: int
    points: int
    observations: int
    build_s: float
    solve_s: float
    write_s: float
    iterations: int
    cg_iterations: int
    initial_cost: float
    final_cost: float
    rejected: int
    culled: int
    precision: dict = field(default_factory=dict)
    stage_s: dict = field(default_factory=dict)  # the solver's time per stage (residual, jacobian, ...)


def gather(the_map: Map, window: int, max_fixed: int, gauge_keyframes: int = 1) -> WindowData | None:
    """Select the window problem from one copy of the map (`Map.window_view`); None when there is
    nothing to optimize.

    gauge_keyframes: the first this many keyframes of each map segment are always fixed (1 for
    stereo and RGB-D, 2 for monocular, where one fixed camera leaves the scale free)."""
    view = the_map.window_view(window, FIXED_LOOKBACK * window)
    if view is None or view.n_keyframes < 2 or view.point_ids.size == 0:
        return None
    win = np.arange(view.first_kf, view.n_keyframes)
    lms = view.point_ids
    fixed_kf = np.zeros(0, np.int64)
    older = view.older.take(np.zeros(0, np.int64))
    if view.older.rows.size:
        kfs, counts = np.unique(view.older.kf, return_counts=True)
        fixed_kf = np.sort(kfs[np.lexsort((-kfs, -counts))[:max_fixed]])  # most shared, then newest
        older = view.older.take(np.isin(view.older.kf, fixed_kf))
    kf_ids = np.concatenate([win, fixed_kf])
    obs = ObservationRows.concat([view.window, older])
    at = kf_ids - view.older_kf
    seg = view.segments[at]
    fixed = np.zeros(len(kf_ids), bool)
    fixed[len(win):] = True
    fixed[:len(win)] |= win - view.segment_first[at[:len(win)]] < gauge_keyframes
    for s in np.unique(seg):  # per segment, not per observation
        if not fixed[seg == s].any():
            fixed[np.flatnonzero(seg == s)[0]] = True
    T_cw = lie.orthonormalize(lie.se3_inverse(view.poses[at]))  # chained products drift off SO(3)
    order = np.argsort(kf_ids)
    cam = order[np.searchsorted(kf_ids[order], obs.kf)]
    pt = np.searchsorted(lms, obs.lm)
    ur = obs.ur
    n_meas = np.bincount(pt, minlength=len(lms)) + np.bincount(pt, weights=np.isfinite(ur), minlength=len(lms))
    keep_pt = n_meas >= 2
    if not keep_pt.any():
        return None
    remap = np.cumsum(keep_pt) - 1
    m = keep_pt[pt]
    return WindowData(kf_ids, fixed, T_cw, lms[keep_pt], view.points[keep_pt], obs.rows[m], cam[m], remap[pt[m]],
                      obs.uv[m], ur[m], len(win), view.corrections)


def solver_options(cfg: OdometryConfig, precision: str) -> SolverOptions:
    """LM options of a window solve; 'schur' is the BA problem's own preconditioner (lm's 'auto')."""
    return SolverOptions(precision=precision, max_iterations=cfg.max_iterations,
                         cg_max_iterations=cfg.cg_max_iterations, relative_cost_tol=cfg.relative_cost_tol,
                         preconditioner="auto" if cfg.preconditioner == "schur" else cfg.preconditioner)


def robust_sigma(r: np.ndarray) -> float:
    """Noise level (px) of reprojection residuals (O,2) that may hold outliers: 1.4826 x the median
    absolute component (the MAD of a zero-mean Gaussian)."""
    a = np.abs(r[np.isfinite(r).all(axis=1)])
    return float(1.4826 * np.median(a)) if a.size else float("nan")


def loss_scale(prob: StereoBundleAdjustment, cfg: OdometryConfig) -> float:
    """The robust loss's scale for one window: `loss_sigmas` robust sigmas of its residuals at the
    start, within [loss_scale_min, loss_scale]; loss_scale itself when loss_sigmas is 0."""
    if cfg.loss_sigmas <= 0:
        return cfg.loss_scale
    s = cfg.loss_sigmas * robust_sigma(prob.residuals())
    return float(np.clip(s, cfg.loss_scale_min, cfg.loss_scale)) if np.isfinite(s) else cfg.loss_scale


def optimize(the_map: Map, cfg: OdometryConfig, K: np.ndarray, baseline: float, precision: str,
             observer: Callable[[WindowData], None] | None = None) -> WindowStats | None:
    """One window bundle adjustment: gather, solve outside the lock, write back, reject and cull.

    `observer` sees every window problem before it is solved (benchmarks record them).
    """
    t0 = time.perf_counter()
    data = gather(the_map, cfg.window, cfg.max_fixed, gauge_keyframes=1 if baseline > 0 else 2)
    if data is None or data.fixed.all():
        return None
    if observer is not None:
        observer(data)
    prob = StereoBundleAdjustment(data.T_cw, data.points, data.cam, data.pt, data.uv, data.ur, K, baseline,
                                  data.fixed, loss=cfg.loss, loss_scale=cfg.loss_scale)
    prob.loss_scale = loss_scale(prob, cfg)
    t1 = time.perf_counter()
    summary = solve(prob, solver_options(cfg, precision))
    t2 = time.perf_counter()
    e_left, e_right = prob.errors()
    T_cw = prob.T_cw
    X = prob.points
    P = np.einsum("oij,oj->oi", T_cw[data.cam, :3, :3], X[data.pt]) + T_cw[data.cam, :3, 3]
    thr = cfg.max_reprojection_error
    bad = (e_left > thr) | (np.nan_to_num(e_right) > thr) | (P[:, 2] <= 0)
    behind = np.bincount(data.pt, weights=P[:, 2] <= 0, minlength=len(X)) > 0
    good_meas = (np.bincount(data.pt, weights=~bad, minlength=len(X))
                 + np.bincount(data.pt, weights=~bad & np.isfinite(data.ur), minlength=len(X)))
    cull = behind | (good_meas < 2) | ~np.isfinite(X).all(axis=1)
    free = ~data.fixed
    # A loop correction that moved the map while this window was solved leaves its poses and points
    # in the old frame; writing them would undo the correction, so the map refuses them (None) and
    # the next keyframe's solve starts from the corrected map.
    written = the_map.apply_window_solve(data.kf_ids[free], lie.orthonormalize(lie.se3_inverse(T_cw[free])),
                                         data.point_ids[~cull], X[~cull], reject_rows=data.rows[bad],
                                         cull_ids=data.point_ids[cull], corrections=data.corrections)
    if written is None:
        return None
    t3 = time.perf_counter()
    return WindowStats(int(len(data.kf_ids) - data.fixed.sum()), int(data.fixed.sum()), len(X), len(data.rows),
                       t1 - t0, t2 - t1, t3 - t2, summary.iterations, summary.total_linear_iterations,
                       summary.initial_cost, summary.final_cost, int(bad.sum()), int(cull.sum()),
                       summary.precision, dict(summary.stage_times))
