"""Study files, run expansion and the statistics of the report, against hand-computed values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from slam.errors import InputError
from slam.study.analysis import loop_table, odometry, pgo
from slam.study.spec import SENSOR_CONFIGS, SENSOR_FILES, load_study, study_from_dict

REPO = Path(__file__).resolve().parents[2]


def test_sensor_settings_match_the_shipped_configs() -> None:
    for sensor, name in SENSOR_FILES.items():
        assert yaml.safe_load((REPO / "configs" / name).read_text()) == SENSOR_CONFIGS[sensor], name


def test_runs_are_the_product_with_loop_precisions(tmp_path: Path) -> None:
    f = tmp_path / "s.yaml"
    f.write_text("name: t\nscenes: [room_loop, office_walk]\nsensors: [stereo, mono]\nseeds: [0, 3]\n"
                 "precisions: [fp64, mixed, fp16]\nloop: [false, true]\nloop_precisions: [mixed]\nframes: 50\n")
    runs = load_study(f).runs()
    assert len(runs) == 2 * 2 * 2 * (3 + 1)
    assert len({r.id for r in runs}) == len(runs)
    assert {r.precision for r in runs if r.loop} == {"mixed"}
    assert all(r.frames == 50 for r in runs)


def test_parts_are_the_union_of_their_products(tmp_path: Path) -> None:
    f = tmp_path / "s.yaml"
    f.write_text("name: t\nsensors: [stereo, rgbd]\nprecisions: [fp64, mixed]\nframes: 80\nparts:\n"
                 "  - {scenes: [room_loop], seeds: [0, 1, 2], loop: [false]}\n"
                 "  - {scenes: [office_walk], sensors: [stereo], precisions: [mixed], loop: [false, true], frames: null}\n"
                 "  - {scenes: [room_loop], seeds: [2], precisions: [fp64], loop: [false]}\n")  # all repeats
    runs = load_study(f).runs()
    room = [r for r in runs if r.scene == "room_loop"]
    office = [r for r in runs if r.scene == "office_walk"]
    assert len(room) == 2 * 3 * 2 and all(r.frames == 80 and not r.loop for r in room)
    assert [(r.sensor, r.precision, r.loop, r.frames) for r in office] == [("stereo", "mixed", False, None),
                                                                          ("stereo", "mixed", True, None)]
    assert len(runs) == len(room) + len(office) == len({r.id for r in runs})


@pytest.mark.parametrize("text,needle", [
    ("parts: []", "'parts' must be a non-empty list"),
    ("parts: [{config: {}}]", "unknown key 'config' in a part"),
    ("parts: [{seeds: [0]}, {frames: 2}]", "(parts[1])"),
    ("parts: [{sensors: [lidar]}]", "'sensors': 'lidar'"),
    ("loop_precisions: [fp32]\nparts: [{precisions: [mixed], loop: [true]}]", "(parts[0]): this part gives no runs"),
    ("scenes: [nowhere]", "'scenes': 'nowhere'"),
    ("precisions: [fp8]", "'precisions': 'fp8'"),
    ("seeds: [0, x]", "'seeds'"),
    ("sensorz: [stereo]", "unknown key 'sensorz'"),
    ("frames: 3", "'frames'"),
    ("loop: []", "'loop' must be a non-empty list"),
    ("config: {odometry: {windw: 3}}", "odometry.windw"),
])
def test_bad_study_files_name_the_key(tmp_path: Path, text: str, needle: str) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(text + "\n")
    with pytest.raises(InputError) as e:
        load_study(f)
    assert needle in str(e.value) and "bad.yaml" in str(e.value)


def _res(scene: str, prec: str, loop: bool, ate: float, pgo_solves: list | None = None) -> dict:
    settings = {"scene": scene, "sensor": "stereo", "seed": 0, "precision": prec, "loop": loop, "frames": None}
    r = {"id": f"{scene}-{prec}-{loop}", "settings": settings, "timing": {},
         "result": {"ate_rmse": ate, "frames_lost": 0, "loops": 2 if loop else 0, "path_length_m": 10.0}}
    if pgo_solves is not None:
        r["pgo"] = pgo_solves
    return r


def test_odometry_statistics_against_fp64_on_the_same_rendering() -> None:
    res = [_res("a", "fp64", False, 0.10), _res("a", "mixed", False, 0.11), _res("a", "fp16", False, 0.13),
           _res("b", "fp64", False, 0.20), _res("b", "mixed", False, 0.19), _res("b", "fp16", False, 0.40),
           _res("c", "mixed", False, 0.50)]  # c: not in every precision, left out of the histograms
    o = odometry(res)
    assert o["trajectories"] == 6 and o["renderings"] == 2 and o["left_out"] == 1
    assert o["precisions"] == ["fp64", "mixed", "fp16"]
    np.testing.assert_allclose(sorted(o["relative_to_fp64"]["mixed"]), [-0.05, 0.1])
    np.testing.assert_allclose(sorted(o["relative_to_fp64"]["fp16"]), [0.3, 1.0])
    assert sorted(o["ate"]["mixed"]) == [0.11, 0.19]
    s = o["ate_stats"]["fp64"]
    assert s["count"] == 2 and s["max"] == 0.2 and s["mean"] == pytest.approx(0.15)
    assert s["p90"] == pytest.approx(np.percentile([0.1, 0.2], 90))


def test_pgo_gaps_and_loop_table() -> None:
    solves = {p: {"final_cost": c, "ate_rmse": a, "timing": {"time_s": t, "stage_times_s": {"linear": t / 2}}}
              for p, c, a, t in (("fp64", 100.0, 0.01, 0.5), ("fp32", 100.02, 0.01, 0.25),
                                 ("mixed", 100.01, 0.011, 0.4))}
    res = [_res("a", "mixed", False, 0.3), _res("a", "mixed", True, 0.01, [{"keyframes": 40, "solves": solves}])]
    g = pgo(res)
    assert g["problems"] == 1
    np.testing.assert_allclose(g["cost_gap"]["mixed"], [1e-4])
    assert g["time_vs_keyframes"]["mixed"] == [(40, 0.4)]
    assert g["time_relative_to_fp32"] == {"fp64": [2.0], "mixed": [1.6]}
    assert g["stage_s_mean"]["mixed"] == {"linear": 0.2} and g["time_total_s"]["fp32"] == 0.25
    t = loop_table(res)
    assert t["pairs"] == [{"run": "a-mixed-False", "without": 0.3, "with": 0.01, "loops": 2, "path_length_m": 10.0}]
    assert t["without"]["max"] == 0.3 and t["with"]["mean"] == 0.01


def test_quick_study_is_valid() -> None:
    from slam.commands.study import QUICK
    spec = study_from_dict(QUICK, "--quick")
    runs = spec.runs()
    assert {r.precision for r in runs if not r.loop} == {"fp64", "fp32", "mixed", "fp16"}
    assert any(r.loop for r in runs)


@pytest.mark.parametrize("name,runs", [("full", 340), ("medium", 90)])
def test_shipped_study_files_load(name: str, runs: int) -> None:
    spec = load_study(Path(__file__).resolve().parents[2] / "configs" / "study" / f"{name}.yaml")
    assert len(spec.runs()) == runs
