"""A study's figures (cumulative histograms, time against keyframes) and a self-contained report.html."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

import numpy as np

from slam.io.text import atomic_output, write_text_atomic

COLORS = {"fp64": "black", "fp32": "tab:blue", "mixed": "tab:green", "fp16": "tab:red"}


def _figure(size: tuple[float, float] = (7, 4.5)) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _cumulative(ax: Any, series: dict[str, list[float]], xlabel: str, log: bool) -> None:
    for p, vals in series.items():
        a = np.sort(np.asarray([v for v in vals if v is not None and np.isfinite(v)], float))
        if log:
            a = np.maximum(a, 1e-16)
        if a.size:
            ax.step(a, np.arange(1, a.size + 1) / a.size, where="post", color=COLORS.get(p), label=f"{p} ({a.size})")
    if log:
        from matplotlib.ticker import NullFormatter

        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # decades only: minor labels overlap on a short range
    ax.set_xlabel(xlabel)
    ax.set_ylabel("fraction of runs ≤ x")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")


def write_figures(summary: dict[str, Any], out: Path) -> list[Path]:
    """odometry_ate.png, pgo_cost_gap.png, pgo_ate.png, pgo_time.png (those with data); returns their paths."""
    written = []
    odo = summary["odometry"]
    if odo["trajectories"]:
        fig = _figure((11, 4.5))
        _cumulative(fig.add_subplot(1, 2, 1), odo["ate"], "ATE RMSE [m]", log=True)
        fig.axes[0].set_title(f"odometry: {odo['trajectories']} trajectories ({odo.get('renderings', '?')} renderings)")
        if odo["relative_to_fp64"]:
            _cumulative(fig.add_subplot(1, 2, 2), {p: np.abs(v).tolist() for p, v in odo["relative_to_fp64"].items()},
                        "|ATE / ATE(fp64) - 1|, same rendering", log=True)
            fig.axes[1].set_title("against fp64")
        written.append(out / "odometry_ate.png")
        with atomic_output(written[-1]) as tmp:
            fig.savefig(tmp, dpi=100)
    pg = summary["pgo"]
    if pg["problems"]:
        fig = _figure((11, 4.5))
        _cumulative(fig.add_subplot(1, 2, 1), {p: np.abs(v).tolist() for p, v in pg["cost_gap"].items()},
                    "|final cost / final cost(fp64) - 1|", log=True)
        fig.axes[0].set_title(f"loop-closure PGO: {pg['problems']} problems")
        _cumulative(fig.add_subplot(1, 2, 2), pg["ate"], "keyframe ATE RMSE after PGO [m]", log=True)
        written.append(out / "pgo_histograms.png")
        with atomic_output(written[-1]) as tmp:
            fig.savefig(tmp, dpi=100)
        fig = _figure()
        ax = fig.add_subplot(1, 1, 1)
        for p, pts in pg["time_vs_keyframes"].items():
            if pts:
                k, t = np.asarray(pts, float).T
                ax.scatter(k, t, s=10, color=COLORS.get(p), label=p, alpha=0.7)
        ax.set_xlabel("keyframes in the pose graph")
        ax.set_ylabel("solve time [s]")
        ax.set_title("PGO time per problem")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
        written.append(out / "pgo_time.png")
        with atomic_output(written[-1]) as tmp:
            fig.savefig(tmp, dpi=100)
    return written


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.3g}"
    return html.escape(str(v))


def _table(head: list[str], rows: list[list[Any]]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    trs = "".join("<tr>" + "".join(f"<td>{_fmt(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{th}</tr>{trs}</table>"


def _median(v: list[float] | None) -> float | None:
    return float(np.median(v)) if v else None


def _stage_table(by_precision: dict[str, dict[str, float]]) -> str:
    """One row per precision, one column per stage."""
    stages = sorted({s for v in by_precision.values() for s in v})
    return _table(["precision", *stages], [[p, *[v.get(s) for s in stages]] for p, v in by_precision.items()])


def write_html(summary: dict[str, Any], study: dict[str, Any], figures: list[Path], out: Path) -> Path:
    """report.html: tables and embedded figures; opens offline."""
    odo, pg, lc = summary["odometry"], summary["pgo"], summary["loop_closure"]
    parts = [f"<h1>Precision study: {html.escape(study['name'])}</h1>",
             f"<p>{study['runs_total']} runs ({study['runs_failed']} failed), executor {html.escape(study['executor'])}."
             " Runs are deterministic (tracking waits for bundle adjustment and loop closure); fp16 is emulated"
             " on the CPU (values rounded through fp16, arithmetic in fp32).</p>",
             "<h2>Odometry: ATE RMSE per precision</h2>",
             f"<p>{odo['trajectories']} trajectories: {odo.get('renderings', '?')} renderings, each in every precision"
             f" (blocking mode: the runs of a rendering differ only in precision); {odo.get('left_out', 0)} odometry"
             " runs whose rendering was not run (or did not finish) in every precision are left out here.</p>",
             _table(["precision", "runs", "mean [m]", "p90", "p99", "max", "|rel. to fp64| mean", "p90", "max"],
                    [[p, s["count"], s["mean"], s["p90"], s["p99"], s["max"],
                      *(lambda r: [r["mean"], r["p90"], r["max"]])(odo["relative_stats"].get(p, {"mean": None,
                                                                                                 "p90": None,
                                                                                                 "max": None}))]
                     for p, s in odo["ate_stats"].items()]),
             "<h2>Loop-closure PGO problems</h2>",
             "<p>" + ", ".join(f"{n} {'Sim(3)' if g == 'sim3' else 'SE(3)'}"
                               for g, n in sorted(pg.get("problems_by_group", {}).items())) + "</p>",
             _table(["precision", "problems", "|cost gap| mean", "p90", "max", "ATE mean [m]", "time mean [s]",
                     "total [s]", "time / fp32's (median)"],
                    [[p, pg["ate_stats"][p]["count"], *(lambda g: [g["mean"], g["p90"], g["max"]])(
                        pg["cost_gap_stats"].get(p, {"mean": None, "p90": None, "max": None})),
                      pg["ate_stats"][p]["mean"], pg["time_stats"][p]["mean"], pg.get("time_total_s", {}).get(p),
                      _median(pg.get("time_relative_to_fp32", {}).get(p))] for p in pg["precisions"]]),
             "<h3>PGO time per stage (s per problem, mean)</h3>",
             _stage_table(pg.get("stage_s_mean", {})),
             "<h2>ATE without and with loop closure (over runs)</h2>",
             _table(["", "max [m]", "99%", "90%", "mean", "runs"],
                    [[name, s["max"], s["p99"], s["p90"], s["mean"], s["count"]]
                     for name, s in (("without", lc["without"]), ("with", lc["with"]))]),
             "<h2>Window BA time per stage (ms per solve)</h2>"]
    parts.append(_stage_table(summary["ba_stage_ms"]))
    for f in figures:
        b64 = base64.b64encode(f.read_bytes()).decode()
        parts.append(f'<h3>{html.escape(f.stem)}</h3><img alt="{html.escape(f.stem)}" '
                     f'src="data:image/png;base64,{b64}">')
    parts.append("<h2>Study settings</h2><pre>" + html.escape(json.dumps(study["spec"], indent=1)) + "</pre>")
    css = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}"
           "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}img{max-width:100%}")
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(study['name'])}</title>"
            f"<style>{css}</style></head><body>{''.join(parts)}</body></html>\n")
    path = out / "report.html"
    write_text_atomic(path, page)
    return path
