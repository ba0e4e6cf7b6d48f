"""Open3D drawing of a Scene, shared by the live window, `slam view` and its offscreen screenshots.

Open3D is imported here only (lazily, by the callers): the rest of the project runs without it.
Everything is drawn unlit with post-processing off, so a pixel has exactly its element's colour
(or the background's): screenshots can be checked pixel by pixel.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from slam.errors import InputError
from slam.io.text import atomic_output
from slam.viewer.scene import BACKGROUND, COLORS, Scene, View, default_view, frustum_lines, frustum_size, polyline

GEOMETRY_NAMES = ("points", "ground_truth", "trajectory", "keyframes", "keyframe_centres", "loops", "current")
POINT_SIZE = {"points": 2.0, "keyframe_centres": 6.0}
LINE_WIDTH = {"ground_truth": 3.0, "trajectory": 3.0, "keyframes": 1.0, "loops": 3.0, "current": 3.0}


def import_open3d() -> Any:
    """The open3d module, or an InputError saying how to install it and its system libraries."""
    try:
        import open3d  # noqa: F401  (heavy: imported only when a viewer is asked for)
    except ImportError as exc:
        raise InputError("the viewer needs Open3D: `pip install -e '.[viewer]'` (or `make venv`, which also "
                         f"installs its system libraries: `make system-deps`); import failed: {exc}") from None
    return open3d


def _lineset(o3d: Any, verts: np.ndarray, lines: np.ndarray, color: tuple[float, float, float]) -> Any | None:
    if not np.ptp(np.asarray(verts).reshape(-1, 3), axis=0).any():
        return None  # all vertices in one spot: nothing to see, and Open3D 0.20 crashes (SIGSEGV) adding it
    ls = o3d.geometry.LineSet(o3d.utility.Vector3dVector(np.asarray(verts, np.float64)),
                              o3d.utility.Vector2iVector(np.asarray(lines, np.int32)))
    ls.paint_uniform_color(color)
    return ls


def _cloud(o3d: Any, xyz: np.ndarray, color: tuple[float, float, float]) -> Any:
    pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.asarray(xyz, np.float64)))
    pc.paint_uniform_color(color)
    return pc


def geometries(scene: Scene) -> dict[str, Any]:
    """name -> Open3D geometry of every non-empty element of the scene."""
    o3d = import_open3d()
    out: dict[str, Any] = {}
    K = scene.K if scene.K is not None else np.array([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]])
    depth = frustum_size(scene)
    if len(scene.points):
        out["points"] = _cloud(o3d, scene.points, COLORS["points"])
    if len(scene.ground_truth) > 1:
        out["ground_truth"] = _lineset(o3d, *polyline(scene.ground_truth), COLORS["ground_truth"])
    if len(scene.trajectory) > 1:
        out["trajectory"] = _lineset(o3d, *polyline(scene.trajectory), COLORS["trajectory"])
    if len(scene.keyframe_poses):
        out["keyframes"] = _lineset(o3d, *frustum_lines(scene.keyframe_poses, K, scene.image_size, depth),
                                    COLORS["keyframes"])
        out["keyframe_centres"] = _cloud(o3d, scene.keyframe_poses[:, :3, 3], COLORS["keyframes"])
    if len(scene.loop_edges):
        n = len(scene.loop_edges)
        out["loops"] = _lineset(o3d, scene.loop_edges.reshape(-1, 3), np.arange(2 * n).reshape(n, 2), COLORS["loops"])
    if scene.current_pose is not None:
        out["current"] = _lineset(o3d, *frustum_lines(scene.current_pose[None], K, scene.image_size, 2 * depth),
                                  COLORS["current"])
    return {name: g for name, g in out.items() if g is not None}


def material(name: str) -> Any:
    """The unlit material of a geometry: points with their size, lines with their width."""
    o3d = import_open3d()
    m = o3d.visualization.rendering.MaterialRecord()
    if name in POINT_SIZE:
        m.shader, m.point_size = "defaultUnlit", POINT_SIZE[name]
    else:
        m.shader, m.line_width = "unlitLine", LINE_WIDTH[name]
    return m


def draw(o3d_scene: Any, scene: Scene) -> None:
    """Replace the viewer's geometries in an Open3DScene with those of `scene`."""
    geoms = geometries(scene)
    for name in GEOMETRY_NAMES:
        if o3d_scene.has_geometry(name):
            o3d_scene.remove_geometry(name)
        if name in geoms:
            o3d_scene.add_geometry(name, geoms[name], material(name))


