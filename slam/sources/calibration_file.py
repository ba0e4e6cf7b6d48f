"""Writing the camera calibration YAML that `slam run --calibration FILE` reads (load_calibration)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import yaml

from slam.io.text import write_text_atomic
from slam.sources.base import CameraModel
from slam.sources.video import load_calibration


def calibration_yaml(cam: CameraModel, rate_hz: float | None = None, info: dict[str, Any] | None = None,
                     comment: str = "") -> str:
    """The YAML text of a calibration file: intrinsics, distortion, rate and an informational section."""
    data: dict[str, Any] = {
        "width": int(cam.width), "height": int(cam.height),
        "fx": float(cam.fx), "fy": float(cam.fy), "cx": float(cam.cx), "cy": float(cam.cy),
        "distortion_model": cam.distortion_model,
        "distortion": [float(d) for d in np.asarray(cam.distortion, dtype=np.float64).ravel()],
    }
    if rate_hz:
        data["rate_hz"] = float(rate_hz)
    if info:
        data["calibration_info"] = _plain(info)
    head = "".join(f"# {line}\n" for line in comment.splitlines())
    return head + yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=100)


def _plain(x: Any) -> Any:
    """NumPy scalars and arrays as plain Python values (safe_dump knows only those)."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, np.ndarray)):
        return [_plain(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    return x


def write_calibration(path: str | Path, cam: CameraModel, rate_hz: float | None = None,
                      info: dict[str, Any] | None = None, comment: str = "") -> None:
    """Write a calibration YAML atomically, then read it back with load_calibration (same model or an error)."""
    write_text_atomic(path, calibration_yaml(cam, rate_hz, info, comment))
    back, _ = load_calibration(path)
    # yaml writes floats with repr: the round trip is exact, so this only fails on a writer/reader mismatch.
    if not (np.array_equal(back.K, cam.K) and np.array_equal(back.distortion, np.asarray(cam.distortion))):
        raise RuntimeError(f"{path}: the calibration read back differs from the one written")
