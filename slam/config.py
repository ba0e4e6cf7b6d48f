"""Run configuration: YAML loaded into typed dataclasses; unknown or ill-typed keys are errors.

A config file has the sections `source`, `frontend`, `keyframes`, `odometry` and `loop` (all optional; a
missing key keeps its default). An error names the file, the line, the dotted key and what is
allowed, e.g. `configs/x.yaml:7: unknown key 'frontend.max_feature'; allowed: max_features, ...`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from slam.errors import FormatError, InputError

SENSORS = ("auto", "stereo", "mono", "rgbd")
SYNTHETIC_SENSORS = ("stereo", "mono", "rgbd", "kitti")
LOSSES = ("huber", "cauchy", "none")
PRECISIONS = ("fp64", "fp32", "mixed", "fp16")


@dataclass
class SourceConfig:
    """How to open the source and which sensor mode the pipeline runs in."""

    sensor: str = "auto"                  # auto: stereo if the source is stereo, rgbd if it has depth, else mono
    synthetic_sensor: str | None = None   # synthetic:SCENE only: rendered rig (default: from `sensor`)
    seed: int | None = None               # synthetic:SCENE only: texture and noise seed
    calibration: str | None = None        # camera YAML for video / image folder / camera / TUM override
    rate_hz: float | None = None
    tum_camera: str | None = None
    depth: bool | None = None
    alpha: float | None = None
    gt_max_dt: float | None = None
    strict: bool | None = None
    realtime: bool | None = None
    prefetch: int = 4                     # frames decoded ahead of tracking by a reader thread (0: none)


@dataclass
class FrontendConfig:
    """Feature detection, KLT tracking, stereo/depth measurement, pose tracking, initialization."""

    max_features: int = 250          # features kept alive (new ones are detected at keyframes)
    grid_cols: int = 8               # bucketing grid: features are spread over cols x rows cells
    grid_rows: int = 6
    min_distance: int = 15           # px between features
    quality_level: float = 0.005     # Shi-Tomasi threshold relative to the strongest corner
    border: int = 10                 # px kept free of features at the image border
    klt_window: int = 21             # px, side of the KLT window
    klt_levels: int = 3              # pyramid levels above the image
    fb_threshold: float = 1.0        # px, forward-backward KLT consistency
    reprojection_threshold: float = 2.5  # px, inlier threshold of pose tracking (chi2 5.99 at 1 px)
    min_inliers: int = 20            # fewer pose inliers: the frame is lost
    min_disparity: float = 1.0       # px, stereo: smaller disparities give no depth
    max_depth: float = 40.0          # m, stereo/RGB-D depths beyond are not used to create landmarks
    min_depth: float = 0.2           # m (stereo search also stops at a quarter of the image width)
    rgbd_baseline: float = 0.08      # m, virtual stereo baseline of RGB-D depth (ORB-SLAM's bf)
    descriptors: bool = True         # ORB descriptors of keyframe features (relocalization)
    relocalize_features: int = 1000  # corners described in a lost frame
    relocalize_min_inliers: int = 25
    relocalize_keyframes: int = 40   # newest keyframes whose landmarks relocalization matches against
    new_map_after: float = 2.0       # s lost before a new map segment is started (stereo/RGB-D at once possible)
    init_min_flow: float = 8.0       # px, monocular: median flow before a two-view initialization is tried
    init_min_points: int = 60        # monocular: triangulated points a two-view initialization needs
    init_min_parallax: float = 1.0   # deg, monocular: parallax of the init_min_points-th best point
    init_max_frames: int = 40        # monocular: frames tried against one reference frame


@dataclass
class KeyframeConfig:
    """Keyframe selection: about max_rate_hz while moving, none while standing still."""

    max_rate_hz: float = 10.0        # at most this many keyframes per second of sensor time
    parallax: float = 12.0           # px, median feature displacement since the last keyframe that asks for one
    min_parallax: float = 2.0        # px, below this the camera counts as standing still: no keyframe
    min_tracked_ratio: float = 0.75  # fewer of the last keyframe's landmarks still tracked asks for one
    min_tracked: int = 80            # fewer landmarks tracked asks for one
    max_pending: int = 0             # worker this many keyframes behind: only urgent keyframes (0: off)


@dataclass
class OdometryConfig:
    """Sliding-window bundle adjustment in the odometry worker thread."""

    window: int = 20                 # newest keyframes optimized; older observers of their points stay fixed
    max_fixed: int = 20              # older keyframes kept (fixed) in a window problem
    precision: str = "mixed"         # BA precision policy: fp64, fp32, mixed, fp16
    max_iterations: int = 5          # LM iterations per window solve
    cg_max_iterations: int = 60
    # The window is solved again at every keyframe from the last solution, so a step that lowers the
    # cost by less than this fraction is noise next to the next keyframe's change (Ceres: 1e-6 for
    # one-off problems). Measured on room_loop: the 2nd step gains ~1e-5, the 3rd ~1e-7.
    # Monocular configs use 1e-5: there the scale is the flattest direction and stopping early
    # leaves it where the rounding of the last step put it (fp64 and mixed then drift apart).
    relative_cost_tol: float = 1e-4
    loss: str = "huber"
    loss_scale: float = 2.0          # px
    preconditioner: str = "jacobi"   # CGNR preconditioner: jacobi (block) or schur (the engine's BA Schur)
    max_reprojection_error: float = 3.0  # px: observations beyond are dropped after BA
    min_parallax: float = 1.0        # deg: monocular triangulation needs this much
    blocking: bool = False           # tracking waits for each keyframe's BA (deterministic runs, tests)


@dataclass
class LoopConfig:
    """Loop closure in the loop worker thread: place recognition, verification, pose graph, write-back."""

    enabled: bool = True             # `slam run --no-loop` turns it off (odometry only)
    place_features: int = 750        # ORB points described per keyframe (tracked features + corners between)
    min_score: float = 0.0           # place-recognition score below which a candidate is not verified
    recent_keyframes: int = 30       # the newest keyframes are never loop candidates (odometry covers them)
    min_inliers: int = 40            # verified matches a loop needs (stereo/RGB-D PnP, monocular Sim(3))
    # Pose graph (loop/posegraph.py): odometry edges between consecutive keyframes and covisibility
    # edges between keyframes sharing >= covisibility_min_shared landmarks, measured by their current
    # relative poses; information = weight x diag(1/sigma_rot^2 I3, 1/sigma_trans^2 I3[, 1/sigma_scale^2]),
    # weight = min(shared landmarks, 200) / 100, loop edges weight = loop_weight x inliers / 100.
    # 100 as ORB-SLAM's essential graph. Re-solving a room_loop (stereo) graph of 142 keyframes:
    # keyframe ATE 6.0 mm with 60 (2000 edges), 5.8 mm with 100, 6.0 mm with none: the edges hold
    # the local shape, more of them only cost time.
    covisibility_min_shared: int = 100
    sigma_rotation: float = 0.01     # rad, of an edge with 100 shared landmarks
    sigma_translation: float = 0.01  # m (map units for monocular)
    sigma_scale: float = 0.01        # Sim(3) edges (monocular): log-scale
    loop_weight: float = 1.0         # loop edges relative to odometry edges of the same support
    precision: str | None = None     # PGO precision policy; None: the run's (odometry.precision / --precision)
    max_iterations: int = 30         # LM iterations of one pose-graph solve
    fuse_landmarks: bool = True      # duplicate landmarks on both sides of a loop become one
    min_keyframes_between: int = 10  # keyframes after an accepted loop before the next one is tried
    blocking: bool = False           # tracking waits for loop closure of each keyframe (deterministic runs)
    global_ba: bool = False          # bundle adjustment of the whole map after each loop (off: docs/architecture.md)
    global_ba_iterations: int = 10   # its LM iterations
    check_fp64: bool = False         # also solve every pose graph in fp64 and record its cost (benchmarks)
    nice: int = 15                   # loop thread below tracking and the odometry worker


@dataclass
class RunConfig:
    """Everything `slam run` reads from its YAML file."""

    source: SourceConfig = field(default_factory=SourceConfig)
    frontend: FrontendConfig = field(default_factory=FrontendConfig)
    keyframes: KeyframeConfig = field(default_factory=KeyframeConfig)
    odometry: OdometryConfig = field(default_factory=OdometryConfig)
    loop: LoopConfig = field(default_factory=LoopConfig)

    def as_dict(self) -> dict[str, Any]:
        """Plain nested dict (for report.json)."""
        return dataclasses.asdict(self)


# Dotted key -> allowed values, checked after types.
CHOICES: dict[str, tuple[str, ...]] = {
    "source.sensor": SENSORS,
    "source.synthetic_sensor": SYNTHETIC_SENSORS,
    "odometry.loss": LOSSES,
    "odometry.precision": PRECISIONS,
    "odometry.preconditioner": ("jacobi", "schur"),
    "loop.precision": PRECISIONS,
}
# Dotted key -> (lowest, highest) allowed numbers (None: unbounded).
RANGES: dict[str, tuple[float | None, float | None]] = {
    "frontend.max_features": (10, None), "frontend.grid_cols": (1, None), "frontend.grid_rows": (1, None),
    "frontend.klt_window": (5, None), "frontend.klt_levels": (0, 8), "frontend.min_inliers": (6, None),
    "frontend.reprojection_threshold": (0.1, None), "frontend.fb_threshold": (0.01, None),
    "keyframes.max_rate_hz": (0.01, None), "odometry.window": (2, None), "odometry.max_fixed": (1, None),
    "odometry.max_iterations": (1, None), "odometry.cg_max_iterations": (1, None),
    "odometry.relative_cost_tol": (0.0, 1.0),
    "odometry.loss_scale": (1e-3, None), "source.prefetch": (0, 64),
    "loop.place_features": (0, 5000), "loop.recent_keyframes": (1, None), "loop.min_inliers": (6, None),
    "loop.covisibility_min_shared": (1, None), "loop.sigma_rotation": (1e-9, None),
    "loop.sigma_translation": (1e-9, None), "loop.sigma_scale": (1e-9, None), "loop.loop_weight": (1e-6, None),
    "loop.max_iterations": (1, None), "loop.global_ba_iterations": (1, None), "loop.min_keyframes_between": (0, None), "loop.nice": (0, 19),
}


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that remembers the line of every mapping key (for error messages)."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    mapping = yaml.SafeLoader.construct_mapping(loader, node, deep=deep)
    lines = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if isinstance(key, typing.Hashable):
            lines[key] = key_node.start_mark.line + 1
    loader.key_lines[id(mapping)] = lines
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _type_name(tp: Any) -> str:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if args:
        return " or ".join(_type_name(a) for a in args) + (" (or null)" if type(None) in typing.get_args(tp) else "")
    return {int: "an integer", float: "a number", bool: "true/false", str: "a string"}.get(tp, str(tp))


def _coerce(value: Any, tp: Any) -> tuple[bool, Any]:
    """(ok, value converted to tp): ints pass as floats, nothing else is converted."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            ok, v = _coerce(value, arg)
            if ok:
                return True, v
        return False, None
    if tp is type(None):
        return value is None, None
    if tp is bool:
        return isinstance(value, bool), value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok, float(value) if ok else None
    if tp is str:
        return isinstance(value, str), value
    return False, None


