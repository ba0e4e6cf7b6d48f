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

from slam.errors import FormatError, InputError
from slam.frontend.config import FrontendConfig, KeyframeConfig
from slam.io.yamlfile import read_yaml_lines
from slam.loop.config import LoopConfig
from slam.odometry.config import OdometryConfig
from slam.solvers.precision import PRESETS

SENSORS = ("auto", "stereo", "mono", "rgbd")
SYNTHETIC_SENSORS = ("stereo", "mono", "rgbd", "kitti")
LOSSES = ("huber", "cauchy", "none")


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
    "odometry.precision": tuple(PRESETS),
    "odometry.preconditioner": ("jacobi", "schur"),
    "loop.precision": tuple(PRESETS),
}
# Dotted key -> (lowest, highest) allowed numbers (None: unbounded).
RANGES: dict[str, tuple[float | None, float | None]] = {
    "frontend.max_features": (10, None), "frontend.grid_cols": (1, None), "frontend.grid_rows": (1, None),
    "frontend.klt_window": (5, None), "frontend.klt_levels": (0, 8), "frontend.klt_check_levels": (-1, 8), "frontend.min_inliers": (6, None),
    "frontend.reprojection_threshold": (0.1, None), "frontend.fb_threshold": (0.01, None), "frontend.max_track_keyframes": (0, None),
    "keyframes.max_rate_hz": (0.01, None), "odometry.window": (2, None), "odometry.max_fixed": (1, None),
    "odometry.max_iterations": (1, None), "odometry.max_iterations_live": (1, None), "odometry.max_lag": (-1, None), "odometry.cg_max_iterations": (1, None),
    "odometry.relative_cost_tol": (0.0, 1.0),
    "odometry.loss_scale": (1e-3, None), "odometry.loss_sigmas": (0, None), "odometry.loss_scale_min": (1e-3, None), "source.prefetch": (0, 64),
    "loop.place_features": (0, 5000), "loop.place_rate_hz": (0.0, None), "loop.recent_keyframes": (1, None), "loop.min_inliers": (6, None), "loop.max_distance": (0.0, None), "loop.max_steps_behind": (0.0, None),
    "loop.covisibility_min_shared": (1, None), "loop.sigma_rotation": (1e-9, None),
    "loop.sigma_translation": (1e-9, None), "loop.sigma_scale": (1e-9, None), "loop.loop_weight": (1e-6, None),
    "loop.covisibility_weight": (1e-6, None),
    "loop.max_iterations": (1, None), "loop.pgo_max_keyframes": (0, None), "loop.pgo_local_path_keyframes": (0, None), "loop.global_ba_iterations": (1, None), "loop.global_ba_max_keyframes": (0, None), "loop.min_keyframes_between": (0, None), "loop.nice": (0, 19),
}


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
    data, key_lines = read_yaml_lines(p, "configuration file")
    return _fill(RunConfig, data, "", str(p), key_lines, None)


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
