"""`slam run --viewer open3d`: the window runs in a child process, fed through a one-slot queue.

Rendering (software OpenGL/Vulkan on a machine without a GPU) is CPU-heavy and Python's GIL is
per process, so the window gets its own process at a lower priority; tracking never waits for
it. The pipeline calls `record()` with each frame's results (a few array writes) and, at most every
`period_s`, `update()` with a map snapshot, the current image and its tracked features. An update
that finds the previous one still unread is dropped. Closing the window (or q / Esc) sets `closed`,
which the pipeline treats like Ctrl-C.
"""

from __future__ import annotations

import importlib.util
import multiprocessing as mp
import os
import queue
import sys
import time
from typing import Any, Callable

import numpy as np

from slam.errors import InputError


class _Rows:
    """Append-only rows of one shape (amortized doubling), read as a copied prefix."""

    def __init__(self, shape: tuple[int, ...], dtype: Any = np.float64, fill: float = np.nan) -> None:
        self.a = np.full((256,) + shape, fill, dtype)
        self.n, self.fill = 0, fill

    def append(self, row: Any) -> None:
        if self.n == len(self.a):
            grown = np.full((2 * len(self.a),) + self.a.shape[1:], self.fill, self.a.dtype)
            grown[:self.n] = self.a
            self.a = grown
        self.a[self.n] = row
        self.n += 1

    def copy(self) -> np.ndarray:
        return self.a[:self.n].copy()


class LiveViewer:
    """The pipeline's handle on the viewer process (a `System(viewer=...)`)."""

    def __init__(self, K: np.ndarray, image_size: tuple[int, int], with_scale: bool, title: str = "slam run",
                 period_s: float = 0.1, width: int = 1024, height: int = 640, cpu_budget: float = 0.1) -> None:
        if importlib.util.find_spec("open3d") is None:
            raise InputError("--viewer open3d needs Open3D: `pip install -e '.[viewer]'` (`make venv` installs it "
                             "with the test extra)")
        if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise InputError("--viewer open3d needs a display (DISPLAY is not set): run under `xvfb-run`, or use "
                             "--viewer none and look at the run afterwards with `slam view RUN_DIR --screenshot`")
        self.period_s = period_s
        self.sent = self.dropped = 0
        self.snapshot_s: list[float] = []  # Map.snapshot() per update: the lock is held for (most of) it
        self.update_s: list[float] = []    # time the tracking thread spent per update, snapshot included
        self._last = -np.inf
        ctx = mp.get_context("spawn")  # never fork a process whose threads hold locks
        self._q = ctx.Queue(maxsize=1)
        self._closed = ctx.Event()  # set by the viewer when the user closed its window
        self._stop = ctx.Event()    # set by the pipeline: the run is over, close the window
        self._close = ctx.Event()   # set by request_close(): close the window as the q key does
        self._cpu = ctx.Array("d", 2)  # CPU seconds of the viewer process: to open its window, in all
        self._proc = ctx.Process(target=_window_main, name="slam-viewer", daemon=True,
                                 args=(self._q, self._closed, self._stop, self._close, self._cpu, title,
                                       np.asarray(K, np.float64), tuple(image_size), bool(with_scale), width,
                                       height, cpu_budget))
        self._proc.start()
        self._warned = False
        # per tracked frame: reference keyframe, position in it, position at tracking time, ground truth
        self._ref = _Rows((), np.int64, -1)
        self._t_ref = _Rows((3,))
        self._s_ref = _Rows((), np.float64, 1.0)  # the keyframe's units then (FrameResult.ref_scale)
        self._t_wc = _Rows((3,))
        self._gt = _Rows((3,))

    @property
    def closed(self) -> bool:
        """True once the user closed the window (a viewer that crashed is reported and ignored)."""
        if self._closed.is_set():
            return True
        if not self._proc.is_alive() and not self._warned:
            self._warned = True
            print(f"slam run: warning: the viewer exited (status {self._proc.exitcode}); continuing without it",
                  file=sys.stderr)
        return False

    def record(self, results: list[Any]) -> None:
        """Remember the poses of this frame's results (FrameResult) for the trajectory drawn."""
        for r in results:
            if r.T_ref_cam is None:
                continue
            self._ref.append(r.ref_kf)
            self._t_ref.append(r.T_ref_cam[:3, 3])
            self._s_ref.append(r.ref_scale)
            self._t_wc.append(np.nan if r.T_wc is None else r.T_wc[:3, 3])
            self._gt.append(np.nan if r.gt_pose is None else r.gt_pose[:3, 3])

    def due(self) -> bool:
        """True when the next update would be sent (at most one per period, none while the window is gone)."""
        return time.perf_counter() - self._last >= self.period_s and self._proc.is_alive()

    def update(self, snapshot: Callable[[], Any], image: np.ndarray | None, tracked_uv: np.ndarray,
               tracked_in_map: np.ndarray, current_pose: np.ndarray | None, loops: list[dict[str, Any]],
               status: str = "") -> bool:
        """Send the viewer a new picture; False (dropped) when it has not taken the previous one yet.

        `snapshot` is called (Map.snapshot: a copy under the map's lock) only when the picture is sent.
        """
        t0 = self._last = time.perf_counter()
        if self._q.full():
            self.dropped += 1
            return False
        snapshot = snapshot()
        self.snapshot_s.append(time.perf_counter() - t0)
        msg = {
            "points": np.asarray(snapshot.points, np.float32),
            "kf_ids": snapshot.keyframe_ids, "kf_times": snapshot.keyframe_timestamps,
            "kf_poses": snapshot.keyframe_poses,
            "ref": self._ref.copy(), "t_ref": self._t_ref.copy(), "t_wc": self._t_wc.copy(), "gt": self._gt.copy(),
            "s_ref": self._s_ref.copy(), "kf_scales": snapshot.keyframe_scales,
            "image": image, "uv": np.asarray(tracked_uv, np.float32), "in_map": np.asarray(tracked_in_map, bool),
            "current": current_pose, "loops": list(loops), "status": status,
        }
        try:
            self._q.put_nowait(msg)  # pickled and written by the queue's feeder thread
        except queue.Full:
            self.dropped += 1
            return False
        self.sent += 1
        self.update_s.append(time.perf_counter() - t0)
        return True

    def summary(self) -> str:
        """One line: updates sent and dropped, time taking snapshots and in the tracking thread, viewer CPU."""
        def ms(v: list[float]) -> str:
            return f"{1e3 * np.mean(v):.2f} ms mean, {1e3 * np.max(v):.2f} ms max" if v else "none"
        return (f"viewer: {self.sent} updates sent, {self.dropped} dropped (window busy); map snapshot "
                f"{ms(self.snapshot_s)}; tracking thread per update {ms(self.update_s)}; "
                f"viewer process CPU {self._cpu[1]:.1f} s ({self._cpu[0]:.1f} s to open the window)")

    def close(self, timeout: float = 5.0) -> None:
        """Close the window (if still open) and wait for its process."""
        self._stop.set()
        self._proc.join(timeout)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(1.0)
        self._q.cancel_join_thread()
        self._q.close()

    def request_close(self) -> None:
        """Close the window as the q key does (for tests and scripts)."""
        self._close.set()