def _fill(cls: type, data: Any, prefix: str, path: str, lines: dict[int, dict], line: int | None) -> Any:
    """An instance of dataclass cls from a mapping; errors name the dotted key, file and line."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise FormatError(f"'{prefix or 'top level'}' must be a mapping of keys, got {type(data).__name__}", path, line)
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    key_lines = lines.get(id(data), {})
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        where = key_lines.get(key, line)
        if key not in names:
            raise InputError(f"unknown key '{dotted}'; allowed: {', '.join(names)}", path, where)
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = _fill(tp, value, dotted, path, lines, where)
            continue
        ok, v = _coerce(value, tp)
        if not ok:
            raise InputError(f"key '{dotted}' must be {_type_name(tp)}, got {value!r}", path, where)
        if dotted in CHOICES and v is not None and v not in CHOICES[dotted]:
            raise InputError(f"key '{dotted}' is {v!r}; allowed values: {', '.join(CHOICES[dotted])}", path, where)
        lo, hi = RANGES.get(dotted, (None, None))
        if v is not None and ((lo is not None and v < lo) or (hi is not None and v > hi)):
            raise InputError(f"key '{dotted}' is {v!r}; allowed: {'>= ' + str(lo) if lo is not None else ''}"
                             f"{' and ' if lo is not None and hi is not None else ''}"
                             f"{'<= ' + str(hi) if hi is not None else ''}", path, where)
        kwargs[key] = v
    return cls(**kwargs)


def config_from_dict(data: dict[str, Any], path: str = "<config>") -> RunConfig:
    """A RunConfig from a nested mapping (same checks as a file)."""
    return _fill(RunConfig, data, "", path, {}, None)


def load_config(path: str | Path | None) -> RunConfig:
    """Read a run configuration YAML (None: all defaults)."""
    if path is None:
        return RunConfig()
    p = Path(path)
    if not p.is_file():
        raise InputError("no such configuration file", p)
    loader = _LineLoader(p.read_text(encoding="utf-8"))
    loader.key_lines = {}
    try:
        data = loader.get_single_data()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise FormatError(f"invalid YAML: {getattr(exc, 'problem', exc)}", p,
                          None if mark is None else mark.line + 1) from None
    finally:
        loader.dispose()
    return _fill(RunConfig, data, "", str(p), loader.key_lines, None)


def source_options(cfg: SourceConfig, spec: str) -> tuple[dict[str, Any], bool | None]:
    """The open_source settings mapping and its `stereo` argument for this config and SPEC."""
    opts: dict[str, Any] = {}
    for key in ("calibration", "rate_hz", "tum_camera", "depth", "alpha", "gt_max_dt", "strict", "realtime", "seed"):
        v = getattr(cfg, key)
        if v is not None:
            opts[key] = v
    synthetic = spec.startswith("synthetic:")
    if not synthetic:
        opts.pop("seed", None)
    elif cfg.synthetic_sensor is not None:
        opts["sensor"] = cfg.synthetic_sensor
    elif cfg.sensor in ("stereo", "mono", "rgbd"):
        opts["sensor"] = cfg.sensor
    stereo = {"stereo": True, "mono": False, "rgbd": False, "auto": None}[cfg.sensor]
    if synthetic or cfg.sensor == "rgbd":
        stereo = None  # the synthetic sensor decides; TUM has no stereo to turn off
    return opts, stereo
