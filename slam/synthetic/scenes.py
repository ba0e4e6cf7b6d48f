"""The synthetic scenes: layouts of textured quads and the camera paths through them.

| scene | place | motion |
| --- | --- | --- |
| room_loop | 8 x 6 m room, boxes, pillar | 17 s: one full loop at 0.9 m/s, back exactly at the start, 2 s more |
| room_figure8 | 10 x 7 m room, pillars | 22 s: one figure-eight through the middle of the room at 1 m/s |
| office_walk | 24 x 16 m office: ring corridor, six rooms | 44 s: from one room to another, no revisit |
| office_long | same office | 3.6 min: four corridor laps, each with a detour into another room |
| street_loop | city block, facades, road, parked cars, poles | 39 s: 1.25 laps around the block at 7.5 m/s |
| corridor_repeat | 44 m corridor of eleven identical 4 m modules | 42 s: once end to end at 1 m/s, no revisit |

Layouts are fixed (the camera paths are checked to stay clear of every surface); the seed changes
the textures and tints only (quads sharing a texture_key share them). World frame: z up, metres.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from slam.synthetic.quads import Quad, box, floor, loop_walls, wall, wall_with_doors
from slam.synthetic.trajectory import PathTrajectory


@dataclass(frozen=True)
class SceneSpec:
    """A named scene: how to build its quads and its trajectory, and what it is for."""

    name: str
    description: str
    layout: Callable[[], list[Quad]]
    trajectory: Callable[[], PathTrajectory]
    sky: tuple[float, float] | None = None  # background gray at the horizon and its gain with elevation


def rounded_corners(points: list[tuple[float, ...]], radius: float, closed: bool = False,
                    min_len: float = 1.5) -> np.ndarray:
    """Polyline whose corners between segments of at least min_len become quadratic Bezier arcs
    (5 points) starting `radius` before the corner, so walkers and cars turn on a wide curve."""
    p = [np.asarray(x, dtype=np.float64) for x in points]
    n = len(p)
    out: list[np.ndarray] = []
    for i in range(n):
        if not closed and i in (0, n - 1):
            out.append(p[i])
            continue
        a, b, c = p[i - 1], p[i], p[(i + 1) % n]
        la, lc = np.linalg.norm(b - a), np.linalg.norm(c - b)
        u0, u1 = (b - a) / la, (c - b) / lc
        if la < min_len or lc < min_len or np.dot(u0, u1) > 0.985:
            out.append(b)
            continue
        r = min(radius, 0.45 * la, 0.45 * lc)
        p0, p2 = b - r * u0, b + r * u1
        out += [(1 - s) ** 2 * p0 + 2 * s * (1 - s) * b + s * s * p2 for s in (0.0, 0.25, 0.5, 0.75, 1.0)]
    return np.array(out)


def _waves(*specs: tuple[float, float, float]) -> tuple[tuple[float, float, float], ...]:
    return tuple(specs)


# ----------------------------------------------------------------------------------------- rooms
def _room_shell(x1: float, y1: float, h: float, wall_ppm: float = 128) -> list[Quad]:
    quads = loop_walls([(0, 0), (0, y1), (x1, y1), (x1, 0)], 0, h, "plaster", wall_ppm, overlap=0.05)
    quads.append(floor(-0.05, x1 + 0.05, -0.05, y1 + 0.05, 0.0, "planks", 128))
    quads.append(floor(-0.05, x1 + 0.05, -0.05, y1 + 0.05, h, "ceiling", 64, up=False))
    return quads


def room_loop_layout() -> list[Quad]:
    """8 x 6 x 3 m room: a table in the middle, a pillar, boxes and shelves along the walls."""
    q = _room_shell(8.0, 6.0, 3.0)
    q += box(4.0, 3.0, 1.2, 0.8, 0.0, 0.9, "rich", 128)
    q += box(4.1, 3.1, 0.4, 0.3, 0.9, 1.2, "rich", 128, yaw=0.3)
    q += box(2.9, 3.0, 0.3, 0.3, 0.0, 3.0, "concrete", 128, top=False)
    q += box(1.0, 1.0, 0.8, 0.8, 0.0, 1.2, "rich", 128, yaw=0.2)
    q += box(7.0, 1.2, 0.6, 1.0, 0.0, 0.8, "rich", 128)
    q += box(6.8, 5.1, 1.4, 0.5, 0.0, 1.8, "rich", 128)
    q += box(1.2, 5.0, 0.7, 0.7, 0.0, 0.7, "rich", 128, yaw=-0.4)
    q += box(1.2, 5.0, 0.5, 0.5, 0.7, 1.2, "rich", 128, yaw=0.1)
    return q


def room_loop_trajectory() -> PathTrajectory:
    """An ellipse around the table at 0.9 m/s, height 1.1-1.6 m; 15 s a lap, 17 s in all."""
    lap = 15.0
    phi = np.linspace(0, 2 * np.pi, 96, endpoint=False)
    pts = np.stack([4.0 + 2.4 * np.cos(phi), 3.0 + 1.6 * np.sin(phi), 1.35 + 0.25 * np.sin(2 * phi)], axis=1)
    return PathTrajectory(pts, duration=17.0, closed=True, lap_time=lap, look_ahead=0.3,
                          yaw_offset=0.45, yaw=_waves((0.35, lap / 3, 0.0), (0.1, lap / 7, 1.0)),
                          pitch0=-0.12, pitch=_waves((0.08, lap / 2, 0.5), (0.03, lap / 9, 0.0)),
                          roll=_waves((0.06, lap / 4, 0.3)), bob=_waves((0.03, lap / 11, 0.0)))


def room_figure8_layout() -> list[Quad]:
    """10 x 7 x 3 m room with a pillar inside each lobe of the figure-eight and furniture around."""
    q = _room_shell(10.0, 7.0, 3.0)
    q += box(2.7, 3.5, 0.5, 0.5, 0.0, 3.0, "concrete", 128, top=False)
    q += box(7.3, 3.5, 0.5, 0.5, 0.0, 3.0, "concrete", 128, top=False)
    q += box(5.0, 0.5, 2.0, 0.6, 0.0, 0.9, "rich", 128)
    q += box(5.0, 6.5, 1.6, 0.5, 0.0, 1.9, "rich", 128)
    q += box(0.5, 0.6, 0.6, 0.8, 0.0, 1.1, "rich", 128, yaw=0.2)
    q += box(9.4, 6.3, 0.8, 0.8, 0.0, 0.8, "rich", 128, yaw=-0.3)
    q += box(9.4, 6.3, 0.5, 0.5, 0.8, 1.3, "rich", 128)
    q += box(9.5, 0.6, 0.6, 0.6, 0.0, 1.5, "rich", 128)
    return q


def room_figure8_trajectory() -> PathTrajectory:
    """A lemniscate of Gerono across the room at about 1 m/s; 20 s a lap, 22 s in all."""
    lap = 20.0
    phi = np.linspace(0, 2 * np.pi, 128, endpoint=False)
    pts = np.stack([5.0 + 3.2 * np.sin(phi), 3.5 + 1.8 * np.sin(2 * phi), 1.4 + 0.2 * np.cos(phi)], axis=1)
    return PathTrajectory(pts, duration=22.0, closed=True, lap_time=lap, look_ahead=0.4,
                          yaw=_waves((0.3, lap / 3, 0.0), (0.1, lap / 8, 2.0)),
                          pitch0=-0.08, pitch=_waves((0.07, lap / 4, 0.0)),
                          roll=_waves((0.05, lap / 5, 1.0)), bob=_waves((0.03, lap / 13, 0.0)))


# ---------------------------------------------------------------------------------------- office
OFFICE_H = 2.8
_DOOR = (1.0, 2.1)  # width, height
_DOOR_X = (4.0, 12.0, 20.0)


def _room_furniture(xc: float, mirror: bool) -> list[Quad]:
    """Desks, a cabinet and a box in the office room whose door is at x = xc."""
    def y(v: float) -> float:
        return 16.0 - v if mirror else v

    q: list[Quad] = []
    q += box(xc - 2.5, y(1.0), 1.6, 0.8, 0.0, 0.75, "rich", 96, yaw=0.1)
    q += box(xc + 2.5, y(1.0), 1.6, 0.8, 0.0, 0.75, "rich", 96, yaw=-0.1)
    q += box(xc - 3.4, y(3.5), 0.5, 1.2, 0.0, 1.9, "rich", 96)
    q += box(xc + 3.1, y(3.9), 0.6, 0.6, 0.0, 1.0, "rich", 96, yaw=0.4)
    return q


def office_layout() -> list[Quad]:
    """24 x 16 m floor: ring corridor (2 m wide) around a core, three rooms south and three north."""
    H = OFFICE_H
    q = loop_walls([(0, 0), (0, 16), (24, 16), (24, 0)], 0, H, "plaster", 96, overlap=0.1)
    q += loop_walls([(2, 7), (22, 7), (22, 9), (2, 9)], 0, H, "rich", 96, overlap=0.005)
    doors = [(x, *_DOOR) for x in _DOOR_X]
    q += wall_with_doors((0, 5), (24, 5), 0, H, 0.12, doors, "plaster", "plaster", 96)
    q += wall_with_doors((0, 11), (24, 11), 0, H, 0.12, doors, "plaster", "plaster", 96)
    for x in (8.0, 16.0):
        q += wall_with_doors((x, 0), (x, 5), 0, H, 0.12, [], "plaster", "plaster", 96)
        q += wall_with_doors((x, 11), (x, 16), 0, H, 0.12, [], "plaster", "plaster", 96)
    for x0 in (0.0, 8.0, 16.0):
        q.append(floor(x0, x0 + 8, 0, 5, 0.0, "planks", 80))
        q.append(floor(x0, x0 + 8, 11, 16, 0.0, "planks", 80))
    q.append(floor(0, 24, 5, 7, 0.0, "concrete", 80))
    q.append(floor(0, 24, 9, 11, 0.0, "concrete", 80))
    q.append(floor(0, 2, 7, 9, 0.0, "concrete", 80))
    q.append(floor(22, 24, 7, 9, 0.0, "concrete", 80))
    q.append(floor(0, 24, 0, 16, H, "ceiling", 48, up=False))
    for xc in _DOOR_X:
        q += _room_furniture(xc, mirror=False)
        q += _room_furniture(xc, mirror=True)
    q += box(0.3, 8.0, 0.4, 1.4, 0.0, 0.45, "rich", 96)
    q += box(23.7, 8.0, 0.4, 1.0, 0.0, 1.0, "rich", 96)
    return q


def _detour(door: tuple[float, float], along: tuple[float, float], into: tuple[float, float],
            offset: float = 0.0) -> list[tuple[float, float]]:
    """Points that leave the corridor through a door, circle inside the room and come back out."""
    local = [(-1.3, -1.0 - offset), (-0.35, -0.7), (0.0, 0.0), (0.0, 1.0), (1.2, 2.0), (0.0, 3.2),
             (-1.2, 2.0), (-0.2, 0.8), (0.0, 0.0), (0.35, -0.7), (1.3, -1.0 - offset)]
    a, b, d = np.asarray(along), np.asarray(into), np.asarray(door)
    return [tuple(d + x * a + y * b) for x, y in local]


def _lap(detour_door: float | None, detour_north: bool, delta: float) -> list[tuple[float, float]]:
    """One counter-clockwise lap of the ring corridor (start/end at the south-west), with a detour."""
    ys, yn, xw, xe = 6.0 + delta, 10.0 - delta, 1.0 + delta, 23.0 - delta
    south = [(xw, ys), (xe, ys)]
    north = [(xe, yn), (xw, yn)]
    if detour_door is not None and not detour_north:
        south = [south[0]] + _detour((detour_door, 5.0), (1, 0), (0, -1), delta)[0:] + [south[1]]
    if detour_door is not None and detour_north:
        north = [north[0]] + _detour((detour_door, 11.0), (-1, 0), (0, 1), delta) + [north[1]]
    return south + north


def office_walk_trajectory() -> PathTrajectory:
    """From room N1 out through its door, along the north and east corridors, into room S2 (~45 s)."""
    pts = [(2.6, 14.2), (3.8, 12.3), (4.0, 11.0), (4.5, 10.25), (5.6, 10.0), (23.0, 10.0), (23.0, 6.0),
           (12.9, 6.0), (12.25, 5.7), (12.0, 5.0), (12.0, 4.0), (12.8, 2.7), (13.6, 1.9)]
    path = rounded_corners([(x, y, 1.55) for x, y in pts], 0.8)
    return PathTrajectory(path, speed=1.0, look_ahead=0.6, heading_span=1.4, ramp=2.0,
                          yaw=_waves((0.25, 7.3, 0.0), (0.08, 2.9, 1.0)), pitch0=-0.05,
                          pitch=_waves((0.06, 5.1, 0.3)), roll=_waves((0.03, 4.3, 0.0)),
                          bob=_waves((0.015, 0.56, 0.0)))


def office_long_trajectory() -> PathTrajectory:
    """Four laps of the ring corridor at 1.1 m/s, each with a detour into another room (3.6 min)."""
    laps = [(12.0, False, 0.0), (4.0, True, 0.25), (20.0, False, -0.25), (12.0, True, 0.1)]
    pts: list[tuple[float, float]] = [(1.0, 8.5)]
    for door, north, delta in laps:
        pts += _lap(door, north, delta)
    pts += [(1.0, 8.0)]
    path = rounded_corners([(x, y, 1.55) for x, y in pts], 0.8)
    return PathTrajectory(path, speed=1.1, look_ahead=0.6, heading_span=1.4, ramp=2.0,
                          yaw=_waves((0.25, 7.3, 0.0), (0.08, 2.9, 1.0)), pitch0=-0.05,
                          pitch=_waves((0.06, 5.1, 0.3)), roll=_waves((0.03, 4.3, 0.0)),
                          bob=_waves((0.015, 0.56, 0.0)))


# -------------------------------------------------------------------------------------- corridor
CORRIDOR_MODULE = 4.0  # m: the corridor repeats itself every module


def corridor_repeat_layout() -> list[Quad]:
    """A 44 m corridor (2.4 m wide, 2.8 m high) of eleven identical 4 m modules, unique end walls.

    Walls, floor and ceiling of every module carry the same texture (texture_key): from any two
    places a module apart the view differs only in the far end wall. A place-recognition trap:
    the path through it never returns, so every loop it closes is false.
    """
    L, W, H = 11 * CORRIDOR_MODULE, 2.4, 2.8
    q: list[Quad] = []
    for i in range(11):
        x0, x1 = i * CORRIDOR_MODULE, (i + 1) * CORRIDOR_MODULE
        for quad, key in ((wall((x1, 0.0), (x0, 0.0), 0.0, H, "rich", 96), 0),
                          (wall((x0, W), (x1, W), 0.0, H, "rich", 96), 1),
                          (floor(x0, x1, 0.0, W, 0.0, "planks", 80), 2),
                          (floor(x0, x1, 0.0, W, H, "ceiling", 48, up=False), 3)):
            quad.texture_key = key
            q.append(quad)
    q.append(wall((0.0, -0.05), (0.0, W + 0.05), 0.0, H, "rich", 96))
    q.append(wall((L, W + 0.05), (L, -0.05), 0.0, H, "rich", 96))
    return q


def corridor_repeat_trajectory() -> PathTrajectory:
    """Straight down the corridor's middle at 1 m/s, x 1.5 -> 41 m, looking ahead (~42 s)."""
    path = [(1.5, 1.2, 1.5), (41.0, 1.2, 1.5)]
    return PathTrajectory(np.array(path), speed=1.0, look_ahead=0.6, heading_span=1.4, ramp=2.0,
                          yaw=_waves((0.25, 7.3, 0.0), (0.08, 2.9, 1.0)), pitch0=-0.05,
                          pitch=_waves((0.06, 5.1, 0.3)), roll=_waves((0.03, 4.3, 0.0)),
                          bob=_waves((0.015, 0.56, 0.0)))


