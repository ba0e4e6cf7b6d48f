"""Peer solvers that our PGO and BA are judged against: GTSAM Levenberg-Marquardt and Ceres via pycolmap.

Both peers are optional (extras `test` / `bench`) and imported inside the functions, so this module
imports without them. Costs follow the GTSAM/Ceres convention 1/2 sum e^T Omega e.

GTSAM's BetweenFactor<Pose3> error is e = Pose3::Logmap(Z_ij^-1 X_i^-1 X_j) in the order
[rotation, translation] (the full SE(3) log, translation part V^-1 t, not the raw translation).

BAL through COLMAP: P = R X + t, p = -P.xy / P.z is mapped onto COLMAP's +z camera by
cam_from_world = diag(1,-1,-1) [R|t] (a proper rotation), model RADIAL (f, 0, 0, k1, k2) with the
principal point held, observations (u, -v); then COLMAP's residual is exactly (r_u, -r_v).
COLMAP 4.x gives a residual (and Jacobian) of zero to an observation whose point has camera depth
below machine epsilon (ImgFromCam fails the cheirality check). BAL projections are blind to the sign of
P.z, so BAL files hold observations of points behind the camera that still reproject well (31 of 31843
in problem-49-7776-pre); they are passed to COLMAP, but Ceres does not see them. The reported Ceres
costs are over the observations COLMAP evaluates; `bal_final_cost` is the full BAL cost.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy.spatial.transform import Rotation

from slam.errors import InputError, ProblemError
from slam.geometry import lie
from slam.io.bal import BALProblem, bal_project, read_bal
from slam.io.g2o import read_g2o, read_sim3_vertices, write_g2o
from slam.io.g2o_planar import PLANAR_TOLERANCE, flatten_poses, lift_poses, off_plane
from slam.solvers.pgo import gauge_vertices

# BAL looks down -z with y up; COLMAP looks down +z with y down. Rotation by pi about x.
_FLIP = np.diag([1.0, -1.0, -1.0])
# Ceres's own Solver::Options defaults; COLMAP replaces them (function and parameter tolerance 0,
# gradient 1e-4), so they are set back to compare with Ceres as users run it.
_CERES_TOLERANCES = {"function_tolerance": 1e-6, "gradient_tolerance": 1e-10, "parameter_tolerance": 1e-8}


def _import(name: str) -> Any:
    """Import an optional peer, saying which extra provides it when it is missing."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError as e:
        raise ImportError(f"the peer '{name}' is not installed: pip install 'slam[bench]' ({e})") from e


# ---------------------------------------------------------------- GTSAM pose-graph optimization


def _gtsam_read(gtsam: Any, path: str | Path, ours: Any) -> tuple[Any, Any]:
    """gtsam.readG2o of a graph file; a 2-D graph is handed over as our own g2o EDGE_SE2 copy.

    GTSAM reads a 2-D file's six information entries in g2o's order whatever the tag, so a TORO
    EDGE2 file would be a different problem there (or refused): the copy (write_g2o, exact x, y and
    information) is the same graph in the dialect GTSAM reads right.
    """
    if ours.sim3:
        return _gtsam_sim3_graph(gtsam, ours)
    if not ours.planar:
        return gtsam.readG2o(str(path), True)
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "graph_se2.g2o"
        write_g2o(copy, ours)
        return gtsam.readG2o(str(copy), False)


def _gtsam_sim3_graph(gtsam: Any, ours: Any) -> tuple[Any, Any]:
    """(between factors, initial values) of a Sim(3) graph: GTSAM reads no Sim(3) g2o, so the graph
    our reader parsed becomes BetweenFactorSimilarity3 factors. GTSAM's Similarity3(R, t, s) is the
    matrix [[R, t], [0, 1/s]], the same similarity as our [[s R, s t], [0, 1]], and its Logmap
    [w, u, lambda] equals our sim3_log [w, v, sigma] (tests/unit/test_g2o_sim3.py checks both, and
    the factor's error against our residual)."""
    graph = gtsam.NonlinearFactorGraph()
    Z = _similarities(gtsam, ours.measurements)
    for (i, j), z, info in zip(ours.ids[ours.edges].tolist(), Z, ours.information):
        graph.add(gtsam.BetweenFactorSimilarity3(i, j, z, gtsam.noiseModel.Gaussian.Information(info)))
    values = gtsam.Values()
    for k, S in zip(ours.ids.tolist(), _similarities(gtsam, ours.poses)):
        values.insert(k, S)
    return graph, values


