"""Docker's .dockerignore rules, for the tests that check the build context (unit and integration)."""

from __future__ import annotations

import fnmatch
from pathlib import Path


def read_patterns(repo: Path) -> list[str]:
    """The patterns of repo/.dockerignore, in order, without comments and blank lines."""
    return [ln.strip() for ln in (repo / ".dockerignore").read_text().splitlines()
            if ln.strip() and not ln.startswith("#")]


def docker_excluded(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; a pattern excludes a folder with its content."""
    excluded = False
    parts = path.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    for pat in patterns:
        neg = pat.startswith("!")
        p = pat[1:] if neg else pat
        alts = [p, p[3:]] if p.startswith("**/") else [p]
        if any(fnmatch.fnmatchcase(pre, a) for pre in prefixes for a in alts):
            excluded = not neg
    return excluded
