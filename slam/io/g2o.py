"""Pose graphs in g2o format (VERTEX_SE3:QUAT, EDGE_SE3:QUAT, FIX; 2-D dialects and Sim(3) too), read and written.

Sim(3) graphs (a monocular map's loop closure) use g2o's own seven-dof types, VERTEX_SIM3:EXPMAP and
EDGE_SIM3:EXPMAP (g2o/types/sim3): a vertex holds Log(T_world_vertex) [w, v, sigma] and four camera
values g2o keeps with it (fx fy cx cy, written as g2o's defaults 1 1 0 0); an edge holds Log(Z_ij) and
the 28 upper-triangular entries of its 7x7 information in the same tangent order. g2o reads the
vertex as the inverse of Exp(.) and the edge measurement C = Exp(.)^-1, and its edge error
Log(C S_i S_j^-1) with S = T^-1 is then Log(Z_ij^-1 T_i^-1 T_j): our residual, so a file solved by
g2o, by GTSAM's BetweenFactorSimilarity3 (slam.eval.peers) or by `slam pgo` is the same problem
(g2o reports chi2 = e^T Omega e summed, twice our cost). Older g2o copies (ORB-SLAM2's bundled one)
have a wrong small-rotation branch in Sim3(Vector7) (|w| < 1e-5 with sigma != 0): they read such a
vertex or edge with a different translation; current g2o reads it as written.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import scipy.sparse
from scipy.sparse import csgraph

from slam.errors import FormatError, ProblemError
from slam.geometry.lie import sim3_exp, sim3_log, transform_error
from slam.geometry.quaternion import quat_to_rot, rot_to_quat
from slam.io import g2o_planar as planar
from slam.io.text import data_lines, read_text, write_text_atomic

VERTEX_TAG = "VERTEX_SE3:QUAT"
EDGE_TAG = "EDGE_SE3:QUAT"
FIX_TAG = "FIX"
SIM3_VERTEX_TAG = "VERTEX_SIM3:EXPMAP"
SIM3_EDGE_TAG = "EDGE_SIM3:EXPMAP"

_VERTEX_FIELDS = ("id", "x", "y", "z", "qx", "qy", "qz", "qw")
_TRIU_R, _TRIU_C = np.triu_indices(6)  # row by row, the order g2o writes the 21 entries in
_EDGE_FIELDS = ("id_i", "id_j", "x", "y", "z", "qx", "qy", "qz", "qw") + tuple(
    f"information[{r},{c}]" for r, c in zip(_TRIU_R, _TRIU_C))
# g2o orders the tangent [x y z qx qy qz], ours is [w v]: swapping the two 3-blocks (as GTSAM's
# readG2o does, without rescaling the quaternion part) is a permutation that is its own inverse.
_SWAP = np.array([3, 4, 5, 0, 1, 2])
_TRIU7_R, _TRIU7_C = np.triu_indices(7)
_SIM3_LOG_FIELDS = ("w_x", "w_y", "w_z", "v_x", "v_y", "v_z", "sigma")
_SIM3_CAMERA = (1.0, 1.0, 0.0, 0.0)  # fx fy cx cy of a g2o VertexSim3Expmap: unused by a pose graph
# Tags of 2-D g2o and of the older TORO 2-D format: a 2-D file is read by its dialect (PLANAR_FORMATS),
# and 2-D lines in a 3-D file, or 2-D files without poses, are reported as such.
_TAGS_2D = frozenset({"VERTEX_SE2", "EDGE_SE2", "VERTEX_XY", "EDGE_SE2_XY", "EDGE_XY", "EDGE_SE2_PRIOR",
                      "EDGE_PRIOR_SE2", "EDGE_SE2_POINTXY", "VERTEX2", "EDGE2"})


@dataclass
class PoseGraph:
    """A pose graph: vertices (SE(3) poses) joined by relative-pose measurements with information."""

    ids: np.ndarray           # (N,) int64 vertex ids as in the file, in file order
    poses: np.ndarray         # (N,4,4) float64 T_world_vertex
    edges: np.ndarray         # (M,2) int64 indices into poses (not ids): (i, j)
    measurements: np.ndarray  # (M,4,4) float64 Z_ij = T_i^-1 T_j as measured
    information: np.ndarray   # (M,6,6) float64 in our tangent order [rotation w, translation v]; Sim(3): (M,7,7) [w v sigma]
    fixed: np.ndarray         # (N,) bool, from FIX lines
    path: str | None = None
    edge_lines: np.ndarray | None = None  # (M,) int64 line number of each edge in `path`, for messages
    # Read from a 2-D file (SE(2) poses lifted into the plane z = 0, g2o_planar.py): written back in 2-D.
    planar: bool = False
    # Read from (or to be written as) g2o's Sim(3) types: poses are similarities [[s R, t], [0, 1]].
    sim3: bool = False


def read_g2o(path: str | Path, check_information: bool = True) -> PoseGraph:
    """Read a g2o pose graph, 3-D or 2-D; unknown tags are skipped with one warning that counts them.

    2-D files (VERTEX_SE2/EDGE_SE2, or TORO's VERTEX2/EDGE2) are read as planar 3-D graphs
    (g2o_planar.py says why that is exact) and marked `planar`, so that write_g2o writes them back in 2-D.
    check_information=False accepts information matrices that are not positive definite (for a
    caller that repairs them, slam.solvers.information); by default they are an error.
    """
    path = Path(path)
    blocks = _split_by_tag(read_text(path))
    if SIM3_VERTEX_TAG in blocks or SIM3_EDGE_TAG in blocks:
        other = [t for t in (VERTEX_TAG, EDGE_TAG) if t in blocks]
        if other:
            raise FormatError(f"mixes Sim(3) lines ({SIM3_VERTEX_TAG}/{SIM3_EDGE_TAG}) with {' and '.join(other)}; "
                              "expected one pose type", path, blocks[other[0]][0][0])
        return read_with(SIM3_FORMAT, blocks, path, check_information)
    if VERTEX_TAG not in blocks and EDGE_TAG not in blocks:
        present = [f for f in PLANAR_FORMATS if f.vertex_tag in blocks or f.edge_tag in blocks]
        if len(present) > 1:
            tags = " and ".join(f"{f.vertex_tag}/{f.edge_tag}" for f in present)
            raise FormatError(f"mixes the 2-D dialects {tags} (g2o and TORO); expected one of them", path)
        if present:
            return read_with(present[0], blocks, path, check_information)
        unknown = {tag: len(b[0]) for tag, b in blocks.items() if tag != FIX_TAG}
        if any(_is_2d(tag) for tag in unknown):
            raise FormatError(f"2-D g2o files without poses are not supported (found {_describe(unknown)}); "
                              f"this reader handles pose graphs: {VERTEX_TAG} and {EDGE_TAG} lines, or "
                              "VERTEX_SE2 and EDGE_SE2 (or TORO's VERTEX2 and EDGE2)", path)
        found = f" (found only {_describe(unknown)})" if unknown else ""
        raise ProblemError(f"empty pose graph: no {VERTEX_TAG} and no {EDGE_TAG} lines{found}", path)
    return read_with(SE3_FORMAT, blocks, path, check_information)


@dataclass(frozen=True)
class GraphFormat:
    """A g2o dialect: its tags and fields, and how its values become poses (SE(3), or Sim(3)) and
    information (6x6, or 7x7 for Sim(3))."""

    vertex_tag: str
    edge_tag: str
    vertex_fields: tuple[str, ...]  # after the id
    edge_fields: tuple[str, ...]    # after the two ids
    poses: Callable[[np.ndarray, np.ndarray, Path], np.ndarray]  # (values, lines, path) -> (K,4,4)
    # (values, lines, path, check_information) -> ((K,4,4) measurements, (K,6,6) information in [w v] order;
    # Sim(3): (K,7,7) in [w v sigma])
    edges: Callable[[np.ndarray, np.ndarray, Path, bool], tuple[np.ndarray, np.ndarray]]
    planar: bool = False
    sim3: bool = False  # Sim(3) poses and (K,7,7) information instead


def _se3_edges(evals: np.ndarray, elines: np.ndarray, path: Path, check_information: bool
               ) -> tuple[np.ndarray, np.ndarray]:
    measurements = _se3(evals[:, :7], elines, EDGE_TAG, path)
    info_g2o = np.empty((len(evals), 6, 6))
    info_g2o[:, _TRIU_R, _TRIU_C] = evals[:, 7:]
    info_g2o[:, _TRIU_C, _TRIU_R] = evals[:, 7:]
    information = info_g2o[:, _SWAP][:, :, _SWAP]
    if check_information:
        check_positive_definite(information, elines, path, EDGE_TAG, "21 upper-triangular entries of a "
                                "symmetric positive definite 6x6 matrix")
    return measurements, information


SE3_FORMAT = GraphFormat(VERTEX_TAG, EDGE_TAG, _VERTEX_FIELDS[1:], _EDGE_FIELDS[2:],
                         lambda v, lines, path: _se3(v, lines, VERTEX_TAG, path), _se3_edges)


def _sim3(logs: np.ndarray, lines: np.ndarray, tag: str, path: Path) -> np.ndarray:
    """(K,7) logarithms [w v sigma] -> (K,4,4) similarities; one whose scale or translation
    overflows (a huge sigma) is reported with its line."""
    with np.errstate(over="ignore", invalid="ignore"):
        S = sim3_exp(logs)
    bad = np.flatnonzero(~np.isfinite(S).all(axis=(1, 2)) | ~(np.abs(S[:, :3, :3]).max(axis=(1, 2)) > 0))
    if bad.size:
        raise ProblemError(f"{tag}: the similarity Exp({' '.join(f'{v:g}' for v in logs[bad[0]])}) is not finite "
                           "(scale e^sigma out of range)", path, int(lines[bad[0]]))
    return S


def _sim3_edges(evals: np.ndarray, elines: np.ndarray, path: Path, check_information: bool
                ) -> tuple[np.ndarray, np.ndarray]:
    information = np.empty((len(evals), 7, 7))
    information[:, _TRIU7_R, _TRIU7_C] = evals[:, 7:]
    information[:, _TRIU7_C, _TRIU7_R] = evals[:, 7:]
    if check_information:
        check_positive_definite(information, elines, path, SIM3_EDGE_TAG, "28 upper-triangular entries of a "
                                "symmetric positive definite 7x7 matrix")
    return _sim3(evals[:, :7], elines, SIM3_EDGE_TAG, path), information


SIM3_FORMAT = GraphFormat(
    SIM3_VERTEX_TAG, SIM3_EDGE_TAG, _SIM3_LOG_FIELDS + ("fx", "fy", "cx", "cy"),
    _SIM3_LOG_FIELDS + tuple(f"information[{r},{c}]" for r, c in zip(_TRIU7_R, _TRIU7_C)),
    lambda v, lines, path: _sim3(v[:, :7], lines, SIM3_VERTEX_TAG, path), _sim3_edges, sim3=True)


def read_sim3_vertices(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(ids (N,), poses (N,4,4)) of a file's VERTEX_SIM3:EXPMAP lines, whatever else it holds (a
    results file: its edges, if any, are not read)."""
    path = Path(path)
    blocks = _split_by_tag(read_text(path))
    if SIM3_VERTEX_TAG not in blocks:
        raise ProblemError(f"no {SIM3_VERTEX_TAG} lines", path)
    fields = ("id",) + SIM3_FORMAT.vertex_fields
    vlines, vtoks = blocks[SIM3_VERTEX_TAG]
    _check_counts(vtoks, vlines, fields, SIM3_VERTEX_TAG, path)
    lines = np.asarray(vlines, dtype=np.int64)
    ids = _parse_ints([t[:1] for t in vtoks], lines, fields[:1], SIM3_VERTEX_TAG, path)[:, 0]
    _check_duplicates(ids, lines, path, SIM3_VERTEX_TAG)
    values = _parse_floats([t[1:] for t in vtoks], lines, fields[1:], SIM3_VERTEX_TAG, path)
    return ids, SIM3_FORMAT.poses(values, lines, path)


def _planar_edges(order: list[tuple[int, int]], tag: str, entries: str
                  ) -> Callable[[np.ndarray, np.ndarray, Path, bool], tuple[np.ndarray, np.ndarray]]:
    """GraphFormat.edges of a 2-D dialect: 'dx dy dtheta' and six information entries listed in `order`."""
    def edges(evals: np.ndarray, elines: np.ndarray, path: Path, check_information: bool
              ) -> tuple[np.ndarray, np.ndarray]:
        info3 = planar.information_from_entries(evals[:, 3:], order)
        if check_information:
            check_positive_definite(info3, elines, path, tag, f"6 entries ({entries}) of a symmetric "
                                    "positive definite 3x3 matrix over (x, y, theta)")
        return planar.lift_poses(evals[:, :3]), planar.lift_information(info3)

    return edges


def _planar_format(vtag: str, etag: str, order: list[tuple[int, int]], entries: str) -> GraphFormat:
    fields = ("x", "y", "theta")
    return GraphFormat(vtag, etag, fields, fields + tuple(f"information[{r},{c}]" for r, c in order),
                       lambda v, lines, path: planar.lift_poses(v), _planar_edges(order, etag, entries), planar=True)


PLANAR_FORMATS = (_planar_format("VERTEX_SE2", "EDGE_SE2", planar.G2O_ORDER, "I11 I12 I13 I22 I23 I33"),
                  _planar_format("VERTEX2", "EDGE2", planar.TORO_ORDER, "TORO's Ixx Ixy Iyy Itt Ixt Iyt"))


def read_with(fmt: GraphFormat, blocks: dict[str, tuple[list[int], list[list[str]]]], path: Path,
              check_information: bool) -> PoseGraph:
    """The pose graph of `blocks` (tag -> lines, tokens) in dialect `fmt`; other tags skipped with a warning."""
    vtag, etag = fmt.vertex_tag, fmt.edge_tag
    unknown = {tag: len(b[0]) for tag, b in blocks.items() if tag not in (vtag, etag, FIX_TAG)}
    if unknown:
        note = ""
        if not fmt.planar and any(_is_2d(tag) for tag in unknown):
            note = " (2-D tags in a 3-D file are not supported)"
        warnings.warn(f"{path}: skipped {sum(unknown.values())} lines with unsupported tags{note}: "
                      f"{_describe(unknown)}", stacklevel=3)

    if vtag not in blocks:
        raise ProblemError(f"empty pose graph: no {vtag} lines", path)
    vfields, efields = ("id",) + fmt.vertex_fields, ("id_i", "id_j") + fmt.edge_fields
    vlines, vtoks = blocks[vtag]
    _check_counts(vtoks, vlines, vfields, vtag, path)
    vlines = np.asarray(vlines, dtype=np.int64)
    ids = _parse_ints([t[:1] for t in vtoks], vlines, vfields[:1], vtag, path)[:, 0]
    vvals = _parse_floats([t[1:] for t in vtoks], vlines, vfields[1:], vtag, path)
    _check_duplicates(ids, vlines, path, vtag)
    poses = fmt.poses(vvals, vlines, path)

    if etag not in blocks:
        raise ProblemError(f"pose graph has {len(ids)} vertices but no {etag} lines: nothing to optimize", path)
    elines, etoks = blocks[etag]
    _check_counts(etoks, elines, efields, etag, path)
    elines = np.asarray(elines, dtype=np.int64)
    edge_ids = _parse_ints([t[:2] for t in etoks], elines, efields[:2], etag, path)
    evals = _parse_floats([t[2:] for t in etoks], elines, efields[2:], etag, path)
    edges = _ids_to_indices(edge_ids, ids, elines, etag, path, blocks, vtag)
    loops = np.flatnonzero(edges[:, 0] == edges[:, 1])
    if loops.size:
        raise ProblemError(f"{etag} joins vertex {edge_ids[loops[0], 0]} to itself; expected two "
                           "different vertices", path, int(elines[loops[0]]))
    measurements, information = fmt.edges(evals, elines, path, check_information)

    fixed = np.zeros(len(ids), dtype=bool)
    if FIX_TAG in blocks:
        flines, ftoks = blocks[FIX_TAG]
        for line, toks in zip(flines, ftoks):
            if not toks:
                raise FormatError(f"{FIX_TAG} expects one or more vertex ids, found none", path, line)
        per_id_lines = np.repeat(np.asarray(flines, dtype=np.int64), [len(t) for t in ftoks])
        fix_ids = _parse_ints([[tok] for toks in ftoks for tok in toks], per_id_lines, ("vertex id",), FIX_TAG, path)
        fixed[_ids_to_indices(fix_ids, ids, per_id_lines, FIX_TAG, path, blocks, vtag)[:, 0]] = True

    return PoseGraph(ids=ids, poses=poses, edges=edges, measurements=measurements, information=information,
                     fixed=fixed, path=str(path), edge_lines=elines, planar=fmt.planar, sim3=fmt.sim3)


def write_g2o(path: str | Path, graph: PoseGraph, poses: np.ndarray | None = None) -> None:
    """Write `graph` in g2o format at full precision (2-D if it is planar, g2o's Sim(3) types if sim3);
    `poses` (N,4,4) replace graph.poses."""
    poses = graph.poses if poses is None else np.asarray(poses, dtype=np.float64)
    n, m, d = len(graph.ids), len(graph.edges), 7 if graph.sim3 else 6
    if poses.shape != (n, 4, 4):
        raise ValueError(f"poses have shape {poses.shape}, expected ({n}, 4, 4) for {n} vertices")
    for name, arr, shape in (("measurements", graph.measurements, (m, 4, 4)),
                             ("information", graph.information, (m, d, d)), ("fixed", graph.fixed, (n,))):
        if np.shape(arr) != shape:
            raise ValueError(f"graph.{name} has shape {np.shape(arr)}, expected {shape}")
    for name, arr in (("poses", poses), ("measurements", graph.measurements), ("information", graph.information)):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} contain NaN or Inf; refusing to write them to {path}")
    if graph.planar:  # written back as it was read, in 2-D: refuse what is no longer a 2-D solution
        off = planar.off_plane(poses)
        if off.size and off.max() > planar.PLANAR_TOLERANCE:
            k = int(np.argmax(off))
            raise ValueError(f"pose of vertex {graph.ids[k]} left the plane by {off[k]:.3g} (height or tilt); "
                             f"refusing to write it to {path} as a 2-D graph")
        write_text_atomic(path, "\n".join(planar.planar_lines(graph.ids, poses, graph.edges, graph.measurements,
                                                              graph.information, graph.fixed)) + "\n")
        return

    if graph.sim3:
        _check_similarities(poses, graph.ids, path)
        vtag, etag = SIM3_VERTEX_TAG, SIM3_EDGE_TAG
        vrows = np.concatenate([sim3_log(poses), np.broadcast_to(_SIM3_CAMERA, (n, 4))], axis=1)
        info = np.asarray(graph.information)[:, _TRIU7_R, _TRIU7_C]
        erows = np.concatenate([sim3_log(graph.measurements), info], axis=1)
    else:
        vtag, etag = VERTEX_TAG, EDGE_TAG
        vrows = np.concatenate([poses[:, :3, 3], rot_to_quat(poses[:, :3, :3])], axis=1)
        info_g2o = np.asarray(graph.information)[:, _SWAP][:, :, _SWAP][:, _TRIU_R, _TRIU_C]
        erows = np.concatenate([graph.measurements[:, :3, 3], rot_to_quat(graph.measurements[:, :3, :3]),
                                info_g2o], axis=1)
    ids = np.asarray(graph.ids).tolist()
    end_ids = np.asarray(graph.ids)[graph.edges].tolist()
    # repr is the shortest text that reads back to the same double: the file round-trips exactly
    # (a Sim(3) pose through its logarithm: to a few ulps).
    out = [f"{vtag} {vid} {' '.join(map(repr, row))}" for vid, row in zip(ids, vrows.tolist())]
    fixed_ids = np.asarray(graph.ids)[np.asarray(graph.fixed, dtype=bool)].tolist()
    if fixed_ids:
        out.append(f"{FIX_TAG} {' '.join(map(str, fixed_ids))}")
    out += [f"{etag} {a} {b} {' '.join(map(repr, row))}" for (a, b), row in zip(end_ids, erows.tolist())]
    write_text_atomic(path, "\n".join(out) + "\n")


