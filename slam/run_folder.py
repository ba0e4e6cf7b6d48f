"""The run folder of `slam run`: which files a run writes, and making a folder ready for a new run.

A run writes a fixed set of files, some only sometimes (groundtruth.tum and trajectory.png need
ground truth). Writing a run into the folder of an earlier one must not leave the earlier run's
files beside the new ones (a KITTI run's ground truth next to an EuRoC trajectory), so the
earlier run's files are removed first. A folder that holds anything else is not taken over
unless asked (--overwrite): it may be a dataset or someone's work.
"""

from __future__ import annotations

from pathlib import Path

from slam.errors import InputError

# Every file a run may write: System._write_outputs and build_report (the pipeline), then
# slam/report (pictures, report.html) and slam/report/export.py (--trajectory-format, --frame body).
_TRAJECTORIES = tuple(f"{name}{frame}{ext}" for name in ("trajectory", "keyframes", "groundtruth")
                      for frame in ("", "_body") for ext in (".tum", ".kitti", "_times.txt", ".csv"))
RUN_FILES = _TRAJECTORIES + ("map.ply", "loops.json", "report.json", "trajectory.png", "top_view.png", "error.png",
                             "report.html", "pose_graph.g2o")
RUN_DIRS = ("pose_graphs",)  # loop.export_graphs: every pose graph solved (NNN.g2o)


def is_run_folder(folder: Path) -> bool:
    """True when folder holds a run's report.json, or nothing but files a run writes."""
    names = {p.name for p in folder.iterdir()}
    return "report.json" in names or names <= set(RUN_FILES) | set(RUN_DIRS)


def check_run_folder(folder: str | Path, overwrite: bool = False) -> None:
    """Refuse (InputError) a path that is a file, or a non-empty folder that holds no earlier run
    unless overwrite."""
    out = Path(folder)
    if out.exists() and not out.is_dir():
        raise InputError("the run folder exists and is not a folder", out)
    if out.is_dir() and not overwrite and not is_run_folder(out):
        shown = sorted(p.name for p in out.iterdir())
        raise InputError(f"the run folder is not empty and holds no earlier run ({', '.join(shown[:5])}"
                         f"{' ...' if len(shown) > 5 else ''}); choose another --out or pass --overwrite "
                         "to write the run's files into it", out)


def clear_run_files(folder: str | Path) -> Path:
    """Create folder, or remove from it every file a run writes (an earlier run's); other files stay."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    for name in RUN_FILES:
        f = out / name
        if f.is_file() or f.is_symlink():
            f.unlink()
    for name in RUN_DIRS:
        d = out / name
        if d.is_dir() and not d.is_symlink():
            for f in d.glob("*.g2o"):
                f.unlink()
    return out
