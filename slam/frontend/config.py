"""Settings of tracking and keyframe selection (the `frontend` and `keyframes` sections of a run configuration)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class FrontendConfig:
    """Feature detection, KLT tracking, stereo/depth measurement, pose tracking, initialization."""

    max_features: int = 250          # features kept alive (new ones are detected at keyframes)
    grid_cols: int = 8               # bucketing grid: features are spread over cols x rows cells
    grid_rows: int = 6
    min_distance: int = 15           # px between features
    quality_level: float = 0.005     # Shi-Tomasi threshold relative to the strongest corner
    border: int = 10                 # px kept free of features at the image border
    klt_window: int = 21             # px, side of the KLT window
    klt_levels: int = 3              # pyramid levels above the image
    fb_threshold: float = 1.0        # px, forward-backward KLT consistency
    # Pyramid levels of the backward (check) pass of the forward-backward test (-1: klt_levels).
    # Fewer levels are cheaper (752x480 stereo: 2.9 ms a frame with 3, 1.6 with 1) but keep tracks
    # whose KLT is unstable: with 1 level, fp64 and mixed runs of the same rendering parted on one
    # such track by 0.5 mm (tests/integration/test_run_pipeline.py), and on the real KITTI 07 head
    # (monocular) mean Sim(3) ATE rose 0.292 -> 0.323 m. ATE of 12 stereo / RGB-D renderings moved
    # within their noise (0.94x with 1 level, 1.07x with 2, 1.0x with 0 but 1.23x on street_loop).
    klt_check_levels: int = -1
    # A track seen for this many keyframes continues as a new landmark from the next keyframe on
    # (0: never). A KLT track's position drifts with the viewpoint (scripts/bench_track_error.py:
    # 0.17 px median after 1 keyframe, 0.7 px after 8-15 on a clean rendering), and that error is
    # correlated along the path, so no optimization averages it out. 12 against 0 (never), 12
    # blocking pairs (room_loop, room_figure8; stereo, RGB-D, mono; seeds 0-1): ATE with loop
    # closure lower in 11, mean 0.077% -> 0.058% of the path; without loop closure lower in 9, mean equal.
    # Monocular, blocking, seed 57, room_loop / room_figure8 with loop closure (without): 6 0.031 /
    # 0.085% (0.061 / 0.101%), 8 0.035 / 0.047% (0.097 / 0.138%), 12 0.022 / 0.056% (0.056 /
    # 0.109%), 16 0.031 / 0.065% (0.085 / 0.199%), 20 0.032 / 0.063% (0.062 / 0.253%).
    max_track_keyframes: int = 12
    # Align each keyframe's tracked features to their anchor keyframe's patch with an affine warp
    # (frontend/anchored.py) before they are measured and handed to BA: ATE of blocking runs 1.6-4x
    # lower on the renderings (docs/architecture.md), ~12-18 ms per keyframe on the tracking thread.
    anchor_alignment: bool = True
    # ... also for monocular runs, where the warp is predicted from triangulated (not measured)
    # depth. Off by default: on the renderings it helps in every run (blocking, seeds 1/23/7,
    # room_loop and room_figure8: 1.5-7.6x lower ATE without loop closure, 1.7-3.8x with it) but real
    # monocular data gets worse (KITTI 07 head, Sim(3) ATE 0.413 -> 0.486 m, 7-38% worse on four
    # 120-140-frame excerpts; TUM fr3 office at 1 Hz 0.231 -> 0.235 m). Refusing anchors whose
    # predicted warp magnifies by more than 1.1 makes KITTI neutral but takes the gain away. Over
    # seven patch radii KITTI loses about 7% on average (docs/architecture.md: what it is not).
    anchor_alignment_mono: bool = False
    # ... only while the odometry worker has at most this many keyframes queued (negative: every
    # keyframe whatever the load). 0 kept stereo 752x480 at 38 frames/s on the 2-core machine by
    # aligning one keyframe in seven, at twice the ATE; since recorded runs wait for BA
    # (odometry.max_lag) every keyframe is aligned: room_loop stereo with loop closure 1.9 mm
    # aligning about half of them, 1.4 mm aligning all, at the same 24 frames/s.
    anchor_alignment_max_pending: int = -1
    reprojection_threshold: float = 2.5  # px, inlier threshold of pose tracking (chi2 5.99 at 1 px)
    min_inliers: int = 20            # fewer pose inliers: the frame is lost
    min_disparity: float = 1.0       # px, stereo: smaller disparities give no depth
    max_depth: float = 40.0          # m, stereo/RGB-D depths beyond are not used to create landmarks
    min_depth: float = 0.2           # m (stereo search also stops at a quarter of the image width)
    rgbd_baseline: float = 0.08      # m, virtual stereo baseline of RGB-D depth (ORB-SLAM's bf)
    descriptors: bool = True         # ORB descriptors of keyframe features (relocalization)
    relocalize_features: int = 1000  # corners described in a lost frame
    relocalize_min_inliers: int = 25
    relocalize_keyframes: int = 40   # newest keyframes whose landmarks relocalization matches against
    new_map_after: float = 2.0       # s lost before a new map segment is started (stereo/RGB-D at once possible)
    init_min_flow: float = 8.0       # px, monocular: median flow before a two-view initialization is tried
    init_min_points: int = 60        # monocular: triangulated points a two-view initialization needs
    init_min_parallax: float = 1.0   # deg, monocular: parallax of the init_min_points-th best point
    init_max_frames: int = 40        # monocular: frames tried against one reference frame


@dataclass
class KeyframeConfig:
    """Keyframe selection: about max_rate_hz while moving, none while standing still."""

    max_rate_hz: float = 10.0        # at most this many keyframes per second of sensor time
    parallax: float = 12.0           # px, median feature displacement since the last keyframe that asks for one
    min_parallax: float = 2.0        # px, below this the camera counts as standing still: no keyframe
    min_tracked_ratio: float = 0.75  # fewer of the last keyframe's landmarks still tracked asks for one
    min_tracked: int = 80            # fewer landmarks tracked asks for one
    max_pending: int = 0             # worker this many keyframes behind: only urgent keyframes (0: off)