def _check_similarities(S: np.ndarray, ids: np.ndarray, path: str | Path) -> None:
    """Every pose is [[s R, t], [0, 1]] with s > 0 and R a rotation (to 1e-6): its logarithm is
    then what is written; anything else would be silently changed by it."""
    err = transform_error(S, scaled=True)
    bad = np.flatnonzero(~(err <= 1e-6))
    if bad.size:
        k = int(bad[0])
        raise ValueError(f"pose of vertex {ids[k]} is not a similarity [[s R, t], [0, 1]] (det "
                         f"{np.linalg.det(S[k, :3, :3]):.3g}, rotation error {err[k]:.3g}); refusing to write it to {path}")


def connected_components(graph: PoseGraph) -> np.ndarray:
    """(N,) int64 label of the connected piece of the graph each vertex belongs to (0, 1, ...)."""
    n = len(graph.ids)
    e = np.asarray(graph.edges, dtype=np.int64).reshape(-1, 2)
    adjacency = scipy.sparse.coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n))
    _, labels = csgraph.connected_components(adjacency, directed=False)
    return labels.astype(np.int64)


def _split_by_tag(text: str) -> dict[str, tuple[list[int], list[list[str]]]]:
    """Group non-blank, non-comment lines by their first token: tag -> (line numbers, other tokens)."""
    blocks: dict[str, tuple[list[int], list[list[str]]]] = {}
    lines, numbers, _ = data_lines(text, inline_comments=True)
    for number, line in zip(numbers, lines):
        tokens = line.split()
        at, rows = blocks.setdefault(tokens[0], ([], []))
        at.append(number)
        rows.append(tokens[1:])
    return blocks