# ---------------------------------------------------------------------------------------- street
def _road(x0: float, x1: float, y0: float, y1: float, along_x: bool) -> Quad:
    """Road surface (seen from above) with its lane markings running along x or along y."""
    if along_x:
        return floor(x0, x1, y0, y1, 0.0, "road", 32)
    return Quad(np.array([x0, y0, 0.0]), np.array([0.0, y1 - y0, 0.0]), np.array([x1 - x0, 0.0, 0.0]), "road", 32)


def street_layout() -> list[Quad]:
    """A 60 x 40 m block with 14 m facades, a 10 m street around it, outer facades, side streets."""
    q = loop_walls([(0, 0), (60, 0), (60, 40), (0, 40)], 0, 14, "facade", 32, overlap=0.01)
    # outer facades facing the block, with a side street in the middle of the north and east sides
    q += [wall((-10, -10), (-10, 50), 0, 16, "facade", 32), wall((70, -10), (-10, -10), 0, 12, "facade", 32),
          wall((-10, 50), (25, 50), 0, 15, "facade", 32), wall((35, 50), (70, 50), 0, 13, "facade", 32),
          wall((70, 50), (70, 25), 0, 14, "facade", 32), wall((70, 15), (70, -10), 0, 16, "facade", 32)]
    q += [wall((25, 50), (25, 75), 0, 15, "facade", 32), wall((35, 75), (35, 50), 0, 13, "facade", 32),
          wall((25, 75), (35, 75), 0, 18, "facade", 32),
          wall((70, 25), (95, 25), 0, 14, "facade", 32), wall((95, 15), (70, 15), 0, 16, "facade", 32),
          wall((95, 25), (95, 15), 0, 12, "facade", 32)]
    q += [_road(-10, 70, -10, 0, True), _road(-10, 70, 40, 50, True), _road(-10, 0, 0, 40, False),
          _road(60, 70, 0, 40, False), _road(25, 35, 50, 75, False), _road(70, 95, 15, 25, True)]
    rng = np.random.default_rng(12345)  # fixed layout: parked cars and poles at fixed places
    for s in np.arange(8.0, 60.0, 11.0):  # along the south and north streets
        q += box(s + rng.uniform(-2, 2), -9.0, 4.2, 1.8, 0.0, 1.5, "rich", 48)
        q += box(s + rng.uniform(-2, 2), 49.0, 4.2, 1.8, 0.0, 1.5, "rich", 48)
    for s in np.arange(6.0, 40.0, 13.0):
        q += box(-9.0, s, 1.8, 4.2, 0.0, 1.5, "rich", 48)
    for s in np.arange(5.0, 56.0, 14.0):
        q += box(s, -1.0, 0.2, 0.2, 0.0, 4.0, "concrete", 48, top=False)
        q += box(s + 6.0, 41.0, 0.2, 0.2, 0.0, 4.0, "concrete", 48, top=False)
    for s in np.arange(6.0, 36.0, 12.0):
        q += box(61.0, s, 0.2, 0.2, 0.0, 4.0, "concrete", 48, top=False)
    return q


