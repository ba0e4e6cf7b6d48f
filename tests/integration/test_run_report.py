"""Pictures of every run: top_view.png (loop closures marked), error.png and a self-contained report.html;
--trajectory-format and --frame body on real EuRoC data against the dataset's own ground-truth file."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from slam.cli import main
from slam.eval.align import associate
from slam.io.trajectory import read_euroc_csv, read_trajectory, read_tum
from slam.report import write_run_report
from slam.report.run_data import load_run

REPO = Path(__file__).resolve().parents[2]
TAB_RED = np.array([40, 39, 214])  # matplotlib's tab:red in BGR


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "run"
    assert main(["run", str(REPO / "configs" / "synthetic.yaml"), "--source", "synthetic:room_loop", "--out",
                 str(out), "--no-loop", "--max-frames", "60", "--quiet", "--trajectory-format", "kitti"]) == 0
    return out


def _red_pixels(png: Path) -> int:
    img = cv2.imread(str(png))
    return int(np.sum(np.all(np.abs(img.astype(int) - TAB_RED) < 12, axis=2)))


def test_run_folder_has_plots_and_a_self_contained_report(run_dir: Path) -> None:
    rep = json.loads((run_dir / "report.json").read_text())
    for name in ("top_view.png", "error.png", "report.html"):
        assert (run_dir / name).is_file(), name
    for name in ("top_view.png", "error.png"):
        img = cv2.imread(str(run_dir / name))
        assert img is not None and img.shape[0] > 300 and img.std() > 10  # a drawn picture, not a blank one
    page = (run_dir / "report.html").read_text()
    # The numbers of report.json, as printed.
    assert f"{rep['ate']['rmse']:.4f}" in page and f"{rep['fps']:.4f}" in page
    assert f"<td>keyframes</td><td class='n'>{rep['keyframes']}</td>" in page
    # Both plots embedded byte for byte; nothing is fetched from elsewhere (it opens offline).
    embedded = [base64.b64decode(m) for m in re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page)]
    assert embedded == [(run_dir / "top_view.png").read_bytes(), (run_dir / "error.png").read_bytes()]
    assert not re.search(r"(src|href)\s*=\s*['\"]?(https?:|//)", page) and "<script" not in page
    assert "  max_features: 250\n" in page  # the settings of the run, as YAML
    # The plots come from the files: their evaluation equals the one the pipeline reported.
    data = load_run(run_dir)
    assert data.evaluation is not None and len(data.evaluation.ate_errors) == rep["ate"]["matched"]
    assert data.evaluation.ate.rmse == pytest.approx(rep["ate"]["rmse"], rel=1e-9)
    # --trajectory-format kitti: the same poses and times, read back.
    kitti, fmt = read_trajectory(run_dir / "trajectory.kitti")
    tum = read_tum(run_dir / "trajectory.tum")
    assert fmt == "kitti" and np.array_equal(kitti.timestamps, tum.timestamps)
    np.testing.assert_allclose(kitti.poses, tum.poses, atol=1e-12)


def test_loop_closures_are_drawn_and_listed(run_dir: Path, tmp_path: Path) -> None:
    import shutil

    folder = tmp_path / "run"
    shutil.copytree(run_dir, folder)
    assert _red_pixels(folder / "top_view.png") < 50  # no loops yet (the legend has none)
    kf = read_tum(folder / "keyframes.tum")
    loops = [{"query": {"keyframe": len(kf) - 1, "timestamp": float(kf.timestamps[-1])},
              "match": {"keyframe": 0, "timestamp": float(kf.timestamps[0])}, "inliers": 87},
             {"query": {"keyframe": len(kf) - 3, "timestamp": float(kf.timestamps[-3])},
              "match": {"keyframe": 2, "timestamp": float(kf.timestamps[2])}, "inliers": 41}]
    (folder / "loops.json").write_text(json.dumps(loops))
    write_run_report(folder)
    assert _red_pixels(folder / "top_view.png") > 300  # two red segments across the plot
    page = (folder / "report.html").read_text()
    assert "<td>loop closures</td><td class='n'>2</td>" in page
    assert f"<td class='n'>{len(kf) - 1}</td>" in page and "<td class='n'>87</td>" in page
    (folder / "loops.json").write_text('[{"query": 3}]')
    with pytest.raises(Exception, match="entry 0"):
        write_run_report(folder)


def test_report_without_ground_truth(run_dir: Path, tmp_path: Path) -> None:
    import shutil

    folder = tmp_path / "run"
    shutil.copytree(run_dir, folder)
    (folder / "groundtruth.tum").unlink()
    (folder / "error.png").unlink()
    rep = json.loads((folder / "report.json").read_text())
    del rep["ate"]
    (folder / "report.json").write_text(json.dumps(rep))
    written = write_run_report(folder)
    assert [p.name for p in written] == ["top_view.png", "report.html"] and not (folder / "error.png").exists()
    assert "no ground truth" in (folder / "report.html").read_text()


def test_body_frame_on_a_simulated_euroc_sequence(tmp_path: Path) -> None:
    """The rendered EuRoC folder has a non-identity T_BS and exact body ground truth in its data.csv."""
    seq = tmp_path / "seq"
    assert main(["simulate", "room_loop", "--format", "euroc", "--out", str(seq), "--frames", "40"]) == 0
    out = tmp_path / "run"
    assert main(["run", str(REPO / "configs" / "euroc_stereo.yaml"), "--source", str(seq), "--out", str(out),
                 "--no-loop", "--quiet", "--frame", "body", "--trajectory-format", "euroc"]) == 0
    raw = read_euroc_csv(next(seq.rglob("state_groundtruth_estimate0/data.csv")))
    gt_body, fmt = read_trajectory(out / "groundtruth_body.csv")
    assert fmt == "euroc" and len(gt_body) == 40
    i_gt, i_raw = associate(gt_body.timestamps, raw.timestamps, max_diff=1e-6)
    assert len(i_gt) == 40
    # The body poses written are the dataset's own: camera poses times T_cb undo the source's T_bc.
    np.testing.assert_allclose(gt_body.poses[i_gt], raw.poses[i_raw], atol=1e-9)
    est, _ = read_trajectory(out / "trajectory_body.csv")
    np.testing.assert_allclose(est.poses[0], np.eye(4), atol=1e-9)  # the first body pose is the world
    # Relative body motion agrees with the dataset's (no alignment needed for relative poses).
    rel_est = np.linalg.inv(est.poses[0]) @ est.poses[-1]
    rel_gt = np.linalg.inv(raw.poses[i_raw[0]]) @ raw.poses[i_raw[-1]]
    moved = np.linalg.norm(rel_gt[:3, 3])
    assert moved > 0.5 and np.linalg.norm(rel_est[:3, 3] - rel_gt[:3, 3]) < 0.02 * moved


@pytest.mark.filterwarnings("ignore::slam.sources.common.SourceWarning")  # 4 right images are missing
def test_euroc_body_frame_on_real_data(shared_data: Path, tmp_path: Path) -> None:
    seq = shared_data / "euroc" / "V1_01_easy_head"  # no ground truth in this excerpt
    assert main(["run", str(REPO / "configs" / "euroc_stereo.yaml"), "--source", str(seq), "--out", str(tmp_path),
                 "--no-loop", "--quiet", "--max-frames", "30", "--frame", "body", "--trajectory-format", "euroc"]) == 0
    est, fmt = read_trajectory(tmp_path / "trajectory_body.csv")
    cam = read_tum(tmp_path / "trajectory.tum")
    assert fmt == "euroc" and len(est) == len(cam) == 30 and np.allclose(est.poses[0], np.eye(4), atol=1e-6)
    # Standing still: neither the camera nor the body (centimetres away) moves more than a few mm.
    assert np.ptp(est.positions, axis=0).max() < 0.03 and np.ptp(cam.positions, axis=0).max() < 0.03
    assert not (tmp_path / "groundtruth_body.csv").exists()