def _similarities(gtsam: Any, S: np.ndarray) -> list[Any]:
    """GTSAM Similarity3 of each (N,4,4) [[s R, t], [0, 1]]."""
    s, R, t = lie.sRt(np.asarray(S, dtype=np.float64))
    return [gtsam.Similarity3(gtsam.Rot3(r), ti / si, si) for si, r, ti in zip(s.tolist(), R, t)]


def _poses_of(values: Any, ids: np.ndarray, planar: bool = False, sim3: bool = False) -> np.ndarray:
    """(N,4,4) poses of `values` (Pose3, Pose2 lifted to the plane z = 0, or Similarity3 as
    [[s R, t], [0, 1]]) in the order of `ids`."""
    gtsam = _import("gtsam")
    if sim3:
        M = np.stack([values.atSimilarity3(int(k)).matrix() for k in ids])  # [[R, t'], [0, 1/s]]
        return M / M[:, 3:4, 3:4]
    keys = np.asarray(values.keys(), dtype=np.int64)
    order = np.argsort(keys)
    at = order[np.searchsorted(keys, ids, sorter=order)]
    if planar:
        return lift_poses(gtsam.utilities.extractPose2(values)[at])  # (K,3): x, y, theta
    rows = gtsam.utilities.extractPose3(values)  # (K,12): R row-major, t; in sorted key order
    poses = np.zeros((len(ids), 4, 4))
    poses[:, :3, :3] = rows[at, :9].reshape(-1, 3, 3)
    poses[:, :3, 3] = rows[at, 9:]
    poses[:, 3, 3] = 1.0
    return poses


def gtsam_pgo(g2o_path: str | Path, max_iterations: int = 100, relative_error_tol: float = 1e-5,
              absolute_error_tol: float = 1e-5, initialize: bool = False) -> dict[str, Any]:
    """Optimize a g2o pose graph with GTSAM Levenberg-Marquardt; costs over the between factors.

    2-D files are solved as GTSAM reads them, with Pose2 (poses returned lifted to the plane z = 0);
    Sim(3) files with Similarity3 (BetweenFactorSimilarity3, built from our reader's graph).
    initialize: start LM from GTSAM's own chordal estimate (InitializePose3 for 3-D, LAGO for 2-D;
    none for Sim(3): ValueError) instead of the file's poses; its time is part of time_s and also given as init_s.
    """
    gtsam = _import("gtsam")
    ours = read_g2o(g2o_path)  # validates the file and gives ids in file order and FIX lines
    if initialize and ours.sim3:
        raise ValueError(f"{g2o_path}: GTSAM has no chordal initialization of Sim(3) graphs")
    between, initial = _gtsam_read(gtsam, g2o_path, ours)
    graph = gtsam.NonlinearFactorGraph(between)
    held = np.union1d(np.flatnonzero(ours.fixed), gauge_vertices(ours.edges, ours.fixed)[0])  # as our PGO holds
    # Sigma 1e-6 holds the pose to ~1e-6 while keeping the prior's whitened Jacobian (1e6) far from
    # overflow; the held pose starts on its prior, so the prior's error stays ~0 (reported below).
    noise = gtsam.noiseModel.Diagonal.Sigmas(np.full(3 if ours.planar else 7 if ours.sim3 else 6, 1e-6))
    for k in ours.ids[held].tolist():
        graph.add(gtsam.PriorFactorPose2(k, initial.atPose2(k), noise) if ours.planar
                  else gtsam.PriorFactorSimilarity3(k, initial.atSimilarity3(k), noise) if ours.sim3
                  else gtsam.PriorFactorPose3(k, initial.atPose3(k), noise))

    file_cost = between.error(initial)
    start = time.perf_counter()
    if initialize:
        initial = gtsam.lago.initialize(graph, initial) if ours.planar else \
            gtsam.InitializePose3.initialize(graph, initial, False)
    init_s = time.perf_counter() - start
    params = gtsam.LevenbergMarquardtParams()
    params.setMaxIterations(int(max_iterations))
    params.setRelativeErrorTol(float(relative_error_tol))
    params.setAbsoluteErrorTol(float(absolute_error_tol))
    optimizer = gtsam.LevenbergMarquardtOptimizer(graph, initial, params)
    result = optimizer.optimize()
    time_s = time.perf_counter() - start

    final_cost = between.error(result)
    return {
        "initial_cost": file_cost,
        "start_cost": between.error(initial),  # LM's start: the file's poses or GTSAM's initialization
        "final_cost": final_cost,
        "prior_final_cost": graph.error(result) - final_cost,
        "iterations": int(optimizer.iterations()),
        "time_s": time_s,
        "init_s": init_s,
        "poses": _poses_of(result, ours.ids, ours.planar, ours.sim3),
        "ids": ours.ids.copy(),
        "fixed_ids": ours.ids[held].copy(),
    }


