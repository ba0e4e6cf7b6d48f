"""open_source(SPEC): pick and open the right source for a dataset folder, file, camera or scene."""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

from slam.errors import InputError
from slam.sources.base import Source
from slam.sources.common import IMAGE_EXTENSIONS

# Keys of the `config` mapping that open_source understands (the source section of a run config).
CONFIG_KEYS = {
    "calibration": "camera calibration YAML (video, image folder, camera; overrides a TUM camera)",
    "rate_hz": "frame rate when the files give none (image folder) or to override a video's",
    "tum_camera": "freiburg1 | freiburg2 | freiburg3 | ros_default (when the TUM folder name says none)",
    "depth": "TUM: use depth.txt (default: when present)",
    "alpha": "undistortion crop: 0 keeps only valid pixels (default), 1 keeps every raw pixel",
    "gt_max_dt": "largest time gap (s) to a ground-truth pose (default 0.02)",
    "strict": "bad timestamps are errors (default true); false reports them and sorts",
    "realtime": "play a video file as a live camera: paced at its fps, newest frame only, drops counted",
    "sensor": "synthetic: sensor kind passed to SyntheticSource",
    "seed": "synthetic: random seed passed to SyntheticSource",
}
_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def detect_kind(spec: str) -> str:
    """What SPEC names: euroc, tum, kitti, video, images, camera, stream or synthetic."""
    if spec.startswith("synthetic:"):
        return "synthetic"
    if spec.startswith("camera:"):
        return "camera"
    if _URL.match(spec):
        return "stream"
    from slam.sources.euroc import find_mav0
    from slam.sources.kitti import is_kitti
    from slam.sources.video import VIDEO_EXTENSIONS

    p = Path(spec)
    if p.is_file():
        if p.suffix.lower() in VIDEO_EXTENSIONS:
            return "video"
        raise InputError(f"not a video file (expected one of {', '.join(VIDEO_EXTENSIONS)}) "
                         "nor a dataset folder", p)
    if not p.is_dir():
        raise InputError("no such file or folder; SPEC must be a dataset folder, a video file, an image "
                         "folder, camera:N, a stream URL or synthetic:SCENE", p)
    if find_mav0(p) is not None:
        return "euroc"
    if (p / "rgb.txt").is_file():
        return "tum"
    if is_kitti(p):
        return "kitti"
    if any(f.suffix.lower() in IMAGE_EXTENSIONS for f in p.iterdir()):
        return "images"
    raise InputError("folder is not a dataset (EuRoC mav0/, TUM rgb.txt, KITTI image_0/+times.txt) "
                     "and holds no images", p)


def open_source(spec: str, config: dict[str, Any] | None = None, stereo: bool | None = None) -> Source:
    """Open SPEC (dataset folder, video, image folder, camera:N, URL, synthetic:SCENE) as a Source.

    `config` holds the optional keys of CONFIG_KEYS; `stereo` None means stereo where the data has it.
    """
    cfg = dict(config or {})
    unknown = sorted(set(cfg) - set(CONFIG_KEYS))
    if unknown:
        raise InputError(f"unknown source setting '{unknown[0]}'; allowed: {', '.join(CONFIG_KEYS)}")
    spec = str(spec)
    kind = detect_kind(spec)
    strict = bool(cfg.get("strict", True))
    alpha = float(cfg.get("alpha", 0.0))
    gt_dt = float(cfg.get("gt_max_dt", 0.02))
    calib = cfg.get("calibration")
    rate = cfg.get("rate_hz")
    if stereo and kind not in ("euroc", "kitti", "synthetic"):
        raise InputError(f"stereo requested but a {kind} source has one camera", spec)

    if kind == "synthetic":
        module = importlib.import_module("slam.synthetic.source")  # lazily: the renderer is heavy
        kwargs: dict[str, Any] = {}
        sensor = cfg.get("sensor") or {True: "stereo", False: "mono", None: None}[stereo]
        if sensor is not None:
            kwargs["sensor"] = sensor
        if "seed" in cfg:
            kwargs["seed"] = int(cfg["seed"])
        return module.SyntheticSource(spec.split(":", 1)[1], **kwargs)
    if kind == "euroc":
        from slam.sources.euroc import EurocSource
        return EurocSource(spec, stereo=stereo, strict=strict, alpha=alpha, gt_max_dt=gt_dt)
    if kind == "tum":
        from slam.sources.tum import TumSource
        return TumSource(spec, camera=cfg.get("tum_camera"), calibration=calib, depth=cfg.get("depth"),
                         strict=strict, alpha=alpha, max_dt=gt_dt)
    if kind == "kitti":
        from slam.sources.kitti import KittiSource
        return KittiSource(spec, stereo=stereo, strict=strict)
    if kind == "video" and not cfg.get("realtime"):
        from slam.sources.video import VideoSource
        return VideoSource(spec, calib, rate_hz=rate, alpha=alpha)
    if kind == "images":
        from slam.sources.video import ImageFolderSource
        return ImageFolderSource(spec, calib, rate_hz=rate, alpha=alpha)
    from slam.sources.camera import LiveSource
    device: int | str = spec
    if kind == "camera":
        num = spec.split(":", 1)[1]
        if not num.isdigit():
            raise InputError(f"'{spec}': expected camera:N with N a device number (camera:0)")
        device = int(num)
    return LiveSource(device, calib, realtime=bool(cfg.get("realtime", False)), rate_hz=rate, alpha=alpha)