def prepare(o3d_scene: Any) -> None:
    """White background, no lighting or tone mapping: pixels keep their elements' exact colours."""
    o3d_scene.set_background([*BACKGROUND, 1.0])
    o3d_scene.view.set_post_processing(False)


def set_view(camera_setter: Any, view: View) -> None:
    """Apply a View through setup_camera(K, extrinsic, width, height) of a renderer or widget."""
    camera_setter.setup_camera(view.K, view.T_cam_world, view.width, view.height)


ROW = 18  # legend line height (px)


def legend_box(scene: Scene) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the legend drawn on screenshots (top-left corner)."""
    n = len(scene.legend()) + len(scene.info)
    return 8, 8, 8 + 280, 8 + 8 + ROW * n


def screenshot_view(scene: Scene, width: int, height: int, legend: bool = True) -> View:
    """The view camera of a screenshot: `default_view`, with the scene framed right of the legend."""
    margin = legend_box(scene)[2] + 8 if legend and width >= 3 * legend_box(scene)[2] else 0
    return default_view(scene, width, height, left_margin=margin)


def draw_legend(img: np.ndarray, scene: Scene) -> None:
    """Colour swatches with labels and the run's info lines, in place on an RGB image."""
    import cv2

    x0, y0, x1, y1 = legend_box(scene)
    cv2.rectangle(img, (x0, y0), (x1, y1), (255, 255, 255), -1)
    cv2.rectangle(img, (x0, y0), (x1, y1), (160, 160, 160), 1)
    y = y0 + ROW
    for label, color in scene.legend():
        rgb = tuple(int(round(255 * c)) for c in color)
        cv2.line(img, (x0 + 8, y - 5), (x0 + 30, y - 5), rgb, 4)
        cv2.putText(img, label, (x0 + 38, y), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (20, 20, 20), 1, cv2.LINE_AA)
        y += ROW
    for line in scene.info:
        cv2.putText(img, line[:46], (x0 + 8, y), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (60, 60, 60), 1, cv2.LINE_AA)
        y += ROW


def render_image(scene: Scene, width: int, height: int, view: View | None = None,
                 legend: bool = True) -> tuple[np.ndarray, View]:
    """(H,W,3) uint8 RGB picture of the scene without a display (Open3D's OffscreenRenderer), and its view."""
    o3d = import_open3d()
    view = view or screenshot_view(scene, width, height, legend)
    try:
        r = o3d.visualization.rendering.OffscreenRenderer(int(width), int(height))
    except RuntimeError as exc:
        raise InputError(f"Open3D cannot render offscreen here ({exc}); it needs Vulkan or EGL from Mesa: "
                         "`make system-deps` installs them (libvulkan1 mesa-vulkan-drivers libegl1)") from None
    prepare(r.scene)
    draw(r.scene, scene)
    set_view(r, view)
    img = np.array(r.render_to_image())[:, :, :3].copy()
    if legend:
        draw_legend(img, scene)
    return img, view


def save_screenshot(scene: Scene, path: str | Path, width: int = 1280, height: int = 800) -> View:
    """Render the scene to a PNG file; returns the view camera used."""
    import cv2

    img, view = render_image(scene, width, height)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp:
        if not cv2.imwrite(str(tmp), img[:, :, ::-1]):
            raise InputError(f"{path}: could not write the PNG (is the folder writable and the name *.png?)")
    return view
