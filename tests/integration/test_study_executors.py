"""`slam study --quick` in the process pool and on a Dask LocalCluster: the same numbers, and resumable."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from slam.cli import main

pytestmark = pytest.mark.slow


def _numbers(study: dict[str, Any]) -> list[Any]:
    """Everything of study.json that must not depend on the executor (timings removed)."""
    def strip(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if k != "timing"}
        if isinstance(x, list):
            return [strip(v) for v in x]
        return x
    return strip(study["runs"])


def test_quick_study_pool_and_dask_agree_and_resume(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("distributed", reason="the Dask executor needs the 'distributed' package (test extra)")
    a, b = tmp_path / "pool", tmp_path / "dask"
    assert main(["study", "--quick", "--out", str(a), "--workers", "2", "--quiet"]) == 0
    assert main(["study", "--quick", "--out", str(b), "--dask", "local", "--workers", "2", "--quiet"]) == 0
    sa, sb = json.loads((a / "study.json").read_text()), json.loads((b / "study.json").read_text())
    assert len(sa["runs"]) == sa["runs_total"] >= 5 and sa["runs_failed"] == 0
    assert _numbers(sa) == _numbers(sb)
    assert sa["summary"]["odometry"]["trajectories"] == 4
    assert all(r["result"]["ate_rmse"] is not None for r in sa["runs"])
    for f in ("report.html", "odometry_ate.png"):
        assert (a / f).is_file(), f
    html = (a / "report.html").read_text()
    assert "data:image/png;base64," in html and "ATE without and with loop closure" in html

    # resumable: a finished run is not redone; a missing one is
    victim = next(iter(sorted((a / "runs").glob("*.json"))))
    kept = {p: p.stat().st_mtime_ns for p in (a / "runs").glob("*.json") if p != victim}
    victim.unlink()
    capsys.readouterr()
    assert main(["study", "--quick", "--out", str(a), "--workers", "1"]) == 0
    err = capsys.readouterr().err
    assert f"{len(kept)} of {len(kept) + 1} runs already done" in err
    assert victim.is_file()
    assert {p: p.stat().st_mtime_ns for p in kept} == kept
    assert _numbers(json.loads((a / "study.json").read_text())) == _numbers(sa)
