"""Planar textured quads, builders for rooms, boxes and walls with doors, and the texture atlas.

A Quad is a rectangle origin + a*u + b*v (a, b in [0, 1]) seen from its front side, the side its
normal n = v x u points to; u runs along texture columns and v along rows, so a wall built with
`wall()` shows its texture upright and unmirrored. All quads of a scene share one texture atlas:
each quad owns a region (plus a margin where its texture continues, so filtering near the edges
reads the same surface), and the atlas carries a mip pyramid for trilinear filtering.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from slam.synthetic.textures import make_texture, tint_for

MIP_LEVELS = 4  # coarsest level 2^-4: 16 texels per pixel before the texture would alias
MARGIN = 32  # texels of texture continuation around each region (multiple of 2^MIP_LEVELS)
MAX_ATLAS = 32000  # cv2.remap needs source images below 32767 pixels on each side


@dataclass
class Quad:
    """A textured rectangle: corner `origin`, edges `u` (texture columns) and `v` (texture rows)."""

    origin: np.ndarray
    u: np.ndarray
    v: np.ndarray
    style: str
    px_per_m: float
    # Quads with the same key >= 0 (and size and style) get the same texture and tint: repeated
    # modules (identical doors, tiles) that look alike from different places. -1: its own texture.
    texture_key: int = -1

    @property
    def normal(self) -> np.ndarray:
        """Unit normal of the visible side."""
        n = np.cross(self.v, self.u)
        return n / np.linalg.norm(n)

    def corners(self) -> np.ndarray:
        """(4, 3) corners in order origin, +u, +u+v, +v."""
        o = np.asarray(self.origin, float)
        return np.array([o, o + self.u, o + self.u + self.v, o + self.v])


def wall(p0: tuple[float, float], p1: tuple[float, float], z0: float, z1: float, style: str,
         px_per_m: float) -> Quad:
    """Vertical quad from p0 to p1 (x, y) between heights z0 < z1, seen from the right of p0 -> p1."""
    o = np.array([p0[0], p0[1], z1], float)
    u = np.array([p1[0] - p0[0], p1[1] - p0[1], 0.0])
    return Quad(o, u, np.array([0.0, 0.0, z0 - z1]), style, px_per_m)


def floor(x0: float, x1: float, y0: float, y1: float, z: float, style: str, px_per_m: float,
          up: bool = True) -> Quad:
    """Horizontal quad over [x0, x1] x [y0, y1] at height z, seen from above (up) or below."""
    if up:
        return Quad(np.array([x0, y1, z]), np.array([x1 - x0, 0.0, 0.0]), np.array([0.0, y0 - y1, 0.0]),
                    style, px_per_m)
    return Quad(np.array([x0, y0, z]), np.array([x1 - x0, 0.0, 0.0]), np.array([0.0, y1 - y0, 0.0]),
                style, px_per_m)


def loop_walls(points: list[tuple[float, float]], z0: float, z1: float, style: str, px_per_m: float,
               overlap: float = 0.0) -> list[Quad]:
    """Walls along a closed polygon; counter-clockwise points face outward, clockwise inward.

    Each wall is extended by `overlap` at both ends so that corners have no cracks.
    """
    quads = []
    for a, b in zip(points, points[1:] + points[:1]):
        a, b = np.asarray(a, float), np.asarray(b, float)
        d = (b - a) / np.linalg.norm(b - a)
        quads.append(wall(tuple(a - overlap * d), tuple(b + overlap * d), z0, z1, style, px_per_m))
    return quads


def box(cx: float, cy: float, sx: float, sy: float, z0: float, z1: float, style: str, px_per_m: float,
        yaw: float = 0.0, top: bool = True) -> list[Quad]:
    """A closed box standing at (cx, cy) with footprint sx x sy, rotated by yaw, all faces outward."""
    c, s = np.cos(yaw), np.sin(yaw)
    local = [(-sx / 2, -sy / 2), (sx / 2, -sy / 2), (sx / 2, sy / 2), (-sx / 2, sy / 2)]
    pts = [(cx + c * x - s * y, cy + s * x + c * y) for x, y in local]
    quads = loop_walls(pts, z0, z1, style, px_per_m)
    if top:
        o = np.array([pts[3][0], pts[3][1], z1])
        quads.append(Quad(o, np.array([pts[2][0] - pts[3][0], pts[2][1] - pts[3][1], 0.0]),
                          np.array([pts[0][0] - pts[3][0], pts[0][1] - pts[3][1], 0.0]), style, px_per_m))
    return quads


def wall_with_doors(p0: tuple[float, float], p1: tuple[float, float], z0: float, z1: float,
                    thickness: float, doors: list[tuple[float, float, float]], style_right: str,
                    style_left: str, px_per_m: float) -> list[Quad]:
    """A thick wall from p0 to p1 with door openings (centre along the wall, width, height).

    Both faces and the door reveals are built; the right face (seen from the right of p0 -> p1)
    gets style_right, the left face style_left. The wall is extended by thickness/2 at both ends.
    """
    a, b = np.asarray(p0, float), np.asarray(p1, float)
    length = float(np.linalg.norm(b - a))
    d = (b - a) / length
    nrm = np.array([d[1], -d[0]])  # right-hand side
    h = thickness / 2
    cuts = sorted(doors)
    edges = [-h] + [x for c, w, _ in cuts for x in (c - w / 2, c + w / 2)] + [length + h]
    quads: list[Quad] = []

    def at(s: float, side: float) -> tuple[float, float]:
        p = a + s * d + side * h * nrm
        return float(p[0]), float(p[1])

    for i in range(0, len(edges), 2):  # solid pieces between openings
        s0, s1 = edges[i], edges[i + 1]
        if s1 - s0 > 1e-6:
            quads.append(wall(at(s0, 1), at(s1, 1), z0, z1, style_right, px_per_m))
            quads.append(wall(at(s1, -1), at(s0, -1), z0, z1, style_left, px_per_m))
    for c, w, dh in cuts:  # lintel above each door and its three reveals
        s0, s1 = c - w / 2, c + w / 2
        quads.append(wall(at(s0, 1), at(s1, 1), z0 + dh, z1, style_right, px_per_m))
        quads.append(wall(at(s1, -1), at(s0, -1), z0 + dh, z1, style_left, px_per_m))
        quads.append(wall(at(s0, 1), at(s0, -1), z0, z0 + dh, style_right, px_per_m))  # faces +d
        quads.append(wall(at(s1, -1), at(s1, 1), z0, z0 + dh, style_right, px_per_m))  # faces -d
        o = np.array([*at(s0, -1), z0 + dh])  # soffit, facing down
        quads.append(Quad(o, np.array([*(nrm * thickness), 0.0]), np.array([*(d * w), 0.0]),
                          style_right, px_per_m))
    return quads


@dataclass
class Atlas:
    """All quad textures in one mip-mapped image.

    `mip` holds level 0 in its left W0 columns and levels 1..MIP_LEVELS stacked in the right W0/2
    columns (level l at row H0 - H0 * 2^(1-l)); level l texel i sits at level-0 position 2^l i.
    `regions[k]` is (x, y) of quad k's texel (0, 0) in level-0 coordinates; `boxes[k]` its padded
    region (x, y, w, h); `tints[k]` its BGR colour factors.
    """

    mip: np.ndarray
    width0: int
    height0: int
    regions: np.ndarray
    boxes: np.ndarray
    tints: np.ndarray
    _color: np.ndarray | None = field(default=None, init=False, repr=False)

    def color_mip(self) -> np.ndarray:
        """The BGR mip atlas (built once): each region's gray texture times its tint, same pyramid."""
        if self._color is None:
            level0 = cv2.cvtColor(self.mip[:, :self.width0], cv2.COLOR_GRAY2BGR)
            for (x, y, w, h), tint in zip(self.boxes, self.tints):
                roi = level0[y:y + h, x:x + w]
                cv2.multiply(roi, (float(tint[0]), float(tint[1]), float(tint[2]), 0.0), roi)
            self._color = _mip_from(level0)
        return self._color


