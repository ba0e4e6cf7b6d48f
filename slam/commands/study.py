"""`slam study STUDY.yaml --out DIR`: many deterministic runs across precisions, summarized as distributions.

Runs execute in a local process pool (`--workers N`) or on a Dask cluster (`--dask ADDRESS`,
`--dask local` starts a LocalCluster); finished runs are kept in OUT/runs/ and not redone.
OUT gets study.json (every run's settings and results), the histograms, and report.html.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

# The built-in small study: one loop, every precision without loop closure, mixed with it (~2 min on 2 cores).
QUICK = {"name": "quick", "scenes": ["room_loop"], "sensors": ["stereo"], "seeds": [0],
         "precisions": ["fp64", "fp32", "mixed", "fp16"], "loop": [False, True], "loop_precisions": ["mixed"],
         "frames": None, "pgo_precisions": ["fp64", "fp32", "mixed"]}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `slam study`."""
    parser.add_argument("study", nargs="?", metavar="STUDY.yaml", help="study file (see configs/study/*.yaml)")
    parser.add_argument("--quick", action="store_true", help="the built-in small study (a few minutes)")
    parser.add_argument("--out", default="runs/study", help="output folder (default runs/study)")
    parser.add_argument("--workers", type=int, default=2, help="parallel runs (default 2)")
    parser.add_argument("--dask", metavar="ADDRESS", help="run on a Dask scheduler at ADDRESS, or 'local' for a LocalCluster")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")


def run(args: argparse.Namespace) -> int:
    """Load the study, execute what is not done, analyse, write the outputs."""
    from slam.errors import InputError
    from slam.io.text import write_text_atomic
    from slam.study.analysis import summarize
    from slam.study.executors import run_all
    from slam.study.report import write_figures, write_html
    from slam.study.spec import load_study, study_from_dict

    if (args.study is None) == (not args.quick):
        raise InputError("give a study file or --quick (not both)")
    if args.workers < 1:
        raise InputError(f"--workers must be at least 1, got {args.workers}")
    spec = study_from_dict(QUICK, "--quick") if args.quick else load_study(args.study)
    out = Path(args.out)
    runs = spec.runs()
    print(f"slam study: {spec.name}: {len(runs)} runs -> {out}", file=sys.stderr)
    results, errors = run_all(runs, out, workers=args.workers, dask=args.dask, progress=not args.quiet)
    ordered = [results[r.id] for r in runs if r.id in results]
    summary = summarize(ordered)
    study = {"name": spec.name, "spec": dataclasses.asdict(spec), "runs_total": len(runs),
             "runs_failed": len(errors), "errors": errors,
             "executor": f"dask {args.dask}" if args.dask else f"process pool ({args.workers})"}
    write_text_atomic(out / "study.json", json.dumps({**study, "summary": summary, "runs": ordered},
                                                     indent=1, sort_keys=True) + "\n")
    figures = write_figures(summary, out)
    page = write_html(summary, study, figures, out)
    odo = summary["odometry"]
    if odo.get("left_out"):
        print(f"slam study: {odo['left_out']} odometry runs left out of the histograms: their rendering was not run "
              f"(or did not finish) in every precision; {odo['renderings']} renderings were", file=sys.stderr)
    for p, s in odo["ate_stats"].items():
        rel = odo["relative_stats"].get(p)
        extra = f", |ATE/ATE(fp64)-1| mean {rel['mean']:.2e} max {rel['max']:.2e}" if rel and rel["count"] else ""
        print(f"slam study: odometry {p}: {s['count']} runs, ATE mean {s['mean']:.4g} m, max {s['max']:.4g} m{extra}"
              if s["count"] else f"slam study: odometry {p}: no runs")
    if summary["pgo"]["problems"]:
        print(f"slam study: {summary['pgo']['problems']} PGO problems re-solved in "
              f"{', '.join(summary['pgo']['precisions'])}")
    print(f"slam study: wrote {out / 'study.json'} and {page}")
    if errors:
        for k, e in errors.items():
            print(f"slam study: run {k} failed: {e}", file=sys.stderr)
        return 1
    return 0
