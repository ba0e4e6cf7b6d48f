"""`synthetic:SCENE` as a Source: the scenes rendered frame by frame with exact ground truth.

Sensors: 'stereo' EuRoC-like (752x480 gray, 20 Hz, 11 cm baseline, rectified), 'mono' its left
camera, 'rgbd' TUM-like (640x480 BGR + depth in metres, 30 Hz), 'kitti' KITTI-like (1226x370 gray
stereo, 10 Hz, 0.537 m baseline). Frames carry gt_pose = T_world_cam of the left camera; depth is
z (not range) in metres, exact from the geometry, 0 where no surface is seen. Timestamps are whole
microseconds from 0. With clean=False the images get exposure drift, motion blur, lens blur and
noise (effects.py); with clean=True they are exactly the rendering.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterator

import cv2
import numpy as np

from slam.errors import InputError
from slam.geometry.pinhole import backproject
from slam.sources.base import Calibration, CameraModel, Frame, Source
from slam.synthetic.effects import Effects, Imperfections, image_flow
from slam.synthetic.quads import Atlas, Quad, build_atlas
from slam.synthetic.render import QuadSet, Renderer
from slam.synthetic.scenes import SCENES, SceneSpec
from slam.synthetic.trajectory import PathTrajectory


@dataclass(frozen=True)
class SensorSpec:
    """A synthetic camera rig: rectified pinhole intrinsics, rate, stereo baseline, colour/depth."""

    name: str
    intrinsics: CameraModel
    rate_hz: float
    baseline: float | None = None
    color: bool = False
    depth: bool = False

    def camera(self) -> CameraModel:
        """The pinhole model of the delivered images (a copy: a source may not alter the preset)."""
        return dataclasses.replace(self.intrinsics)


# Intrinsics chosen so that OpenCV's stereoRectify of the written EuRoC files gives back the same
# pinhole camera (the loader rectifies; these values survive it to 1e-13).
SENSORS: dict[str, SensorSpec] = {
    "stereo": SensorSpec("stereo", CameraModel(752, 480, 458.0, 458.0, 367.0, 248.0), 20.0, baseline=0.11),
    "mono": SensorSpec("mono", CameraModel(752, 480, 458.0, 458.0, 367.0, 248.0), 20.0),
    "rgbd": SensorSpec("rgbd", CameraModel(640, 480, 525.0, 525.0, 319.5, 239.5), 30.0, color=True, depth=True),
    "kitti": SensorSpec("kitti", CameraModel(1226, 370, 707.0912, 707.0912, 601.8873, 183.1104), 10.0,
                        baseline=0.537),
}


def list_scenes() -> list[str]:
    """Names of the synthetic scenes."""
    return list(SCENES)


def scene_spec(name: str) -> SceneSpec:
    """The SceneSpec called `name`, or InputError listing the scenes."""
    if name not in SCENES:
        raise InputError(f"unknown synthetic scene '{name}'; expected one of {', '.join(SCENES)}")
    return SCENES[name]


@dataclass
class World:
    """A built scene: quads, their textures, the trajectory."""

    spec: SceneSpec
    quads: list[Quad]
    atlas: Atlas
    quadset: QuadSet
    trajectory: PathTrajectory


@lru_cache(maxsize=4)
def _textured(layout: Callable[[], list[Quad]], seed: int) -> tuple[list[Quad], Atlas, QuadSet]:
    quads = layout()
    atlas = build_atlas(quads, seed)
    return quads, atlas, QuadSet(quads, atlas)


def build_world(scene: str, seed: int = 0) -> World:
    """Geometry, textures (cached per layout and seed) and trajectory of a scene."""
    spec = scene_spec(scene)
    quads, atlas, qs = _textured(spec.layout, int(seed))
    return World(spec, quads, atlas, qs, spec.trajectory())


def frame_times(rate_hz: float, n: int) -> np.ndarray:
    """Timestamps in seconds of n frames at rate_hz, rounded to whole microseconds."""
    return np.round(np.arange(n) * (1e6 / rate_hz)) * 1e-6


class SyntheticSource(Source):
    """Renders a scene along its trajectory, frame by frame, with exact ground truth.

    `effects` (effects.Effects) overrides what clean chooses: noise, blur and exposure levels.
    """

    kind = "synthetic"

    def __init__(self, scene: str, sensor: str = "stereo", frames: int | None = None, seed: int = 0,
                 clean: bool = False, effects: Effects | None = None) -> None:
        if sensor not in SENSORS:
            raise InputError(f"unknown synthetic sensor '{sensor}'; expected one of {', '.join(SENSORS)}")
        self.scene, self.sensor, self.seed, self.clean = scene, SENSORS[sensor], int(seed), bool(clean)
        self.world = build_world(scene, self.seed)
        traj = self.world.trajectory
        available = int(np.floor(traj.duration * self.sensor.rate_hz + 1e-9)) + 1
        if frames is None:
            frames = available
        elif frames < 1:
            raise InputError(f"frames must be at least 1, got {frames}")
        elif frames > available and not traj.closed:
            raise InputError(f"scene '{scene}' lasts {traj.duration:.1f} s: at most {available} frames "
                             f"at {self.sensor.rate_hz:g} Hz, asked for {frames}")
        self.frames = int(frames)
        self.timestamps = frame_times(self.sensor.rate_hz, self.frames)
        self.poses = traj.poses(self.timestamps)
        cam = self.sensor.camera()
        b = self.sensor.baseline
        self.T_cam0_cam1 = None
        if b is not None:
            self.T_cam0_cam1 = np.eye(4)
            self.T_cam0_cam1[0, 3] = b
        self.calibration = Calibration(camera=cam, rate_hz=self.sensor.rate_hz, baseline=b,
                                       raw_cameras=[cam] + ([cam] if b is not None else []),
                                       T_cam0_cam1=self.T_cam0_cam1)
        self.effects = effects if effects is not None else Effects.none() if clean else Effects()
        self._renderer: Renderer | None = None
        shape = (cam.height, cam.width, 3) if self.sensor.color else (cam.height, cam.width)
        self._imperfect = Imperfections(self.effects, self.seed, shape)

    @property
    def renderer(self) -> Renderer:
        """The renderer of this sensor (built on first use)."""
        if self._renderer is None:
            w = self.world
            self._renderer = Renderer(w.quadset, w.atlas, self.sensor.camera(), color=self.sensor.color,
                                      sky=w.spec.sky)
        return self._renderer

    def __len__(self) -> int:
        return self.frames

    def surface_points(self, T_world_cam: np.ndarray, uv: np.ndarray) -> np.ndarray:
        """(N,3) world points the (left) camera at T_world_cam sees at pixels uv (N,2), from the
        rendered depth (bilinear in inverse depth); NaN where nothing is rendered."""
        uv = np.asarray(uv, np.float64).reshape(-1, 2)
        iz = self.renderer.render(T_world_cam)[1].astype(np.float32)  # a copy: the renderer reuses its buffers
        inv_z = cv2.remap(iz, uv[:, 0].astype(np.float32)[None], uv[:, 1].astype(np.float32)[None],
                          cv2.INTER_LINEAR)[0]
        z = np.where(inv_z > 0, 1.0 / np.maximum(inv_z, 1e-12), np.nan)
        c = self.sensor.intrinsics
        K = np.array([[c.fx, 0.0, c.cx], [0.0, c.fy, c.cy], [0.0, 0.0, 1.0]])
        return backproject(uv, z, K, T_world_cam)

    def render(self, i: int) -> Frame:
        """Frame i (any order; each frame depends only on its index)."""
        if not 0 <= i < self.frames:
            raise IndexError(f"frame {i} out of range 0..{self.frames - 1}")
        T = self.poses[i]
        t = float(self.timestamps[i])
        left, iz = self.renderer.render(T)
        depth = None
        if self.sensor.depth:
            depth = np.zeros(iz.shape, np.float32)
            np.divide(1.0, iz, out=depth, where=iz > 0)
        flow = None
        if not self.effects.clean:
            sub = iz[::4, ::4]
            sub = sub[sub > 0]  # the median of a subsample is plenty for a blur length
            inv_d = float(np.median(sub)) if sub.size else 0.0
            dt = 0.01
            T1 = self.world.trajectory.poses(np.array([t + dt]))[0]
            flow = image_flow(T, T1, dt, self.sensor.intrinsics.fx, self.sensor.intrinsics.fy, inv_d)
        left = self._imperfect.apply(left, t, i, 0, flow)
        right = None
        if self.T_cam0_cam1 is not None:
            right, _ = self.renderer.render(T @ self.T_cam0_cam1)
            right = self._imperfect.apply(right, t, i, 1, flow)
        return Frame(index=i, timestamp=t, left=left, right=right, depth=depth, gt_pose=T.copy())

    def __iter__(self) -> Iterator[Frame]:
        for i in range(self.frames):
            yield self.render(i)

    def info(self) -> dict[str, Any]:
        """Description for `slam info`."""
        cam = self.calibration.camera
        sensors = ["cam0"] + (["cam1"] if self.sensor.baseline is not None else []) + (
            ["depth"] if self.sensor.depth else [])
        return {
            "kind": self.kind, "frames": self.frames, "rate_hz": float(self.sensor.rate_hz),
            "resolution": [int(cam.width), int(cam.height)], "stereo": self.calibration.stereo,
            "depth": bool(self.sensor.depth), "ground_truth": self.frames, "sensors": sensors,
            "missing_files": [], "problems": [], "calibration": self.calibration.as_dict(),
            "scene": self.scene, "sensor": self.sensor.name, "seed": self.seed, "clean": self.clean,
            "duration_s": float(self.timestamps[-1]),
        }

