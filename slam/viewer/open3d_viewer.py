"""The Open3D window: the 3-D scene on the left; the current image, the legend and a status line on the right.

`slam view` opens it in its own process on a finished run; `slam run --viewer open3d` opens it in a
child process fed by `slam.viewer.live.LiveViewer`. Keys: q or Esc closes the window; r re-frames
the view. Until the mouse moves the camera, the view re-frames itself as the map grows.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from slam.viewer.render import draw, import_open3d, prepare
from slam.viewer.scene import COLORS, LABELS, Scene, default_view

PANEL_WIDTH = 420


class ViewerWindow:
    """One Open3D GUI window showing a Scene (and, live, the current image with its tracked features)."""

    def __init__(self, title: str, width: int = 1400, height: int = 800, show_image: bool = True) -> None:
        o3d = import_open3d()
        self.o3d = o3d
        gui, rendering = o3d.visualization.gui, o3d.visualization.rendering
        self.gui = gui
        self.app = gui.Application.instance
        self.app.initialize()
        self.window = self.app.create_window(title, width, height)
        self.widget = gui.SceneWidget()
        self.widget.scene = rendering.Open3DScene(self.window.renderer)
        prepare(self.widget.scene)
        em = self.window.theme.font_size
        self.panel = gui.Vert(0.4 * em, gui.Margins(0.5 * em, 0.5 * em, 0.5 * em, 0.5 * em))
        self.image = None
        if show_image:
            self.image = gui.ImageWidget(o3d.geometry.Image(np.full((240, 320, 3), 255, np.uint8)))
            self.panel.add_child(self.image)
        self.legend: dict[str, Any] = {}
        for key, color in COLORS.items():
            label = gui.Label(f"== {LABELS[key]}")
            label.text_color = gui.Color(*color)
            self.legend[key] = label
            self.panel.add_child(label)
        self.status = gui.Label("")
        self.panel.add_child(self.status)
        self.panel.add_child(gui.Label("q / Esc: close    r: re-frame the view"))
        self.window.add_child(self.widget)
        self.window.add_child(self.panel)
        self.window.set_on_layout(self._layout)
        self.window.set_on_key(self._on_key)
        self.widget.set_on_key(self._on_key)
        self.widget.set_on_mouse(self._on_mouse)
        self.user_moved = False
        self._framed_extent = 0.0
        self._scene = Scene()

    def _layout(self, ctx: Any) -> None:
        r = self.window.content_rect
        pw = min(PANEL_WIDTH, r.width // 2)
        self.widget.frame = self.gui.Rect(r.x, r.y, r.width - pw, r.height)
        self.panel.frame = self.gui.Rect(r.x + r.width - pw, r.y, pw, r.height)

    def _on_key(self, event: Any) -> bool:
        gui = self.gui
        if event.type == gui.KeyEvent.Type.DOWN and event.key in (gui.KeyName.Q, gui.KeyName.ESCAPE):
            self.window.close()
            return True
        if event.type == gui.KeyEvent.Type.DOWN and event.key == gui.KeyName.R:
            self.user_moved = False
            self._frame(self._scene)
            return True
        return False

    def _on_mouse(self, event: Any) -> Any:
        if event.type in (self.gui.MouseEvent.Type.DRAG, self.gui.MouseEvent.Type.WHEEL):
            self.user_moved = True  # the user steers the camera: stop re-framing
        return self.gui.Widget.EventCallbackResult.IGNORED

    def _frame(self, scene: Scene) -> None:
        """Point the camera at the scene as `default_view` frames it (the screenshot's view)."""
        r = self.widget.frame
        view = default_view(scene, max(r.width, 1), max(r.height, 1))
        anchors = scene.anchor_points()
        self._framed_extent = float(np.linalg.norm(np.ptp(anchors, axis=0))) if len(anchors) else 0.0
        vfov = float(np.degrees(2 * np.arctan(0.5 * view.height / view.K[1, 1])))
        target = view.target.astype(np.float32)
        self.widget.setup_camera(vfov, self.widget.scene.bounding_box, target)
        self.widget.look_at(target, view.eye.astype(np.float32), (-view.T_cam_world[1, :3]).astype(np.float32))

    def show(self, scene: Scene, image: np.ndarray | None = None, status: str = "") -> None:
        """Draw a scene (main thread only); re-frame while the user has not moved the camera and the
        scene outgrew its framing."""
        self._scene = scene
        draw(self.widget.scene, scene)
        present = {label for label, _ in scene.legend()}
        relayout = False
        for key, label in self.legend.items():
            if label.visible != (LABELS[key] in present):
                label.visible = not label.visible
                relayout = True
        anchors = scene.anchor_points()
        extent = float(np.linalg.norm(np.ptp(anchors, axis=0))) if len(anchors) >= 2 else 0.0
        if not self.user_moved and extent > 0 and (self._framed_extent == 0 or extent > 1.5 * self._framed_extent):
            self._frame(scene)
        if image is not None and self.image is not None:
            self.image.update_image(self.o3d.geometry.Image(np.ascontiguousarray(image)))
        self.status.text = status or "\n".join(scene.info)
        if relayout:
            self.window.set_needs_layout()
        self.window.post_redraw()

    def post(self, fn: Callable[[], None]) -> None:
        """Run fn on the GUI thread (from any thread)."""
        self.app.post_to_main_thread(self.window, fn)

    def run(self) -> None:
        """The GUI loop; returns when the window is closed."""
        self.app.run()


def show_run(scene: Scene, title: str, width: int = 1400, height: int = 800) -> None:
    """Open a window on a finished run and wait until it is closed."""
    win = ViewerWindow(title, width, height, show_image=False)
    win.show(scene)
    win.run()
