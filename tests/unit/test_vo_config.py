"""Run configuration: typed loading, errors that name the file, line, key and allowed values."""

from __future__ import annotations

from pathlib import Path

import pytest

from slam.config import RunConfig, config_from_dict, load_config, source_options
from slam.errors import InputError

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_configs_load(path: Path) -> None:
    cfg = load_config(path)
    assert isinstance(cfg, RunConfig) and cfg.odometry.window >= 2


def test_values_and_defaults(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("frontend:\n  max_features: 123\n  quality_level: 1\nodometry:\n  precision: fp64\n")
    cfg = load_config(p)
    assert cfg.frontend.max_features == 123 and cfg.frontend.quality_level == 1.0
    assert isinstance(cfg.frontend.quality_level, float)
    assert cfg.odometry.precision == "fp64" and cfg.keyframes.max_rate_hz == 10.0


@pytest.mark.parametrize("text, words", [
    ("frontend:\n  max_feature: 10\n", ["c.yaml:2", "'frontend.max_feature'", "max_features"]),
    ("odometry:\n  window: ten\n", ["c.yaml:2", "'odometry.window'", "an integer"]),
    ("odometry:\n  window: true\n", ["'odometry.window'", "an integer"]),
    ("odometry:\n  loss: tukey\n", ["'odometry.loss'", "huber, cauchy, none"]),
    ("source:\n  sensor: lidar\n", ["'source.sensor'", "auto, stereo, mono, rgbd"]),
    ("odometry:\n  window: 1\n", ["'odometry.window'", ">= 2"]),
    ("viewer: yes\n", ["c.yaml:1", "unknown key 'viewer'", "source, frontend, keyframes, odometry"]),
    ("frontend: 3\n", ["'frontend' must be a mapping"]),
    ("frontend:\n  max_features: [1\n", ["invalid YAML"]),
])
def test_bad_keys_are_named(tmp_path: Path, text: str, words: list[str]) -> None:
    p = tmp_path / "c.yaml"
    p.write_text(text)
    with pytest.raises(InputError) as err:
        load_config(p)
    for w in words:
        assert w in str(err.value)


def test_missing_file_and_source_options() -> None:
    with pytest.raises(InputError, match="no such configuration file"):
        load_config("/nonexistent/run.yaml")
    cfg = config_from_dict({"source": {"sensor": "mono", "seed": 3, "alpha": 0.5}})
    opts, stereo = source_options(cfg.source, "synthetic:room_loop")
    assert opts == {"alpha": 0.5, "seed": 3, "sensor": "mono"} and stereo is None
    opts, stereo = source_options(cfg.source, "/data/kitti/07")
    assert opts == {"alpha": 0.5} and stereo is False
