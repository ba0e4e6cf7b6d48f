"""Place recognition on a bare image sequence (no calibration): what `slam places` runs.

API:

    PlaceParams(n_features=1000, min_inliers=30, min_consistency=2, min_shared=15, gap=1, ...)
    PlaceRecognizer(params).add(name, gray) -> dict | None     # one image, in sequence order
    recognise_places(images: Iterable[tuple[str, np.ndarray]], params) -> list[dict]

Each revisit is {"query": name, "match": earlier name, "score": database score, "inliers": n}.

The database and the loop detector are those of SLAM (slam.loop.database, slam.loop.detector). What a
map's covisibility does there, direct matches do here: the neighbours of image i are the contiguous
run of images just before it that i still matches (ORB, ratio test, fundamental-matrix RANSAC, at
least `min_shared` inliers), i.e. the camera has kept their view in sight all the way to i.
Neighbours are never candidates: a camera that stands still, or drives forward looking at the same
distant scene, does not "revisit" it; a camera that left a place (the run broke) and came back does.
A candidate that passes the detector is verified by the epipolar geometry: ORB matches between
the two images, cv2.findFundamentalMat RANSAC, at least `min_inliers` inliers. The same place seen
from metres farther or closer appears scaled, so the similarity that maps the match's inlier pixels
onto the query's (cv2.estimateAffinePartial2D) must scale by at most `max_scale_change` either way:
a camera still approaching a place it saw is not there yet (bench: this removes most reports whose
two cameras are more than 1 m apart). The candidate and its two sequence neighbours are verified
and the one with the most inliers is reported, the nearest view as a rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import cv2
import numpy as np

from slam.geometry.matching import match_descriptors
from slam.loop.database import PlaceDatabase
from slam.loop.detector import LoopDetector


@dataclass(frozen=True)
class PlaceParams:
    """Settings of image-sequence place recognition."""

    n_features: int = 1000        # ORB features per image
    min_inliers: int = 30         # fundamental-matrix inliers of an accepted revisit
    min_consistency: int = 2      # consecutive images that must agree on a candidate place
    min_shared: int = 20          # epipolar inliers that make two consecutive-run images neighbours
    gap: int = 1                  # the previous `gap` images are always neighbours
    ratio: float = 0.8            # Lowe's ratio for image-to-image matches
    f_threshold: float = 2.0      # px, epipolar distance of RANSAC inliers
    max_verify: int = 3           # candidates verified per image (each with its two sequence neighbours)
    max_scale_change: float = 1.2  # largest image scale between a revisit and its match (either way)


def epipolar_inliers(uv1: np.ndarray, d1: np.ndarray, uv2: np.ndarray, d2: np.ndarray, ratio: float,
                     threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(index in 1, index in 2) of ORB matches that are inliers of a RANSAC fundamental matrix."""
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64))
    q, t = match_descriptors(d1, d2, ratio=ratio)
    if len(q) < 8:
        return empty
    try:
        F, mask = cv2.findFundamentalMat(uv1[q], uv2[t], cv2.FM_RANSAC, threshold, 0.999)
    except cv2.error:
        return empty
    if F is None or mask is None or F.shape != (3, 3):  # degenerate: several or no solutions
        return empty
    keep = mask.ravel().astype(bool)
    return q[keep], t[keep]


def view_scale(uv_match: np.ndarray, uv_query: np.ndarray) -> float | None:
    """Scale of the RANSAC similarity taking matched pixels of one image onto the other (None: no fit)."""
    if len(uv_match) < 3:
        return None
    try:
        M, _ = cv2.estimateAffinePartial2D(uv_match, uv_query, method=cv2.RANSAC, ransacReprojThreshold=3.0)
    except cv2.error:
        return None
    if M is None or not np.isfinite(M).all():
        return None
    s = float(np.hypot(M[0, 0], M[1, 0]))
    return s if s > 0 else None


