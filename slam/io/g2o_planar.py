"""2-D pose graphs (g2o VERTEX_SE2/EDGE_SE2, TORO VERTEX2/EDGE2) as planar 3-D graphs: the math of it.

The classic 2-D benchmarks (M3500, Intel, Manhattan, CSAIL) are SE(2) graphs. Their poses are kept
as SE(3) matrices in the plane z = 0, so that every tool that handles poses (trajectory files,
GTSAM comparisons, the writer) handles them: (x, y, theta) becomes Rz(theta), (x, y, 0), and an
edge's 3x3 information over (x, y, theta) goes to the matching entries of the 6x6 one in our
tangent order [w v] (theta -> w_z, x -> v_x, y -> v_y). pgo.from_pose_graph solves such a graph in
SE(2) (3 unknowns a pose, lie_se2.py) on those same 4x4 matrices, with the 3x3 block back.

The lifted 6x6 also makes the graph a valid 3-D one (group 'se3'), and that is exact: for planar
poses the SE(3) logarithm of a planar error is the SE(2) logarithm (GTSAM's Pose2::Logmap, the
error of its BetweenFactor<Pose2>) padded with zeros, so the cost of a planar state is the 2-D
cost. The out-of-plane directions (w_x, w_y, v_z) get information (theta's for the tilts, the mean
of x's and y's for height) so that every edge stays positive definite; at a planar state their
residuals are zero and, by the mirror symmetry z -> -z, the gradient along them is zero and the
normal matrix does not couple them to the plane: LM never leaves the plane and reaches the 2-D
optimum, at twice the unknowns. Written back, each pose is (x, y, atan2(R10, R00)). The file
dialects themselves are read and written by g2o.py.

g2o's EDGE_SE2 lists the information as I11 I12 I13 I22 I23 I33; TORO's EDGE2 as
Ixx Ixy Iyy Itt Ixt Iyt.
"""

from __future__ import annotations

import numpy as np

from slam.geometry.lie_se2 import PLANE_IN_SE3

# Where each of an edge's six information entries sits in the 3x3 matrix over (x, y, theta).
G2O_ORDER = [(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)]
TORO_ORDER = [(0, 0), (0, 1), (1, 1), (2, 2), (0, 2), (1, 2)]
PLANAR_TOLERANCE = 1e-6  # largest height / tilt (m, rad) of a pose that counts as planar


def lift_poses(xyt: np.ndarray) -> np.ndarray:
    """(K,3) rows (x, y, theta) -> (K,4,4) SE(3) poses in the plane z = 0."""
    xyt = np.asarray(xyt, dtype=np.float64).reshape(-1, 3)
    c, s = np.cos(xyt[:, 2]), np.sin(xyt[:, 2])
    T = np.zeros((len(xyt), 4, 4))
    T[:, 0, 0], T[:, 0, 1], T[:, 1, 0], T[:, 1, 1] = c, -s, s, c
    T[:, 2, 2] = T[:, 3, 3] = 1.0
    T[:, 0, 3], T[:, 1, 3] = xyt[:, 0], xyt[:, 1]
    return T


def flatten_poses(T: np.ndarray) -> np.ndarray:
    """(K,4,4) SE(3) poses -> (K,3) rows (x, y, theta), theta = atan2(R10, R00) in [-pi, pi]."""
    T = np.asarray(T, dtype=np.float64).reshape(-1, 4, 4)
    return np.stack([T[:, 0, 3], T[:, 1, 3], np.arctan2(T[:, 1, 0], T[:, 0, 0])], axis=1)


def lift_information(info3: np.ndarray) -> np.ndarray:
    """(K,3,3) information over (x, y, theta) -> (K,6,6) over [w v], out-of-plane entries positive."""
    info3 = np.asarray(info3, dtype=np.float64).reshape(-1, 3, 3)
    out = np.zeros((len(info3), 6, 6))
    out[:, PLANE_IN_SE3[:, None], PLANE_IN_SE3[None, :]] = info3
    d = np.abs(np.diagonal(info3, axis1=1, axis2=2))
    fallback = np.where(d.max(axis=1) > 0, d.max(axis=1), 1.0)  # a repaired file may have bad diagonals
    tilt = np.where(d[:, 2] > 0, d[:, 2], fallback)
    height = 0.5 * (d[:, 0] + d[:, 1])
    out[:, 0, 0] = out[:, 1, 1] = tilt
    out[:, 5, 5] = np.where(height > 0, height, fallback)
    return out


def planar_information(info6: np.ndarray) -> np.ndarray:
    """(K,6,6) information over [w v] -> its (K,3,3) block over (x, y, theta)."""
    return np.asarray(info6, dtype=np.float64)[:, PLANE_IN_SE3[:, None], PLANE_IN_SE3[None, :]]


def information_from_entries(values: np.ndarray, order: list[tuple[int, int]]) -> np.ndarray:
    """(K,6) upper-triangular entries listed in `order` (G2O_ORDER or TORO_ORDER) -> (K,3,3) symmetric."""
    rows = np.array([r for r, _ in order])
    cols = np.array([c for _, c in order])
    info3 = np.empty((len(values), 3, 3))
    info3[:, rows, cols] = values
    info3[:, cols, rows] = values
    return info3


def off_plane(poses: np.ndarray) -> np.ndarray:
    """(K,) how far each pose left the plane z = 0: the larger of |height| and its tilt (|R20|, |R21|)."""
    poses = np.asarray(poses, dtype=np.float64).reshape(-1, 4, 4)
    return np.maximum(np.abs(poses[:, 2, 3]), np.abs(poses[:, 2, :2]).max(axis=1))


def planar_lines(ids: np.ndarray, poses: np.ndarray, edges: np.ndarray, measurements: np.ndarray,
                 information: np.ndarray, fixed: np.ndarray) -> list[str]:
    """The lines of a g2o 2-D file (VERTEX_SE2, FIX, EDGE_SE2) at full precision.

    x, y and the information read back exactly (shortest repr); theta is atan2 of the rotation, so
    it reads back to within an ulp, and angles outside [-pi, pi] come back wrapped.
    """
    info3 = planar_information(information)
    iu = np.array(G2O_ORDER)
    erows = np.concatenate([flatten_poses(measurements), info3[:, iu[:, 0], iu[:, 1]]], axis=1)
    ids = np.asarray(ids)
    vrows = flatten_poses(poses).tolist()
    out = [f"VERTEX_SE2 {vid} {' '.join(map(repr, row))}" for vid, row in zip(ids.tolist(), vrows)]
    fixed_ids = ids[np.asarray(fixed, dtype=bool)].tolist()
    if fixed_ids:
        out.append(f"FIX {' '.join(map(str, fixed_ids))}")
    out += [f"EDGE_SE2 {a} {b} {' '.join(map(repr, row))}"
            for (a, b), row in zip(ids[edges].tolist(), erows.tolist())]
    return out
