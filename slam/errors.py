"""Exceptions for bad input: each names the file (and line or key) and what was expected."""

from __future__ import annotations

from pathlib import Path


class InputError(ValueError):
    """Bad user input: a file, a line in it, or a configuration key that is not as expected."""

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None) -> None:
        self.path = None if path is None else str(path)
        self.line = line
        where = ""
        if self.path is not None:
            where = self.path if line is None else f"{self.path}:{line}"
            where += ": "
        super().__init__(where + message)


class FormatError(InputError):
    """A file that does not follow its format (g2o, BAL, TUM, EuRoC CSV, KITTI, YAML...)."""


class ProblemError(InputError):
    """A well-formed file that describes an ill-posed problem (missing vertex, NaN, not PD...)."""