def _is_2d(tag: str) -> bool:
    """True for the tags of 2-D pose graphs."""
    return tag in _TAGS_2D or "SE2" in tag


def _describe(counts: dict[str, int]) -> str:
    """'VERTEX_SE2 x3, EDGE_SE2 x5' from a tag -> count mapping."""
    return ", ".join(f"{tag} x{count}" for tag, count in counts.items())


def _check_counts(rows: list[list[str]], lines: list[int], fields: tuple[str, ...], tag: str, path: Path) -> None:
    """Every line of `tag` has exactly len(fields) values after the tag."""
    counts = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    bad = np.flatnonzero(counts != len(fields))
    if bad.size:
        k = bad[0]
        plain = [f for f in fields if not f.startswith("information")]
        shown = " ".join(plain)
        if len(plain) < len(fields):
            shown += f" and the {len(fields) - len(plain)} upper-triangular information entries"
        raise FormatError(f"{tag} expects {len(fields)} values after the tag ({shown}), found {counts[k]}",
                          path, lines[k])


def _parse_floats(rows: list[list[str]], lines: np.ndarray, fields: tuple[str, ...], tag: str,
                  path: Path) -> np.ndarray:
    """Rows of number tokens -> finite float64 array; the first bad token is reported with its line."""
    try:
        values = np.array(rows, dtype=np.float64).reshape(len(rows), len(fields))
    except ValueError:
        for line, row in zip(lines, rows):  # only on failure: find which token it was
            for field, token in zip(fields, row):
                try:
                    float(token)
                except ValueError:
                    raise FormatError(f"{tag}: {field} is '{token}', expected a number", path, int(line)) from None
        raise FormatError(f"{tag}: a value is not a number", path) from None
    bad_row, bad_col = np.nonzero(~np.isfinite(values))
    if bad_row.size:
        r, c = bad_row[0], bad_col[0]
        raise ProblemError(f"{tag}: {fields[c]} is {values[r, c]}, expected a finite number", path, int(lines[r]))
    return values


