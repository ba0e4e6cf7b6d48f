"""Visual SLAM with mixed-precision bundle adjustment and pose-graph optimization."""

__version__ = "0.1.0"
