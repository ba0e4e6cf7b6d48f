"""A study's results as the article's distributions and tables (pure: dicts and arrays in, dicts out)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

PREC_ORDER = ("fp64", "fp32", "mixed", "fp16")


def _stats(x: list[float]) -> dict[str, float | int | None]:
    """max, 99th and 90th percentile, mean and count of finite values."""
    a = np.asarray([v for v in x if v is not None and np.isfinite(v)], float)
    if a.size == 0:
        return {"count": 0, "max": None, "p99": None, "p90": None, "mean": None}
    return {"count": int(a.size), "max": float(a.max()), "p99": float(np.percentile(a, 99)),
            "p90": float(np.percentile(a, 90)), "mean": float(a.mean())}


def _key(settings: dict[str, Any], *drop: str) -> tuple:
    return tuple((k, settings[k]) for k in ("scene", "sensor", "seed", "precision", "loop", "frames") if k not in drop)


def odometry(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Odometry runs (no loop closure): ATE per precision, and each precision against fp64 on the same rendering.

    The histograms hold the renderings run in every odometry precision of the study, so that each
    curve is over the same trajectories; runs in some precisions only (e.g. the mixed-precision
    partners of loop-closing runs) are counted as `left_out`.
    """
    vo = [r for r in results if not r["settings"]["loop"]]
    by_rendering: dict[tuple, dict[str, dict[str, Any]]] = defaultdict(dict)
    for r in vo:
        by_rendering[_key(r["settings"], "precision")][r["settings"]["precision"]] = r
    all_precs = {r["settings"]["precision"] for r in vo}
    complete = [g for g in by_rendering.values() if set(g) == all_precs]
    ate: dict[str, list[float]] = defaultdict(list)
    lost: dict[str, int] = defaultdict(int)
    rel: dict[str, list[float]] = defaultdict(list)
    for g in complete:
        a64 = g["fp64"]["result"]["ate_rmse"] if "fp64" in g else None
        for p, r in g.items():
            a = r["result"]["ate_rmse"]
            ate[p].append(a if a is not None else np.nan)
            lost[p] += r["result"]["frames_lost"]
            if p != "fp64" and a is not None and a64:
                rel[p].append(a / a64 - 1.0)
    precs = [p for p in PREC_ORDER if p in ate]
    n = sum(len(g) for g in complete)
    return {"precisions": precs, "ate": {p: ate[p] for p in precs}, "ate_stats": {p: _stats(ate[p]) for p in precs},
            "relative_to_fp64": {p: rel[p] for p in precs if p in rel},
            "relative_stats": {p: _stats(np.abs(rel[p]).tolist()) for p in precs if p in rel},
            "frames_lost": dict(lost), "trajectories": n, "renderings": len(complete), "left_out": len(vo) - n}


def pgo(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Every PGO problem of every loop-closing run: cost gap to fp64, ATE and time per precision."""
    gap: dict[str, list[float]] = defaultdict(list)
    ate: dict[str, list[float]] = defaultdict(list)
    time_kf: dict[str, list[tuple[int, float]]] = defaultdict(list)
    stage: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    to32: dict[str, list[float]] = defaultdict(list)  # time / fp32's time on the same problem
    n = 0
    groups: dict[str, int] = defaultdict(int)
    for r in results:
        for prob in r.get("pgo", []):
            n += 1
            groups[prob.get("group", "se3")] += 1  # results written before Sim(3) export: SE(3) only
            s = prob["solves"]
            c64 = s.get("fp64", {}).get("final_cost")
            t32 = s.get("fp32", {}).get("timing", {}).get("time_s")
            for p, v in s.items():
                if c64 is not None and p != "fp64":
                    gap[p].append((v["final_cost"] - c64) / max(abs(c64), 1e-300))
                ate[p].append(v["ate_rmse"] if v["ate_rmse"] is not None else np.nan)
                time_kf[p].append((prob["keyframes"], v["timing"]["time_s"]))
                for name, sec in (v["timing"].get("stage_times_s") or {}).items():
                    stage[p][name].append(sec)
                if t32 and p != "fp32":
                    to32[p].append(v["timing"]["time_s"] / t32)
    precs = [p for p in PREC_ORDER if p in ate]
    return {"problems": n, "problems_by_group": dict(groups), "precisions": precs, "cost_gap": dict(gap), "ate": dict(ate),
            "cost_gap_stats": {p: _stats(np.abs(g).tolist()) for p, g in gap.items()},
            "ate_stats": {p: _stats(ate[p]) for p in precs},
            "time_vs_keyframes": {p: time_kf[p] for p in precs},
            "time_stats": {p: _stats([t for _, t in time_kf[p]]) for p in precs},
            "time_total_s": {p: float(sum(t for _, t in time_kf[p])) for p in precs},
            "time_relative_to_fp32": {p: to32[p] for p in precs if p in to32},
            "stage_s_mean": {p: {k: float(np.mean(v)) for k, v in stage[p].items()} for p in precs if p in stage}}


def loop_table(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The article's table: ATE RMSE of each run without and with loop closure (same rendering, precision)."""
    by_loop: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for r in results:
        by_loop[_key(r["settings"], "loop")].append(r)
    without, with_lc, pairs = [], [], []
    for r in results:
        k = _key(r["settings"], "loop")
        if r["settings"]["loop"]:
            continue
        twin = next((x for x in by_loop.get(k, []) if x["settings"]["loop"]), None)
        if twin is None:
            continue
        a0, a1 = r["result"]["ate_rmse"], twin["result"]["ate_rmse"]
        without.append(a0)
        with_lc.append(a1)
        pairs.append({"run": r["id"], "without": a0, "with": a1, "loops": twin["result"]["loops"],
                      "path_length_m": r["result"]["path_length_m"]})
    return {"pairs": pairs, "without": _stats(without), "with": _stats(with_lc)}


def stage_times(results: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean window-BA time per stage (ms per solve) for each precision."""
    acc: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in results:
        for stage, ms in (r["timing"].get("ba_stage_ms") or {}).items():
            acc[r["settings"]["precision"]][stage].append(ms)
    return {p: {s: float(np.mean(v)) for s, v in acc[p].items()} for p in PREC_ORDER if p in acc}


def summarize(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Everything the report shows."""
    return {"odometry": odometry(results), "pgo": pgo(results), "loop_closure": loop_table(results),
            "ba_stage_ms": stage_times(results)}
