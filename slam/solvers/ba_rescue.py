"""LM step rescue for bundle adjustment: re-fit the points a rejected step made worse.

Embedded point iterations (Jeong et al., "Pushing the envelope of modern methods for bundle
adjustment", 2012), for the points the step made worse only: given the cameras, each point
is its own 3-parameter problem. Damped Gauss-Newton in xyz and fp64 on those points'
observations (IRLS-weighted like linearize); a point keeps a move only where its own cost
falls. On ladybug-49 most rejected steps fail on one point 5 mm from the camera it is
anchored to, which the linear model moves far off when that camera moves. Used when
SolverOptions.rescue_steps is set (ba.default_options sets it). LM's path on ladybug is chaotic:
one start says little, so it was measured over 8 starting dampings. First (1e-6 .. 1e-3, CPU s
summed, rejected steps, median final cost), without -> with: fp64 11.4 -> 8.1 s, 72 -> 20,
13121.18 -> 13120.54; fp32 14.3 -> 11.0 s, 93 -> 47, 13121.10 -> 13120.54; mixed 14.9 -> 11.1 s,
67 -> 28, 13121.11 -> 13120.54, but from the default start (1e-5) fp32 and mixed took longer
(0.93 -> 1.33 s, 1.16 -> 1.68 s), and the option stayed off. Later, on another CPU (an AMD EPYC;
1e-6 .. 3e-3, LM iterations summed, rejected steps): fp64 100 -> 84, 70 ->
29; fp32 142 -> 89, 91 -> 32; mixed 164 -> 94, 94 -> 34; from the default start mixed 25 -> 13
iterations (fp64 9 -> 9), and the final cost 13120.54 in 8 of 8 fp64 and 5 of 8 mixed runs
(without: 3 and 1 of 8). One fp32 start ended higher with it (13124.56 against 13121.12). On by
default since.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from slam.solvers.pgo import _round


def refit_worsened_points(problem: Any, dtype: np.dtype, iterations: int = 2) -> bool:
    """Re-fit the points whose cost a rejected LM step raised, given that step's cameras; True when one moved.

    problem: a ba.BundleAdjustmentProblem (not imported: ba.py imports this module).
    """
    if problem._lin_obs_cost is None:
        return False
    base = problem._per_point(problem._lin_obs_cost)
    r, _ = problem._project(np.float64, False)
    cost = problem._per_point(problem._weights(r)[0])
    rise = np.where(problem.fixed_points, 0.0, cost - base)
    bad = rise > 0.01 * rise.max(initial=0.0)  # the few points the step failed on
    if not bad.any():
        return False
    sel = np.flatnonzero(bad[problem.pt_idx])
    P, d, moved = len(problem.points), problem.cam_dim, False
    for _ in range(iterations):
        r, J = problem._project(np.float64, True, chart="xyz", sel=sel)
        ok = np.all(np.isfinite(J), axis=(1, 2)) & np.all(np.isfinite(r), axis=1)
        rho, w = problem._weights(np.where(ok[:, None], r, 0.0))
        Jp = J[:, :, d:] * (ok if w is None else ok * w)[:, None, None]
        Jp = np.where(np.isfinite(Jp), Jp, 0.0)
        rw = np.where(ok[:, None], r if w is None else r * w[:, None], 0.0)
        HJ = np.einsum("oki,okj->oij", Jp, Jp).reshape(-1, 9)
        gJ = np.einsum("oki,ok->oi", Jp, rw)
        pi = problem.pt_idx[sel]
        H = np.stack([np.bincount(pi, weights=HJ[:, k], minlength=P) for k in range(9)], 1)[bad].reshape(-1, 3, 3)
        g = np.stack([np.bincount(pi, weights=gJ[:, k], minlength=P) for k in range(3)], 1)[bad]
        diag = np.einsum("pii->pi", H)
        # Levenberg damping per point; the floor keeps a point seen once (rank 2) solvable.
        H = H + (1e-4 * diag + 1e-12 * diag.max(initial=0.0) + 1e-300)[:, :, None] * np.eye(3)
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            dX = -np.linalg.solve(H, g[:, :, None])[:, :, 0]
        old = problem.points[bad]
        problem.points[bad] = _round(old + np.where(np.isfinite(dX), dX, 0.0), dtype)
        new = problem._per_point(problem._weights(problem._project(np.float64, False, sel=sel)[0])[0], sel)[bad]
        better = new < cost[bad]
        problem.points[bad] = np.where(better[:, None], problem.points[bad], old)
        if not better.any():
            break
        moved = True
        cost[bad] = np.where(better, new, cost[bad])
    return moved
