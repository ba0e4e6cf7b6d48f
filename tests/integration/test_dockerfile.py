"""The Dockerfile without a Docker daemon: its instructions are parsed and checked, and (slow) its install
and demo steps are run in a fresh copy of the build context (git's files less .dockerignore) with a
fresh venv, so that the file cannot rot where `docker build` is not available."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dockerignore_rules import docker_excluded, read_patterns  # tests/ (beside conftest.py)

REPO = Path(__file__).resolve().parents[2]


def parse_dockerfile(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of each instruction: comments dropped, `\\` continuations joined."""
    steps: list[tuple[str, str]] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if current and line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        word, _, rest = current.partition(" ")
        steps.append((word.upper(), " ".join(rest.split())))
        current = ""
    assert not current, "the Dockerfile ends inside a continued instruction"
    return steps


def _makefile_system_packages() -> set[str]:
    mk = (REPO / "Makefile").read_text()
    m = re.search(r"^SYSTEM_PKGS := (.+)$", mk, re.M)
    assert m, "no SYSTEM_PKGS in the Makefile"
    return set(m[1].split())


def test_dockerfile_installs_from_the_lock_and_runs_the_demo() -> None:
    """FROM the lock's Python, the Makefile's system packages, WORKDIR, COPY of the context, `make venv`,
    and `make demo` as the command."""
    steps = parse_dockerfile((REPO / "Dockerfile").read_text())
    assert [k for k, _ in steps] == ["FROM", "RUN", "WORKDIR", "COPY", "RUN", "CMD"], steps
    args = [a for _, a in steps]
    assert re.fullmatch(r"python:3\.11(-slim)?", args[0]), args[0]  # constraints.txt is locked for 3.11
    apt = args[1]
    assert apt.startswith("apt-get update && apt-get install -y --no-install-recommends "), apt
    installed = set(apt.split("--no-install-recommends", 1)[1].split("&&", 1)[0].split())
    assert installed == {"make"} | _makefile_system_packages(), installed  # the viewer's libraries, as `make system-deps`
    assert args[2] == "/slam" and args[3] == ". ."
    assert args[4] == "make venv"
    assert json.loads(args[5]) == ["make", "demo"]


def _context_files() -> list[str]:
    """The files `docker build .` would send from this checkout: git's (tracked and untracked, not
    ignored) less .dockerignore."""
    r = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=REPO,
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"not a git checkout ({r.stderr.strip()})")
    patterns = read_patterns(REPO)
    return [p for p in r.stdout.split("\0") if p and (REPO / p).is_file() and not docker_excluded(p, patterns)]


@pytest.mark.slow
def test_dockerfile_steps_in_a_fresh_copy(tmp_path: Path) -> None:
    """The build context copied to WORKDIR, the RUN steps after it (`make venv`: a fresh venv from the lock,
    ~1 min with pip's cache) and the CMD (`make demo`, kept short by DEMO_ARGS, which the Makefile passes on).

    The RUN before WORKDIR is the image's system layer (apt-get as root, checked above against the
    Makefile's SYSTEM_PKGS); here `make venv` checks those packages and warns about missing ones.
    """
    steps = parse_dockerfile((REPO / "Dockerfile").read_text())
    work = tmp_path / "context"
    for rel in _context_files():
        dst = work / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, dst)
    assert not (work / ".venv").exists() and not (work / "runs").exists()
    env = dict(os.environ)
    for key in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"):
        env.pop(key, None)
    # python3 of the image: the base interpreter of this test's venv when it is the lock's 3.11
    base = getattr(sys, "_base_executable", sys.executable)
    env["PY"] = base if sys.version_info[:2] == (3, 11) else "python3"
    env["DEMO_ARGS"] = "--frames 30 --no-screenshot"
    out = ""
    after_workdir = steps[[k for k, _ in steps].index("WORKDIR") + 1:]
    for kind, arg in after_workdir:
        if kind == "COPY":
            continue  # done above
        cmd = json.loads(arg) if arg.startswith("[") else ["/bin/sh", "-c", arg]
        r = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=1200)
        assert r.returncode == 0, f"{kind} {arg}: exit {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
        if kind == "CMD":
            out = r.stdout
    assert (work / ".venv" / "bin" / "python").is_file()
    assert re.search(r"^ATE RMSE \[m\]\s+\d+\.\d+\s+\d+\.\d+\s*$", out, re.M), out
    demo = work / "runs" / "demo"
    for name in ("report.json", "report.html", "map.ply", "loops.json", "trajectory.tum", "demo.json",
                 "no_loop/report.json"):
        assert (demo / name).is_file(), name
    assert shlex.split(env["DEMO_ARGS"])[1] == str(json.loads((demo / "demo.json").read_text())["frames"])
