"""`slam view RUN_DIR --screenshot`: a run folder rendered offscreen, checked pixel by pixel.

The pixel where each keyframe centre projects (through the same view camera the renderer used,
projected here with a plain pinhole model) must show the keyframes' colour, not the background.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from slam.cli import main
from slam.io.trajectory import Trajectory, write_tum
from slam.map.export import write_ply
from slam.viewer.render import legend_box, screenshot_view
from slam.viewer.run_folder import load_run
from slam.viewer.scene import BACKGROUND, COLORS

pytest.importorskip("open3d", reason="Open3D is not importable (install the test extra and its system libraries: "
                                     "`make venv`, which runs `make system-deps`)")


def make_run_folder(d: Path) -> None:
    """A run folder as `slam run` writes it: a 1.5-turn helix, points on a cylinder, ground truth, a loop."""
    d.mkdir(parents=True, exist_ok=True)
    n = 90
    a = np.linspace(0, 2 * np.pi, n)
    poses = np.tile(np.eye(4), (n, 1, 1))
    poses[:, :3, 3] = np.stack([2 * np.cos(a), -0.3 * np.sin(2 * a), 2 * np.sin(a)], 1)
    t = np.arange(n) * 0.05
    write_tum(d / "trajectory.tum", Trajectory(t, poses))
    write_tum(d / "keyframes.tum", Trajectory(t[::6], poses[::6]))
    rng = np.random.default_rng(3)
    b = rng.uniform(0, 2 * np.pi, 1500)
    pts = np.stack([4 * np.cos(b), rng.uniform(-1.5, 1.5, 1500), 4 * np.sin(b)], 1)
    write_ply(d / "map.ply", pts, poses[::6, :3, 3])
    gt = poses.copy()
    gt[:, :3, 3] += rng.normal(scale=0.05, size=(n, 3)) + np.array([5.0, 1.0, 0.0])  # another frame, some error
    write_tum(d / "groundtruth.tum", Trajectory(t, gt))
    (d / "loops.json").write_text(json.dumps([{"query": {"keyframe": 14, "timestamp": float(t[84])},
                                               "match": {"keyframe": 0, "timestamp": 0.0}}]))
    (d / "report.json").write_text(json.dumps({"resolution": [752, 480], "sensor": "stereo", "source": "test"}))


def near_color(img: np.ndarray, uv: np.ndarray, color: tuple[float, float, float], r: int = 2,
               tol: int = 40) -> np.ndarray:
    """For each pixel uv: does its (2r+1)^2 neighbourhood hold a pixel within tol of color (RGB 0..1)?"""
    target = np.round(255 * np.asarray(color)).astype(int)
    h, w = img.shape[:2]
    out = []
    for u, v in np.round(uv).astype(int):  # a few dozen keyframes
        patch = img[max(v - r, 0):min(v + r + 1, h), max(u - r, 0):min(u + r + 1, w)].reshape(-1, 3).astype(int)
        out.append(bool(patch.size) and bool((np.abs(patch - target).max(axis=1) <= tol).any()))
    return np.array(out)


def check_screenshot(run_dir: Path, png: Path, width: int, height: int, min_shown: float = 1.0) -> None:
    """The picture's keyframe centres show the keyframes' colour; most of the picture is background.

    min_shown: the fraction of keyframe centres that must show their colour. In a real run some are
    legitimately hidden behind nearer geometry (a landmark, the current camera's frustum, a keyframe
    frustum of the other side of the loop); none may be background.
    """
    img = cv2.imread(str(png), cv2.IMREAD_COLOR)[:, :, ::-1]
    assert img.shape == (height, width, 3)
    scene = load_run(run_dir)
    view = screenshot_view(scene, width, height)  # the view camera `slam view` renders with
    X = scene.keyframe_poses[:, :3, 3]
    Xc = X @ view.T_cam_world[:3, :3].T + view.T_cam_world[:3, 3]
    assert (Xc[:, 2] > 0).all()
    uv = (Xc @ view.K.T)[:, :2] / Xc[:, 2:]
    assert ((uv >= 0) & (uv < [width, height])).all(), "a keyframe is outside the picture"
    x0, y0, x1, y1 = legend_box(scene)
    free = ~((uv[:, 0] >= x0 - 3) & (uv[:, 0] <= x1 + 3) & (uv[:, 1] >= y0 - 3) & (uv[:, 1] <= y1 + 3))
    assert free.sum() >= 0.7 * len(uv)
    bg = np.round(255 * np.asarray(BACKGROUND)).astype(int)
    u, v = np.round(uv[free]).astype(int).T
    assert (np.abs(img[v, u].astype(int) - bg).max(axis=1) > 30).all(), "background where a camera centre projects"
    shown = near_color(img, uv[free], COLORS["keyframes"])
    assert shown.mean() >= min_shown, f"{(~shown).sum()} of {shown.size} keyframe centres do not show their colour"
    background = (np.abs(img.astype(int) - bg).max(axis=2) == 0).mean()
    assert 0.5 < background < 0.995, f"{background:.3f} of the picture is background"


def test_screenshot_pixels(tmp_path: Path) -> None:
    run = tmp_path / "run"
    make_run_folder(run)
    png = tmp_path / "shot.png"
    assert main(["view", str(run), "--screenshot", str(png), "--width", "640", "--height", "400"]) == 0
    check_screenshot(run, png, 640, 400)
    img = cv2.imread(str(png), cv2.IMREAD_COLOR)[:, :, ::-1].astype(int)
    for key in ("trajectory", "ground_truth", "loops", "points"):  # every element drawn in its own colour
        target = np.round(255 * np.asarray(COLORS[key])).astype(int)
        assert (np.abs(img - target).max(axis=2) <= 30).sum() > 20, f"no {key} pixels"


def test_view_matches_open3d_camera(tmp_path: Path) -> None:
    """Open3D's own view and projection matrices, after our setup, project points where View.project does."""
    import open3d as o3d

    from slam.viewer.render import set_view

    make_run_folder(tmp_path / "run")
    scene = load_run(tmp_path / "run")
    view = screenshot_view(scene, 640, 400)
    r = o3d.visualization.rendering.OffscreenRenderer(640, 400)
    set_view(r, view)
    V = np.asarray(r.scene.camera.get_view_matrix())
    P = np.asarray(r.scene.camera.get_projection_matrix())
    X = np.concatenate([scene.trajectory, np.ones((len(scene.trajectory), 1))], 1)
    clip = X @ (P @ V).T
    ndc = clip[:, :2] / clip[:, 3:]
    uv_gl = np.stack([(ndc[:, 0] + 1) * 320, (1 - ndc[:, 1]) * 200], 1)  # OpenGL: y up, origin bottom-left
    uv, _ = view.project(scene.trajectory)
    np.testing.assert_allclose(uv_gl, uv, atol=0.5)


