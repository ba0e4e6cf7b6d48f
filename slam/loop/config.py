"""Configuration of loop closure (the `loop` section of a run configuration)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class LoopConfig:
    """Loop closure in the loop worker thread: place recognition, verification, pose graph, write-back."""

    enabled: bool = True             # `slam run --no-loop` turns it off (odometry only)
    place_features: int = 750        # ORB points described per keyframe (tracked features + corners between)
    # Place recognition (features, query, database) runs on at most one keyframe per 1/place_rate_hz
    # seconds of sequence time; the others only enter the pose graph. Keyframes come at up to 10 Hz
    # (odometry wants them) and 0.1 s apart show the same place; ORB-SLAM's keyframes, all of them
    # queried, are sparser still. The loop thread's time per keyframe was the main cost of loop
    # closure to a live run (scripts/bench_stall.py). 0: every keyframe.
    place_rate_hz: float = 5.0
    min_score: float = 0.0           # place-recognition score below which a candidate is not verified
    recent_keyframes: int = 30       # the newest keyframes are never loop candidates (odometry covers them)
    min_inliers: int = 40            # verified matches a loop needs (stereo/RGB-D PnP, monocular Sim(3))
    # m: a verified stereo/RGB-D loop whose cameras are farther apart than this is rejected
    # ('too_far'): the same view from across a corridor verifies (office_long: 73 inliers at
    # 1.15 m), but a loop is a revisit; 0: no limit. Monocular maps have no metric scale to test.
    max_distance: float = 1.0
    # Monocular: a verified loop whose query camera is still behind the nearest matched keyframe by
    # more than this many keyframe spacings (along that keyframe's optical axis), and moving towards
    # it, waits for a nearer keyframe ('approaching'): on a path retraced forward the place is
    # recognised from afar (street_loop, live runs: 3.0 and 1.5 m, 4 and 2 spacings, behind the
    # first keyframe, false by the 1 m rule) and the next keyframes reach it; a camera that stays
    # back is not kept waiting. Blocking street_loop closes its first loop one spacing (0.75 m)
    # behind: with 1.0 that waited one keyframe more and the seeds' ATE with loop closure went
    # 0.049 / 0.069% -> 0.055 / 0.092% (the chain of later loops moved by one keyframe). 0: no limit.
    max_steps_behind: float = 1.5
    # Pose graph (loop/posegraph.py): odometry edges between consecutive keyframes and covisibility
    # edges between keyframes sharing >= covisibility_min_shared landmarks, measured by their current
    # relative poses; information = weight x diag(1/sigma_rot^2 I3, 1/sigma_trans^2 I3[, 1/sigma_scale^2]),
    # weight = min(shared landmarks, 200) / 100, loop edges weight = loop_weight x inliers / 100.
    # 100 as ORB-SLAM's essential graph. Re-solving a room_loop (stereo) graph of 142 keyframes:
    # keyframe ATE 6.0 mm with 60 (2000 edges), 5.8 mm with 100, 6.0 mm with none: the edges hold
    # the local shape, more of them only cost time.
    covisibility_min_shared: int = 100
    sigma_rotation: float = 0.01     # rad, of an edge with 100 shared landmarks
    sigma_translation: float = 0.01  # m (map units for monocular)
    # Sim(3) edges (monocular): log-scale. Looser than rotation and translation because a monocular
    # map's scale drifts one way (room_figure8 mono seed 2026: x0.83 over 173 keyframes, 0.1% a
    # keyframe), while the graph holds each step by ~9 overlapping covisibility edges measured from
    # that same drifted map. With 0.01 the graph was stiffer in scale than the drift it had to
    # absorb: the loop edge kept 25% of the 0.18 log-scale discrepancy (chi2 30, 25 of it scale,
    # above the 24.3 of consistency_p) and all 9 true loops of the run were rejected
    # ('inconsistent_graph'; ATE 0.605% of the path, as without loop closure). With 0.03 they close:
    # 0.082% (measured with covisibility_weight 1.0, before it became 0.25; with both, below, the
    # same loops). The other blocking mono runs (room_loop, room_figure8, street_loop, corridor_repeat;
    # seeds 2026, 313, 57) kept their loops (none false) and their ATE with loop closure within
    # 0.002% of the path, except street_loop s57, 0.034 -> 0.026%. tests/unit/test_loop_posegraph.py
    # has the case.
    sigma_scale: float = 0.03
    loop_weight: float = 1.0         # loop edges relative to odometry edges of the same support
    # Covisibility edges relative to odometry edges of the same support. They overlap: each keyframe
    # is held by ~4-5 of them (x2 ends) spanning up to ~10 keyframes, all measured from the same map,
    # so at full weight they count its relative poses several times and the graph resists a drift
    # that grew steadily far more than the odometry deserves. The consistency test then rejects
    # true loops: on a 174-keyframe room_figure8 graph with a synthetic steady heading drift, the
    # loop edge kept chi2 23.4 at 10 degrees (bound 22.5); at 0.25, 10 degrees leave 2.9, 20 degrees
    # 11.5 and 30 degrees 25.9. Measured, blocking, 1.0 -> 0.25: office_long seed 1 stereo 85 -> 83
    # loops, ATE 0.004 -> 0.003% of the path, RGB-D 86 -> 89 loops, 0.006% both, none false either
    # way; mono room_loop / room_figure8 / street_loop seeds 2026 and 4711: the same loops and ATE
    # within 0.003%; stereo room_loop / room_figure8 / street_loop and RGB-D room_loop / room_figure8
    # seed 2026: the same loops, ATE within 0.001%.
    covisibility_weight: float = 0.25
    precision: str | None = None     # PGO precision policy; None: the run's (odometry.precision / --precision)
    max_iterations: int = 30         # LM iterations of one pose-graph solve
    # Larger maps hold the keyframes up to the previous loop fixed and solve what came after (and its
    # fixed neighbours): loop time bounded by the distance between loops, not the run's length
    # (loop/posegraph.py). 1,000: a whole graph that size takes ~0.4 s alone, 1-3 s in a run where
    # tracking shares the 2 cores (scripts/bench_long.py). 0: always whole.
    pgo_max_keyframes: int = 1000
    # ... unless more than this many of those older keyframes lie on the graph's shortest path from
    # the loop's query back to its match (the loop's error would squeeze into the newer part): whole.
    pgo_local_path_keyframes: int = 10
    # After the pose graph with a new loop is solved, that loop's edge must agree with the rest:
    # its e^T Omega e at the solution within this chi-square quantile of its dof (6, or 7 for
    # Sim(3)), else the loop is rejected ('inconsistent_graph') and nothing is written back
    # (RTAB-Map's RGBD/OptimizeMaxError does the same per link). A verified but wrong loop (synthetic
    # office_long RGB-D: 49 PnP inliers, 0.84 m / 10.7 deg off) left 2,123 on its edge where the
    # 89 others stayed <= 1.4, and pulled the map's error there from 15 to 175 mm. 0: no test.
    consistency_p: float = 0.999
    # Before the pose graph: a verified loop must not move its query farther from where the map has
    # it (relative to the match) than this fraction of the keyframe path between the two, plus two
    # keyframe spacings, else it is rejected ('implausible_correction'): odometry does not drift by
    # half the distance travelled, but a look-alike place (corridor_repeat: identical 4 m modules)
    # is a whole module or more away along a path of the same length. Only translation is tested;
    # loops between keyframes recorded in different map segments are not (also after a loop joined
    # them). 0: no test.
    max_correction_ratio: float = 0.5
    fuse_landmarks: bool = True      # duplicate landmarks on both sides of a loop become one
    min_keyframes_between: int = 10  # keyframes after an accepted loop before the next one is tried
    blocking: bool = False           # tracking waits for loop closure of each keyframe (deterministic runs)
    # Bundle adjustment of the whole map after each loop; None: monocular maps only. Blocking runs,
    # ATE with loop closure (% of the path) without -> with it, since loop edges follow the map's
    # rescaling (closer.rescale_loop_edges): monocular room_loop seeds 29 / 11 0.045 -> 0.036 and
    # 0.046 -> 0.042, room_figure8 seed 29 0.114 -> 0.110; the driving street_loop seed 29 0.021
    # -> 0.021 for 1.3-2.4 s per loop (configs/kitti_mono.yaml turns it off; before that change it
    # made street_loop worse, 0.049 -> 0.058 and 0.069 -> 0.100 on seeds 1 / 23); stereo room_loop
    # 1.58 -> 1.74 mm (a metric map's pose graph already lands near the odometry's own accuracy).
    # 1-12 s of loop-thread time per loop on the 2 cores. Solved with the exact Schur preconditioner
    # since, on maps of up to ~330 keyframes (odometry/global_ba.py): room_figure8 mono seeds 29 / 11
    # / 41 0.106 / 0.088 / 0.098 -> 0.073 / 0.066 / 0.050 (docs/architecture.md).
    global_ba: bool | None = None
    global_ba_iterations: int = 10   # its LM iterations
    global_ba_max_keyframes: int = 500  # larger maps skip it (its time grows with the map; the pose graph's does not)
    check_fp64: bool = False         # also solve every pose graph in fp64 and record its cost (benchmarks)
    export_graphs: bool = False      # write every pose graph solved, at its initial estimate, to pose_graphs/NNN.g2o (study)
    nice: int = 15                   # loop thread below tracking and the odometry worker
    max_backlog: int = 40            # keyframes waiting with place input; when full, every other one drops it
