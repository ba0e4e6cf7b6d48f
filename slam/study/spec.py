"""The study file: which scenes, sensors, seeds, precisions and loop settings to run.

```yaml
name: quick
scenes: [room_loop]           # synthetic scenes (`slam simulate --list`)
sensors: [stereo, rgbd, mono]
seeds: [0, 1]                 # renderings (textures, noise)
precisions: [fp64, fp32, mixed, fp16]   # odometry (and loop-closure) precision of each run
loop: [false, true]           # runs without and with loop closure
loop_precisions: [mixed]      # loop-closing runs only in these (default: all of `precisions`)
frames: 200                   # frames per run (null: the whole sequence)
pgo_precisions: [fp64, fp32, mixed]     # every PGO problem of a loop run is re-solved in each
config: {odometry: {window: 20}}        # run-config overrides applied to every run
parts:                        # optional: several products in one study, each overriding the keys
  - {scenes: [room_loop], seeds: [0, 1, 2, 3], loop: [false]}
  - {scenes: [office_long], sensors: [stereo], precisions: [mixed], loop: [true]}
```

The runs are the product scenes x sensors x seeds x precisions x loop (loop-closing runs only in
loop_precisions), or the union of each part's product where `parts` is given (a part may set
scenes, sensors, seeds, precisions, loop, loop_precisions and frames; the rest is the study's, so
that odometry histograms over many short renderings and loop-closing runs on a long scene fit one
study). Every run is deterministic
(tracking waits for bundle adjustment and loop closure), so a run's id names its result.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from slam.errors import FormatError, InputError

# The run configuration of each sensor: the same settings as configs/euroc_stereo.yaml,
# configs/tum_rgbd.yaml and configs/euroc_mono.yaml (a test keeps them equal; configs/ is not
# installed with the package). Study runs add odometry.blocking and loop.blocking: deterministic.
SENSOR_CONFIGS: dict[str, dict[str, Any]] = {
    "stereo": {"source": {"sensor": "stereo"}, "frontend": {"max_features": 250, "max_depth": 20.0},
               "keyframes": {"max_rate_hz": 10.0}, "odometry": {"window": 20, "precision": "mixed"},
               "loop": {"enabled": True, "min_inliers": 40}},
    "rgbd": {"source": {"sensor": "rgbd"}, "frontend": {"max_features": 250, "max_depth": 6.0, "rgbd_baseline": 0.08},
             "keyframes": {"max_rate_hz": 10.0}, "odometry": {"window": 20, "precision": "mixed"},
             "loop": {"enabled": True, "min_inliers": 40}},
    "mono": {"source": {"sensor": "mono"}, "frontend": {"max_features": 250, "init_min_flow": 8.0},
             "keyframes": {"max_rate_hz": 10.0},
             "odometry": {"relative_cost_tol": 1.0e-5, "window": 20, "precision": "mixed"},
             "loop": {"enabled": True, "min_inliers": 40}},
}
SENSOR_FILES = {"stereo": "euroc_stereo.yaml", "rgbd": "tum_rgbd.yaml", "mono": "euroc_mono.yaml"}
PRECISIONS = ("fp64", "fp32", "mixed", "fp16")


@dataclass(frozen=True)
class RunSpec:
    """One run of a study: everything that decides its result."""

    scene: str
    sensor: str
    seed: int
    precision: str
    loop: bool
    frames: int | None
    pgo_precisions: tuple[str, ...] = ("fp64", "fp32", "mixed")
    config: str = "{}"  # run-config overrides as canonical YAML (hashable, part of the id)

    @property
    def id(self) -> str:
        """A file-name-safe name that identifies the run within its study."""
        return (f"{self.scene}-{self.sensor}-s{self.seed}-{self.precision}-{'loop' if self.loop else 'vo'}"
                f"-{self.frames or 'all'}")

    def as_dict(self) -> dict[str, Any]:
        """Plain settings for study.json."""
        d = asdict(self)
        d["pgo_precisions"] = list(self.pgo_precisions)
        d["config"] = yaml.safe_load(self.config) or {}
        return d


@dataclass
class StudySpec:
    """A parsed study file."""

    name: str = "study"
    scenes: list[str] = field(default_factory=lambda: ["room_loop"])
    sensors: list[str] = field(default_factory=lambda: ["stereo"])
    seeds: list[int] = field(default_factory=lambda: [0])
    precisions: list[str] = field(default_factory=lambda: list(PRECISIONS))
    loop: list[bool] = field(default_factory=lambda: [False])
    loop_precisions: list[str] | None = None
    frames: int | None = None
    pgo_precisions: list[str] = field(default_factory=lambda: ["fp64", "fp32", "mixed"])
    config: dict[str, Any] = field(default_factory=dict)
    parts: list[dict[str, Any]] = field(default_factory=list)

    def runs(self) -> list[RunSpec]:
        """Every run of the study, in a fixed order (each part's product in turn, without repeats)."""
        if not self.parts:
            return self._product()
        seen: set[str] = set()
        out = []
        for part in self.parts:
            for run in replace(self, parts=[], **part)._product():
                if run.id not in seen:
                    seen.add(run.id)
                    out.append(run)
        return out

    def _product(self) -> list[RunSpec]:
        cfg = yaml.safe_dump(self.config, sort_keys=True)
        loop_prec = self.precisions if self.loop_precisions is None else self.loop_precisions
        return [RunSpec(sc, se, sd, p, lp, self.frames, tuple(self.pgo_precisions), cfg)
                for sc, se, sd, p, lp in itertools.product(self.scenes, self.sensors, self.seeds,
                                                           self.precisions, self.loop)
                if not lp or p in loop_prec]


# What a part of a study may set (config and pgo_precisions are the study's: they are not in a run's id).
PART_KEYS = ("scenes", "sensors", "seeds", "precisions", "loop", "loop_precisions", "frames")
_LISTS = {"scenes": str, "sensors": str, "seeds": int, "precisions": str, "loop": bool, "pgo_precisions": str,
          "loop_precisions": str}


def _check_list(key: str, value: Any, kind: type, where: str) -> list:
    if not isinstance(value, list) or not value:
        raise InputError(f"key '{key}' must be a non-empty list, got {value!r}", where)
    for v in value:
        if not isinstance(v, kind) or (kind is int and isinstance(v, bool)):
            raise InputError(f"key '{key}': every entry must be {kind.__name__}, got {v!r}", where)
    return value


def _check_value(key: str, value: Any, where: str) -> Any:
    """value checked for key (a list's entries, frames, name, config); raises InputError naming the key."""
    if key in _LISTS:
        return _check_list(key, value, _LISTS[key], where)
    if key == "name" and not (isinstance(value, str) and value):
        raise InputError(f"key 'name' must be a non-empty string, got {value!r}", where)
    if key == "frames" and value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 10):
        raise InputError(f"key 'frames' must be an integer >= 10 or null, got {value!r}", where)
    if key == "config" and not isinstance(value, dict):
        raise InputError(f"key 'config' must be a mapping of run-config sections, got {value!r}", where)
    return value


