"""`slam calibrate` on chessboard images rendered here with known intrinsics and radtan distortion.

The renderer traces every (3x supersampled) pixel through the inverse of the true lens model onto
the board plane, so the squares' edges are the true curved images of straight lines; its corners
are checked against cv2.projectPoints before anything is calibrated.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from slam.cli import main
from slam.errors import InputError
from slam.sources.chessboard import BoardView, detect_board, parse_board, select_views
from slam.sources.open import open_source
from slam.sources.video import load_calibration

W, H = 640, 480
K_TRUE = np.array([[520.0, 0.0, 322.5], [0.0, 515.0, 243.7], [0.0, 0.0, 1.0]])
D_TRUE = np.array([-0.18, 0.06, 0.0008, -0.0005])  # k1 k2 p1 p2
PATTERN = (9, 6)      # inner corners; the board has 10x7 squares
SQUARE = 0.03         # m
SS = 3                # supersampling


def _distort(x: np.ndarray, y: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    k1, k2, p1, p2 = d
    r2 = x * x + y * y
    rad = 1 + k1 * r2 + k2 * r2 * r2
    return x * rad + 2 * p1 * x * y + p2 * (r2 + 2 * x * x), y * rad + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y


def _undistorted_rays() -> tuple[np.ndarray, np.ndarray]:
    """Normalized undistorted coordinates of every supersampled pixel centre (fixed-point inversion)."""
    u = (np.arange(W * SS) + 0.5) / SS - 0.5
    v = (np.arange(H * SS) + 0.5) / SS - 0.5
    xd = ((u - K_TRUE[0, 2]) / K_TRUE[0, 0])[None, :].repeat(H * SS, 0)
    yd = ((v - K_TRUE[1, 2]) / K_TRUE[1, 1])[:, None].repeat(W * SS, 1)
    x, y = xd.copy(), yd.copy()
    for _ in range(40):
        fx, fy = _distort(x, y, D_TRUE)
        x, y = x - (fx - xd), y - (fy - yd)
    fx, fy = _distort(x, y, D_TRUE)
    assert max(np.abs(fx - xd).max(), np.abs(fy - yd).max()) * K_TRUE[0, 0] < 1e-6  # px: inversion converged
    return x, y


def _render(x: np.ndarray, y: np.ndarray, rvec: np.ndarray, tvec: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The board (origin at its outer corner, one white square of margin) seen from pose (rvec, tvec)."""
    R = cv2.Rodrigues(rvec)[0]
    n, t = R[:, 2], tvec.ravel()
    denom = n[0] * x + n[1] * y + n[2]
    lam = np.where(denom > 1e-9, (n @ t) / np.where(denom > 1e-9, denom, 1.0), np.nan)
    bx = lam * (R[0, 0] * x + R[1, 0] * y + R[2, 0]) - R[:, 0] @ t
    by = lam * (R[0, 1] * x + R[1, 1] * y + R[2, 1]) - R[:, 1] @ t
    cols, rows = PATTERN[0] + 1, PATTERN[1] + 1
    sx, sy = np.floor(bx / SQUARE), np.floor(by / SQUARE)
    on_board = (sx >= -1) & (sx <= cols) & (sy >= -1) & (sy <= rows)
    in_squares = (sx >= 0) & (sx < cols) & (sy >= 0) & (sy < rows)
    img = np.full(x.shape, 110.0)
    img[on_board] = 235.0
    img[in_squares & ((sx + sy) % 2 == 0)] = 25.0
    img = cv2.resize(img, (W, H), interpolation=cv2.INTER_AREA)
    img = cv2.GaussianBlur(img, (0, 0), 0.7) + rng.normal(0.0, 2.0, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _inner_corners_board() -> np.ndarray:
    """Inner corners in the renderer's board frame (one square in from the outer corner), row-major."""
    g = np.mgrid[1:PATTERN[0] + 1, 1:PATTERN[1] + 1].T.reshape(-1, 2) * SQUARE
    return np.column_stack([g, np.zeros(len(g))])


def _poses(n: int, rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    """Board poses with every inner corner at least 15 px inside the image, varied in place, depth and tilt."""
    centre = np.array([(PATTERN[0] + 1) * SQUARE / 2, (PATTERN[1] + 1) * SQUARE / 2, 0.0])
    out = []
    while len(out) < n:
        ang = np.radians(rng.uniform([-40, -40, -25], [40, 40, 25]))
        R = cv2.Rodrigues(np.array([ang[0], 0, 0]))[0] @ cv2.Rodrigues(np.array([0, ang[1], 0]))[0] \
            @ cv2.Rodrigues(np.array([0, 0, ang[2]]))[0]
        z = rng.uniform(0.35, 0.75)
        target = np.array([rng.uniform(-0.35, 0.35) * z, rng.uniform(-0.25, 0.25) * z, z])
        t = target - R @ centre
        rvec = cv2.Rodrigues(R)[0]
        px = cv2.projectPoints(_inner_corners_board(), rvec, t, K_TRUE, D_TRUE)[0].reshape(-1, 2)
        outer = cv2.projectPoints(np.array([[-SQUARE, -SQUARE, 0], [(PATTERN[0] + 2) * SQUARE, -SQUARE, 0],
                                            [-SQUARE, (PATTERN[1] + 2) * SQUARE, 0],
                                            [(PATTERN[0] + 2) * SQUARE, (PATTERN[1] + 2) * SQUARE, 0]]),
                                  rvec, t, K_TRUE, D_TRUE)[0].reshape(-1, 2)
        if px.min() > 15 and px[:, 0].max() < W - 15 and px[:, 1].max() < H - 15 and \
                outer.min() > 0 and outer[:, 0].max() < W and outer[:, 1].max() < H:
            out.append((rvec, t))
    return out


@pytest.fixture(scope="module")
def board_folder(tmp_path_factory) -> Path:
    """22 board views and 3 frames without a board, as PNG files."""
    rng = np.random.default_rng(7)
    folder = tmp_path_factory.mktemp("board")
    x, y = _undistorted_rays()
    poses = _poses(22, rng)
    for i, (rvec, t) in enumerate(poses):
        cv2.imwrite(str(folder / f"{i:03d}.png"), _render(x, y, rvec, t, rng))
    for i in range(22, 25):
        cv2.imwrite(str(folder / f"{i:03d}.png"), np.full((H, W), 110, np.uint8))
    np.save(folder.parent / "poses.npy", np.array([np.concatenate([r.ravel(), t]) for r, t in poses]))
    return folder


def test_rendered_corners_are_where_opencv_projects_them(board_folder: Path) -> None:
    poses = np.load(board_folder.parent / "poses.npy")
    errs = []
    for i in (0, 5, 11):
        img = cv2.imread(str(board_folder / f"{i:03d}.png"), cv2.IMREAD_GRAYSCALE)
        found = detect_board(img, PATTERN)
        assert found is not None
        truth = cv2.projectPoints(_inner_corners_board(), poses[i, :3], poses[i, 3:], K_TRUE, D_TRUE)[0].reshape(-1, 2)
        if np.linalg.norm(found[0] - truth[0]) > np.linalg.norm(found[0] - truth[-1]):
            truth = truth[::-1]  # detection order is canonical, not the board's
        errs.append(np.linalg.norm(found - truth, axis=1))
    err = np.concatenate(errs)
    print(f"corner error vs projectPoints: rms {np.sqrt(np.mean(err ** 2)):.3f} px, max {err.max():.3f} px")
    assert np.sqrt(np.mean(err ** 2)) < 0.08 and err.max() < 0.3  # sub-pixel detection of an image with noise


def test_calibrate_recovers_the_rendering_camera(board_folder: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "camera.yaml"
    assert main(["calibrate", "--source", str(board_folder), "--board", "9x6", "--square", str(SQUARE),
                 "--out", str(out), "--quiet"]) == 0
    assert "RMS reprojection error" in capsys.readouterr().out
    cam, _ = load_calibration(out)
    rel_f = np.array([cam.fx / K_TRUE[0, 0] - 1, cam.fy / K_TRUE[1, 1] - 1])
    dc = np.array([cam.cx - K_TRUE[0, 2], cam.cy - K_TRUE[1, 2]])
    print(f"fx {cam.fx:.3f} fy {cam.fy:.3f} ({100 * rel_f[0]:+.3f}%, {100 * rel_f[1]:+.3f}%), "
          f"cx {cam.cx:.3f} cy {cam.cy:.3f} ({dc[0]:+.3f}, {dc[1]:+.3f} px), dist {cam.distortion}")
    assert np.all(np.abs(rel_f) < 0.005) and np.all(np.abs(dc) < 1.0)
    # The whole lens model, not just K: where the true and the estimated camera put the same rays.
    rays = np.stack(np.meshgrid(np.linspace(-0.55, 0.55, 23), np.linspace(-0.42, 0.42, 17)), -1).reshape(-1, 2)
    pts = np.column_stack([rays, np.ones(len(rays))])
    p_true = cv2.projectPoints(pts, np.zeros(3), np.zeros(3), K_TRUE, D_TRUE)[0].reshape(-1, 2)
    p_est = cv2.projectPoints(pts, np.zeros(3), np.zeros(3), cam.K, cam.distortion)[0].reshape(-1, 2)
    assert np.abs(p_est - p_true).max() < 1.0
    info = yaml.safe_load(out.read_text())["calibration_info"]
    assert info["views_found"] == 22 and info["views_used"] == len(info["frames_used"]) >= 20
    assert not set(info["frames_used"]) & {22, 23, 24}  # the empty frames gave no view
    assert 0 < info["rms_reprojection_error_px"] < 0.3 and len(info["per_view_rms_px"]) == info["views_used"]
    # The file is what the image-folder source (and `slam run --calibration`) takes.
    src = open_source(str(board_folder), {"calibration": str(out), "rate_hz": 10.0})
    assert src.calibration.raw_cameras[0].fx == cam.fx and len(src) == 25


def test_calibrate_from_a_video(board_folder: Path, tmp_path: Path) -> None:
    video = tmp_path / "board.avi"
    wr = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 15.0, (W, H))
    for f in sorted(board_folder.glob("*.png")):
        wr.write(cv2.cvtColor(cv2.imread(str(f), cv2.IMREAD_GRAYSCALE), cv2.COLOR_GRAY2BGR))
    wr.release()
    out = tmp_path / "cam.yaml"
    assert main(["calibrate", "--source", str(video), "--board", "9x6", "--square", "0.03", "--out", str(out),
                 "--max-views", "15", "--quiet"]) == 0
    cam, extras = load_calibration(out)
    assert extras["rate_hz"] == 15.0
    assert abs(cam.fx / K_TRUE[0, 0] - 1) < 0.005 and abs(cam.fy / K_TRUE[1, 1] - 1) < 0.005
    assert abs(cam.cx - K_TRUE[0, 2]) < 1.0 and abs(cam.cy - K_TRUE[1, 2]) < 1.0
    assert yaml.safe_load(out.read_text())["calibration_info"]["views_used"] <= 15


def test_select_views_prefers_spread_over_repetition() -> None:
    base = np.stack(np.meshgrid(np.arange(9) * 20.0, np.arange(6) * 20.0), -1).reshape(-1, 2)
    same = [BoardView(i, (base + 100 + 0.01 * i).astype(np.float32)) for i in range(20)]
    corners_elsewhere = [BoardView(100 + k, (base * s + off).astype(np.float32))
                         for k, (s, off) in enumerate([(0.6, (10, 10)), (0.6, (500, 10)), (1.5, (200, 200)),
                                                       (0.6, (10, 380)), (0.6, (500, 380))])]
    views = same + corners_elsewhere
    chosen = select_views(views, PATTERN, (W, H), 6)
    assert {views[k].frame for k in chosen} >= {100, 101, 102, 103, 104}


def test_calibrate_errors_name_the_problem(board_folder: Path, tmp_path: Path, capsys) -> None:
    with pytest.raises(InputError, match="COLSxROWS"):
        parse_board("9by6")
    assert main(["calibrate", "--source", str(board_folder), "--board", "9x6", "--square", "-1",
                 "--out", str(tmp_path / "c.yaml")]) == 2
    assert "--square must be a positive length" in capsys.readouterr().err
    # A wrong board size finds nothing: the error says how the board is counted.
    assert main(["calibrate", "--source", str(board_folder), "--board", "10x7", "--square", "0.03",
                 "--out", str(tmp_path / "c.yaml"), "--quiet"]) == 2
    assert "found in 0 view(s)" in capsys.readouterr().err and not (tmp_path / "c.yaml").exists()
    assert main(["calibrate", "--source", "synthetic:room_loop", "--board", "9x6", "--square", "0.03",
                 "--out", str(tmp_path / "c.yaml")]) == 2
    assert "brings its own calibration" in capsys.readouterr().err


def test_run_takes_calibration_on_the_command_line(board_folder: Path, tmp_path: Path, capsys) -> None:
    assert main(["run", "--source", str(board_folder), "--out", str(tmp_path / "r"), "--quiet"]) == 2
    assert "--calibration FILE" in capsys.readouterr().err
    cal = tmp_path / "cam.yaml"
    cal.write_text(f"width: {W}\nheight: {H}\nfx: 520.0\nfy: 515.0\ncx: 322.5\ncy: 243.7\n"
                   "distortion: [-0.18, 0.06, 0.0008, -0.0005]\nrate_hz: 5.0\n")
    rc = main(["run", "--source", str(board_folder), "--calibration", str(cal), "--out", str(tmp_path / "r"),
               "--max-frames", "3", "--quiet"])
    assert rc == 0
    rep = yaml.safe_load((tmp_path / "r" / "report.json").read_text())
    assert rep["frames"] == 3 and rep["config"]["source"]["calibration"] == str(cal)