def test_view_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_run_folder(tmp_path / "run")
    assert main(["view", str(tmp_path / "run"), "--screenshot", str(tmp_path / "x.jpg")]) == 2
    assert "expected a .png" in capsys.readouterr().err
    assert main(["view", str(tmp_path / "nothing"), "--screenshot", str(tmp_path / "x.png")]) == 2
    assert "no such run folder" in capsys.readouterr().err
    assert main(["view", str(tmp_path / "run"), "--screenshot", str(tmp_path / "x.png"), "--width", "0"]) == 2


def test_degenerate_scene_renders() -> None:
    """The first frames of a run: one keyframe, a trajectory standing still (Open3D crashed on such lines)."""
    from slam.viewer.render import render_image
    from slam.viewer.scene import Scene

    scene = Scene(points=np.zeros((3, 3)), keyframe_poses=np.eye(4)[None], trajectory=np.zeros((5, 3)),
                  ground_truth=np.zeros((5, 3)), loop_edges=np.zeros((1, 2, 3)), current_pose=np.eye(4))
    img, view = render_image(scene, 160, 120, legend=False)
    assert img.shape == (120, 160, 3)
    u, v = np.round(view.project(np.zeros((1, 3)))[0][0]).astype(int)
    assert (img[v, u] != 255).any()  # the camera centre is drawn