def _check_allowed(values: dict[str, Any], where: str) -> None:
    """Every sensor, precision and scene named in values is one that exists."""
    from slam.synthetic import list_scenes  # lazily: the renderer is heavy

    for key, allowed_values in (("sensors", tuple(SENSOR_CONFIGS)), ("precisions", PRECISIONS),
                                ("pgo_precisions", PRECISIONS), ("loop_precisions", PRECISIONS),
                                ("scenes", tuple(list_scenes()))):
        bad = [v for v in values.get(key) or [] if v not in allowed_values]
        if bad:
            raise InputError(f"key '{key}': {bad[0]!r} is not one of {', '.join(allowed_values)}", where)


def _check_parts(value: Any, where: str) -> list[dict[str, Any]]:
    """The `parts` list: mappings of PART_KEYS, each value checked as at the top level."""
    if not isinstance(value, list) or not value:
        raise InputError(f"key 'parts' must be a non-empty list of mappings, got {value!r}", where)
    for i, part in enumerate(value):
        at = f"{where} (parts[{i}])"
        if not isinstance(part, dict):
            raise InputError(f"every entry of 'parts' must be a mapping, got {part!r}", at)
        for key, v in part.items():
            if key not in PART_KEYS:
                raise InputError(f"unknown key '{key}' in a part; allowed: {', '.join(PART_KEYS)}", at)
            _check_value(key, v, at)
        _check_allowed(part, at)
    return value


def _check_parts_expand(spec: "StudySpec", where: str) -> None:
    """Every part gives at least one run (e.g. not loop: [true] with none of loop_precisions)."""
    for i, part in enumerate(spec.parts):
        if not replace(spec, parts=[], **part)._product():
            raise InputError("this part gives no runs (are its loop-closing precisions among loop_precisions?)",
                             f"{where} (parts[{i}])")


def study_from_dict(data: Any, where: str = "<study>") -> StudySpec:
    """A StudySpec from a mapping; unknown keys and bad values are errors naming the key."""
    if not isinstance(data, dict):
        raise FormatError("a study file must be a mapping of keys", where)
    allowed = {f for f in StudySpec.__dataclass_fields__}
    spec = StudySpec()
    for key, value in data.items():
        if key not in allowed:
            raise InputError(f"unknown key '{key}'; allowed: {', '.join(sorted(allowed))}", where)
        value = _check_parts(value, where) if key == "parts" else _check_value(key, value, where)
        setattr(spec, key, value)
    _check_allowed(asdict(spec), where)
    _check_parts_expand(spec, where)
    from slam.config import config_from_dict  # overrides must be a valid run config on their own
    config_from_dict(spec.config, f"{where} (key 'config')")
    return spec


def load_study(path: str | Path) -> StudySpec:
    """Read a study YAML file."""
    from slam.io.yamlfile import read_yaml_lines  # the project's one YAML reader (errors name file and line)

    p = Path(path)
    if not p.is_file():
        raise InputError("no such study file", p)
    data, _ = read_yaml_lines(p, "study file")
    return study_from_dict(data, str(p))
