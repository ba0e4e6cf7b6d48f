"""Synthetic sequences with exact ground truth: a renderer of textured scenes, a Source, dataset writers.

    list_scenes() -> list[str]
    SyntheticSource(scene, sensor='stereo'|'mono'|'rgbd'|'kitti', frames=None, seed=0, clean=False)
    write_sequence(scene, fmt='euroc'|'tum'|'kitti', out_dir, frames=None, seed=0, clean=False) -> Path

Modules: scenes (layouts and camera paths), quads and textures (the world), render (rasterizer),
effects (exposure, blur, noise), trajectory (smooth paths), source (the Source), writers (EuRoC,
TUM and KITTI folders that the real loaders read). It sits beside slam/sources: it uses only
sources.base (Frame, Calibration, Source), and only sources/open.py imports it (lazily).
"""

from slam.synthetic.source import SENSORS, SyntheticSource, build_world, list_scenes
from slam.synthetic.writers import FORMATS, write_sequence

__all__ = ["FORMATS", "SENSORS", "SyntheticSource", "build_world", "list_scenes", "write_sequence"]
