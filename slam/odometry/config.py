"""Settings of the sliding-window bundle adjustment (the `odometry` section of a run configuration)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class OdometryConfig:
    """Sliding-window bundle adjustment in the odometry worker thread."""

    window: int = 20                 # newest keyframes optimized; older observers of their points stay fixed
    max_fixed: int = 20              # older keyframes kept (fixed) in a window problem
    precision: str = "mixed"         # BA precision policy: fp64, fp32, mixed, fp16
    max_iterations: int = 5          # LM iterations per window solve (blocking and monocular runs)
    # Non-blocking stereo / RGB-D runs cap a window solve at this many iterations (monocular runs
    # and blocking runs use max_iterations). The window is solved again at every keyframe, so
    # a landmark still gets about window x this many steps, and the Cauchy IRLS steps after the
    # first gain ~0.1% each. Blocking runs with loop closure (room_loop, room_figure8; stereo,
    # RGB-D; seeds 1, 42): mean ATE 2.29 mm with 2 and with 5; but street_loop stereo (seed 42)
    # drifts 0.040% of the path without loops with 2 against 0.027% with 5, so blocking runs keep
    # 5. Live stereo 752x480 with loop closure: 33.8-34.2 -> 38.3-39.1 frames/s (BA per keyframe
    # 99 -> 48 ms, tracking's wait for BA 1.5-1.8 -> 0.1 s). Ending a 5-iteration solve early when
    # a keyframe waits instead (ORB-SLAM3's local BA) was slower (bench_stall, alternating builds:
    # 33.2 against 36.0 frames/s): it solves every keyframe on its own (134-149 solves against
    # 113-124), and each solve has a fixed cost.
    max_iterations_live: int = 2
    cg_max_iterations: int = 60
    # The window is solved again at every keyframe from the last solution, so a step that lowers the
    # cost by less than this fraction is noise next to the next keyframe's change (Ceres: 1e-6 for
    # one-off problems). Measured on room_loop: the 2nd step gains ~1e-5, the 3rd ~1e-7.
    # Monocular configs use 1e-5: there the scale is the flattest direction and stopping early
    # leaves it where the rounding of the last step put it (fp64 and mixed then drift apart).
    relative_cost_tol: float = 1e-4
    # Cauchy at 3 robust sigmas of the window's residuals (MAD at the solve's start), within
    # [loss_scale_min, loss_scale]. A fixed 2 px Huber let the ~10% of observations that are off by
    # 0.5-9 px (tracks on occlusion edges, slid tracks) bend the map: measured on room_loop stereo
    # (seed 1, blocking), the global optimum of a whole run's observations had 5.2 mm ATE with it and
    # 2.5 mm with Cauchy at 0.5 px; in the window BA, ATE without loop closure went 5.3 -> 2.5 mm
    # (RGB-D 5.9 -> 2.9) with no change on the real KITTI 07 and TUM excerpts (monocular), whose
    # larger residuals give the scale the 2 px ceiling's neighbourhood. 0: the fixed loss_scale.
    loss: str = "cauchy"
    loss_scale: float = 2.0          # px: the robust loss's scale, or its ceiling when loss_sigmas > 0
    loss_sigmas: float = 3.0         # > 0: scale = this many robust sigmas of the window's residuals
    loss_scale_min: float = 0.1      # px: floor of that adaptive scale
    preconditioner: str = "jacobi"   # CGNR preconditioner: jacobi (block) or schur (the engine's BA Schur)
    max_reprojection_error: float = 3.0  # px: observations beyond are dropped after BA
    min_parallax: float = 1.0        # deg: monocular triangulation needs this much
    blocking: bool = False           # tracking waits for each keyframe's BA (deterministic runs, tests)
    # Recorded sources: before each frame, tracking waits while more than this many keyframes await
    # their first window solve (-1: never; live cameras never wait, their reader keeps the newest
    # frame). Tracking far ahead of BA tracks and triangulates from unrefined poses, so the map then
    # depends on the machine's speed. None: 0 for monocular runs, 3 otherwise (lag_for). Live runs
    # on the 2-core machine, seed 1, no loop closure: room_loop RGB-D unthrottled 0.067% of the path,
    # lag 3 0.019% (blocking 0.020%); stereo 752x480 with loop closure 2.8 -> 1.4 mm at 33-34 -> 24
    # frames/s (lag 1: 14 frames/s, no better); street_loop mono (every frame a keyframe) lag 3 0.300%,
    # 1 0.261%, 0 0.171% = blocking, at 11.8 / 10.1 / 9.7 frames/s (BA is the bottleneck anyway).
    max_lag: int | None = None


def lag_for(cfg: OdometryConfig, mode: str) -> int:
    """The run's max_lag: the configured one, or the per-sensor default (0 monocular, 3 otherwise)."""
    if cfg.max_lag is not None:
        return int(cfg.max_lag)
    return 0 if mode == "mono" else 3


def iterations_for(cfg: OdometryConfig, mode: str) -> int:
    """LM iterations of the run's window solves: max_iterations for blocking or monocular runs,
    else max_iterations_live, never more than max_iterations."""
    if cfg.blocking or mode == "mono":
        return int(cfg.max_iterations)
    return min(int(cfg.max_iterations_live), int(cfg.max_iterations))
