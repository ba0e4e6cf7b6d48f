"""The run folder's pictures: a top view of the trajectory (ground truth, loops) and the error over time.

Drawn through matplotlib's Agg canvas directly (no pyplot, no display, no global backend switch).
"""

from __future__ import annotations

from pathlib import Path

from slam.eval.plots import top_view_axes
from slam.report.run_data import RunData, keyframe_position

_AXES = "xyz"


def _figure(size: tuple[float, float]):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def plot_top_view(data: RunData, path: str | Path) -> bool:
    """top_view.png: estimate (aligned when ground truth exists), ground truth, keyframes, loop closures."""
    ev = data.evaluation
    if data.trajectory is None:
        return False
    # Every tracked frame, moved by the alignment that the ground-truth-matched frames determined.
    full_est = (ev.alignment.apply(data.trajectory.poses) if ev is not None else data.trajectory.poses)[:, :3, 3]
    ref = data.groundtruth.positions if data.groundtruth is not None and ev is not None else None
    a, b = top_view_axes(ref if ref is not None else full_est)
    fig = _figure((7.5, 6.5))
    ax = fig.add_subplot(1, 1, 1)
    if ref is not None:
        # Wide and light underneath, so that an estimate lying on it still shows both.
        ax.plot(ref[:, a], ref[:, b], color="0.6", lw=4.0, alpha=0.6, solid_capstyle="round", label="ground truth")
    label = "estimate (aligned, " + ev.method + ")" if ev is not None else "estimate"
    ax.plot(full_est[:, a], full_est[:, b], color="tab:blue", lw=1.0, label=label)
    if data.keyframes is not None:
        kf = data.keyframes.poses
        kf = ev.alignment.apply(kf) if ev is not None else kf
        ax.plot(kf[:, a, 3], kf[:, b, 3], ".", color="tab:blue", ms=3, alpha=0.6,
                label=f"keyframes ({len(kf)})")
    ax.plot(full_est[:1, a], full_est[:1, b], "o", color="tab:green", ms=7, label="start")
    ax.plot(full_est[-1:, a], full_est[-1:, b], "s", color="tab:orange", ms=6, label="end")
    drawn = 0
    for lp in data.loops:
        q = keyframe_position(data, lp.query_kf, lp.query_t)
        m = keyframe_position(data, lp.match_kf, lp.match_t)
        if q is None or m is None:
            continue
        ax.plot([q[a], m[a]], [q[b], m[b]], "-", color="tab:red", lw=1.6,
                label="loop closure" if drawn == 0 else None)
        ax.plot([q[a], m[a]], [q[b], m[b]], "o", color="tab:red", ms=4, mfc="none")
        drawn += 1
    ax.set_xlabel(f"{_AXES[a]} [m]")
    ax.set_ylabel(f"{_AXES[b]} [m]")
    ax.set_aspect("equal", adjustable="datalim")
    ax.grid(True, lw=0.3, alpha=0.5)
    title = f"top view ({_AXES[a]}-{_AXES[b]})"
    if ev is not None:
        title += f", ATE RMSE {ev.ate.rmse:.3f} m"
    ax.set_title(title + f", {len(data.loops)} loop closure{'s' if len(data.loops) != 1 else ''}")
    ax.legend(loc="best", fontsize="small")
    fig.savefig(path, dpi=100)
    return True


def plot_errors(data: RunData, path: str | Path) -> bool:
    """error.png: absolute (ATE) and relative (RPE, frame to frame) translation error over time."""
    ev = data.evaluation
    if ev is None or data.matched_times is None:
        return False
    t0 = float(data.matched_times[0])
    x = data.matched_times - t0
    fig = _figure((9.0, 5.5))
    ax = fig.add_subplot(2, 1, 1)
    ax.plot(x, ev.ate_errors, color="tab:red", lw=0.9, label="ATE")
    ax.axhline(ev.ate.rmse, color="k", ls="--", lw=0.8, label=f"RMSE {ev.ate.rmse:.4f} m")
    loop_times = sorted({lp.query_t - t0 for lp in data.loops if lp.query_t is not None})
    for k, lt in enumerate(loop_times):
        ax.axvline(lt, color="tab:green", lw=1.0, ls=":", label="loop closure" if k == 0 else None)
    ax.set_ylabel("ATE [m]")
    ax.set_title(f"absolute trajectory error ({ev.method} alignment)")
    ax.legend(loc="upper left", fontsize="small")
    ax.grid(True, lw=0.3, alpha=0.5)
    ax = fig.add_subplot(2, 1, 2, sharex=ax)
    ax.plot(x[ev.rpe_pairs[:, 1]], ev.rpe_trans_errors, color="tab:purple", lw=0.8)
    ax.set_xlabel("time since the first evaluated frame [s]")
    ax.set_ylabel("RPE [m / frame]")
    ax.set_title(f"relative pose error, translation (RMSE {ev.rpe_trans.rmse:.4f} m)")
    ax.grid(True, lw=0.3, alpha=0.5)
    fig.savefig(path, dpi=100)
    return True
