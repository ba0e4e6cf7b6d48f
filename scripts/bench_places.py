#!/usr/bin/env python3
"""Benchmark of place recognition alone (`slam places`): precision, recall and query time.

    python scripts/bench_places.py [--seeds K] [--quick] [--keyframes N] [--skip-timing] [--skip-variants]
                                   [--out DIR]

Image sets (grayscale, in sequence order) whose revisits are known:
- synthetic (`slam simulate` renderer, several seeds): room_loop, room_figure8, office_long (mono
  752x480), street_loop (KITTI-like 1226x370); office_walk never revisits a place.
- real excerpts in ../shared/data (skipped when absent): EuRoC V1_01 head (the drone stands still:
  the camera never leaves its view, so by the rule below no image is a revisit and every report is
  counted false), TUM fr3 long office 1 Hz (the camera moves away steadily, no return: 0 expected),
  KITTI 07 head (driving forward, no return: 0 expected), and two spliced real sets with revisits:
  "kitti_splice" = KITTI 07 even frames, then 20 EuRoC frames (somewhere else), then the odd frames;
  "tum_splice" = TUM even frames, 20 KITTI frames, then the odd frames. Their revisits are other real
  photographs of places seen before, with ground-truth poses from the datasets.
Ground truth: image i revisits image j < i when their camera centres are within 1 m, their optical
axes within 30 degrees, and the camera left j's place in between (some image between them is more
than 1 m from j or turned more than 60 degrees away). A reported revisit is true when its two camera
centres are within 1 m (the issue's rule for a false loop) and the query has a ground-truth revisit.
Recall is given per image and per revisit segment (a run of consecutive revisiting images).
Timing: a PlaceDatabase holding N (default 1,000) keyframes of ORB descriptors from rendered
office_long frames; the time of `query` and of LoopDetector.detect at that size, and of adding.
Variants: the database's (tables x bits) choices on the synthetic sets, the measurements behind the
default. Prints tables; writes DIR/bench_places.json (default bench_out/) with the machine's load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from slam.geometry.quaternion import quat_to_rot  # noqa: E402
from slam.loop.database import PlaceDatabase  # noqa: E402
from slam.loop.detector import LoopDetector  # noqa: E402
from slam.loop.places import PlaceParams, PlaceRecognizer  # noqa: E402
from slam.synthetic import SyntheticSource  # noqa: E402

DATA = REPO.parent / "shared" / "data"
FAR = 1e6  # centre given to images of an unrelated place (splice interludes)


class ImageSet:
    """Named grayscale images with camera centres and optical axes (world frame of the set)."""

    def __init__(self, name: str, images: list[np.ndarray], centres: np.ndarray, axes: np.ndarray,
                 note: str = "") -> None:
        self.name, self.images, self.centres, self.axes, self.note = name, images, centres, axes, note

    def revisits(self) -> np.ndarray:
        """(n,) bool: image i revisits some earlier image (the rule of the module docstring)."""
        C, Z = self.centres, self.axes
        n = len(C)
        out = np.zeros(n, bool)
        d = np.linalg.norm(C[:, None] - C[None], axis=2)
        cos = np.clip(Z @ Z.T, -1, 1)
        away = (d > 1.0) | (cos < np.cos(np.radians(60)))  # away[k, j]: image k is not at j's place
        for i in range(n):
            for j in np.flatnonzero((d[i, :i] < 1.0) & (cos[i, :i] > np.cos(np.radians(30)))):
                if away[j + 1:i, j].any():
                    out[i] = True
                    break
        return out


def _gray(img: np.ndarray) -> np.ndarray:
    return img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)


def synthetic_set(scene: str, sensor: str, step: int, seed: int, frames: int | None = None) -> ImageSet:
    """Every step-th rendered frame of a scene."""
    src = SyntheticSource(scene, sensor, frames=frames, seed=seed)
    imgs, C, Z = [], [], []
    for i in range(0, len(src), step):
        f = src.render(i)
        imgs.append(_gray(f.left))
        C.append(f.gt_pose[:3, 3])
        Z.append(f.gt_pose[:3, 2])
    return ImageSet(f"{scene}/s{seed}", imgs, np.array(C), np.array(Z), f"{sensor}, every {step}th frame")


def _kitti() -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    root = DATA / "kitti" / "07_head"
    P = np.loadtxt(root / "poses.txt").reshape(-1, 3, 4)
    files = sorted((root / "image_0").glob("*.png"))[: len(P)]
    return [cv2.imread(str(f), cv2.IMREAD_GRAYSCALE) for f in files], P[:, :, 3], P[:, :, 2]


def _tum() -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    root = DATA / "tum" / "fr3_long_office_household_1hz"
    rows = [ln.split() for ln in (root / "rgb.txt").read_text().splitlines() if ln and not ln.startswith("#")]
    gt = np.loadtxt(root / "groundtruth.txt", comments="#")
    imgs, C, Z = [], [], []
    for t, rel in rows:
        k = int(np.argmin(np.abs(gt[:, 0] - float(t))))
        imgs.append(cv2.imread(str(root / rel), cv2.IMREAD_GRAYSCALE))
        C.append(gt[k, 1:4])
        Z.append(quat_to_rot(gt[k, 4:8])[:, 2])
    return imgs, np.array(C), np.array(Z)


def _euroc() -> list[np.ndarray]:
    files = sorted((DATA / "euroc" / "V1_01_easy_head" / "mav0" / "cam0" / "data").glob("*.png"))
    return [cv2.imread(str(f), cv2.IMREAD_GRAYSCALE) for f in files]


def _splice(name: str, imgs, C, Z, interlude: list[np.ndarray], note: str) -> ImageSet:
    """Even frames, an interlude somewhere else, then odd frames: real revisits with known poses."""
    even, odd = list(range(0, len(imgs), 2)), list(range(1, len(imgs), 2))
    far_c = np.full((len(interlude), 3), FAR)
    far_z = np.tile([1.0, 0.0, 0.0], (len(interlude), 1))
    return ImageSet(name, [imgs[i] for i in even] + interlude + [imgs[i] for i in odd],
                    np.concatenate([C[even], far_c, C[odd]]), np.concatenate([Z[even], far_z, Z[odd]]), note)


def real_sets() -> list[ImageSet]:
    """The real excerpts and the spliced real sets, when ../shared/data is present."""
    if not DATA.is_dir():
        print(f"note: {DATA} is absent, real sets skipped", file=sys.stderr)
        return []
    ki, kc, kz = _kitti()
    ti, tc, tz = _tum()
    ei = _euroc()
    static = np.zeros((len(ei), 3))
    axis = np.tile([0.0, 0.0, 1.0], (len(ei), 1))
    return [
        ImageSet("euroc_V1_01_head", ei, static, axis, "static camera: never leaves its view, 0 expected"),
        ImageSet("tum_fr3_office_1hz", ti, tc, tz, "steady motion away, no return"),
        ImageSet("kitti_07_head", ki, kc, kz, "forward drive, no return"),
        _splice("kitti_splice", ki, kc, kz, ei[::4][:20], "KITTI even frames, 20 EuRoC, KITTI odd frames"),
        _splice("tum_splice", ti, tc, tz, ki[::8][:20], "TUM even frames, 20 KITTI, TUM odd frames"),
    ]


def evaluate(s: ImageSet, params: PlaceParams, db_args: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run place recognition over a set and score it against its ground truth."""
    rec = PlaceRecognizer(params)
    if db_args:
        rec.detector.database = PlaceDatabase(**db_args)
    names = [f"{k:05d}" for k in range(len(s.images))]
    found = []
    t0 = time.perf_counter()
    for name, img in zip(names, s.images):
        r = rec.add(name, img)
        if r is not None:
            found.append(r)
    dt = time.perf_counter() - t0
    gt = s.revisits()
    hit = np.zeros(len(gt), bool)
    tp = fp = 0
    false = []
    for r in found:
        i, j = int(r["query"]), int(r["match"])
        ok = bool(gt[i]) and np.linalg.norm(s.centres[i] - s.centres[j]) < 1.0
        tp += ok
        fp += not ok
        hit[i] |= ok
        if not ok:
            false.append([i, j, round(float(np.linalg.norm(s.centres[i] - s.centres[j])), 2)])
    # segments: maximal runs of consecutive revisiting images
    starts = np.flatnonzero(gt & ~np.concatenate([[False], gt[:-1]]))
    ends = np.flatnonzero(gt & ~np.concatenate([gt[1:], [False]]))
    seg_hit = [bool(hit[a:b + 1].any()) for a, b in zip(starts, ends)]
    return {
        "set": s.name, "note": s.note, "images": len(s.images), "revisit_images": int(gt.sum()),
        "segments": len(seg_hit), "reported": len(found), "true": tp, "false": fp, "false_pairs": false[:10],
        "precision": tp / len(found) if found else None,
        "recall_images": float(hit.sum() / gt.sum()) if gt.any() else None,
        "recall_segments": float(np.mean(seg_hit)) if seg_hit else None,
        "ms_per_image": 1e3 * dt / max(1, len(s.images)),
        "rejections": dict(rec.detector.rejections, **rec.rejections),
    }


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    return f"{v:.2f}" if isinstance(v, float) else str(v)