def _values_from_array(gtsam: Any, poses: Any, ids: np.ndarray, planar: bool = False, sim3: bool = False) -> Any:
    """gtsam.Values holding (N,4,4) poses (vertex-file order) under the vertex ids (Pose2 for a 2-D
    graph, Similarity3 for a Sim(3) one)."""
    poses = np.asarray(poses, dtype=np.float64)
    if poses.shape != (len(ids), 4, 4):
        raise ProblemError(f"poses have shape {poses.shape}, expected ({len(ids)}, 4, 4): one per vertex of the graph")
    bad = np.flatnonzero(~np.isfinite(poses).all(axis=(1, 2)))
    if bad.size:
        raise ProblemError(f"pose of vertex {ids[bad[0]]} holds NaN or Inf")
    err = lie.transform_error(poses, scaled=sim3)
    bad = np.flatnonzero(~(err <= 1e-6))
    if bad.size:
        what = "similarity" if sim3 else "rigid transform"
        raise ProblemError(f"pose of vertex {ids[bad[0]]} is not a {what} (rotation error {err[bad[0]]:.3g})")
    values = gtsam.Values()
    if planar:
        off = off_plane(poses)
        bad = np.flatnonzero(off > PLANAR_TOLERANCE)
        if bad.size:
            raise ProblemError(f"pose of vertex {ids[bad[0]]} is not planar (height or tilt {off[bad[0]]:.3g}) "
                               "but the graph is 2-D")
        for k, (x, y, theta) in zip(ids.tolist(), flatten_poses(poses).tolist()):
            values.insert(k, gtsam.Pose2(x, y, theta))
        return values
    if sim3:
        for k, S in zip(ids.tolist(), _similarities(gtsam, poses)):
            values.insert(k, S)
        return values
    for k, T in zip(ids.tolist(), poses):  # GTSAM has no bulk insert for Pose3
        values.insert(k, gtsam.Pose3(T))
    return values


def gtsam_cost(g2o_graph_path: str | Path, poses_path_or_array: str | Path | np.ndarray) -> float:
    """GTSAM's 1/2 sum e^T Omega e of the original graph's between factors at the given poses.

    The poses are a g2o file of results (parsed by GTSAM, independently of slam.io.g2o; its edges
    are ignored) or an (N,4,4) array in the graph file's vertex order. GTSAM reads no Sim(3) g2o:
    a Sim(3) graph and results file are parsed by slam.io.g2o, the cost is still GTSAM's.
    """
    gtsam = _import("gtsam")
    ours = read_g2o(g2o_graph_path)
    ids, is3d = ours.ids, not ours.planar
    between, _ = _gtsam_read(gtsam, g2o_graph_path, ours)
    if isinstance(poses_path_or_array, (str, Path)) and ours.sim3:
        path = Path(poses_path_or_array)
        if not path.is_file():
            raise InputError("results file not found", path)
        res_ids, res_poses = read_sim3_vertices(path)
        order = np.argsort(res_ids)
        at = order[np.minimum(np.searchsorted(res_ids, ids, sorter=order), len(res_ids) - 1)]
        missing = ids[res_ids[at] != ids]
        if missing.size:
            raise ProblemError(f"holds no pose for vertex {missing[0]} of {g2o_graph_path} "
                               f"({missing.size} of {len(ids)} missing)", path)
        values = _values_from_array(gtsam, res_poses[at], ids, sim3=True)
    elif isinstance(poses_path_or_array, (str, Path)):
        path = Path(poses_path_or_array)
        if not path.is_file():
            raise InputError("results file not found", path)
        _, values = gtsam.readG2o(str(path), is3d)
        have = set(values.keys())
        missing = [k for k in ids.tolist() if k not in have]
        if missing:
            raise ProblemError(f"holds no pose for vertex {missing[0]} of {g2o_graph_path} "
                               f"({len(missing)} of {len(ids)} missing)", path)
        extract = gtsam.utilities.extractPose3 if is3d else gtsam.utilities.extractPose2
        if not np.isfinite(extract(values)).all():
            raise ProblemError("a pose holds NaN or Inf", path)
    else:
        values = _values_from_array(gtsam, poses_path_or_array, ids, ours.planar, ours.sim3)
    return float(between.error(values))