def _parse_ints(rows: list[list[str]], lines: np.ndarray, fields: tuple[str, ...], tag: str,
                path: Path) -> np.ndarray:
    """Rows of integer tokens (vertex ids) -> int64 array; the first bad token is reported with its line."""
    try:
        return np.array(rows, dtype=str).reshape(len(rows), len(fields)).astype(np.int64)
    except (ValueError, OverflowError):
        for line, row in zip(lines, rows):
            for field, token in zip(fields, row):
                try:
                    if abs(int(token)) >= 2 ** 63:
                        raise ValueError
                except ValueError:
                    raise FormatError(f"{tag}: {field} is '{token}', expected an integer vertex id",
                                      path, int(line)) from None
        raise FormatError(f"{tag}: a vertex id is not an integer", path) from None


def _check_duplicates(ids: np.ndarray, lines: np.ndarray, path: Path, vertex_tag: str = VERTEX_TAG) -> None:
    """Each vertex id is defined once; a repeat is reported at its earliest second definition."""
    order = np.argsort(ids, kind="stable")
    repeat = order[1:][ids[order[1:]] == ids[order[:-1]]]
    if repeat.size:
        k = repeat.min()
        first = np.flatnonzero(ids == ids[k])[0]
        raise ProblemError(f"{vertex_tag}: vertex id {ids[k]} is defined again (first at line {lines[first]})",
                           path, int(lines[k]))


