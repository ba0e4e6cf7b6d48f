"""Maps saved and reused (issue 12, point 4): the first half of a synthetic loop saves a map, the second
half loads it, relocalizes within 5 frames and tracks in the first run's frame with an ATE (no
alignment) within 2x a full run's VO ATE; --localize leaves the map unchanged; --frames slices a
source; a bad map is one clear line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from slam.cli import main
from slam.eval.align import associate
from slam.io.trajectory import read_tum
from slam.map.store import load_map

REPO = Path(__file__).resolve().parents[2]
CFG = REPO / "configs" / "synthetic.yaml"
SRC = "synthetic:room_loop"


def _blocking_config(folder: Path) -> str:
    """configs/synthetic.yaml with blocking odometry and loop closure: each run is one deterministic
    run, so the bounds compare runs, not how the threads happened to be scheduled on a loaded machine."""
    cfg = yaml.safe_load(CFG.read_text())
    cfg.setdefault("odometry", {})["blocking"] = True
    cfg.setdefault("loop", {})["blocking"] = True
    path = folder / "synthetic_blocking.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def _run(*args: str) -> dict:
    out = Path(args[args.index("--out") + 1])
    out.parent.mkdir(parents=True, exist_ok=True)
    cfg = _blocking_config(out.parent)
    assert main(["run", cfg, "--source", SRC, "--quiet", *args]) == 0
    return json.loads((out / "report.json").read_text())


def _ate_in_map_frame(run: Path, map_dir: Path | None = None, t_min: float = -np.inf) -> float:
    """Position RMSE (no alignment) of a run in the frame of a map (default: its own first camera),
    over the frames from t_min on."""
    est, gt = read_tum(run / "trajectory.tum"), read_tum(run / "groundtruth.tum")
    T_gt_world = (np.array(json.loads((map_dir / "map.json").read_text())["world"]["T_groundtruth_world"])
                  if map_dir is not None else gt.poses[0])
    i, j = associate(est.timestamps, gt.timestamps)
    keep = est.timestamps[i] >= t_min
    i, j = i[keep], j[keep]
    gt_map = np.linalg.inv(T_gt_world)[None] @ gt.poses[j]
    return float(np.sqrt(np.mean(np.sum((est.poses[i, :3, 3] - gt_map[:, :3, 3]) ** 2, axis=1))))


@pytest.mark.slow
def test_second_half_relocalizes_in_the_first_halfs_map(tmp_path: Path) -> None:
    full = _run("--out", str(tmp_path / "full"), "--no-loop")
    n = full["frames"]
    h = n // 2
    mp = tmp_path / "map"
    first = _run("--out", str(tmp_path / "a"), "--frames", f"0:{h}", "--save-map", str(mp))
    assert first["frames"] == h and first["map"]["saved"] == str(mp)
    # the map's world is the first run's first camera: its ground truth row 0
    gt0 = read_tum(tmp_path / "a" / "groundtruth.tum").poses[0]
    head = json.loads((mp / "map.json").read_text())
    np.testing.assert_allclose(head["world"]["T_groundtruth_world"], gt0, atol=1e-6)
    second = _run("--out", str(tmp_path / "b"), "--frames", f"{h}:{n}", "--load-map", str(mp))
    m = second["map"]
    assert m["first_relocalized_frame"] is not None and m["frames_before_relocalization"] <= 5
    assert second["keyframes"] > head["counts"]["keyframes"]  # the map grew
    ate = _ate_in_map_frame(tmp_path / "b", mp)
    # against the uninterrupted run over the same frames in the same frame (its first camera, the
    # map's world, no alignment): relocalizing and continuing in a saved map costs at most 2x
    t_half = read_tum(tmp_path / "b" / "trajectory.tum").timestamps[0]
    ate_full = _ate_in_map_frame(tmp_path / "full", t_min=t_half)
    assert ate <= 2.0 * ate_full, (ate, ate_full)
    # localization mode: a slice inside the first half, the map saved afterwards is the loaded one
    loc = _run("--out", str(tmp_path / "c"), "--frames", f"{h // 3}:{2 * h // 3}", "--load-map", str(mp),
               "--localize", "--save-map", str(tmp_path / "map_c"))
    assert loc["map"]["frames_before_relocalization"] <= 5
    assert loc["keyframes"] == head["counts"]["keyframes"] and loc["landmarks"] == head["counts"]["landmarks"]
    a, b = load_map(mp).map.export_state(), load_map(tmp_path / "map_c").map.export_state()
    for k in a:
        if k != "covisibility":
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert _ate_in_map_frame(tmp_path / "c", mp) <= 2.0 * full["ate"]["rmse"]


def test_frames_slices_a_source(tmp_path: Path) -> None:
    rep = _run("--out", str(tmp_path / "s"), "--frames", "300:310", "--no-loop")
    assert rep["frames"] == 10
    t = read_tum(tmp_path / "s" / "trajectory.tum").timestamps
    gt = read_tum(tmp_path / "s" / "groundtruth.tum").timestamps
    np.testing.assert_allclose(t, gt)
    assert t[0] == pytest.approx(300 * 0.05)  # the source's own timestamps (20 Hz)


@pytest.mark.parametrize("setup, message", [
    ("missing", "no such map folder"),
    ("version", "map format version 99"),
    ("corrupt", "not a readable .npz"),
    ("camera", "another camera"),
    ("places", "place database does not load"),
])
def test_a_bad_map_is_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture, setup: str,
                                     message: str) -> None:
    from slam.map.map import Map
    from slam.map.store import save_map

    mp = tmp_path / "map"
    if setup != "missing":
        cam = {"K": [[458.0, 0, 367.0], [0, 458.0, 248.0], [0, 0, 1]], "width": 752, "height": 480, "baseline": 0.11}
        if setup == "camera":
            cam["K"][0][0] = 500.0
        places = None
        if setup == "places":
            from slam.loop.database import PlaceDatabase
            places = PlaceDatabase().state()
            places["positions"] = places["positions"][:, ::-1].copy()  # not the bits the seed chooses
        save_map(mp, Map(), {"sensor": "stereo", "camera": cam}, places)
        if setup == "version":
            h = json.loads((mp / "map.json").read_text())
            h["version"] = 99
            (mp / "map.json").write_text(json.dumps(h))
        if setup == "corrupt":
            (mp / "map.npz").write_bytes(b"PK\x03\x04 not really")
    code = main(["run", str(CFG), "--source", SRC, "--quiet", "--out", str(tmp_path / "r"), "--load-map", str(mp)])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err, err
    assert str(mp) in err
