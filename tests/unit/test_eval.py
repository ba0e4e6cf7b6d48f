"""Association, Umeyama alignment, ATE and RPE: hand-made cases, evo's numbers stored, and evo itself."""

from __future__ import annotations

import copy
import functools
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from slam.errors import ProblemError
from slam.eval.align import Alignment, associate, umeyama
from slam.eval.metrics import ErrorStats, evaluate, rotation_angles, rpe_errors, rpe_pairs
from slam.io.trajectory import TrajectoryWarning, read_trajectory

# ---------------------------------------------------------------- association


def test_associate_hand_made() -> None:
    ref = np.array([0.0, 0.1, 0.2, 0.3, 0.4, 0.5])
    est = np.array([0.005, 0.115, 0.19, 0.25, 0.7])  # 0.25: 0.05 from both; 0.7: out of range
    i_ref, i_est = associate(ref, est, max_diff=0.02)
    assert i_ref.tolist() == [0, 1, 2] and i_est.tolist() == [0, 1, 2]
    # Swapping the arguments swaps the result (the shorter list leads either way).
    i_est2, i_ref2 = associate(est, ref, max_diff=0.02)
    assert i_ref2.tolist() == [0, 1, 2] and i_est2.tolist() == [0, 1, 2]


def test_associate_ties_border_and_reuse() -> None:
    ref = np.array([0.0, 1.0, 2.0])
    # Exactly halfway: evo takes the earlier pose; a difference of exactly max_diff still matches.
    assert [a.tolist() for a in associate(ref, np.array([0.5]), max_diff=0.5)] == [[0], [0]]
    assert [a.tolist() for a in associate(ref, np.array([2.25]), max_diff=0.25)] == [[2], [0]]
    assert [a.tolist() for a in associate(ref, np.array([2.25]), max_diff=0.24)] == [[], []]
    # A pose of the longer list can serve two poses of the shorter one.
    ref4 = np.array([0.0, 1.0, 2.0, 3.0])
    assert [a.tolist() for a in associate(ref4, np.array([1.0, 1.0078125, 2.5]), 0.02)] == [[1, 1], [0, 1]]
    # Duplicated stamps in the longer list: the last of them is the lower neighbour.
    assert [a.tolist() for a in associate(np.array([0.0, 1.0, 1.0, 2.0]), np.array([1.0]), 0.1)] == [[2], [0]]
    # Equal lengths: the second trajectory leads.
    i1, i2 = associate(np.array([0.0, 1.0]), np.array([1.0, 5.0]), 0.1)
    assert i1.tolist() == [1] and i2.tolist() == [0]


def test_associate_unsorted_falls_back_to_nearest() -> None:
    long = np.array([3.0, 1.0, 2.0, 0.0])
    i_long, i_short = associate(long, np.array([0.98, 2.5, 3.01]), 0.05)
    assert i_long.tolist() == [1, 0] and i_short.tolist() == [0, 2]


def test_associate_matches_evo_on_random_stamps() -> None:
    sync = pytest.importorskip("evo.core.sync")
    rng = np.random.default_rng(1)
    for trial in range(20):
        a = np.sort(rng.uniform(0, 10, size=rng.integers(1, 300)))
        b = np.sort(np.concatenate([rng.uniform(-1, 11, size=rng.integers(1, 300)), a[:5]]))
        b = np.round(b, 2) if trial % 2 else b  # rounded stamps create ties and duplicates
        for max_diff in (0.0, 0.005, 0.02, 0.3):
            short, long = (a, b) if a.size <= b.size else (b, a)
            ev_s, ev_l = sync.matching_time_indices(short, long, max_diff)
            i_long, i_short = associate(long, short, max_diff) if short.size < long.size else \
                associate(short, long, max_diff)[::-1]
            assert i_short.tolist() == ev_s and i_long.tolist() == ev_l


# ---------------------------------------------------------------- Umeyama