# ---------------------------------------------------------------- Ceres bundle adjustment via pycolmap


def _reconstruction(pycolmap: Any, problem: BALProblem) -> Any:
    """A COLMAP reconstruction equal to the BAL problem: camera, image and rig j+1, point k+1."""
    n_cam, n_obs = len(problem.cameras), len(problem.cam_idx)
    # Observations grouped by camera: the index of each one among its camera's keypoints.
    by_cam = np.argsort(problem.cam_idx, kind="stable")
    counts = np.bincount(problem.cam_idx, minlength=n_cam)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    point2d_idx = np.empty(n_obs, np.int64)
    point2d_idx[by_cam] = np.arange(n_obs) - np.repeat(starts, counts)
    keypoints = problem.observations * [1.0, -1.0]
    R = _FLIP @ Rotation.from_rotvec(problem.cameras[:, :3]).as_matrix()
    t = problem.cameras[:, 3:6] @ _FLIP
    # Width and height are not used by BA; an extent holding every observation keeps COLMAP's checks quiet.
    size = 2 * int(np.ceil(np.abs(problem.observations).max())) + 2

    rec = pycolmap.Reconstruction()
    # pycolmap has no bulk constructors: a loop per camera and per point, outside the timed solve.
    for j in range(n_cam):
        f, k1, k2 = problem.cameras[j, 6:9]
        camera = pycolmap.Camera(camera_id=j + 1, model="RADIAL", width=size, height=size,
                                 params=[f, 0.0, 0.0, k1, k2])
        rec.add_camera_with_trivial_rig(camera)
        rows = by_cam[starts[j]:starts[j] + counts[j]]
        image = pycolmap.Image(name=f"bal_camera_{j}", keypoints=keypoints[rows], camera_id=j + 1, image_id=j + 1)
        rec.add_image_with_trivial_frame(image, pycolmap.Rigid3d(np.hstack([R[j], t[j][:, None]])))
    by_point = np.argsort(problem.pt_idx, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(problem.pt_idx, minlength=len(problem.points)))])
    image_ids = (problem.cam_idx[by_point] + 1).tolist()
    idx2d = point2d_idx[by_point].tolist()
    for k, X in enumerate(problem.points):
        track = pycolmap.Track([pycolmap.TrackElement(image_ids[o], idx2d[o]) for o in range(bounds[k], bounds[k + 1])])
        rec.add_point3D_with_id(k + 1, pycolmap.Point3D(xyz=X, track=track))
    return rec


def _to_bal(rec: Any, problem: BALProblem) -> tuple[np.ndarray, np.ndarray]:
    """(cameras (C,9), points (P,3)) of the reconstruction, mapped back to the BAL convention."""
    n_cam = len(problem.cameras)
    cameras = np.empty((n_cam, 9))
    params = np.array([rec.camera(j + 1).params for j in range(n_cam)])
    if np.abs(params[:, 1:3]).max() > 0:
        raise RuntimeError("COLMAP moved the principal point although refine_principal_point was off")
    cam_from_world = np.array([rec.image(j + 1).cam_from_world().matrix() for j in range(n_cam)])
    cameras[:, :3] = Rotation.from_matrix(_FLIP @ cam_from_world[:, :, :3]).as_rotvec()
    cameras[:, 3:6] = cam_from_world[:, :, 3] @ _FLIP
    cameras[:, 6:9] = params[:, [0, 3, 4]]
    points = np.array([rec.point3D(k + 1).xyz for k in range(len(problem.points))])
    return cameras, points


