"""The install is reproducible: the lock pins everything, the Makefile and the Dockerfile use it,
and this environment holds the locked versions (the ones the tests pass with)."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import cv2

from dockerignore_rules import docker_excluded, read_patterns  # tests/ (beside conftest.py)

REPO = Path(__file__).resolve().parents[2]


def _canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _lock() -> dict[str, str]:
    pins = {}
    for n, line in enumerate((REPO / "constraints.txt").read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([0-9][A-Za-z0-9.+!-]*)", line.strip())
        assert m, f"constraints.txt:{n}: not an exact pin: {line!r}"
        pins[_canon(m[1])] = m[2]
    return pins


def test_lock_pins_every_dependency_exactly() -> None:
    pins = _lock()
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    for req in project["dependencies"] + extras["test"] + extras["bench"]:
        name = _canon(re.match(r"[A-Za-z0-9._-]+", req)[0])
        if name == _canon(project["name"]):  # the project's own extras (slam[viewer]): their packages are listed too
            continue
        assert name in pins, f"{name} (pyproject.toml) is not in constraints.txt"
    assert int(pins["opencv-python-headless"].split(".")[0]) in (4, 5)
    assert "open3d-cpu" in pins  # slam[viewer] on Linux x86_64, the lock's platform


def test_this_environment_has_the_locked_versions() -> None:
    """What `make test` runs in; `make test-other-opencv` swaps OpenCV only (checked to be >= 4.10)."""
    pins = _lock()
    wrong = []
    for dist in metadata.distributions():
        name = _canon(dist.metadata["Name"])
        if name in pins and name != "opencv-python-headless" and dist.version != pins[name]:
            wrong.append(f"{name} {dist.version} (locked {pins[name]})")
    assert not wrong, "not the locked versions (run `make venv`): " + ", ".join(wrong)
    major, minor = (int(x) for x in cv2.__version__.split(".")[:2])
    assert (major, minor) >= (4, 10), cv2.__version__


def test_makefile_installs_from_the_lock() -> None:
    mk = (REPO / "Makefile").read_text()
    stamp_rule = re.search(r"^\$\(STAMP\):(.*)$", mk, re.M)
    assert stamp_rule and "$(LOCK)" in stamp_rule[1] and "pyproject.toml" in stamp_rule[1]
    assert re.search(r"^LOCK := constraints\.txt$", mk, re.M)
    installs = [ln for ln in mk.splitlines() if "python -m pip install" in ln and "-e '." in ln and ".venv-lock" not in ln]
    assert installs and all("-c $(LOCK)" in ln for ln in installs), installs
    assert re.search(r"^lock:", mk, re.M) and re.search(r"^test-other-opencv:", mk, re.M)


def test_docker_context_has_no_host_environment() -> None:
    patterns = read_patterns(REPO)
    for path in (".venv/bin/python", ".venv-other-opencv/pyvenv.cfg", ".git/HEAD", "runs/demo/report.json",
                 "bench_out/odometry/x.json", "slam/__pycache__/cli.cpython-311.pyc", "__pycache__/a.pyc",
                 ".pytest_cache/v/x", "slam.egg-info/PKG-INFO", "datasets/V1_01_easy/mav0/x.png"):
        assert docker_excluded(path, patterns), path
    for path in ("slam/cli.py", "constraints.txt", "Makefile", "pyproject.toml", "README.md", "datasets/README.md",
                 "configs/euroc_stereo.yaml", "tests/conftest.py"):
        assert not docker_excluded(path, patterns), path
    docker = (REPO / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11", docker, re.M)  # the lock's interpreter
    assert re.search(r"^RUN make venv$", docker, re.M)  # the Makefile's install, from the lock


def test_readme_documents_the_lock_and_the_run_folder() -> None:
    readme = (REPO / "README.md").read_text()
    assert "constraints.txt" in readme and "make lock" in readme and "test-other-opencv" in readme
    run_folder = readme[readme.index("The run folder gets"):]
    for name in ("trajectory.tum", "keyframes.tum", "map.ply", "loops.json", "report.json", "groundtruth.tum",
                 "trajectory.png"):
        assert f"`{name}`" in run_folder, name
    assert "the world is the camera of the first tracked frame (its pose is the identity" in run_folder