def _se3(values: np.ndarray, lines: np.ndarray, tag: str, path: Path) -> np.ndarray:
    """(K,7) rows 'x y z qx qy qz qw' -> (K,4,4) SE(3) matrices; quaternions are normalized here."""
    norms = np.linalg.norm(values[:, 3:7], axis=1)
    bad = np.flatnonzero(norms < 1e-12)
    if bad.size:
        raise ProblemError(f"{tag}: quaternion (qx qy qz qw) is zero, expected a unit quaternion",
                           path, int(lines[bad[0]]))
    T = np.zeros((len(values), 4, 4))
    T[:, :3, :3] = quat_to_rot(values[:, 3:7] / norms[:, None])
    T[:, :3, 3] = values[:, :3]
    T[:, 3, 3] = 1.0
    return T


def _ids_to_indices(refs: np.ndarray, ids: np.ndarray, lines: np.ndarray, tag: str, path: Path,
                    blocks: dict[str, tuple[list[int], list[list[str]]]], vertex_tag: str = VERTEX_TAG) -> np.ndarray:
    """Vertex ids referred to by edge or FIX lines -> indices into `ids`; a missing id names its line."""
    sorter = np.argsort(ids)
    pos = np.minimum(np.searchsorted(ids, refs, sorter=sorter), len(ids) - 1)
    found = ids[sorter[pos]] == refs
    if not found.all():
        row = np.flatnonzero(~found.all(axis=1))[0]
        vid = refs[row][~found[row]][0]
        raise ProblemError(f"{tag} refers to vertex {vid}, which no {vertex_tag} line defines"
                           f"{_other_vertex_note(vid, blocks, vertex_tag)}", path, int(lines[row]))
    return sorter[pos]


