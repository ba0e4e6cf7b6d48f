"""`slam info SPEC`: what a source holds (kind, frames, rate, calibration, ground truth, problems)."""

from __future__ import annotations

import argparse
import json
import warnings
from typing import Any

from slam.sources.common import SourceWarning
from slam.sources.open import open_source

KEYS = ("kind", "frames", "rate_hz", "resolution", "stereo", "depth", "ground_truth", "sensors",
        "missing_files", "problems", "calibration")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `slam info`."""
    parser.add_argument("spec", metavar="SPEC",
                        help="dataset folder (EuRoC/TUM/KITTI), video file, image folder, camera:N, URL or synthetic:SCENE")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument("--calibration", metavar="FILE", help="camera calibration YAML (video, images, camera)")
    parser.add_argument("--rate", type=float, metavar="HZ", help="frame rate for sources whose files give none")
    parser.add_argument("--tum-camera", choices=("freiburg1", "freiburg2", "freiburg3", "ros_default"),
                        help="TUM camera when the folder name does not say")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--stereo", dest="stereo", action="store_true", default=None, help="require stereo")
    group.add_argument("--mono", dest="stereo", action="store_false", help="left camera only")


def describe(spec: str, config: dict[str, Any] | None = None, stereo: bool | None = None) -> dict[str, Any]:
    """The info dictionary of SPEC, every key of KEYS present; problems are listed, not raised."""
    cfg = dict(config or {})
    cfg.setdefault("strict", False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SourceWarning)  # they are reported in 'problems'
        source = open_source(spec, cfg, stereo)
        try:
            info = dict(source.info())
        finally:
            source.close()
    defaults: dict[str, Any] = {"frames": None, "rate_hz": source.calibration.rate_hz,
                                "resolution": [source.calibration.camera.width, source.calibration.camera.height],
                                "stereo": source.calibration.stereo, "depth": False, "ground_truth": 0,
                                "sensors": [], "missing_files": [], "problems": []}
    for k, v in defaults.items():
        info.setdefault(k, v)
    return {**{k: info[k] for k in KEYS}, **{k: v for k, v in info.items() if k not in KEYS}}


def _text(info: dict[str, Any]) -> str:
    cal = info["calibration"]
    lines = [f"kind          {info['kind']}" + (f"  ({info['path']})" if "path" in info else "")]
    lines.append(f"frames        {'live (unknown)' if info['frames'] is None else info['frames']}")
    lines.append(f"rate          {info['rate_hz']:.3f} Hz")
    lines.append(f"resolution    {info['resolution'][0]}x{info['resolution'][1]}")
    lines.append(f"sensors       {', '.join(info['sensors']) or '-'}")
    stereo = f"yes, rectified, baseline {cal['baseline']:.4f} m" if info["stereo"] else "no"
    lines.append(f"stereo        {stereo}")
    depth = f"yes, scale {cal['depth_scale']:g} per metre" if info["depth"] else "no"
    lines.append(f"depth         {depth}")
    n = info["frames"]
    lines.append(f"ground truth  {info['ground_truth']} of {n} frames" if n else f"ground truth  {info['ground_truth']}")
    model = "pinhole, no distortion" if cal["distortion_model"] == "none" else cal["distortion_model"]
    lines.append(f"calibration   fx {cal['fx']:.3f}  fy {cal['fy']:.3f}  cx {cal['cx']:.3f}  cy {cal['cy']:.3f}"
                 f"  ({model}, as the frames are delivered)")
    for i, raw in enumerate(cal.get("raw_cameras", [])):
        dist = " ".join(f"{d:.6g}" for d in raw["distortion"]) or "-"
        lines.append(f"  raw camera {i}  fx {raw['fx']:.3f}  fy {raw['fy']:.3f}  cx {raw['cx']:.3f}  "
                     f"cy {raw['cy']:.3f}  {raw['distortion_model']} [{dist}]")
    missing = info["missing_files"]
    lines.append(f"missing files {len(missing)}")
    lines += [f"  {m}" for m in missing[:20]] + ([f"  ... {len(missing) - 20} more"] if len(missing) > 20 else [])
    lines.append(f"problems      {len(info['problems'])}")
    lines += [f"  {p}" for p in info["problems"]]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Print the description of args.spec; 0 when it opened (problems are listed, not fatal)."""
    config: dict[str, Any] = {}
    if args.calibration:
        config["calibration"] = args.calibration
    if args.rate:
        config["rate_hz"] = args.rate
    if args.tum_camera:
        config["tum_camera"] = args.tum_camera
    info = describe(args.spec, config, args.stereo)
    print(json.dumps(info, indent=2) if args.json else _text(info))
    return 0
