"""Renderer of textured quads: z-buffer by plane inverse depth, trilinear mip-mapped texturing.

For a plane, inverse depth 1/z is affine in pixel coordinates and the pixel -> texture map is a
homography, so every visible quad costs a few float32 image operations over its bounding box (from
its polygon clipped against the near plane); a pixel belongs to the quad when its texture coordinate
falls inside the quad's texels, which is exact pixel-centre coverage. After the z-pass
each pixel knows its atlas coordinate (homography numerator / inverse depth) and the log2 of its
texel footprint; two cv2.remap calls read the two nearest mip levels and are blended (trilinear
filtering), so distant and oblique surfaces do not alias. Depth is exact: 1 / (plane inverse depth).
"""

from __future__ import annotations

import cv2
import numpy as np

from slam.sources.base import CameraModel
from slam.synthetic.quads import MIP_LEVELS, Atlas, Quad

NEAR = 0.05  # metres; polygons are clipped here
_EDGE_TOL = 1e-3  # texels: quads that share an edge leave no pixel uncovered between them
_BG_INV = np.float32(1e-12)  # inverse depth of "nothing": infinitely far


class QuadSet:
    """The quads of a scene as arrays: corners, unit axes, normals, texel scale, atlas position."""

    def __init__(self, quads: list[Quad], atlas: Atlas) -> None:
        self.corners = np.stack([q.corners() for q in quads])  # (N, 4, 3)
        self.origin = self.corners[:, 0]
        u = np.stack([q.u for q in quads]).astype(np.float64)
        v = np.stack([q.v for q in quads]).astype(np.float64)
        self.eu = u / np.linalg.norm(u, axis=1, keepdims=True)
        self.ev = v / np.linalg.norm(v, axis=1, keepdims=True)
        self.normal = np.stack([q.normal for q in quads])
        self.sigma = np.array([q.px_per_m for q in quads], np.float64)
        self.extent = np.stack([np.linalg.norm(u, axis=1), np.linalg.norm(v, axis=1)], axis=1)
        self.region = atlas.regions

    def __len__(self) -> int:
        return len(self.sigma)


def _clip_near(poly: np.ndarray) -> np.ndarray:
    """Sutherland-Hodgman clip of a convex polygon (K, 3) in camera frame against z >= NEAR."""
    out = []
    n = len(poly)
    for i in range(n):
        a, b = poly[i], poly[(i + 1) % n]
        ina, inb = a[2] >= NEAR, b[2] >= NEAR
        if ina:
            out.append(a)
        if ina != inb:
            s = (NEAR - a[2]) / (b[2] - a[2])
            out.append(a + s * (b - a))
    return np.array(out).reshape(-1, 3)


