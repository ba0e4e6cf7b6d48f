"""What every frame source yields: Frame, CameraModel, Calibration and the Source interface."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np


@dataclass
class CameraModel:
    """A camera's intrinsics and lens distortion, in pixels.

    distortion_model: 'none', 'radtan' (k1 k2 p1 p2 [k3], OpenCV order) or 'equidistant' (k1..k4).
    """

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    distortion_model: str = "none"
    distortion: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def K(self) -> np.ndarray:
        """The 3x3 intrinsic matrix."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    def as_dict(self) -> dict[str, Any]:
        """Plain-JSON description (used by `slam info --json`)."""
        return {
            "width": int(self.width), "height": int(self.height),
            "fx": float(self.fx), "fy": float(self.fy), "cx": float(self.cx), "cy": float(self.cy),
            "distortion_model": self.distortion_model,
            "distortion": [float(d) for d in np.asarray(self.distortion).ravel()],
        }


@dataclass
class Calibration:
    """Calibration of a source as the frames are delivered (after undistortion/rectification).

    `camera` describes the images a Frame carries: when a source rectifies, this is the rectified
    pinhole model (distortion 'none'); `raw_cameras` keeps the models read from the dataset.
    `baseline` (metres) is set for rectified stereo; `T_body_cam` (4x4) where the dataset gives one.
    """

    camera: CameraModel
    rate_hz: float
    baseline: float | None = None
    depth_scale: float | None = None
    T_body_cam: np.ndarray | None = None
    raw_cameras: list[CameraModel] = field(default_factory=list)
    T_cam0_cam1: np.ndarray | None = None

    @property
    def stereo(self) -> bool:
        """True when frames carry a rectified right image."""
        return self.baseline is not None

    def as_dict(self) -> dict[str, Any]:
        """Plain-JSON description: the delivered intrinsics at top level (fx fy cx cy ...)."""
        d = self.camera.as_dict()
        d["rate_hz"] = float(self.rate_hz)
        d["baseline"] = None if self.baseline is None else float(self.baseline)
        d["depth_scale"] = None if self.depth_scale is None else float(self.depth_scale)
        d["raw_cameras"] = [c.as_dict() for c in self.raw_cameras]
        return d


class Frame:
    """One time instant of a source.

    left: uint8 image (grayscale HxW or BGR HxWx3); right: rectified right image or None;
    depth: float32 metres (0 where unknown) registered to `left`, or None;
    gt_pose: 4x4 float64 T_world_cam of the left camera, or None.

    A source may pass `right_loader` instead of `right`: a function that returns the right image,
    called on the first read of `right` (tracking needs it only at keyframes, so frames that do not
    become keyframes never decode it).
    """

    __slots__ = ("index", "timestamp", "left", "depth", "gt_pose", "_right", "_right_loader")

    def __init__(self, index: int, timestamp: float, left: np.ndarray, right: np.ndarray | None = None,
                 depth: np.ndarray | None = None, gt_pose: np.ndarray | None = None,
                 right_loader: Callable[[], np.ndarray] | None = None) -> None:
        self.index, self.timestamp, self.left = index, timestamp, left
        self.depth, self.gt_pose = depth, gt_pose
        self._right, self._right_loader = right, (None if right is not None else right_loader)

    @property
    def right(self) -> np.ndarray | None:
        """The rectified right image (decoded now if the source deferred it), or None."""
        if self._right_loader is not None:
            self._right, self._right_loader = self._right_loader(), None
        return self._right

    @right.setter
    def right(self, img: np.ndarray | None) -> None:
        self._right, self._right_loader = img, None

    @property
    def has_right(self) -> bool:
        """True when the frame has a right image (without decoding a deferred one)."""
        return self._right is not None or self._right_loader is not None

    def __repr__(self) -> str:
        return f"Frame(index={self.index}, timestamp={self.timestamp}, left={getattr(self.left, 'shape', None)})"


class Source(ABC):
    """A sequence of frames with one calibration; iterate it, then close it (or use `with`)."""

    calibration: Calibration
    kind: str = "unknown"
    live: bool = False  # a camera or stream: frames arrive at their own pace, tracking takes the newest

    @abstractmethod
    def __iter__(self) -> Iterator[Frame]:
        """Yield frames in time order."""

    def __len__(self) -> int:
        """Number of frames when known in advance (live sources raise TypeError)."""
        raise TypeError(f"{type(self).__name__} has no length")

    def info(self) -> dict[str, Any]:
        """Description for `slam info`: keys kind, frames, rate_hz, resolution, stereo, depth,
        ground_truth, missing_files, calibration (and optionally problems)."""
        return {"kind": self.kind, "calibration": self.calibration.as_dict()}

    def close(self) -> None:
        """Release files, threads and devices."""

    def __enter__(self) -> "Source":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DatasetSource(Source):
    """A recorded dataset read by random access: frame(i), and ground truth as (N,4,4) with NaN rows."""

    gt_poses: np.ndarray | None = None  # T_wc per frame; a NaN row: no pose within the tolerance

    @abstractmethod
    def frame(self, i: int) -> Frame:
        """Frame i (random access; iteration reads them in order)."""

    def __iter__(self) -> Iterator[Frame]:
        return (self.frame(i) for i in range(len(self)))

    def gt_pose(self, i: int) -> np.ndarray | None:
        """A copy of frame i's ground-truth pose, or None."""
        if self.gt_poses is None or np.isnan(self.gt_poses[i, 0, 0]):
            return None
        return self.gt_poses[i].copy()

    @property
    def n_ground_truth(self) -> int:
        """Number of frames with a ground-truth pose."""
        return 0 if self.gt_poses is None else int(np.sum(~np.isnan(self.gt_poses[:, 0, 0])))
