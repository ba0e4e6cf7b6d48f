#!/usr/bin/env python3
"""GPU benchmark of the solvers: fp32 against mixed (fp64 for reference), linear solve and whole solve.

Problems: BA on BAL ladybug-49 (../shared/data/ba/problem-49-7776-pre.txt) and on recorded
sliding-window odometry problems (--windows FILE.npz, written once by --record-windows from a
deterministic synthetic stereo run); PGO on sphere2500 and parking-garage (../shared/data/pgo) and
on generated loop-closure graphs (noisy multi-lap loop trajectories, see loop_graph()).

Timing: every case is solved once to warm up (kernel compilation, cuSPARSE handles, memory pool;
excluded), then --repeat times, each on a freshly built problem (building is not timed), and the
median is reported. The whole solve is timed on the host clock between two device
synchronizations; the linear solve is the LM driver's 'linear_solve' stage, whose spans also
synchronize on the GPU. Savings of mixed over fp32 are 1 - t_mixed / t_fp32, set against the
article's >= 41% (BA linear solve) and 26% (PGO).

    python scripts/bench_gpu.py [--backend cupy|numpy|auto] [--repeat 3] [--precisions fp64,fp32,mixed]
                                [--cases ladybug-49,windows,sphere2500,parking-garage,loop-2000,loop-10000,
                                         sphere2500-jacobi,ba-linear-500k,ba-linear-4000k]
                                [--windows FILE.npz] [--out DIR] [--quick]
    python scripts/bench_gpu.py --record-windows FILE.npz [--record-count 8]

Results are appended to DIR/bench_gpu.json as each case finishes (a case that fails is recorded
with its error and the run goes on); the table is printed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from slam.geometry import lie  # noqa: E402
from slam.solvers.backend import Backend, get_backend  # noqa: E402
from slam.solvers.lm import SolverOptions, solve  # noqa: E402
from slam.solvers.pgo import PoseGraphProblem  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
ARTICLE = {"ba_linear": 0.41, "pgo": 0.26}  # savings of mixed over fp32 the article reports
ALL_CASES = ("ladybug-49", "windows", "sphere2500", "parking-garage", "loop-2000", "loop-10000",
             "sphere2500-jacobi", "ba-linear-500k", "ba-linear-4000k")


# ----------------------------------------------------------------------------------- problems

def loop_graph(n: int, laps: int = 5, seed: int = 0, sigma_rot: float = 0.01,
               sigma_trans: float = 0.05) -> PoseGraphProblem:
    """SE(3) pose graph of a noisy loop trajectory: `laps` laps of a circle of radius 20 m rising
    0.5 m a lap, odometry edges between consecutive poses and a loop-closure edge from every
    fourth pose of a later lap to the pose at the same place one lap before; measurements are the
    true relative poses perturbed by Exp(noise) and weighted by the inverse noise variances; the
    initial estimate chains the noisy odometry (so it drifts, as a front end's would)."""
    rng = np.random.default_rng(seed)
    per_lap = n // laps
    s = np.arange(n) / per_lap
    ang = 2 * np.pi * s
    T = np.tile(np.eye(4), (n, 1, 1))
    T[:, 0, 3], T[:, 1, 3], T[:, 2, 3] = 20 * np.cos(ang), 20 * np.sin(ang), 0.5 * s
    yaw = ang + np.pi / 2
    T[:, :3, :3] = lie.so3_exp(np.column_stack([np.zeros(n), np.zeros(n), yaw]))
    odo = np.column_stack([np.arange(n - 1), np.arange(1, n)])
    later = np.arange(per_lap, n, 4)
    loops = np.column_stack([later - per_lap, later])
    edges = np.concatenate([odo, loops])
    sig = np.array([sigma_rot] * 3 + [sigma_trans] * 3)  # slam.geometry.lie tangent order: [w, v]
    noise = rng.normal(size=(len(edges), 6)) * sig
    Z = lie.se3_inverse(T[edges[:, 0]]) @ T[edges[:, 1]] @ lie.se3_exp(noise)
    info = np.tile(np.diag(1.0 / sig ** 2), (len(edges), 1, 1))
    X = np.empty_like(T)
    X[0] = T[0]
    for k in range(n - 1):  # chain the noisy odometry: the drifting initial estimate
        X[k + 1] = X[k] @ Z[k]
    return PoseGraphProblem(X, edges, Z, info)


def synthetic_ba(n_obs: int, per_point: int = 8, n_cams: int = 1000, seed: int = 0) -> Any:
    """A large BAL-convention BA problem: points in a cube seen by `per_point` random cameras each
    (0.5 px noise on the true projections, start perturbed); for the linear-solve scaling case."""
    from slam.solvers.ba import BundleAdjustmentProblem

    rng = np.random.default_rng(seed)
    P = max(n_obs // per_point, 1)
    X = rng.uniform(-1.0, 1.0, size=(P, 3))
    w = rng.normal(scale=0.15, size=(n_cams, 3))
    t = np.column_stack([rng.normal(scale=0.5, size=(n_cams, 2)), np.full(n_cams, -6.0)])
    k = np.column_stack([rng.uniform(400, 600, n_cams), np.full(n_cams, -0.3), np.full(n_cams, 0.2)])
    ci = rng.integers(0, n_cams, P * per_point)
    pi = np.repeat(np.arange(P), per_point)
    truth = BundleAdjustmentProblem((w, t), X, ci, pi, np.zeros((ci.size, 2)), k, projection="bal")
    obs = truth.residuals() + rng.normal(scale=0.5, size=(ci.size, 2))
    p = BundleAdjustmentProblem((w, t), X + rng.normal(scale=0.02, size=X.shape), ci, pi, obs, k, projection="bal")
    return p


def bench_linear(name: str, n_obs: int, precisions: list[str], be: Backend, repeat: int,
                 iterations: int = 30, lam: float = 1e-3) -> dict[str, Any]:
    """The BA linear solve alone at scale: one linearization of synthetic_ba(n_obs), then CGNR with
    block Jacobi for a fixed number of iterations (tol 0), and the product (J^T J + lam I) p alone;
    median of `repeat` timed runs after a warm-up, per precision."""
    from slam.solvers import lm as lm_mod
    from slam.solvers.cgnr import ScaledSystem, cgnr
    from slam.solvers.precision import get_policy
    from slam.solvers.precond import BlockJacobi, block_diagonal

    prob = synthetic_ba(n_obs)
    out: dict[str, Any] = {"case": name, "observations": n_obs, "unknowns": prob.n_params, "results": {}}
    for prec in [p for p in precisions if p != "fp64"]:
        pol = get_policy(prec)
        lin = lm_mod._linearize(prob, pol, be, True, lm_mod._Transposer())
        out["nnz"] = int(lin.J_hi.nnz)
        pre = BlockJacobi(block_diagonal(lin.J_hi, prob.groups), prob.groups, lam, be, pol.vector)
        sysm = ScaledSystem(be, lin.J_hi, lin.J_mv, lin.J_mv_T, lin.rhs, lam, pol.matvec, pol.vector)
        p = be.asarray(np.random.default_rng(1).normal(size=prob.n_params).astype(pol.vector))

        def timed(f: Callable[[], Any], n: int) -> list[float]:
            f()  # warm-up
            ts = []
            for _ in range(n):
                be.synchronize()
                t0 = time.perf_counter()
                f()
                be.synchronize()
                ts.append(time.perf_counter() - t0)
            return ts
        res_box: list[Any] = []
        cg = timed(lambda: res_box.append(cgnr(sysm, pre, tol=0.0, maxiter=iterations)), repeat)
        mv = timed(lambda: [sysm.normal_matvec(p) for _ in range(10)], repeat)
        its = res_box[-1].iterations
        out["results"][prec] = {"linear_s": float(np.median(cg)), "linear_all_s": cg, "cg_iterations": its,
                                "ms_per_cg_iteration": 1e3 * float(np.median(cg)) / max(its, 1),
                                "matvec_ms": 1e2 * float(np.median(mv)), "whole_s": float(np.median(cg)),
                                "final_cost": float("nan"), "lm_iterations": 0,
                                "precision": {**pol.as_dict(), "emulated_stages": be.emulated_stages(pol)}}
        print(f"  {name:15s} {prec:6s} CG {its} its {out['results'][prec]['ms_per_cg_iteration']:.3f} ms/it, "
              f"(J^T J + lam I) p {out['results'][prec]['matvec_ms']:.3f} ms", flush=True)
    r = out["results"]
    if "fp32" in r and "mixed" in r:
        out["saving_linear"] = 1.0 - r["mixed"]["ms_per_cg_iteration"] / r["fp32"]["ms_per_cg_iteration"]
        out["saving_whole"] = out["saving_linear"]
        out["saving_matvec"] = 1.0 - r["mixed"]["matvec_ms"] / r["fp32"]["matvec_ms"]
    return out


def _g2o(name: str) -> Callable[[], Any]:
    def build() -> Any:
        from slam.io.g2o import read_g2o
        from slam.solvers.pgo import from_pose_graph

        return from_pose_graph(read_g2o(DATA / "pgo" / f"{name}.g2o"))
    return build


def _bal(name: str) -> Callable[[], Any]:
    def build() -> Any:
        from slam.io.bal import read_bal
        from slam.solvers import ba

        return ba.from_bal(read_bal(DATA / "ba" / name))
    return build


def _pgo_options(precision: str, backend: str) -> SolverOptions:
    return SolverOptions(precision=precision, backend=backend)


def _pgo_jacobi_options(precision: str, backend: str) -> SolverOptions:
    """PGO with block Jacobi instead of the static IC(0): no triangular solves, many more CG iterations."""
    return SolverOptions(precision=precision, backend=backend, preconditioner="jacobi", cg_max_iterations=2000)


def _ba_options(precision: str, backend: str) -> SolverOptions:
    from slam.solvers import ba

    return ba.default_options(precision, backend=backend)


def record_windows(path: Path, count: int, window: int = 20) -> None:
    """Record `count` full sliding-window BA problems from a deterministic synthetic stereo run into path (npz)."""
    import tempfile

    from slam.config import load_config, source_options
    from slam.sources.open import open_source
    from slam.system import System

    spec, cfg_path = "synthetic:room_loop", ROOT / "configs" / "synthetic.yaml"
    cfg = load_config(cfg_path)
    cfg.odometry.blocking = True
    cfg.odometry.window = window
    problems: list[Any] = []
    opts, stereo = source_options(cfg.source, spec)
    src = open_source(spec, opts, stereo=stereo)
    try:
        K, baseline = src.calibration.camera.K, float(src.calibration.baseline or 0.0)
        with tempfile.TemporaryDirectory() as tmp:
            system = System(cfg, src, spec, Path(tmp), precision="fp64", progress=False)
            system.worker.observer = problems.append
            system.run()
    finally:
        src.close()
    full = [p for p in problems if p.n_window == window]
    sel = full[:: max(1, len(full) // count)][:count]
    arrays: dict[str, np.ndarray] = {"K": K, "baseline": np.float64(baseline), "n": np.int64(len(sel)),
                                     "config": np.array(str(cfg_path.relative_to(ROOT)))}
    for i, p in enumerate(sel):
        for f in ("T_cw", "points", "cam", "pt", "uv", "ur", "fixed"):
            arrays[f"{i}_{f}"] = getattr(p, f)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    print(f"recorded {len(sel)} of {len(full)} full {window}-keyframe windows "
          f"({np.median([len(p.cam) for p in sel]):.0f} observations median) -> {path}")


def _windows(path: Path) -> tuple[list[Callable[[], Any]], Callable[[str, str], SolverOptions]]:
    """Builders of the recorded window problems and their solver options (the odometry config's)."""
    from slam.config import load_config
    from slam.odometry.rig_ba import StereoBundleAdjustment
    from slam.odometry.window import solver_options

    z = np.load(path)
    cfg = load_config(ROOT / str(z["config"])).odometry
    K, b = z["K"], float(z["baseline"])
    builders = []
    for i in range(int(z["n"])):
        w = {f: z[f"{i}_{f}"] for f in ("T_cw", "points", "cam", "pt", "uv", "ur", "fixed")}
        builders.append(lambda w=w: StereoBundleAdjustment(w["T_cw"], w["points"], w["cam"], w["pt"], w["uv"],
                                                           w["ur"], K, b, w["fixed"], loss=cfg.loss,
                                                           loss_scale=cfg.loss_scale))

    def options(precision: str, backend: str) -> SolverOptions:
        o = solver_options(cfg, precision)
        o.backend = backend
        return o
    return builders, options


# ----------------------------------------------------------------------------------- timing

def _timed(builders: list[Callable[[], Any]], options: Callable[[str, str], SolverOptions], precision: str,
           be: Backend) -> dict[str, Any]:
    """Solve every problem of the case once; whole time between device synchronizations, summed over problems."""
    whole = lin = 0.0
    costs, its, cg = [], 0, 0
    for build in builders:
        prob = build()
        be.synchronize()
        t0 = time.perf_counter()
        s = solve(prob, options(precision, be.name))
        be.synchronize()
        whole += time.perf_counter() - t0
        lin += s.stage_times["linear_solve"]
        costs.append(s.final_cost)
        its += s.iterations
        cg += s.total_linear_iterations
    return {"whole_s": whole, "linear_s": lin, "final_cost": float(np.sum(costs)), "lm_iterations": its,
            "cg_iterations": cg, "stages_s": dict(s.stage_times), "termination": s.termination,
            "precision": s.precision}


def bench_case(name: str, builders: list[Callable[[], Any]], options: Callable[[str, str], SolverOptions],
               precisions: list[str], be: Backend, repeat: int, reference_repeat: int = 1) -> dict[str, Any]:
    """Warm-up plus `repeat` timed solves per precision (fp64, the reference: `reference_repeat`);
    medians, and savings of mixed over fp32."""
    out: dict[str, Any] = {"case": name, "problems": len(builders), "results": {}}
    for prec in precisions:
        _timed(builders, options, prec, be)  # warm-up: compilation, handles, pools
        runs = [_timed(builders, options, prec, be) for _ in range(reference_repeat if prec == "fp64" else repeat)]
        med = {k: float(np.median([r[k] for r in runs])) for k in ("whole_s", "linear_s")}
        out["results"][prec] = {**runs[-1], **med, "whole_all_s": [r["whole_s"] for r in runs],
                                "linear_all_s": [r["linear_s"] for r in runs]}
        print(f"  {name:15s} {prec:6s} whole {med['whole_s']:8.3f} s  linear {med['linear_s']:8.3f} s  "
              f"cost {runs[-1]['final_cost']:.6e}  LM {runs[-1]['lm_iterations']}  CG {runs[-1]['cg_iterations']}",
              flush=True)
    r = out["results"]
    if "fp32" in r and "mixed" in r:
        out["saving_linear"] = 1.0 - r["mixed"]["linear_s"] / r["fp32"]["linear_s"]
        out["saving_whole"] = 1.0 - r["mixed"]["whole_s"] / r["fp32"]["whole_s"]
    if "fp64" in r:
        for prec in r:
            r[prec]["cost_gap_to_fp64"] = r[prec]["final_cost"] / r["fp64"]["final_cost"] - 1.0
    return out


def device_info(be: Backend) -> dict[str, Any]:
    """GPU model, CuPy and CUDA versions (or the host CPU on NumPy), and the load next to the times."""
    info: dict[str, Any] = {"backend": be.name, "host": platform.node(), "cpus": os.cpu_count(),
                            "loadavg": os.getloadavg(), "python": platform.python_version(),
                            "numpy": np.__version__}
    if be.name == "cupy":
        import cupy

        try:
            props = cupy.cuda.runtime.getDeviceProperties(0)
            info.update(gpu=props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"]),
                        cupy=cupy.__version__, cuda_runtime=cupy.cuda.runtime.runtimeGetVersion(),
                        cuda_driver=cupy.cuda.runtime.driverGetVersion(),
                        gpu_memory_gib=props["totalGlobalMem"] / 2**30)
        except Exception as exc:  # the numbers matter more than the label
            info["gpu_info_error"] = f"{type(exc).__name__}: {exc}"
    else:
        info["cpu"] = platform.processor() or platform.machine()
    return info


def _cases(names: list[str], windows: Path | None, quick: bool) -> dict[str, tuple[list, Callable]]:
    cases: dict[str, tuple[list, Callable]] = {}
    for name in names:
        if name == "ladybug-49":
            cases[name] = ([_bal("problem-49-7776-pre.txt")], _ba_options)
        elif name == "windows":
            if windows is None or not windows.is_file():
                raise FileNotFoundError(f"case 'windows' needs --windows FILE.npz (written by --record-windows); "
                                        f"got {windows}")
            b, o = _windows(windows)
            cases[name] = (b[:2] if quick else b, o)
        elif name in ("sphere2500", "parking-garage", "smallGrid3D"):
            cases[name] = ([_g2o(name)], _pgo_options)
        elif name.endswith("-jacobi") and name[:-7] in ("sphere2500", "parking-garage", "smallGrid3D"):
            cases[name] = ([_g2o(name[:-7])], _pgo_jacobi_options)
        elif name.startswith("loop-"):
            n = int(name.split("-", 1)[1])
            cases[name] = ([lambda n=n: loop_graph(n)], _pgo_options)
        else:
            raise ValueError(f"unknown case '{name}'; choose from {', '.join(ALL_CASES)}")
    return cases


def _table(results: list[dict[str, Any]]) -> str:
    lines = ["| case | precision | whole s | linear s | final cost | gap to fp64 | LM | CG |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for c in results:
        if "error" in c:
            lines.append(f"| {c['case']} | FAILED: {c['error'][:80]} | | | | | | |")
            continue
        for prec, r in c["results"].items():
            gap = r.get("cost_gap_to_fp64")
            lines.append(f"| {c['case']} | {prec} | {r['whole_s']:.3f} | {r['linear_s']:.3f} | {r['final_cost']:.6e} | "
                         f"{'' if gap is None else f'{gap:+.1e}'} | {r['lm_iterations']} | {r['cg_iterations']} |")
    lines += ["", "| case | saving linear solve (mixed vs fp32) | saving whole solve | saving (J^T J + lam I) p "
                  "| article |", "| --- | ---: | ---: | ---: | --- |"]
    for c in results:
        if "saving_linear" in c:
            art = ">= 41% (BA linear solve)" if c["kind"] == "ba" else "26% (PGO)"
            mv = f"{100 * c['saving_matvec']:+.1f}%" if "saving_matvec" in c else ""
            lines.append(f"| {c['case']} | {100 * c['saving_linear']:+.1f}% | {100 * c['saving_whole']:+.1f}% "
                         f"| {mv} | {art} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backend", default="cupy", choices=["cupy", "numpy", "auto"])
    ap.add_argument("--repeat", type=int, default=3, help="timed solves per case for fp32 and mixed (median)")
    ap.add_argument("--reference-repeat", type=int, default=1, help="timed solves per case for fp64")
    ap.add_argument("--precisions", default="fp64,fp32,mixed")
    ap.add_argument("--cases", default=",".join(ALL_CASES))
    ap.add_argument("--windows", type=Path, default=None, help="recorded odometry windows (.npz)")
    ap.add_argument("--out", type=Path, default=Path("bench_gpu_out"))
    ap.add_argument("--quick", action="store_true", help="two windows, no loop-10000 nor ba-linear-4000k")
    ap.add_argument("--record-windows", type=Path, default=None, help="record odometry windows to this .npz and exit")
    ap.add_argument("--record-count", type=int, default=8)
    args = ap.parse_args(argv)
    if args.record_windows is not None:
        record_windows(args.record_windows, args.record_count)
        return 0
    if args.repeat < 1 or args.reference_repeat < 1:
        ap.error("--repeat and --reference-repeat must be at least 1")
    be = get_backend(args.backend)
    names = [c for c in args.cases.split(",") if c]
    if args.quick:
        names = [c for c in names if c not in ("loop-10000", "ba-linear-4000k")]
    precisions = [p for p in args.precisions.split(",") if p]
    info = device_info(be)
    print(f"backend {be.name}: " + ", ".join(f"{k} {v}" for k, v in info.items() if k in ("gpu", "cupy", "cuda_runtime",
                                                                                           "cpus", "loadavg")),
          flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "bench_gpu.json"
    doc: dict[str, Any] = {"device": info, "article_savings": ARTICLE, "repeat": args.repeat,
                           "reference_repeat": args.reference_repeat, "argv": sys.argv[1:],
                           "timing": "median of repeat solves after one warm-up; whole solve between device "
                                     "synchronizations, linear solve = LM 'linear_solve' stage (synchronized spans)",
                           "cases": []}
    for name in names:
        t0 = time.perf_counter()
        try:
            if name.startswith("ba-linear-"):  # ba-linear-<thousands of observations>k
                res = bench_linear(name, 1000 * int(name[len("ba-linear-"):].rstrip("k")), precisions, be,
                                   max(args.repeat, 3))
            else:
                builders, options = _cases([name], args.windows, args.quick)[name]
                res = bench_case(name, builders, options, precisions, be, args.repeat, args.reference_repeat)
        except Exception as exc:  # one failing case must not lose the others
            traceback.print_exc()
            res = {"case": name, "error": f"{type(exc).__name__}: {exc}"}
        res["kind"] = "ba" if name in ("ladybug-49", "windows") or name.startswith("ba-") else "pgo"
        res["bench_s"] = time.perf_counter() - t0
        doc["cases"].append(res)
        path.write_text(json.dumps(doc, indent=1, default=str))
    table = _table(doc["cases"])
    (args.out / "bench_gpu.md").write_text(table + "\n")
    print("\n" + table)
    return 0 if all("error" not in c for c in doc["cases"]) else 1


if __name__ == "__main__":
    sys.exit(main())
