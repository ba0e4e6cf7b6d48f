"""Global bundle adjustment after a loop: every keyframe and landmark, in the run's precision.

The problem is the odometry window's, widened to all keyframes (odometry/window.py `gather` with a
window as large as the map: the first keyframe of every segment fixed, and the second too for
monocular maps, the scale gauge). It is solved outside the map lock, then written back in one
locked step, as the pose graph is (Map.apply_global_solve): each keyframe gets C_i = T_i^BA (T_i^copied)^-1
applied to its pose now (keyframes inserted meanwhile: the newest one's), every landmark moves with
its reference keyframe, and the landmarks BA optimized are then set to their BA positions carried
by whatever their reference keyframe moved since the copy (nothing, unless window BA touched it).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from slam.geometry import lie
from slam.odometry.config import OdometryConfig
from slam.odometry.rig_ba import StereoBundleAdjustment
from slam.odometry.window import gather, loss_scale
from slam.solvers.ba_precond import exact_schur_fits
from slam.solvers.lm import SolverOptions, solve


def global_ba(the_map: Any, K: np.ndarray, baseline: float, odo: OdometryConfig, precision: str,
              max_iterations: int, abort: Any = None) -> dict | None:
    """Solve and write back a global BA; returns its statistics, None if there was nothing to do
    or the run was stopped meanwhile (abort set)."""
    t0 = time.perf_counter()
    data = gather(the_map, 1 << 40, 1, gauge_keyframes=1 if baseline > 0 else 2)
    if data is None or data.fixed.all():
        return None
    prob = StereoBundleAdjustment(data.T_cw, data.points, data.cam, data.pt, data.uv, data.ur, K, baseline,
                                  data.fixed, loss=odo.loss, loss_scale=odo.loss_scale)
    prob.loss_scale = loss_scale(prob, odo)
    # The exact Schur preconditioner where the reduced camera system is small enough to factor
    # densely, whatever the window uses: a monocular map's scale drift is the BA's flattest
    # direction, and block-Jacobi CG barely moves along it in 10 LM iterations (room_figure8 mono,
    # seed 29: keyframe ATE 0.102% with it, 0.071% with exact Schur, 0.072% from a solve to 1e-12;
    # the costs differ by 0.2%). Larger maps keep block Jacobi: Schur-Jacobi, the engine's choice
    # there, is block-diagonal too and took twice as long to the same cost (office_long mono,
    # 453-475 keyframes: 4.1-7.3 s against 2.5-3.7 s, final costs within 0.2%).
    t1 = time.perf_counter()
    summary = solve(prob, SolverOptions(precision=precision, max_iterations=max_iterations,
                                        cg_max_iterations=odo.cg_max_iterations, relative_cost_tol=1e-5,
                                        preconditioner="auto" if exact_schur_fits(prob.n_cam_params) else "jacobi",
                                        # Ctrl-C or a failure elsewhere: stop after the current LM iteration
                                        # (nothing is written then, below) instead of finishing the solve.
                                        interrupt=abort.is_set if abort is not None else None))
    t2 = time.perf_counter()
    n = len(data.kf_ids)
    if not np.array_equal(data.kf_ids, np.arange(n)):
        raise RuntimeError("global BA expects every keyframe in id order")
    T_ba = lie.orthonormalize(lie.se3_inverse(prob.T_cw))
    X = prob.points
    if not the_map.apply_global_solve(lie.se3_inverse(data.T_cw), T_ba, data.point_ids, X, abort):
        return None
    t3 = time.perf_counter()
    return {"keyframes": n, "fixed": int(data.fixed.sum()), "points": int(len(X)),
            "observations": int(len(data.rows)), "initial_cost": summary.initial_cost,
            "final_cost": summary.final_cost, "iterations": summary.iterations,
            "cg_iterations": summary.total_linear_iterations, "termination": summary.termination,
            "time_s": {"build": t1 - t0, "solve": t2 - t1, "write_back": t3 - t2, "total": t3 - t0},
            "precision": summary.precision}
