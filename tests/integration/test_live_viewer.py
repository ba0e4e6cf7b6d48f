"""`slam run --viewer open3d` under a virtual screen: the window shows the run, and closing it (the q key)
ends the run like Ctrl-C with a complete run folder, which `slam view --screenshot` then renders."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from slam.cli import main
from slam.config import load_config
from slam.synthetic import SyntheticSource
from slam.system import System

pytest.importorskip("open3d", reason="Open3D is not importable (install the test extra and its system libraries: "
                                     "`make venv`, which runs `make system-deps`)")
from test_viewer_render import check_screenshot  # noqa: E402  (same folder; needs open3d)

REPO = Path(__file__).resolve().parents[2]
OUTPUTS = ("trajectory.tum", "keyframes.tum", "map.ply", "loops.json", "report.json")


@pytest.fixture
def display(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A private Xvfb screen as DISPLAY."""
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed (`make system-deps` installs xvfb)")
    for n in range(150, 200):
        if not Path(f"/tmp/.X11-unix/X{n}").exists() and not Path(f"/tmp/.X{n}-lock").exists():
            break
    proc = subprocess.Popen(["Xvfb", f":{n}", "-screen", "0", "1600x1000x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if Path(f"/tmp/.X11-unix/X{n}").exists():
                break
            time.sleep(0.1)
        else:
            pytest.fail("Xvfb did not start")
        monkeypatch.setenv("DISPLAY", f":{n}")
        yield f":{n}"
    finally:
        proc.terminate()
        proc.wait(10)


def _press_q(viewer: object, title: str, display: str) -> str:
    """Press q in the viewer's window (xdotool), or close it through the same path when xdotool is missing."""
    if shutil.which("xdotool"):
        # the window can be mapped (and titled) a while after its first pictures on a loaded machine:
        # xdotool's search then finds nothing (exit 1), so ask again for up to 30 s
        deadline = time.monotonic() + 30.0
        while True:
            r = subprocess.run(["xdotool", "search", "--name", title, "key", "q"],
                               env=dict(os.environ, DISPLAY=display), capture_output=True, text=True, timeout=30)
            # The window may close on the key press, before xdotool sends the release: X error
            # BadWindow on X_SendEvent and exit 1 although q was pressed (a search that finds no
            # window exits 1 without it). Taking that for a miss had the next searches find nothing.
            if r.returncode == 0 or "BadWindow" in r.stderr:
                return "key q"
            if time.monotonic() > deadline:
                break
            time.sleep(0.5)
    viewer.request_close()
    return "request_close"


@pytest.mark.slow
def test_closing_the_window_ends_the_run_like_ctrl_c(tmp_path: Path, display: str) -> None:
    from slam.viewer.live import LiveViewer

    cfg = load_config(REPO / "configs" / "synthetic.yaml")
    # far more than the run gets to: the window is closed long before, but closing may take up to
    # 30 s of xdotool retries after the third picture (_press_q), and 2,000 frames (~55 s) once ended
    # first on a loaded machine
    frames = 6000
    system = System(cfg, SyntheticSource("room_loop", "stereo", frames=frames), "synthetic:room_loop", tmp_path / "run",
                    progress=False)
    title = "slam-live-viewer-test"
    viewer = LiveViewer(system.rig.K, (system.rig.width, system.rig.height), with_scale=False, title=title)
    system.viewer = viewer
    how: list[str] = []

    def close_when_shown() -> None:
        t0 = time.monotonic()
        while viewer.sent < 3 and time.monotonic() - t0 < 300:  # the window has been given three pictures
            time.sleep(0.2)
        time.sleep(1.0)
        how.append(_press_q(viewer, title, display))

    closer = threading.Thread(target=close_when_shown, daemon=True)
    closer.start()
    try:
        result = system.run()
    finally:
        viewer.close()
    closer.join(40)  # longer than _press_q's retries
    assert how, "the run ended before the window showed anything"
    assert how[0] == ("key q" if shutil.which("xdotool") else "request_close")
    assert viewer.closed and viewer.sent >= 3
    assert result.interrupted and result.error is None
    rep = json.loads((tmp_path / "run" / "report.json").read_text())
    assert rep["interrupted"] is True and rep["complete"] is False
    assert 10 <= rep["frames"] < frames
    for name in OUTPUTS:
        assert (tmp_path / "run" / name).stat().st_size > 0, name
    traj = [ln for ln in (tmp_path / "run" / "trajectory.tum").read_text().splitlines() if not ln.startswith("#")]
    assert len(traj) == rep["frames_tracked"]
    # the run folder the window was closed on renders, and its camera centres show
    png = tmp_path / "shot.png"
    assert main(["view", str(tmp_path / "run"), "--screenshot", str(png), "--width", "960", "--height", "600"]) == 0
    check_screenshot(tmp_path / "run", png, 960, 600, min_shown=0.9)


@pytest.mark.slow
def test_slam_view_window_closes_on_q(tmp_path: Path, display: str) -> None:
    """`slam view RUN_DIR` opens its window on the run and returns 0 when q is pressed."""
    if shutil.which("xdotool") is None:
        pytest.skip("xdotool is not installed (`make system-deps` installs it)")
    from test_viewer_render import make_run_folder

    make_run_folder(tmp_path / "run")
    proc = subprocess.Popen([sys.executable, "-m", "slam", "view", str(tmp_path / "run")], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        r = subprocess.run(["xdotool", "search", "--sync", "--name", "slam view", "key", "q"],
                           capture_output=True, text=True, timeout=240)
        assert r.returncode == 0, r.stderr
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-2000:]


def test_viewer_needs_a_display(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    code = main(["run", "configs/synthetic.yaml", "--source", "synthetic:room_loop", "--max-frames", "3",
                 "--viewer", "open3d", "--quiet", "--out", str(tmp_path / "run")])
    assert code == 2
    assert "needs a display" in capsys.readouterr().err