def _other_vertex_note(vid: int, blocks: dict[str, tuple[list[int], list[list[str]]]],
                       vertex_tag: str = VERTEX_TAG) -> str:
    """' (it is a VERTEX_SE2 at line 7, which is not supported)' when another vertex tag defines it."""
    for tag, (lines, rows) in blocks.items():
        if tag.startswith("VERTEX") and tag != vertex_tag:
            for line, row in zip(lines, rows):
                if row and row[0] == str(vid):
                    return f" (it is a {tag} at line {line}, which is not supported)"
    return ""


def check_positive_definite(information: np.ndarray, lines: np.ndarray, path: Path, tag: str, expected: str) -> None:
    """Every information matrix is symmetric positive definite (by construction symmetric; Cholesky).

    The error counts the bad ones and names the first one's line; `expected` says what the file's
    entries should be (e.g. '21 upper-triangular entries of a symmetric positive definite 6x6 matrix').
    """
    try:
        np.linalg.cholesky(information)
        return
    except np.linalg.LinAlgError:
        pass
    lowest = np.linalg.eigvalsh(information)[:, 0]  # only on failure: count them, name the first
    bad = np.flatnonzero(~(lowest > 0))
    k = int(bad[0])
    raise ProblemError(f"{tag}: {bad.size} of the {len(information)} information matrices are not positive "
                       f"definite, the first here (smallest eigenvalue {lowest[k]:.6g}); "
                       f"expected {expected} "
                       "(slam pgo --repair-information projects them onto the nearest positive definite one)",
                       path, int(lines[k]))