# ---------------------------------------------------------------------- the child process
def _window_main(q: Any, closed: Any, stop: Any, close: Any, cpu: Any, title: str, K: np.ndarray, image_size: tuple[int, int],
                 with_scale: bool, width: int, height: int, cpu_budget: float) -> None:
    """Entry of the viewer process: the window on the main thread, a thread that turns messages into scenes.

    The process renders in software on a machine without a GPU; it keeps to `cpu_budget` cores on
    average (after its start) by waiting before it takes the next picture, and renders on one
    thread (LP_NUM_THREADS=1 for Mesa's llvmpipe/lavapipe), so that tracking keeps its cores.
    """
    import signal
    import threading

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the pipeline's to handle
    os.environ.setdefault("LP_NUM_THREADS", "1")
    try:
        os.nice(19)  # tracking first: the window gets the CPU tracking leaves idle
    except OSError:
        pass
    try:
        _serve(q, closed, stop, close, cpu, title, K, image_size, with_scale, width, height, cpu_budget, threading)
    finally:
        cpu[1] = time.process_time()


def _serve(q: Any, closed: Any, stop: Any, close: Any, cpu: Any, title: str, K: np.ndarray,
           image_size: tuple[int, int], with_scale: bool, width: int, height: int, cpu_budget: float,
           threading: Any) -> None:
    from slam.viewer.open3d_viewer import ViewerWindow

    win = ViewerWindow(title, width, height, show_image=True)
    cpu[0] = cpu0 = time.process_time()
    wall0 = time.monotonic()
    alive = threading.Event()
    alive.set()
    parent = os.getppid()

    def running() -> bool:
        if os.getppid() != parent:  # the pipeline's process died without closing us
            stop.set()
        if alive.is_set() and (stop.is_set() or close.is_set()):
            alive.clear()
            win.post(win.window.close)
        return alive.is_set()

    def feed() -> None:
        while running():
            # over budget: wait (and let the pipeline drop pictures) until the average is back under it
            if time.process_time() - cpu0 > cpu_budget * (time.monotonic() - wall0):
                time.sleep(0.02)
                continue
            try:
                msg = q.get(timeout=0.1)
            except queue.Empty:
                continue
            except (EOFError, OSError):  # the queue is gone with the pipeline's process
                stop.set()
                continue
            scene, img, status = scene_from_message(msg, K, image_size, with_scale)
            done = threading.Event()

            def apply(scene=scene, img=img, status=status, done=done) -> None:
                win.show(scene, img, status)
                done.set()

            win.post(apply)
            while running() and not done.wait(0.1):
                pass  # one picture at a time: one more may wait in the queue, the pipeline drops the rest

    t = threading.Thread(target=feed, name="viewer-feed", daemon=True)
    t.start()
    win.run()
    alive.clear()
    if not stop.is_set():  # the window was closed by the user (or request_close), not by the run's end
        closed.set()


