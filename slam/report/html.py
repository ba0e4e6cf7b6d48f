"""report.html: one self-contained page per run (numbers, plots as base64 PNG, settings; opens offline)."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

import yaml

from slam.report.run_data import RunData

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.4em 0}td,th{padding:.2em .8em;border-bottom:1px solid #eee;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}img{max-width:100%;border:1px solid #eee}
.bad{color:#b00}.ok{color:#070}pre{background:#f6f6f6;padding:.8em;overflow:auto;font-size:.85em}
"""


def _e(x: Any) -> str:
    return html.escape(str(x))


def fmt(v: Any, digits: int = 4) -> str:
    """A number as the report shows it (floats with `digits` decimals, ints plain)."""
    if isinstance(v, bool) or v is None:
        return "-" if v is None else ("yes" if v else "no")
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _table(rows: list[tuple[str, Any]], head: tuple[str, str] | None = None) -> str:
    h = f"<tr><th>{_e(head[0])}</th><th>{_e(head[1])}</th></tr>" if head else ""
    body = "".join(f"<tr><td>{_e(k)}</td><td class='n'>{_e(fmt(v))}</td></tr>" for k, v in rows)
    return f"<table>{h}{body}</table>"


def _image(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f"<figure><img alt='{_e(alt)}' src='data:image/png;base64,{data}'>"
            f"<figcaption>{_e(alt)}</figcaption></figure>")


def summary_rows(rep: dict[str, Any], n_loops: int) -> list[tuple[str, Any]]:
    """The headline numbers of a run, from report.json."""
    rows: list[tuple[str, Any]] = [
        ("frames", rep.get("frames")), ("frames tracked", rep.get("frames_tracked")),
        ("frames lost", rep.get("frames_lost")), ("keyframes", rep.get("keyframes")),
        ("landmarks", rep.get("landmarks")), ("loop closures", n_loops),
        ("relocalizations", rep.get("relocalizations")), ("map segments", rep.get("segments")),
        ("frames per second (wall)", rep.get("fps")), ("tracking frames per second", rep.get("tracking_fps")),
        ("wall time [s]", rep.get("wall_time_s")),
    ]
    ate = rep.get("ate")
    if isinstance(ate, dict) and "rmse" in ate:
        rows += [("ATE RMSE [m]", ate["rmse"]), ("ATE mean [m]", ate.get("mean")),
                 ("ATE median [m]", ate.get("median")), ("ATE max [m]", ate.get("max")),
                 ("ATE alignment", ate.get("align")), ("alignment scale", ate.get("scale")),
                 ("ground-truth path length [m]", ate.get("path_length_m")),
                 ("ATE RMSE, % of path", ate.get("rmse_percent_of_path")), ("frames evaluated", ate.get("matched"))]
    elif isinstance(ate, dict) and "error" in ate:
        rows.append(("ATE", f"not computed: {ate['error']}"))
    else:
        rows.append(("ATE", "no ground truth"))
    if "trajectory_extent_m" in rep:
        rows.append(("trajectory extent [m]", rep["trajectory_extent_m"]))
    return rows


def _timings(rep: dict[str, Any]) -> str:
    t = rep.get("timings_ms") or {}
    if not t:
        return ""
    keys = ["count", "mean", "median", "p95", "max", "total_s"]
    cols = [k for k in keys if any(isinstance(v, dict) and k in v for v in t.values())]
    head = "".join(f"<th>{_e(c)}</th>" for c in ["stage"] + cols)
    body = "".join("<tr><td>" + _e(name) + "</td>" + "".join(f"<td class='n'>{_e(fmt(v.get(c), 2))}</td>" for c in cols)
                   + "</tr>" for name, v in t.items() if isinstance(v, dict))
    return f"<h2>Time per stage [ms]</h2><table><tr>{head}</tr>{body}</table>"


def _loops_table(data: RunData) -> str:
    if not data.loops:
        return "<p>No loop closure was accepted" + (" (loop closure disabled)." if "disabled" in str(
            data.report.get("loop_closure", "")) else ".") + "</p>"
    rows = "".join(f"<tr><td class='n'>{_e(fmt(lp.query_kf))}</td><td class='n'>{_e(fmt(lp.query_t, 3))}</td>"
                   f"<td class='n'>{_e(fmt(lp.match_kf))}</td><td class='n'>{_e(fmt(lp.match_t, 3))}</td>"
                   f"<td class='n'>{_e(fmt(lp.inliers))}</td></tr>" for lp in data.loops)
    return ("<table><tr><th>query keyframe</th><th>time [s]</th><th>match keyframe</th><th>time [s]</th>"
            f"<th>inliers</th></tr>{rows}</table>")


def _scalars(d: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Every scalar of report.json as (dotted key, value); long lists are summarized."""
    out: list[tuple[str, Any]] = []
    if isinstance(d, dict):
        for k, v in d.items():
            if k == "config":
                continue
            out += _scalars(v, f"{prefix}{k}.")
    elif isinstance(d, list):
        out.append((prefix[:-1], json.dumps(d) if len(d) <= 8 else f"[{len(d)} entries]"))
    else:
        out.append((prefix[:-1], d))
    return out


def render_html(data: RunData, images: list[tuple[Path, str]]) -> str:
    """The whole page as a string."""
    rep = data.report
    status = ("<span class='ok'>complete</span>" if rep.get("complete") else
              f"<span class='bad'>{'interrupted' if rep.get('interrupted') else 'ended by an error'}</span>")
    err = f"<p class='bad'>{_e(rep['error'])}</p>" if rep.get("error") else ""
    live = ""
    if isinstance(rep.get("live"), dict):
        lv = rep["live"]
        live = "<h2>Live input</h2>" + _table([("frames received", lv.get("frames_received")),
                                                ("frames dropped (tracking behind)", lv.get("frames_dropped")),
                                                ("camera frames per second", lv.get("input_fps"))])
    figs = "".join(_image(p, alt) for p, alt in images)
    files = sorted(p.name for p in data.folder.iterdir() if p.is_file() and not p.name.startswith("."))
    # As a config file would say it (slam run CONFIG.yaml takes this text back).
    settings = yaml.safe_dump(rep.get("config", {}), sort_keys=False, default_flow_style=False)
    title = f"slam run: {rep.get('source', data.folder.name)}"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title><style>{_CSS}</style></head>
<body>
<h1>{_e(title)}</h1>
<p>{_e(rep.get('source_kind', ''))} source, {_e(rep.get('sensor', ''))} mode, resolution
{_e('x'.join(str(v) for v in rep.get('resolution', [])))}; run {status}. Folder: <code>{_e(data.folder)}</code></p>
{err}
<h2>Summary</h2>
{_table(summary_rows(rep, len(data.loops)))}
{live}
<h2>Plots</h2>
{figs or '<p>No plots (no trajectory).</p>'}
<h2>Loop closures</h2>
{_loops_table(data)}
{_timings(rep)}
<h2>All numbers (report.json)</h2>
<details><summary>{len(_scalars(rep))} values</summary>{_table(_scalars(rep), ("key", "value"))}</details>
<h2>Settings</h2>
<pre>{html.escape(settings, quote=False)}</pre>
<h2>Files</h2>
<p>{', '.join(f'<code>{_e(f)}</code>' for f in files)}</p>
</body></html>
"""
