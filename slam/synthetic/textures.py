"""Procedural textures for the synthetic scenes: multi-scale noise, patches and man-made patterns.

Every texture is a float32 gray image in [0, 1] drawn from a NumPy Generator, so a scene is the same
for the same seed. Detail spans many scales (pyramid-synthesized noise from metres down to one
texel, thresholded blobs with sharp edges, rectangles) and nothing is tiled, so no two places of a
scene look alike. Sizes are given in texels; `px_per_m` converts metric sizes (planks, windows).
"""

from __future__ import annotations

from typing import Callable

import cv2
import numpy as np


def fractal(h: int, w: int, rng: np.random.Generator, beta: float = 0.8, finest: int = 0,
            coarsest: int = 9) -> np.ndarray:
    """Zero-mean, unit-std noise with octaves 2^finest .. 2^coarsest texels (pyramid synthesis).

    Each octave is white noise at its own resolution, upsampled (Gaussian pyrUp) into the next finer
    one; amplitude grows as (octave size)^beta, so beta near 1 gives natural-image statistics.
    """
    coarsest = max(coarsest, finest)
    n = coarsest - finest
    hh, ww = -(-h // (1 << coarsest)) + 2, -(-w // (1 << coarsest)) + 2
    acc = (rng.random((hh, ww), dtype=np.float32) - 0.5) * np.float32(2.0 ** (beta * n))
    for k in range(n - 1, -1, -1):
        acc = cv2.pyrUp(acc)
        noise = rng.integers(0, 256, acc.shape, dtype=np.uint8)
        cv2.scaleAdd(noise.astype(np.float32), float(2.0 ** (beta * k) / 255.0), acc, acc)
        acc -= np.float32(0.5 * 2.0 ** (beta * k))
    for _ in range(finest):
        acc = cv2.pyrUp(acc)
    acc = acc[:h, :w]
    sub = acc[::4, ::4]  # statistics of a subsample: plenty for a normalization
    return (acc - np.float32(sub.mean())) / np.float32(max(float(sub.std()), 1e-6))


def patches(h: int, w: int, rng: np.random.Generator, scale: int, fill: float = 0.3) -> np.ndarray:
    """A soft 0..1 mask of random blobs about `scale` texels wide with ~1-texel edges (corners, edges)."""
    oct_hi = max(int(np.log2(max(scale, 2))) + 1, 1)
    n = fractal(h, w, rng, beta=1.2, finest=max(oct_hi - 3, 0), coarsest=oct_hi)
    thr = float(np.quantile(n[:: max(h // 64, 1), :: max(w // 64, 1)], 1.0 - fill))
    g = np.abs(np.diff(n[:: max(h // 32, 1), :256], axis=1))
    k = 0.8 / max(float(np.median(g)), 1e-4)  # edge about one texel wide
    return np.clip((n - np.float32(thr)) * np.float32(k) + 0.5, 0.0, 1.0).astype(np.float32)


def _shift(base: np.ndarray, mask: np.ndarray, offset: float) -> np.ndarray:
    """base brightened by `offset` where mask is 1 (the blob keeps the texture underneath)."""
    cv2.scaleAdd(mask, float(offset), base, base)
    return base


def rectangles(img: np.ndarray, rng: np.random.Generator, count: int, size: tuple[float, float],
               contrast: float = 0.35) -> np.ndarray:
    """Paint `count` axis-aligned, anti-aliased rectangles (frames, labels, signs) onto img in place."""
    h, w = img.shape
    if count <= 0 or h < 4 or w < 4:
        return img
    canvas = np.full((h, w), 128, np.uint8)  # 128 = no change; painted values are offsets
    lo, hi = size
    for _ in range(count):
        rw = int(np.exp(rng.uniform(np.log(lo), np.log(hi))))
        rh = int(rw * rng.uniform(0.4, 1.6))
        x, y = int(rng.integers(-rw // 2, w)), int(rng.integers(-rh // 2, h))
        val = int(np.clip(128 + rng.normal(0, 1) * contrast * 255, 0, 255))
        cv2.rectangle(canvas, (x, y), (x + rw, y + rh), val, -1, cv2.LINE_AA)
        if rng.random() < 0.5:  # a frame or an inner panel: more straight edges and corners
            m = max(rw // 8, 2)
            inner = int(np.clip(val + rng.normal(0, 60), 0, 255))
            cv2.rectangle(canvas, (x + m, y + m), (x + rw - m, y + rh - m), inner, -1, cv2.LINE_AA)
    cv2.scaleAdd(canvas.astype(np.float32), 1.0 / 255.0, img, img)
    img -= np.float32(128.0 / 255.0)
    return img


def _finish(img: np.ndarray, mean: float, std: float) -> np.ndarray:
    """Rescale to the given mean/std and clip into [0, 1]."""
    sub = img[::4, ::4]
    out = (img - np.float32(sub.mean())) * np.float32(std / max(float(sub.std()), 1e-6)) + np.float32(mean)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def tex_plaster(h: int, w: int, rng: np.random.Generator, px_per_m: float) -> np.ndarray:
    """Painted wall: soft multi-scale stains, blobs at three scales, posters and frames."""
    img = fractal(h, w, rng, beta=0.9, coarsest=int(np.log2(max(px_per_m * 2, 8)))) * np.float32(0.5)
    for sc, fill, amp in ((px_per_m * 0.5, 0.25, 0.9), (px_per_m * 0.12, 0.2, 0.7), (px_per_m * 0.03, 0.15, 0.5)):
        m = patches(h, w, rng, max(int(sc), 2), fill)
        img = _shift(img, m, np.float32(rng.choice([-1, 1]) * amp))
    area = h * w / px_per_m ** 2
    rectangles(img, rng, int(area * 0.6), (px_per_m * 0.1, px_per_m * 0.9), 0.5)
    return _finish(img, rng.uniform(0.45, 0.65), 0.16)


def tex_rich(h: int, w: int, rng: np.random.Generator, px_per_m: float) -> np.ndarray:
    """Cluttered surface (boxes, posters, shelves): dense patches and labels at many scales."""
    img = fractal(h, w, rng, beta=0.7, coarsest=int(np.log2(max(px_per_m, 8)))) * np.float32(0.4)
    for sc in (0.4, 0.15, 0.06, 0.025):
        m = patches(h, w, rng, max(int(px_per_m * sc), 2), rng.uniform(0.2, 0.4))
        img = _shift(img, m, np.float32(rng.normal(0, 1.2)))
    area = h * w / px_per_m ** 2
    rectangles(img, rng, int(area * 4), (px_per_m * 0.03, px_per_m * 0.4), 0.6)
    return _finish(img, rng.uniform(0.4, 0.6), 0.2)


def tex_planks(h: int, w: int, rng: np.random.Generator, px_per_m: float) -> np.ndarray:
    """Wooden floor: staggered planks (rows along x) with grain, seams and knots."""
    pw = max(px_per_m * rng.uniform(0.14, 0.22), 3.0)
    pl = px_per_m * rng.uniform(1.0, 1.8)
    y = np.arange(h, dtype=np.float32)[:, None]
    x = np.arange(w, dtype=np.float32)[None, :]
    row = np.floor(y / pw)
    nrow = int(row[-1, 0]) + 1
    offs = rng.uniform(0, pl, nrow).astype(np.float32)
    xs = x + offs[row.astype(np.int64)[:, 0]][:, None]
    col = np.floor(xs / np.float32(pl))
    tone = rng.normal(0, 1, (nrow, int(col.max()) + 2)).astype(np.float32)
    img = 0.6 * tone[row.astype(np.int64), col.astype(np.int64)]
    grain = cv2.resize(fractal(h, max(w // 8, 4), rng, beta=0.6, coarsest=5), (w, h), interpolation=cv2.INTER_LINEAR)
    img += 0.35 * grain
    fy = (y / np.float32(pw)) % 1.0
    fx = (xs / np.float32(pl)) % 1.0
    edge = np.minimum(np.minimum(fy, 1 - fy) * pw, np.minimum(fx, 1 - fx) * pl)
    img -= 1.5 * np.clip(1.5 - edge, 0, 1)  # dark seams between planks
    img = _shift(img, patches(h, w, rng, max(int(px_per_m * 0.04), 2), 0.06), np.float32(-1.2))
    return _finish(img, rng.uniform(0.35, 0.5), 0.15)


def tex_ceiling(h: int, w: int, rng: np.random.Generator, px_per_m: float) -> np.ndarray:
    """Suspended ceiling: 0.6 m tiles with speckle, seams and some bright light panels."""
    t = px_per_m * 0.6
    y = np.arange(h, dtype=np.float32)[:, None] / np.float32(t)
    x = np.arange(w, dtype=np.float32)[None, :] / np.float32(t)
    iy, ix = np.floor(y).astype(np.int64), np.floor(x).astype(np.int64)
    tone = rng.normal(0, 0.3, (int(iy[-1, 0]) + 1, int(ix[0, -1]) + 1)).astype(np.float32)
    lights = rng.random(tone.shape) < 0.08
    tone[lights] = 4.0
    img = tone[iy, ix] + 0.5 * fractal(h, w, rng, beta=0.5, coarsest=6)
    edge = np.minimum(np.minimum(y % 1, 1 - y % 1), np.minimum(x % 1, 1 - x % 1)) * np.float32(t)
    img -= 2.0 * np.clip(1.5 - edge, 0, 1)
    return _finish(img, 0.7, 0.12)


def tex_concrete(h: int, w: int, rng: np.random.Generator, px_per_m: float) -> np.ndarray:
    """Concrete or asphalt: fine grain over broad stains, a few dark cracks and spots."""
    img = fractal(h, w, rng, beta=0.55, coarsest=int(np.log2(max(px_per_m * 4, 8))))
    img = _shift(img, patches(h, w, rng, max(int(px_per_m * 0.08), 2), 0.1), np.float32(-2.0))
    img = _shift(img, patches(h, w, rng, max(int(px_per_m * 0.6), 2), 0.2), np.float32(1.5))
    return _finish(img, rng.uniform(0.4, 0.55), 0.14)


def tex_facade(h: int, w: int, rng: np.random.Generator, px_per_m: float) -> np.ndarray:
    """Street facade: buildings 8-20 m wide, each with its own plaster, floors of windows and shops."""
    img = fractal(h, w, rng, beta=0.8, coarsest=int(np.log2(max(px_per_m * 4, 8)))) * np.float32(0.3)
    canvas = np.zeros((h, w), np.float32)
    x0 = 0
    while x0 < w:  # v (rows) runs downward from the roof line: row 0 is the top of the facade
        bw = int(px_per_m * rng.uniform(8, 20))
        tone = rng.normal(0, 0.8)
        canvas[:, x0:x0 + bw] = tone
        storey = px_per_m * rng.uniform(2.8, 3.6)
        spacing = px_per_m * rng.uniform(2.0, 3.2)
        ww, wh = px_per_m * rng.uniform(0.9, 1.4), px_per_m * rng.uniform(1.2, 1.7)
        nfl = int(h / storey)
        for f in range(nfl - 1):  # the last storey (street level) holds shops
            for c in range(int(bw / spacing)):
                if rng.random() < 0.08:
                    continue
                cx = x0 + (c + 0.5) * spacing
                cy = (f + 0.45) * storey
                p0 = (int(cx - ww / 2), int(cy - wh / 2))
                p1 = (int(cx + ww / 2), int(cy + wh / 2))
                cv2.rectangle(canvas, p0, p1, float(tone + 1.2), -1)  # frame
                m = max(int(px_per_m * 0.08), 1)
                glass = float(rng.normal(-2.0, 0.6))
                cv2.rectangle(canvas, (p0[0] + m, p0[1] + m), (p1[0] - m, p1[1] - m), glass, -1)
                if rng.random() < 0.6:  # mullion
                    cv2.line(canvas, ((p0[0] + p1[0]) // 2, p0[1]), ((p0[0] + p1[0]) // 2, p1[1]),
                             float(tone + 1.2), m)
        ytop = int((nfl - 1) * storey + 0.2 * px_per_m)
        sx = x0 + int(px_per_m * 0.5)
        while sx < x0 + bw - px_per_m:
            sw = int(px_per_m * rng.uniform(2, 5))
            cv2.rectangle(canvas, (sx, ytop + int(px_per_m * 0.7)), (min(sx + sw, x0 + bw), h),
                          float(rng.normal(-1.5, 0.7)), -1)
            cv2.rectangle(canvas, (sx, ytop), (min(sx + sw, x0 + bw), ytop + int(px_per_m * 0.6)),
                          float(rng.normal(0, 1.5)), -1)  # shop sign
            sx += sw + int(px_per_m * rng.uniform(0.5, 1.5))
        x0 += bw
    img += canvas
    img = _shift(img, patches(h, w, rng, max(int(px_per_m * 0.15), 2), 0.08), np.float32(-1.0))
    return _finish(img, 0.5, 0.18)


def tex_road(h: int, w: int, rng: np.random.Generator, px_per_m: float) -> np.ndarray:
    """Asphalt with lane markings: rows (v) run across the road, columns (u) along it."""
    img = tex_concrete(h, w, rng, px_per_m)
    mid = h // 2
    lw = max(int(px_per_m * 0.12), 1)
    dash, gap = int(px_per_m * 3), int(px_per_m * 6)
    for x in range(int(rng.integers(0, dash + gap)) - dash - gap, w, dash + gap):
        cv2.rectangle(img, (x, mid - lw // 2), (x + dash, mid + lw // 2), 0.9, -1)
    edge = int(px_per_m * 0.4)
    img[edge:edge + lw] = 0.85
    img[h - edge - lw:h - edge] = 0.85
    return img


STYLES: dict[str, Callable[[int, int, np.random.Generator, float], np.ndarray]] = {
    "plaster": tex_plaster, "rich": tex_rich, "planks": tex_planks, "ceiling": tex_ceiling,
    "concrete": tex_concrete, "facade": tex_facade, "road": tex_road,
}


def make_texture(style: str, h: int, w: int, rng: np.random.Generator, px_per_m: float) -> np.ndarray:
    """A float32 (h, w) texture in [0, 1] of the named style (keys of STYLES)."""
    return STYLES[style](h, w, rng, px_per_m)


_PALETTES: dict[str, list[tuple[float, float, float]]] = {  # BGR factors before luma normalization
    "plaster": [(1.0, 1.0, 1.0), (1.12, 1.0, 0.9), (0.82, 0.98, 1.1), (0.92, 1.06, 0.95)],
    "planks": [(0.55, 0.9, 1.3), (0.7, 0.95, 1.2)],
    "ceiling": [(1.0, 1.0, 1.0)],
    "concrete": [(1.0, 1.0, 1.0), (0.95, 1.0, 1.04)],
    "road": [(1.04, 1.0, 0.97)],
}


def tint_for(style: str, rng: np.random.Generator) -> tuple[float, float, float]:
    """BGR colour factors of a surface (luma 1, so the gray image is the colour image's luma)."""
    pal = _PALETTES.get(style)
    if pal is None:  # cluttered objects and facades: any moderate colour
        t = rng.uniform(0.6, 1.4, 3)
    else:
        t = np.asarray(pal[int(rng.integers(len(pal)))]) * rng.uniform(0.97, 1.03, 3)
    t = t / (0.114 * t[0] + 0.587 * t[1] + 0.299 * t[2])
    return float(t[0]), float(t[1]), float(t[2])