class PlaceRecognizer:
    """Feeds images one by one to the database and detector; reports verified revisits."""

    def __init__(self, params: PlaceParams | None = None) -> None:
        self.params = p = params or PlaceParams()
        self.orb = cv2.ORB_create(nfeatures=p.n_features)
        self.detector = LoopDetector(PlaceDatabase(), min_consistency=p.min_consistency)
        self.names: list[str] = []
        self.uv: list[np.ndarray] = []
        self.desc: list[np.ndarray] = []
        self.first_neighbour: list[int] = []  # first image of each image's neighbour run
        self.rejections: dict[str, int] = {"epipolar": 0, "scale": 0}

    def features(self, gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """ORB pixels (N,2) and descriptors (N,32) of an image."""
        kp, d = self.orb.detectAndCompute(gray, None)
        if d is None or not kp:
            return np.zeros((0, 2)), np.zeros((0, 32), np.uint8)
        return cv2.KeyPoint_convert(kp).astype(np.float64), d

    def neighbours_of(self, i: int) -> set[int]:
        """Neighbours of image i: its own run of earlier images and the later images whose run holds i."""
        first = np.asarray(self.first_neighbour)
        later = np.flatnonzero(first[i + 1:] <= i) + i + 1
        return set(range(first[i], i)) | set(later.tolist())

    def _links(self, i: int, j: int, uv: np.ndarray, d: np.ndarray) -> bool:
        """Whether image i still sees image j's view: at least min_shared epipolar inliers."""
        p = self.params
        if len(uv) == 0 or len(self.uv[j]) == 0:
            return False
        a, _ = epipolar_inliers(uv, d, self.uv[j], self.desc[j], p.ratio, p.f_threshold)
        return len(a) >= p.min_shared

    def _window(self, i: int, uv: np.ndarray, d: np.ndarray) -> int:
        """First image of the contiguous run before i that image i directly matches (its neighbours).

        The run starts where the previous image's run started when image i still matches that image
        (then it may reach further back), else where image i's matches begin: each image is tested a
        bounded number of times over the sequence, since run starts only move forward except when the
        camera has kept the whole run in view.
        """
        p = self.params
        if i == 0:
            return 0
        f = self.first_neighbour[i - 1]
        if f < i - 1 and self._links(i, f, uv, d):
            while f > 0 and self._links(i, f - 1, uv, d):
                f -= 1
        else:
            f = max(f, 0)
            while f < i - 1 and not self._links(i, f, uv, d):
                f += 1
            if f == i - 1 and not self._links(i, f, uv, d):
                f = i
        return min(f, max(0, i - p.gap))

    def add(self, name: str, gray: np.ndarray) -> dict | None:
        """Process the next image; the revisit it is, if any."""
        p = self.params
        i = len(self.names)
        uv, d = self.features(gray)
        self.first_neighbour.append(self._window(i, uv, d))
        self.names.append(name)
        self.uv.append(uv)
        self.desc.append(d)
        excluded = np.arange(self.first_neighbour[i], i)
        cands = self.detector.detect(i, d, excluded, self.neighbours_of)
        best: tuple[int, int] | None = None  # (image, inliers)
        tried: set[int] = set()
        for c, _ in cands[: p.max_verify]:
            outcome = "epipolar"
            for j in (c - 1, c, c + 1):
                if j in tried or not 0 <= j < self.first_neighbour[i]:
                    continue
                tried.add(j)
                a, b = epipolar_inliers(uv, d, self.uv[j], self.desc[j], p.ratio, p.f_threshold)
                if len(a) < p.min_inliers:
                    continue
                sc = view_scale(self.uv[j][b], uv[a])
                if sc is None or not 1.0 / p.max_scale_change <= sc <= p.max_scale_change:
                    outcome = "scale" if outcome != "ok" else outcome
                    continue
                outcome = "ok"
                if best is None or len(a) > best[1]:
                    best = (j, int(len(a)))
            if outcome != "ok":
                self.rejections[outcome] += 1
        if best is None:
            return None
        j, n = best
        # The score the detector saw, before this image joined the database (and changed the idf).
        score = self.detector.last_scores.get(j, 0.0)
        return {"query": name, "match": self.names[j], "score": round(score, 4), "inliers": n}


def recognise_places(images: Iterable[tuple[str, np.ndarray]], params: PlaceParams | None = None) -> list[dict]:
    """Revisits found in a sequence of (name, grayscale image), in sequence order."""
    rec = PlaceRecognizer(params)
    out = []
    for name, gray in images:
        r = rec.add(name, gray)
        if r is not None:
            out.append(r)
    return out
