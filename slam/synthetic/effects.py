"""Camera imperfections for synthetic images: exposure drift, motion blur, defocus, sensor noise.

All of it is deterministic for (seed, frame, camera). Motion blur follows the true camera motion
during the exposure time (the image-plane velocity at the image centre from the angular and
linear velocity at the median scene depth), so fast turns smear the image the way they do on a
real drone or handheld camera.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Effects:
    """What a non-clean rendering adds; `Effects.none()` is the clean camera."""

    noise_sigma: float = 2.0  # gray levels, Gaussian read noise
    shot_noise: float = 0.02  # variance per gray level (photon noise)
    exposure_amp: float = 0.22  # log-gain amplitude of the auto-exposure drift
    exposure_period: float = 9.0  # seconds
    exposure_time: float = 0.006  # seconds the shutter is open (motion-blur length)
    defocus: float = 0.5  # Gaussian blur sigma in pixels (lens softness)
    right_gain: float = 1.04  # right camera gain relative to the left (stereo cameras differ)

    @staticmethod
    def none() -> "Effects":
        """No noise, no blur, constant exposure."""
        return Effects(0.0, 0.0, 0.0, 9.0, 0.0, 0.0, 1.0)

    @property
    def clean(self) -> bool:
        """True when the effects change nothing."""
        return self == Effects.none()


def exposure_gain(t: float, effects: Effects, seed: int) -> float:
    """Smooth multiplicative exposure change at time t (1 when clean)."""
    if effects.exposure_amp == 0.0:
        return 1.0
    ph = np.random.default_rng([seed, 977]).uniform(0, 2 * np.pi, 2)
    p = effects.exposure_period
    x = 0.75 * np.sin(2 * np.pi * t / p + ph[0]) + 0.25 * np.sin(2 * np.pi * t / (0.37 * p) + ph[1])
    return float(np.exp(effects.exposure_amp * x))


def motion_kernel(flow: np.ndarray, exposure_time: float) -> np.ndarray | None:
    """Normalized line kernel for an image-plane velocity (px/s) over the exposure, None if < 0.5 px."""
    d = np.asarray(flow, float) * exposure_time
    length = float(np.hypot(*d))
    if length < 0.5:
        return None
    size = 2 * int(np.ceil(length / 2)) + 1
    k = np.zeros((size * 4, size * 4), np.float32)  # drawn at 4x, then area-averaged: soft ends
    c = size * 2
    p0 = (int(round((c - 2 * d[0]) * 16)), int(round((c - 2 * d[1]) * 16)))
    p1 = (int(round((c + 2 * d[0]) * 16)), int(round((c + 2 * d[1]) * 16)))
    cv2.line(k, p0, p1, 1.0, 4, cv2.LINE_AA, 4)
    k = cv2.resize(k, (size, size), interpolation=cv2.INTER_AREA)
    return k / k.sum()


def image_flow(T0: np.ndarray, T1: np.ndarray, dt: float, fx: float, fy: float, inv_depth: float) -> np.ndarray:
    """Image-plane velocity (px/s) at the principal point between camera poses dt apart."""
    dT = np.linalg.inv(T0) @ T1  # motion of the camera in its own frame
    R, v = dT[:3, :3], dT[:3, 3] / dt
    w = 0.5 * np.array([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]]) / dt
    # a static point on the optical axis moves by -w x P - v in the camera frame
    return np.array([fx * (-w[1] - v[0] * inv_depth), fy * (w[0] - v[1] * inv_depth)])


class Imperfections:
    """Applies Effects to rendered uint8 images of one sensor."""

    def __init__(self, effects: Effects, seed: int, shape: tuple[int, ...]) -> None:
        self.e = effects
        self.seed = seed
        self.shape = shape
        self._bank: np.ndarray | None = None

    def _noise(self, rng: np.random.Generator) -> np.ndarray:
        """A unit Gaussian noise image: a random window of a precomputed bank (fast, no repetition
        a tracker could notice)."""
        h, w = self.shape[:2]
        if self._bank is None:
            bank_rng = np.random.default_rng([self.seed, 4243])
            self._bank = bank_rng.standard_normal((h + 97, w + 131) + tuple(self.shape[2:]), dtype=np.float32)
        y, x = int(rng.integers(0, 97)), int(rng.integers(0, 131))
        n = self._bank[y:y + h, x:x + w]
        return n[::-1] if rng.random() < 0.5 else n

    def apply(self, img: np.ndarray, t: float, frame: int, camera: int, flow: np.ndarray | None) -> np.ndarray:
        """The degraded image (uint8) of camera `camera` (0 left, 1 right) at time t."""
        e = self.e
        if e.clean:
            return img
        out = img.astype(np.float32)
        k = motion_kernel(flow, e.exposure_time) if flow is not None and e.exposure_time > 0 else None
        if k is not None:
            out = cv2.filter2D(out, -1, k, borderType=cv2.BORDER_REFLECT)
        if e.defocus > 0:
            out = cv2.GaussianBlur(out, (0, 0), e.defocus)
        gain = exposure_gain(t, e, self.seed) * (e.right_gain if camera == 1 else 1.0)
        out *= np.float32(gain)
        if e.noise_sigma > 0 or e.shot_noise > 0:
            rng = np.random.default_rng([self.seed, frame, camera, 31])
            sigma = np.sqrt(np.float32(e.noise_sigma ** 2) + np.float32(e.shot_noise) * np.maximum(out, 0))
            out += sigma * self._noise(rng)
        return np.clip(out + 0.5, 0, 255).astype(np.uint8)