def street_trajectory() -> PathTrajectory:
    """Counter-clockwise around the block in the right lane at ~7 m/s, camera 1.65 m up; 1.25 laps."""
    lap = 31.0
    c = [(-6.5, -6.5, 1.65), (66.5, -6.5, 1.65), (66.5, 46.5, 1.65), (-6.5, 46.5, 1.65)]
    path = rounded_corners(c, 12.0, closed=True)
    return PathTrajectory(path, duration=1.25 * lap, closed=True, lap_time=lap, look_ahead=0.05,
                          heading_span=0.2, spacing=2.0,
                          pitch0=-0.02, pitch=_waves((0.006, lap / 23, 0.0), (0.003, lap / 61, 1.0)),
                          roll=_waves((0.005, lap / 17, 0.0)), bob=_waves((0.01, lap / 31, 0.0)))


SCENES: dict[str, SceneSpec] = {s.name: s for s in (
    SceneSpec("room_loop", "room, one full loop back to the start (stereo/rgbd, drone speed)",
              room_loop_layout, room_loop_trajectory),
    SceneSpec("room_figure8", "room, one figure-eight through its middle", room_figure8_layout,
              room_figure8_trajectory),
    SceneSpec("office_walk", "office with corridor and rooms, walk without revisiting", office_layout,
              office_walk_trajectory),
    SceneSpec("office_long", "office, four corridor laps with room detours (3.6 min)", office_layout,
              office_long_trajectory),
    SceneSpec("street_loop", "city block, drive 1.25 laps around it (KITTI-like)", street_layout,
              street_trajectory, sky=(170.0, 70.0)),
    SceneSpec("corridor_repeat", "corridor of identical modules, walked once end to end (never returns)",
              corridor_repeat_layout, corridor_repeat_trajectory),
)}
