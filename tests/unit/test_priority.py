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


def test_short_gil_switch_lowers_the_interval_and_restores_it() -> None:
    from slam.priority import short_gil_switch

    before = sys.getswitchinterval()
    try:
        sys.setswitchinterval(0.005)
        with short_gil_switch(5e-4):
            assert sys.getswitchinterval() == pytest.approx(5e-4)
            with short_gil_switch(1e-2):  # never raised above what is set
                assert sys.getswitchinterval() == pytest.approx(5e-4)
            assert sys.getswitchinterval() == pytest.approx(5e-4)
        assert sys.getswitchinterval() == pytest.approx(0.005)
        with pytest.raises(RuntimeError):
            with short_gil_switch(5e-4):
                raise RuntimeError("restored on errors too")
        assert sys.getswitchinterval() == pytest.approx(0.005)
    finally:
        sys.setswitchinterval(before)
