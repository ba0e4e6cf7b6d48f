"""One study run: render a synthetic scene, run the pipeline deterministically, measure it.

`execute_run` is a pure function of its RunSpec (plus the machine's speed, which only the
`timing` entries see): tracking waits for bundle adjustment and loop closure, so the process
or cluster node that runs it does not change the numbers. Every PGO problem a loop-closing run
solved is solved again in each of the study's PGO precisions, from the same start.
"""

from __future__ import annotations

import copy
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from slam.study.spec import SENSOR_CONFIGS, RunSpec


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """base with over's keys replaced, section by section."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merge(out.get(k, {}), v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def run_config(run: RunSpec) -> dict[str, Any]:
    """The run configuration (as a mapping) of a study run."""
    from slam.config import RunConfig

    cfg = _merge(SENSOR_CONFIGS[run.sensor], yaml.safe_load(run.config) or {})
    cfg = _merge(cfg, {"source": {"seed": run.seed}, "odometry": {"precision": run.precision, "blocking": True}})
    if "loop" in RunConfig.__dataclass_fields__:
        cfg = _merge(cfg, {"loop": {"blocking": True, "precision": run.precision, "export_graphs": True}})
    return cfg


def execute_run(run: RunSpec, work: str | Path, keep_folder: bool = False) -> dict[str, Any]:
    """Run one study run in work/<id>/ and return its result (settings, numbers, timing)."""
    from slam.config import config_from_dict, source_options
    from slam.sources.open import open_source
    from slam.system import System

    out = Path(work) / run.id
    if out.exists():
        shutil.rmtree(out)  # a run interrupted earlier: start it again from nothing
    spec = f"synthetic:{run.scene}"
    cfg = config_from_dict(run_config(run), f"study run {run.id}")
    opts, stereo = source_options(cfg.source, spec)
    t0 = time.perf_counter()
    source = open_source(spec, opts, stereo=stereo)
    try:
        system = System(cfg, source, spec, out, max_frames=run.frames, progress=False, loop=run.loop)
        result = system.run()
    finally:
        source.close()
    wall = time.perf_counter() - t0
    if result.error is not None:
        raise RuntimeError(f"study run {run.id} failed: {result.error!r}") from result.error
    rep = result.report
    res: dict[str, Any] = {"id": run.id, "settings": run.as_dict(), "result": _numbers(rep),
                           "timing": _timing(rep, wall)}
    if run.loop:
        res["pgo"] = [solve_again(g, run, out) for g in sorted((out / "pose_graphs").glob("*.g2o"))]
    if not keep_folder:
        shutil.rmtree(out, ignore_errors=True)
    return res


def _numbers(rep: dict[str, Any]) -> dict[str, Any]:
    """The deterministic part of a run's report."""
    ate = rep.get("ate", {})
    loops = rep.get("loop_closure")
    return {
        "frames": rep["frames"], "frames_lost": rep["frames_lost"], "keyframes": rep["keyframes"],
        "landmarks": rep["landmarks"], "segments": rep["segments"],
        "ate_rmse": ate.get("rmse"), "ate_mean": ate.get("mean"), "ate_max": ate.get("max"),
        "ate_median": ate.get("median"), "ate_percent": ate.get("rmse_percent_of_path"),
        "path_length_m": ate.get("path_length_m"), "align": ate.get("align"), "scale": ate.get("scale"),
        "ate_error": ate.get("error"),
        "loops": loops.get("accepted", 0) if isinstance(loops, dict) else 0,
        "ba_solves": rep["ba"]["solves"], "ba_iterations_mean": rep["ba"]["iterations_mean"],
        "ba_cg_iterations_mean": rep["ba"]["cg_iterations_mean"],
    }


def _timing(rep: dict[str, Any], wall: float) -> dict[str, Any]:
    """Times of a run (machine-dependent, not compared between executors)."""
    ba = rep["ba"]
    return {"wall_s": wall, "fps": rep["fps"], "ba_solve_ms_mean": ba["solve_ms"].get("mean"),
            "ba_stage_ms": ba.get("stage_ms", {}), "tracking_ms_mean": rep["timings_ms"].get("frame", {}).get("mean")}


def solve_again(path: Path, run: RunSpec, out: Path) -> dict[str, Any]:
    """One PGO problem of a run solved in every PGO precision: cost, iterations, time, keyframe ATE."""
    from slam.eval.metrics import evaluate
    from slam.io.g2o import read_g2o
    from slam.io.trajectory import read_tum
    from slam.solvers.lm import SolverOptions, solve
    from slam.solvers.pgo import from_pose_graph

    graph = read_g2o(path)
    group = from_pose_graph(graph).group  # the file says: Sim(3) for monocular runs, else SE(3)
    gt = read_tum(out / "groundtruth.tum")
    kf = read_tum(out / "keyframes.tum")  # row k: keyframe k (vertex ids are keyframe ids)
    t = kf.timestamps[np.asarray(graph.ids)]
    gt_idx = np.clip(np.searchsorted(gt.timestamps, t - 1e-6), 0, len(gt.timestamps) - 1)
    ref = gt.poses[gt_idx]
    entry: dict[str, Any] = {"problem": path.name, "group": group, "keyframes": int(len(graph.poses)),
                             "edges": int(len(graph.edges)), "solves": {}}
    for prec in run.pgo_precisions:
        problem = from_pose_graph(graph, group=group)
        s = solve(problem, SolverOptions(precision=prec))
        try:
            ate = evaluate(ref, problem.poses, "sim3" if group == "sim3" else "se3").ate.rmse
        except Exception:  # a degenerate graph (e.g. all keyframes at one place): no alignment
            ate = None
        entry["solves"][prec] = {"initial_cost": s.initial_cost, "final_cost": s.final_cost,
                                 "iterations": s.iterations, "cg_iterations": s.total_linear_iterations,
                                 "termination": s.termination, "ate_rmse": ate,
                                 "timing": {"time_s": s.time_s, "stage_times_s": dict(s.stage_times)}}
    return entry