def _random_sim3(seed: int) -> tuple[np.ndarray, np.ndarray, float]:
    rng = np.random.default_rng(seed)
    return Rotation.random(random_state=seed).as_matrix(), rng.normal(scale=5, size=3), float(rng.uniform(0.2, 5))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_umeyama_recovers_sim3_exactly(seed: int) -> None:
    R, t, s = _random_sim3(seed)
    src = np.random.default_rng(seed + 10).normal(scale=3, size=(40, 3))
    dst = s * src @ R.T + t
    a = umeyama(src, dst, with_scale=True)
    np.testing.assert_allclose(a.rotation, R, atol=1e-12)
    np.testing.assert_allclose(a.translation, t, atol=1e-11)
    assert abs(a.scale - s) < 1e-12 * s
    assert abs(np.linalg.det(a.rotation) - 1) < 1e-12
    # SE(3) on scale-free data recovers R, t with scale 1.
    b = umeyama(src, src @ R.T + t, with_scale=False)
    np.testing.assert_allclose(b.rotation, R, atol=1e-12)
    np.testing.assert_allclose(b.translation, t, atol=1e-11)
    assert b.scale == 1.0


def test_umeyama_never_returns_a_reflection() -> None:
    src = np.random.default_rng(3).normal(size=(30, 3))
    a = umeyama(src, src * np.array([1.0, 1.0, -1.0]))  # a mirror image: best proper rotation only
    assert abs(np.linalg.det(a.rotation) - 1) < 1e-12


def test_umeyama_degenerate() -> None:
    line = np.outer(np.arange(10.0), [1.0, 2.0, 3.0])
    with pytest.raises(ProblemError, match="lie on a line"):
        umeyama(line, line + 1)
    with pytest.raises(ProblemError, match="at least 3"):
        umeyama(np.zeros((2, 3)), np.ones((2, 3)))


def test_alignment_apply_matches_matrix_product() -> None:
    R, t, s = _random_sim3(4)
    poses = np.tile(np.eye(4), (5, 1, 1))
    poses[:, :3, :3] = Rotation.random(5, random_state=5).as_matrix()
    poses[:, :3, 3] = np.random.default_rng(6).normal(size=(5, 3))
    out = Alignment(R, t, s).apply(poses)
    for p, q in zip(poses, out):
        np.testing.assert_allclose(q[:3, :3], R @ p[:3, :3], atol=1e-14)
        np.testing.assert_allclose(q[:3, 3], (Alignment(R, t, s).matrix @ p)[:3, 3], atol=1e-13)


# ---------------------------------------------------------------- metrics on synthetic data


