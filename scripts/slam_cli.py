"""The benchmarks' one way to run the `slam` command line in a fresh process (not a benchmark itself)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def slam_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`python -m slam ARGS` from the repository root; raises SystemExit with its stderr's tail when it fails."""
    cmd = [sys.executable, "-m", "slam", *args]
    res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stderr[-3000:]}")
    return res