def _mip_from(level0: np.ndarray) -> np.ndarray:
    """Mip atlas layout (see Atlas) of a level-0 image, gray or BGR."""
    H0, W0 = level0.shape[:2]
    mip = np.zeros((H0, W0 + W0 // 2) + level0.shape[2:], np.uint8)
    mip[:, :W0] = level0
    lev = level0
    for level in range(1, MIP_LEVELS + 1):
        lev = cv2.pyrDown(lev)
        y0 = H0 - (H0 >> (level - 1))
        mip[y0:y0 + lev.shape[0], W0:W0 + lev.shape[1]] = lev
    return mip


_LIGHT = np.array([0.35, 0.55, 0.76]) / np.linalg.norm([0.35, 0.55, 0.76])


def _shade(normal: np.ndarray) -> float:
    """Lambertian brightness of a surface under a fixed light from above plus ambient light; baked
    into its texture, so it is the same from every viewpoint (photometric consistency holds)."""
    return float(0.7 + 0.3 * np.clip(normal @ _LIGHT, -1.0, 1.0))


def _pack(sizes: list[tuple[int, int]]) -> tuple[np.ndarray, int, int]:
    """Shelf packing of (h, w) rectangles; returns (N, 2) (x, y) corners and the atlas size (W, H)."""
    align = 1 << MIP_LEVELS
    area = sum(h * w for h, w in sizes)
    width = max(max(w for _, w in sizes), int(np.sqrt(area) * 1.1))
    width = -(-width // align) * align
    order = sorted(range(len(sizes)), key=lambda i: -sizes[i][0])
    pos = np.zeros((len(sizes), 2), np.int64)
    x = y = shelf = 0
    for i in order:
        h, w = sizes[i]
        if x + w > width:
            x, y, shelf = 0, y + shelf, 0
        pos[i] = (x, y)
        x += w
        shelf = max(shelf, h)
    height = -(-(y + shelf) // align) * align
    if width * 3 // 2 > MAX_ATLAS or height > MAX_ATLAS:
        raise ValueError(f"scene textures need a {width}x{height} atlas; lower px_per_m (limit {MAX_ATLAS})")
    return pos, width, height


def _texture_id(q: Quad, index: int) -> int:
    """What seeds a quad's texture: its index, or its texture_key (kept apart from any index)."""
    return index if q.texture_key < 0 else (1 << 30) + q.texture_key


def build_atlas(quads: list[Quad], seed: int) -> Atlas:
    """Texture every quad (deterministic for the seed) and pack them into a gray mip atlas."""
    align = 1 << MIP_LEVELS
    sizes, inner = [], []
    for q in quads:
        w = max(int(np.ceil(np.linalg.norm(q.u) * q.px_per_m)), 1)
        h = max(int(np.ceil(np.linalg.norm(q.v) * q.px_per_m)), 1)
        inner.append((h, w))
        sizes.append((-(-(h + 2 * MARGIN) // align) * align, -(-(w + 2 * MARGIN) // align) * align))
    pos, W0, H0 = _pack(sizes)
    level0 = np.zeros((H0, W0), np.uint8)
    for k, (q, (h, w)) in enumerate(zip(quads, sizes)):
        rng = np.random.default_rng([seed, _texture_id(q, k), 7919])
        tex = make_texture(q.style, h, w, rng, q.px_per_m)
        x, y = pos[k]
        level0[y:y + h, x:x + w] = (tex * (255.0 * _shade(q.normal)) + 0.5).astype(np.uint8)
    boxes = np.array([(x, y, w, h) for (x, y), (h, w) in zip(pos, sizes)], np.int64).reshape(-1, 4)
    tints = np.array([tint_for(q.style, np.random.default_rng([seed, _texture_id(q, k), 104729]))
                      for k, q in enumerate(quads)],
                     np.float32).reshape(-1, 3)
    return Atlas(_mip_from(level0), W0, H0, pos.astype(np.float64) + MARGIN, boxes, tints)