def _path(n: int = 30, seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    poses = np.tile(np.eye(4), (n, 1, 1))
    poses[:, :3, :3] = Rotation.from_rotvec(np.cumsum(rng.normal(scale=0.1, size=(n, 3)), axis=0)).as_matrix()
    poses[:, :3, 3] = np.cumsum(rng.normal(size=(n, 3)), axis=0)
    return poses


def test_error_stats_by_hand() -> None:
    s = ErrorStats.of(np.array([3.0, 4.0, 5.0, 0.0]))
    assert s.rmse == pytest.approx(np.sqrt(50 / 4)) and s.mean == 3.0 and s.median == 3.5
    assert s.std == pytest.approx(np.sqrt(((0 - 3) ** 2 + 0 + 1 + 4) / 4)) and s.min == 0 and s.max == 5


def test_sim3_moved_copy_has_zero_error_after_alignment() -> None:
    ref = _path()
    R, t, s = _random_sim3(8)
    est = Alignment(R, t, s).apply(ref)  # the estimate is the truth in another frame and scale
    ev = evaluate(ref, est, "sim3")
    assert ev.alignment.scale == pytest.approx(1 / s, rel=1e-12)
    assert ev.ate.max < 1e-11 and ev.rpe_trans.max < 1e-11 and ev.rpe_rot_deg.max < 1e-9
    # With SE(3) the scale error remains, without alignment the whole offset does.
    assert evaluate(ref, est, "se3").ate.rmse > 0.1
    assert evaluate(ref, est, "none").ate.min > 0.1


def test_rpe_isolates_one_bad_step() -> None:
    ref = _path()
    err = np.eye(4)
    err[:3, :3] = Rotation.from_rotvec([0.0, 0.02, 0.0]).as_matrix()
    err[:3, 3] = [0.03, -0.04, 0.0]
    # The estimate follows the truth except that the step 9 -> 10 is off by `err` (in pose 9's frame).
    est = ref.copy()
    est[10:] = np.einsum("ij,njk->nik", ref[9] @ err @ np.linalg.inv(ref[9]), ref[10:])
    trans, rot = rpe_errors(ref, est, rpe_pairs(ref, 1, "f"))
    q_rel = np.linalg.inv(ref[9]) @ ref[10]
    want = np.linalg.inv(q_rel) @ err @ q_rel
    assert trans[9] == pytest.approx(np.linalg.norm(want[:3, 3]), rel=1e-12)
    assert rot[9] == pytest.approx(np.degrees(0.02), rel=1e-9)  # conjugation keeps the angle
    assert np.delete(trans, 9).max() < 1e-12 and np.delete(rot, 9).max() < 1e-9


def test_rpe_pairs_frames_and_metres() -> None:
    assert rpe_pairs(np.tile(np.eye(4), (7, 1, 1)), 3, "f").tolist() == [[0, 3], [3, 6]]
    poses = np.tile(np.eye(4), (7, 1, 1))
    poses[:, 0, 3] = [0.0, 0.4, 0.8, 1.2, 1.6, 3.1, 3.2]
    assert rpe_pairs(poses, 1.0, "m").tolist() == [[0, 3], [3, 5]]
    with pytest.raises(ProblemError, match="positive integer"):
        rpe_pairs(poses, 1.5, "f")


def test_rotation_angles_match_scipy_also_off_so3() -> None:
    rng = np.random.default_rng(9)
    R = Rotation.from_rotvec(rng.normal(size=(200, 3)) * np.logspace(-6, 0.4, 200)[:, None]).as_matrix()
    np.testing.assert_allclose(rotation_angles(R), Rotation.from_matrix(R).magnitude(), rtol=1e-9, atol=0)
    noisy = R + rng.normal(scale=1e-7, size=R.shape)  # like a KITTI file with 7 digits
    np.testing.assert_allclose(rotation_angles(noisy[50:]), Rotation.from_matrix(noisy[50:]).magnitude(),
                               rtol=1e-9)


# ---------------------------------------------------------------- real trajectories vs evo 1.38.1

# Numbers from evo 1.38.1 (scipy 1.17.1): associate_trajectories(gt, est, max_diff=0.02) (KITTI by index),
# then main_ape.ape(..., translation_part, align=True, correct_scale=sim3) and main_rpe.rpe(...,
# translation_part / rotation_angle_deg, delta, delta_unit, align=True, correct_scale=sim3).
# Each row: rmse, mean, median, std, min, max.
FILES = {"fr2": ("fr2_desk_groundtruth.txt", "fr2_desk_ORB.txt"),
         "kitti00": ("KITTI_00_gt.txt", "KITTI_00_ORB.txt"),
         "v102": ("V102_groundtruth.csv", "V102.txt")}
EVO = {
    ("fr2", "se3", 1, "f"): dict(
        matched=2225, pairs=2224, scale=1.0,
        ate=(0.00814595663336437, 0.00751693420218116, 0.007436574711424541, 0.003138838905189638,
             0.00033773290226913407, 0.02433783961806254),
        rpe=(0.0035975930748651107, 0.0030995020964058313, 0.002786198715097268, 0.0018264070429926786,
             0.00013196900558764396, 0.02116873630052724),
        rot=(0.28661808755211854, 0.2340771142261153, 0.19066131963617888, 0.16540203356551597,
             0.006038945919658879, 1.2594035027080126)),
    ("fr2", "sim3", 1, "f"): dict(
        matched=2225, pairs=2224, scale=0.9970020990750864,
        ate=(0.006186872136192942, 0.005641746867053855, 0.0053401240612111316, 0.002539306818344059,
             0.00013235925445912063, 0.021576350804351573),
        rpe=(0.003590303179737195, 0.0030919979136061863, 0.0027789574221380466, 0.0018247810347233457,
             0.00013935625036752295, 0.021477267543599812),
        rot=(0.28661808755211854, 0.2340771142261153, 0.19066131963617888, 0.16540203356551597,
             0.006038945919658879, 1.2594035027080126)),
    ("kitti00", "se3", 1, "f"): dict(
        matched=4541, pairs=4540, scale=1.0,
        ate=(1.303449714565045, 1.1569971285389946, 1.0656247695558074, 0.6002822693968386,
             0.06931322021483205, 3.587949120678975),
        rpe=(0.028120377017393467, 0.019301310981394062, 0.014709043438546707, 0.0204503055722859,
             0.0003124002631130694, 0.3027124905953364),
        rot=(0.11497352125979238, 0.05958345492311422, 0.041074405275336325, 0.09832966231153824,
             0.0022435537758794108, 2.196615406942412)),
    ("kitti00", "sim3", 1, "f"): dict(
        matched=4541, pairs=4540, scale=1.0046980764526636,
        ate=(0.937709073611404, 0.8726926319693136, 0.8446910134863976, 0.3430829008266512,
             0.17951466687995615, 2.693499863613383),
        rpe=(0.027822453343562318, 0.01895297398533594, 0.014375695516874015, 0.020368448324943195,
             0.00023575389193085944, 0.30439984661180564),
        rot=(0.11497352125979238, 0.05958345492311422, 0.041074405275336325, 0.09832966231153824,
             0.0022435537758794108, 2.196615406942412)),
    ("kitti00", "se3", 1.0, "m"): dict(
        matched=4541, pairs=2718, scale=1.0,
        ate=(1.303449714565045, 1.1569971285389946, 1.0656247695558074, 0.6002822693968386,
             0.06931322021483205, 3.587949120678975),
        rpe=(0.046200726197000705, 0.027810877560224358, 0.020383034332525467, 0.036892576359756124,
             0.0019553123579524297, 0.629549800403207),
        rot=(0.1924404871761162, 0.07635172627152967, 0.04732099073957578, 0.17664584625724528,
             0.0024871194643886316, 3.8655797248500567)),
    ("v102", "se3", 1, "f"): dict(
        matched=798, pairs=797, scale=1.0,
        ate=(0.09172711520685733, 0.08152162194619834, 0.07791194901949527, 0.042048648247395404,
             0.002619987097383053, 0.25581673381397085),
        rpe=(0.015076710159641309, 0.006106922465380437, 0.004183939336058221, 0.013784508958960532,
             0.00011469502653256809, 0.21740892442745743),
        rot=(0.35761559488592853, 0.08987560074843895, 0.033030032512071594, 0.34613767505968457,
             0.0030677466329407386, 4.939154960254687)),
    ("v102", "sim3", 1, "f"): dict(
        matched=798, pairs=797, scale=0.9796982521745784,
        ate=(0.08384138804295284, 0.0748410847826337, 0.07194517866622532, 0.03779140613324187,
             0.0070002905794235674, 0.22665179238276975),
        rpe=(0.014710654642480805, 0.0060227015179670695, 0.0043583509184136745, 0.013421267691087126,
             0.00010916019008482285, 0.21302909138231935),
        rot=(0.35761559488592853, 0.08987560074843895, 0.033030032512071594, 0.34613767505968457,
             0.0030677466329407386, 4.939154960254687)),
    ("v102", "sim3", 1.0, "m"): dict(
        matched=798, pairs=71, scale=0.9796982521745784,
        ate=(0.08384138804295284, 0.0748410847826337, 0.07194517866622532, 0.03779140613324187,
             0.0070002905794235674, 0.22665179238276975),
        rpe=(0.05826082369565359, 0.046114413618426026, 0.03493024989281485, 0.03560596065723764,
             0.014320511254077415, 0.24625806355298274),
        rot=(1.5727174422030956, 0.6515162395151917, 0.24210640507300105, 1.4314212317336326,
             0.024670730438197484, 9.572219162655237)),
}


@functools.lru_cache(maxsize=None)
def _matched(data: Path, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    gt_file, est_file = FILES[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TrajectoryWarning)
        gt, _ = read_trajectory(data / "trajectories" / gt_file)
        est, _ = read_trajectory(data / "trajectories" / est_file)
    if gt.timestamps is None or est.timestamps is None:  # KITTI: by index, as evo_ape kitti
        i_gt = i_est = np.arange(len(gt))
    else:
        i_gt, i_est = associate(gt.timestamps, est.timestamps, 0.02)
    return gt.poses[i_gt], est.poses[i_est], i_gt, i_est


def _stats(s: ErrorStats) -> tuple[float, ...]:
    return (s.rmse, s.mean, s.median, s.std, s.min, s.max)


@pytest.mark.parametrize("case", list(EVO), ids=lambda c: "-".join(map(str, c)))
def test_matches_stored_evo_numbers(shared_data: Path, case: tuple) -> None:
    name, method, delta, unit = case
    want = EVO[case]
    ref, est, _, _ = _matched(shared_data, name)
    ev = evaluate(ref, est, method, delta, unit)
    assert ref.shape[0] == want["matched"] and ev.rpe_pairs.shape[0] == want["pairs"]
    assert ev.alignment.scale == pytest.approx(want["scale"], rel=1e-9)
    np.testing.assert_allclose(_stats(ev.ate), want["ate"], rtol=1e-6)
    np.testing.assert_allclose(_stats(ev.rpe_trans), want["rpe"], rtol=1e-6)
    np.testing.assert_allclose(_stats(ev.rpe_rot_deg), want["rot"], rtol=1e-6)


@pytest.mark.parametrize("name,method,delta,unit", [("fr2", "none", 1, "f"), ("v102", "sim3", 0.5, "m"),
                                                    ("kitti00", "se3", 10, "f")])
def test_matches_evo_live(shared_data: Path, name: str, method: str, delta: float, unit: str) -> None:
    pytest.importorskip("evo")
    from evo.core import metrics, sync
    from evo.main_ape import ape
    from evo.main_rpe import rpe
    from evo.tools import file_interface as fi

    gt_file, est_file = FILES[name]
    d = shared_data / "trajectories"
    readers = {"fr2": (fi.read_tum_trajectory_file,) * 2,
               "v102": (fi.read_euroc_csv_trajectory, fi.read_tum_trajectory_file),
               "kitti00": (fi.read_kitti_poses_file,) * 2}[name]
    g, e = readers[0](str(d / gt_file)), readers[1](str(d / est_file))
    if name != "kitti00":
        g, e = sync.associate_trajectories(g, e, max_diff=0.02)
    ref, est, _, _ = _matched(shared_data, name)
    # Same matched pairs: the poses evo kept are ours (evo's EuRoC stamps may differ by an ulp).
    np.testing.assert_allclose(ref, np.array(g.poses_se3), rtol=0, atol=1e-14)
    np.testing.assert_allclose(est, np.array(e.poses_se3), rtol=0, atol=1e-14)
    kw = dict(align=method != "none", correct_scale=method == "sim3")
    unit_evo = metrics.Unit.frames if unit == "f" else metrics.Unit.meters
    pr = metrics.PoseRelation
    ev = evaluate(ref, est, method, delta, unit)
    got = {"ate": ev.ate, "rpe": ev.rpe_trans, "rot": ev.rpe_rot_deg}
    evo_res = {"ate": ape(copy.deepcopy(g), copy.deepcopy(e), pr.translation_part, **kw),
               "rpe": rpe(copy.deepcopy(g), copy.deepcopy(e), pr.translation_part, delta=delta,
                          delta_unit=unit_evo, **kw),
               "rot": rpe(copy.deepcopy(g), copy.deepcopy(e), pr.rotation_angle_deg, delta=delta,
                          delta_unit=unit_evo, **kw)}
    for key, res in evo_res.items():
        want = [res.stats[k] for k in ("rmse", "mean", "median", "std", "min", "max")]
        np.testing.assert_allclose(_stats(got[key]), want, rtol=1e-6, err_msg=key)
    assert len(evo_res["rpe"].np_arrays["error_array"]) == ev.rpe_pairs.shape[0]
