"""PNG figure of an evaluation: aligned trajectories (top view and 3-D) and the errors over time.

Matplotlib is imported lazily and drawn through its Agg canvas directly (no pyplot, no global backend
switch), so this works on machines without a display and leaves other users of matplotlib alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from slam.errors import InputError
from slam.io.text import atomic_output

_AXES = "xyz"


def top_view_axes(positions: np.ndarray) -> tuple[int, int]:
    """The two coordinate axes of largest extent (x-y for z-up data, x-z for KITTI's y-down camera)."""
    extent = np.ptp(positions, axis=0) if positions.shape[0] else np.ones(3)
    a, b = sorted(np.argsort(extent)[1:].tolist())
    return a, b


def plot_evaluation(path: str | Path, ref_positions: np.ndarray, est_positions: np.ndarray,
                    times: np.ndarray | None, ate_errors: np.ndarray, rpe_index: np.ndarray,
                    rpe_errors: np.ndarray, title: str = "") -> None:
    """Write a PNG: top view and 3-D view of reference and aligned estimate, ATE and RPE over time.

    `times` are the matched timestamps in seconds (None: pose index on the x axis); `rpe_index` the
    index of the second pose of each RPE pair, where its error is drawn.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ref = np.asarray(ref_positions)
    est = np.asarray(est_positions)
    if times is None:
        x, xlabel = np.arange(ref.shape[0], dtype=float), "pose index"
    else:
        x, xlabel = np.asarray(times) - times[0], "time since first matched pose [s]"

    fig = Figure(figsize=(13, 9), layout="constrained")
    FigureCanvasAgg(fig)
    if title:
        fig.suptitle(title)

    a, b = top_view_axes(ref)
    ax = fig.add_subplot(2, 2, 1)
    ax.plot(ref[:, a], ref[:, b], color="0.3", lw=1.2, label="ground truth")
    ax.plot(est[:, a], est[:, b], color="tab:blue", lw=1.0, label="estimate (aligned)")
    ax.plot(ref[:1, a], ref[:1, b], "o", color="tab:green", label="start")
    ax.set_xlabel(f"{_AXES[a]} [m]")
    ax.set_ylabel(f"{_AXES[b]} [m]")
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_title("top view")
    ax.legend(loc="best", fontsize="small")

    ax3 = fig.add_subplot(2, 2, 2, projection="3d")
    ax3.plot(ref[:, 0], ref[:, 1], ref[:, 2], color="0.3", lw=1.2)
    ax3.plot(est[:, 0], est[:, 1], est[:, 2], color="tab:blue", lw=1.0)
    ax3.set_xlabel("x [m]")
    ax3.set_ylabel("y [m]")
    ax3.set_zlabel("z [m]")
    span = np.ptp(np.vstack([ref, est]), axis=0)
    ax3.set_box_aspect(np.maximum(span, 0.2 * max(span.max(), 1e-9)))  # keep flat axes readable
    ax3.set_title("3-D")

    ax = fig.add_subplot(2, 2, 3)
    ax.plot(x, ate_errors, color="tab:red", lw=0.9)
    ax.axhline(float(np.sqrt(np.mean(np.square(ate_errors)))), color="k", ls="--", lw=0.8, label="rmse")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("ATE [m]")
    ax.set_title("absolute trajectory error")
    ax.legend(loc="best", fontsize="small")

    ax = fig.add_subplot(2, 2, 4)
    ax.plot(x[np.asarray(rpe_index)], rpe_errors, color="tab:purple", lw=0.9)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("RPE translation [m]")
    ax.set_title("relative pose error")

    try:
        with atomic_output(path) as tmp:
            fig.savefig(tmp, dpi=100)
    except OSError as exc:
        raise InputError(f"cannot write the plot: {exc.strerror or exc}", path) from None