def print_table(rows: list[dict[str, Any]], title: str) -> None:
    cols = ["set", "images", "revisit_images", "segments", "reported", "true", "false", "precision",
            "recall_images", "recall_segments", "ms_per_image"]
    print(f"\n{title}")
    print(" | ".join(cols))
    for r in rows:
        print(" | ".join(_fmt(r[c]) for c in cols))


def _orb_sets(n: int, seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """ORB descriptors of n rendered office_long frames (database) and of n/10 others (queries)."""
    src = SyntheticSource("office_long", "mono", seed=seed)
    orb = cv2.ORB_create(1000)
    step = max(1, len(src) // n)
    base = [orb.detectAndCompute(src.render(i * step % len(src)).left, None)[1] for i in range(n)]
    queries = [orb.detectAndCompute(src.render((i * 10 * step + step // 2) % len(src)).left, None)[1]
               for i in range(max(1, n // 10))]
    return base, queries


def timing(n: int) -> dict[str, Any]:
    """Query, detect and add times with n keyframes in the database."""
    t0 = time.perf_counter()
    base, queries = _orb_sets(n)
    t_render = time.perf_counter() - t0
    db = PlaceDatabase()
    adds = []
    for k, d in enumerate(base):
        t = time.perf_counter()
        db.add(k, d)
        adds.append(time.perf_counter() - t)
    q_times = []
    for d in queries:
        t = time.perf_counter()
        db.query(d, 5)
        q_times.append(time.perf_counter() - t)
    det = LoopDetector(db)
    d_times = []
    for k, d in enumerate(queries):
        excluded = np.arange(max(0, n - 20), n)
        t = time.perf_counter()
        det.detect(n + k, d, excluded, lambda i: {i - 1, i + 1}, add=False)
        d_times.append(time.perf_counter() - t)
    # Brute force reference: ratio-test matches against every keyframe (what an index avoids), on 20.
    bf = cv2.BFMatcher(cv2.NORM_HAMMING)
    t = time.perf_counter()
    for d in base[:20]:
        bf.knnMatch(queries[0], d, k=2)
    bf_per_kf = (time.perf_counter() - t) / 20
    return {
        "keyframes": n, "descriptors_per_keyframe": float(np.mean([len(d) for d in base])),
        "entries": db.n_entries, "memory_mb": db.n_entries * 8 / 2 ** 20,
        "query_ms_median": 1e3 * float(np.median(q_times)), "query_ms_p95": 1e3 * float(np.percentile(q_times, 95)),
        "detect_ms_median": 1e3 * float(np.median(d_times)), "detect_ms_p95": 1e3 * float(np.percentile(d_times, 95)),
        "add_ms_median": 1e3 * float(np.median(adds)), "add_ms_max": 1e3 * float(np.max(adds)),
        "brute_force_ms_for_all": 1e3 * bf_per_kf * n, "prepare_s": t_render, "queries": len(queries),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=2, help="renderings (seeds) per synthetic scene (default 2)")
    ap.add_argument("--quick", action="store_true", help="room scenes and real sets only, one seed")
    ap.add_argument("--keyframes", type=int, default=1000, help="database size for the timing (default 1000)")
    ap.add_argument("--skip-timing", action="store_true")
    ap.add_argument("--skip-variants", action="store_true")
    ap.add_argument("--out", default="bench_out", help="output folder (default bench_out)")
    args = ap.parse_args()
    seeds = range(1 if args.quick else args.seeds)
    specs = [("room_loop", "mono", 10, None), ("room_figure8", "mono", 10, None), ("office_walk", "mono", 20, None)]
    if not args.quick:
        specs += [("office_long", "mono", 20, None), ("street_loop", "kitti", 3, None)]
    params = PlaceParams()
    result: dict[str, Any] = {"host": {"cpus": os.cpu_count(), "load_before": os.getloadavg(),
                                       "python": platform.python_version(), "opencv": cv2.__version__},
                              "params": params.__dict__}
    synth = [synthetic_set(sc, sensor, step, seed, frames) for sc, sensor, step, frames in specs for seed in seeds]
    real = real_sets()
    rows = [evaluate(s, params) for s in synth]
    print_table(rows, "synthetic sets (slam places defaults)")
    result["synthetic"] = rows
    real_rows = [evaluate(s, params) for s in real]
    print_table(real_rows, "real sets (slam places defaults)")
    result["real"] = real_rows
    allrows = rows + real_rows
    tp = sum(r["true"] for r in allrows)
    rep = sum(r["reported"] for r in allrows)
    seg = [r["recall_segments"] * r["segments"] for r in allrows if r["segments"]]
    result["overall"] = {"precision": tp / rep if rep else None, "reported": rep, "true": tp,
                         "recall_segments": sum(seg) / sum(r["segments"] for r in allrows) if seg else None}
    print(f"\noverall: precision {_fmt(result['overall']['precision'])} ({tp}/{rep}), "
          f"segment recall {_fmt(result['overall']['recall_segments'])}")
    if not args.skip_variants:
        variants = []
        for tables, bits in ((8, 16), (8, 18), (8, 20), (12, 16)):
            vr = [evaluate(s, params, {"n_tables": tables, "bits": bits}) for s in synth[:4]]
            tp = sum(r["true"] for r in vr)
            rep = sum(r["reported"] for r in vr)
            segs = sum(r["segments"] for r in vr)
            hit = sum((r["recall_segments"] or 0) * r["segments"] for r in vr)
            variants.append({"tables": tables, "bits": bits, "reported": rep, "true": tp,
                             "precision": tp / rep if rep else None, "recall_segments": hit / segs if segs else None,
                             "ms_per_image": float(np.mean([r["ms_per_image"] for r in vr]))})
        print("\ndatabase variants (first synthetic sets): tables | bits | reported | true | precision | "
              "segment recall | ms/image")
        for v in variants:
            print(" | ".join(_fmt(v[k]) for k in ("tables", "bits", "reported", "true", "precision",
                                                  "recall_segments", "ms_per_image")))
        result["variants"] = variants
    if not args.skip_timing:
        t = timing(args.keyframes)
        result["timing"] = t
        print(f"\ntiming with {t['keyframes']} keyframes ({t['descriptors_per_keyframe']:.0f} descriptors each, "
              f"{t['memory_mb']:.1f} MB index): query median {t['query_ms_median']:.1f} ms, p95 "
              f"{t['query_ms_p95']:.1f} ms; detect median {t['detect_ms_median']:.1f} ms; add median "
              f"{t['add_ms_median']:.2f} ms, max {t['add_ms_max']:.1f} ms; brute-force matching against all "
              f"would take {t['brute_force_ms_for_all']:.0f} ms")
    result["host"]["load_after"] = os.getloadavg()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_places.json").write_text(json.dumps(result, indent=1, default=float))
    print(f"\nwrote {out / 'bench_places.json'} (load average {result['host']['load_after'][0]:.1f} "
          f"on {os.cpu_count()} CPUs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
