"""Settings of the sliding-window bundle adjustment (the `odometry` section of a run configuration)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class OdometryConfig:
    """Sliding-window bundle adjustment in the odometry worker thread."""

    window: int = 20                 # newest keyframes optimized; older observers of their points stay fixed
    max_fixed: int = 20              # older keyframes kept (fixed) in a window problem
    precision: str = "mixed"         # BA precision policy: fp64, fp32, mixed, fp16
    max_iterations: int = 5          # LM iterations per window solve
    cg_max_iterations: int = 60
    # The window is solved again at every keyframe from the last solution, so a step that lowers the
    # cost by less than this fraction is noise next to the next keyframe's change (Ceres: 1e-6 for
    # one-off problems). Measured on room_loop: the 2nd step gains ~1e-5, the 3rd ~1e-7.
    # Monocular configs use 1e-5: there the scale is the flattest direction and stopping early
    # leaves it where the rounding of the last step put it (fp64 and mixed then drift apart).
    relative_cost_tol: float = 1e-4
    loss: str = "huber"
    loss_scale: float = 2.0          # px
    preconditioner: str = "jacobi"   # CGNR preconditioner: jacobi (block) or schur (the engine's BA Schur)
    max_reprojection_error: float = 3.0  # px: observations beyond are dropped after BA
    min_parallax: float = 1.0        # deg: monocular triangulation needs this much
    blocking: bool = False           # tracking waits for each keyframe's BA (deterministic runs, tests)
