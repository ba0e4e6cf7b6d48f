"""Process settings of a run (slam/priority.py): the allocator setting applies on glibc and steps
aside when the user configured malloc themselves."""

from __future__ import annotations

import subprocess
import sys

import pytest

CHECK = "from slam.priority import keep_freed_memory; print(keep_freed_memory())"


def _run(env: dict[str, str]) -> str:
    import os

    full = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")} | env
    return subprocess.run([sys.executable, "-c", CHECK], env=full, capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's")
def test_allocator_setting_applies_unless_the_user_set_malloc() -> None:
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("not glibc")
    assert _run({}) == "True"
    assert _run({"MALLOC_ARENA_MAX": "2"}) == "False"