def scene_from_message(msg: dict[str, Any], K: np.ndarray, image_size: tuple[int, int],
                       with_scale: bool) -> tuple[Any, np.ndarray | None, str]:
    """(Scene, RGB image with tracked features, status text) of one update message."""
    from slam.viewer.scene import Scene, align_ground_truth, loop_edges

    kf_poses = msg["kf_poses"]
    traj = msg["t_wc"].copy()
    ref = msg["ref"]
    have = (ref >= 0) & (ref < len(kf_poses))
    if have.any():  # frames follow their keyframe through BA and loop corrections (as trajectory.tum)
        kf = kf_poses[ref[have]]
        t_ref = msg["t_ref"][have]
        if msg.get("kf_scales") is not None and msg.get("s_ref") is not None:  # monocular Sim(3) corrections
            t_ref = t_ref * (msg["kf_scales"][ref[have]] / msg["s_ref"][have])[:, None]
        traj[have] = np.einsum("nij,nj->ni", kf[:, :3, :3], t_ref) + kf[:, :3, 3]
    scene = Scene(points=msg["points"].astype(np.float64), keyframe_poses=kf_poses, trajectory=traj,
                  current_pose=msg["current"], K=K, image_size=image_size)
    gt = msg["gt"]
    ok = np.all(np.isfinite(gt), axis=1)
    if ok.sum() >= 3:
        idx = np.flatnonzero(ok).astype(np.float64)  # frames matched by their order: use it as the time
        aligned = align_ground_truth(idx, traj[ok], idx, gt[ok], with_scale)
        if aligned is not None:
            scene.ground_truth = aligned
    if msg["loops"] and len(kf_poses):
        scene.loop_edges = loop_edges(msg["loops"], msg["kf_ids"], msg["kf_times"], kf_poses[:, :3, 3])
    status = msg["status"] or (f"{len(kf_poses)} keyframes, {len(scene.points)} points, "
                               f"{len(msg['loops'])} loop{'' if len(msg['loops']) == 1 else 's'}, {len(msg['uv'])} tracked")
    return scene, feature_image(msg["image"], msg["uv"], msg["in_map"]), status


def feature_image(image: np.ndarray | None, uv: np.ndarray, in_map: np.ndarray,
                  max_width: int = 400) -> np.ndarray | None:
    """RGB copy of the frame, scaled to max_width, with tracked features: green on a map point, yellow new."""
    if image is None:
        return None
    import cv2

    img = image if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    s = min(1.0, max_width / img.shape[1])
    if s < 1.0:
        size = (int(round(img.shape[1] * s)), int(round(img.shape[0] * s)))
        img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
    img = img[:, :, ::-1].copy()  # BGR -> RGB
    a = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    ring = np.round(3 * np.stack([np.cos(a), np.sin(a)], 1)).astype(int)  # a circle of radius 3 px
    px = (np.round(np.asarray(uv, np.float64).reshape(-1, 2) * s).astype(int)[:, None, :] + ring[None]).reshape(-1, 2)
    color = np.where(np.repeat(np.asarray(in_map, bool), len(ring))[:, None], [0, 200, 0], [230, 200, 0])
    inside = (px[:, 0] >= 0) & (px[:, 0] < img.shape[1]) & (px[:, 1] >= 0) & (px[:, 1] < img.shape[0])
    img[px[inside, 1], px[inside, 0]] = color[inside]
    return img