class Renderer:
    """Renders one camera's view (gray or BGR uint8) and inverse depth of a textured quad scene."""

    def __init__(self, quads: QuadSet, atlas: Atlas, camera: CameraModel, color: bool = False,
                 sky: tuple[float, float] | None = None) -> None:
        self.q = quads
        self.cam = camera
        self.color = color
        self.mip = atlas.color_mip() if color else atlas.mip
        self.W0, self.H0 = float(atlas.width0), float(atlas.height0)
        self.sky = sky
        w, h = camera.width, camera.height
        self.ugrid = np.tile(np.arange(w, dtype=np.float32), (h, 1))
        self.vgrid = np.tile(np.arange(h, dtype=np.float32)[:, None], (1, w))
        x = (self.ugrid - np.float32(camera.cx)) / np.float32(camera.fx)
        y = (self.vgrid - np.float32(camera.cy)) / np.float32(camera.fy)
        self.rays = (x, y)
        self.half_log_r = (0.25 * np.log2(x * x + y * y + 1.0)).astype(np.float32)
        self.zb = np.empty((h, w), np.float32)
        self.nx = np.empty((h, w), np.float32)
        self.ny = np.empty((h, w), np.float32)
        self.lev = np.empty((h, w), np.float32)
        # per mip level l: scale 2^-l and the (x, y) origin of level l in the mip atlas (l+1 for _y1)
        levels = np.arange(256, dtype=np.float64)
        scale = 2.0 ** -np.minimum(levels, MIP_LEVELS)
        self._lut_scale = scale.astype(np.float32).reshape(1, 256)
        self._lut_x = np.where(levels >= 1, self.W0, 0.0).astype(np.float32).reshape(1, 256)
        self._lut_y = np.where(levels >= 1, self.H0 - 2 * self.H0 * scale, 0.0).astype(np.float32).reshape(1, 256)
        self._lut_y1 = (self.H0 - self.H0 * scale).astype(np.float32).reshape(1, 256)

    def _visible(self, R: np.ndarray, c: np.ndarray):
        """Per visible quad: index and image bounding box; front-facing quads only."""
        q, cam = self.q, self.cam
        d = np.einsum("ij,ni->nj", R, self.q.normal)  # normals in camera frame, (N, 3)
        oc = (q.origin - c) @ R
        dist = np.einsum("nj,nj->n", d, oc)
        pc = (q.corners - c) @ R  # (N, 4, 3)
        front = dist < -1e-9
        ahead = (pc[..., 2] > NEAR).any(axis=1)
        out = []
        for k in np.flatnonzero(front & ahead):
            poly = pc[k]
            if (poly[:, 2] < NEAR).any():
                poly = _clip_near(poly)
                if len(poly) < 3:
                    continue
            px = cam.fx * poly[:, 0] / poly[:, 2] + cam.cx
            py = cam.fy * poly[:, 1] / poly[:, 2] + cam.cy
            x0, x1 = max(int(np.floor(px.min())), 0), min(int(np.ceil(px.max())) + 1, cam.width)
            y0, y1 = max(int(np.floor(py.min())), 0), min(int(np.ceil(py.max())) + 1, cam.height)
            if x0 >= x1 or y0 >= y1:
                continue
            out.append((k, (y0, y1, x0, x1)))
        return out, d, oc, dist

    def render(self, T_world_cam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(image uint8, inverse depth 1/z float32, 0 where no surface) seen from T_world_cam.

        The inverse-depth array is this renderer's buffer: the next call overwrites it.
        """
        R, c = T_world_cam[:3, :3], T_world_cam[:3, 3]
        cam, q = self.cam, self.q
        vis, nrm, oc, dist = self._visible(R, c)
        zb, nx, ny, lev = self.zb, self.nx, self.ny, self.lev
        zb.fill(_BG_INV)
        nx.fill(0.0)
        ny.fill(0.0)
        lev.fill(MIP_LEVELS)
        f4 = (cam.fx * cam.fy) ** 2
        for k, (y0, y1, x0, x1) in vis:
            ug, vg = self.ugrid[y0:y1, x0:x1], self.vgrid[y0:y1, x0:x1]
            n, dk = nrm[k], dist[k]
            # inverse depth A u + B v + C of the plane n.X = dk along the pixel ray
            A, B = n[0] / (cam.fx * dk), n[1] / (cam.fy * dk)
            C = (n[2] - n[0] * cam.cx / cam.fx - n[1] * cam.cy / cam.fy) / dk
            iz = cv2.addWeighted(ug, A, vg, B, C)
            roi = (slice(y0, y1), slice(x0, x1))
            closer = cv2.compare(iz, zb[roi], cv2.CMP_GT)
            sig = q.sigma[k]
            nums = []
            for axis, off, ext in ((q.eu[k], q.region[k, 0], q.extent[k, 0]),
                                   (q.ev[k], q.region[k, 1], q.extent[k, 1])):
                e = axis @ R  # texture axis in camera frame
                K = off - 0.5 - sig * float(e @ oc[k])
                a = sig * e[0] / cam.fx + K * A
                b = sig * e[1] / cam.fy + K * B
                cc = sig * (e[2] - e[0] * cam.cx / cam.fx - e[1] * cam.cy / cam.fy) + K * C
                num = cv2.addWeighted(ug, a, vg, b, cc)
                # inside the quad: its texture coordinate is within the quad's texels (exact
                # pixel-centre coverage, where polygon filling would be up to half a pixel generous)
                lo = off - 0.5 - _EDGE_TOL
                cv2.bitwise_and(closer, cv2.inRange(cv2.divide(num, iz), lo, lo + sig * ext + 2 * _EDGE_TOL), closer)
                nums.append(num)
            cv2.copyTo(iz, closer, zb[roi])
            cv2.copyTo(nums[0], closer, nx[roi])
            cv2.copyTo(nums[1], closer, ny[roi])
            # log2 texel footprint = c_k + 0.25 log2|r| - 1.75 log2(1/z): halfway between the
            # area footprint (sigma^2 / (f^2 |d| iz^3)) and the long axis (sigma^2 |r| / (f^2 d^2 iz^4))
            ck = 0.25 * np.log2(sig ** 4 / (f4 * abs(dk) ** 3))
            cv2.copyTo(np.full(iz.shape, ck, np.float32), closer, lev[roi])
        return self._shade(R), zb

    def _shade(self, R: np.ndarray) -> np.ndarray:
        """Trilinear lookup of the atlas at the coordinates left by the z-pass; sky where empty."""
        zb = self.zb
        sx = cv2.divide(self.nx, zb)
        sy = cv2.divide(self.ny, zb)
        lam = cv2.add(self.lev, self.half_log_r)
        cv2.scaleAdd(cv2.log(zb), -1.75 / np.log(2.0), lam, lam)
        lam = cv2.max(cv2.min(lam, float(MIP_LEVELS)), 0.0)
        li = np.minimum(lam.astype(np.uint8), MIP_LEVELS - 1)  # lower mip level of each pixel
        frac = cv2.subtract(lam, li, dtype=cv2.CV_32F)
        s0 = cv2.LUT(li, self._lut_scale)
        mx0 = cv2.add(cv2.multiply(sx, s0), cv2.LUT(li, self._lut_x))
        my0 = cv2.add(cv2.multiply(sy, s0), cv2.LUT(li, self._lut_y))
        mx1 = cv2.add(cv2.multiply(sx, s0, scale=0.5), self.W0)
        my1 = cv2.add(cv2.multiply(sy, s0, scale=0.5), cv2.LUT(li, self._lut_y1))
        a = cv2.remap(self.mip, mx0, my0, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        b = cv2.remap(self.mip, mx1, my1, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        out = cv2.blendLinear(a, b, cv2.subtract(1.0, frac), frac)
        empty = zb <= _BG_INV
        if empty.any():
            out[empty] = self._sky(R)[empty]
            zb[empty] = 0.0
        return out

    def _sky(self, R: np.ndarray) -> np.ndarray:
        """Background: a brightness gradient with the elevation of the ray (no texture, no depth)."""
        x, y = self.rays
        up = R[2]  # world z in camera coordinates
        elev = (up[0] * x + up[1] * y + up[2]) / np.sqrt(x * x + y * y + 1.0)
        a, b = self.sky if self.sky is not None else (128.0, 0.0)
        val = np.clip(a + b * elev, 0, 255).astype(np.uint8)
        return cv2.cvtColor(val, cv2.COLOR_GRAY2BGR) if self.color else val
