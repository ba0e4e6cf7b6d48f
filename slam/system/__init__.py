"""The pipeline of a run (ORB-SLAM3's System): one object that wires source, tracking, odometry and
loop closing around one map and leaves a complete run folder.

    pipeline.py    System: the threads, their lifecycle, the run folder
    readers.py     frame reader threads (prefetching for recordings, newest-frame for cameras)
    closing.py     the run's loop worker (place recognition + verification + closer)
    maps.py        saved maps in and out (--load-map, --save-map)
    run_report.py  report.json and trajectory.png
"""

from slam.system.pipeline import RunResult, System, choose_mode, make_rig

__all__ = ["RunResult", "System", "choose_mode", "make_rig"]