def _colmap_depth(cameras: np.ndarray, points: np.ndarray, cam_idx: np.ndarray, pt_idx: np.ndarray) -> np.ndarray:
    """(O,) depth of each observed point in COLMAP's camera (-P.z of BAL's)."""
    P = Rotation.from_rotvec(cameras[cam_idx, :3]).apply(points[pt_idx]) + cameras[cam_idx, 3:6]
    return -P[:, 2]


def _half_sq(problem: BALProblem, cameras: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(O,) 1/2 |r|^2 of each observation under the BAL model."""
    r = bal_project(cameras, points, problem.cam_idx, problem.pt_idx) - problem.observations
    return 0.5 * np.sum(r * r, axis=1)


def pycolmap_ba(bal_path: str | Path, max_iterations: int = 100, threads: int = 2,
                linear_solver: str | None = "SPARSE_SCHUR") -> dict[str, Any]:
    """Bundle-adjust a BAL problem with Ceres through pycolmap (no robust loss, f/k1/k2 refined).

    linear_solver: a Ceres LinearSolverType name; SPARSE_SCHUR is the default of Ceres's BAL example,
    None keeps COLMAP's choice by problem size (DENSE_SCHUR up to 50 images, then SPARSE_SCHUR, ...).
    """
    pycolmap = _import("pycolmap")
    problem = read_bal(bal_path)
    rec = _reconstruction(pycolmap, problem)

    options = pycolmap.BundleAdjustmentOptions()
    options.print_summary = False
    options.refine_focal_length = True
    options.refine_extra_params = True
    options.refine_principal_point = False
    options.refine_rig_from_world = True
    options.refine_points3D = True
    options.min_track_length = 0
    options.backend = pycolmap.BundleAdjustmentBackend.CERES
    ceres = options.ceres
    ceres.loss_function_type = pycolmap.LossFunctionType.TRIVIAL
    ceres.use_gpu = False
    ceres.min_num_residuals_for_cpu_multi_threading = 0  # else COLMAP uses one thread below 50000 residuals
    solver = ceres.solver_options
    solver.max_num_iterations = int(max_iterations)
    solver.num_threads = int(threads)
    for name, value in _CERES_TOLERANCES.items():
        setattr(solver, name, value)
    if linear_solver is not None:
        kinds = type(solver.linear_solver_type).__members__
        if linear_solver not in kinds:
            raise ValueError(f"linear_solver '{linear_solver}' is not one of {', '.join(kinds)}")
        ceres.auto_select_solver_type = False
        solver.linear_solver_type = kinds[linear_solver]
    config = pycolmap.BundleAdjustmentConfig()
    for image_id in rec.reg_image_ids():
        config.add_image(image_id)  # no gauge fixed, as in Ceres's BAL example: LM damping handles it

    adjuster = pycolmap.create_default_bundle_adjuster(options, config, rec)
    start = time.perf_counter()
    summary = adjuster.solve()
    time_s = time.perf_counter() - start
    report = summary.ceres_summary

    cameras, points = _to_bal(rec, problem)
    eps = np.finfo(np.float64).eps
    seen_before = _colmap_depth(problem.cameras, problem.points, problem.cam_idx, problem.pt_idx) >= eps
    seen_after = _colmap_depth(cameras, points, problem.cam_idx, problem.pt_idx) >= eps
    before = _half_sq(problem, problem.cameras, problem.points)
    after = _half_sq(problem, cameras, points)
    return {
        "initial_cost": float(report.initial_cost),
        "final_cost": float(report.final_cost),
        # Ceres counts the initial evaluation (iteration 0) as a successful step.
        "iterations": max(int(report.num_successful_steps + report.num_unsuccessful_steps) - 1, 0),
        "successful_steps": max(int(report.num_successful_steps) - 1, 0),
        "time_s": time_s,
        "termination": report.termination_type.name,
        "message": report.message,
        "linear_solver": report.linear_solver_type_used.name,
        "num_threads": int(report.num_threads_used),
        "cameras": cameras,
        "points": points,
        "evaluated": seen_after,
        "num_zeroed_initial": int(np.count_nonzero(~seen_before)),
        "num_zeroed_final": int(np.count_nonzero(~seen_after)),
        "bal_initial_cost": float(before.sum()),
        "bal_final_cost": float(after.sum()),
        "bal_final_cost_evaluated": float(after[seen_after].sum()),
    }
