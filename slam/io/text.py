"""The one reader of text files and tables, and the one way files are written (atomically, umask-respecting).

Reading: `read_text` (a whole file, errors naming it), `data_lines` (non-blank, non-comment lines
with their 1-based numbers), `read_table` (a table of fields with a checked column count) and the
column converters `to_float` / `to_int64`. Trajectories (TUM, EuRoC CSV, KITTI), dataset tables
(EuRoC, TUM, KITTI sources), g2o and BAL all read through them, so every format reports a bad line
as `FILE:LINE: what was expected, what was found`.

Writing: `write_text_atomic` / `write_bytes_atomic`, and `atomic_output` for libraries that write
a file by name (PNG images, matplotlib figures). The data goes to a temporary file beside the
target, which is renamed over it when complete: a crash or Ctrl-C never leaves a half-written
file. The temporary file is created with mode 0o666 like any `open(..., "w")`, so the kernel applies
the umask (tempfile.mkstemp would create it 0o600, and the rename would keep that).
"""

from __future__ import annotations

import os
import re
import secrets
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from slam.errors import FormatError, InputError

# ---------------------------------------------------------------- reading


def read_text(path: str | Path, kind: str = "file") -> str:
    """The whole file as text (UTF-8, a byte-order mark dropped); OS and encoding failures become
    errors naming the file and `kind` (what the file should be)."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"expected a {kind}, got a folder", path)
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"{kind} not found", path) from None
    except UnicodeDecodeError as e:
        raise FormatError(f"not a text file (byte {e.start} is not UTF-8)", path) from None
    except OSError as e:
        raise InputError(f"cannot read the {kind}: {e.strerror or e}", path) from None


def data_lines(text: str, comment: str = "#", inline_comments: bool = False) -> tuple[list[str], list[int], list[str]]:
    """(lines, 1-based line numbers, comment lines): the stripped non-blank lines that are not
    comments; inline_comments also cuts every line at its first comment character (g2o)."""
    lines, numbers, comments = [], [], []
    for i, raw in enumerate(text.splitlines(), start=1):
        s = (raw.partition(comment)[0] if inline_comments else raw).strip()
        if not s:
            if inline_comments and raw.strip():
                comments.append(raw.strip())
            continue
        if s.startswith(comment):
            comments.append(s)
            continue
        lines.append(s)
        numbers.append(i)
    return lines, numbers, comments


@dataclass
class Table:
    """The data rows of a text table split into fields, with their line numbers."""

    path: Path
    lines: np.ndarray        # (N,) int64 1-based line numbers of the rows
    rows: list[list[str]]
    comments: list[str]

    def floats(self, what: str, cols: slice | list[int] = slice(None), finite: bool = False) -> np.ndarray:
        """(N, k) float64 of the chosen columns (see to_float)."""
        return to_float(self.rows, cols, self.path, self.lines, what, finite)


def _columns(lo: int, hi: int | None) -> str:
    n = f"at least {lo}" if hi is None else f"{lo}" if lo == hi else f"{lo} to {hi}"
    return n + (" column" if n == "1" else " columns")


def split_rows(lines: list[str], numbers: list[int], path: Path, ncols: int | tuple[int, int | None], what: str,
               delimiter: str | None = None) -> list[list[str]]:
    """Split lines into fields (delimiter None: whitespace); ncols is the exact count or (min, max),
    max None for no limit. The first line outside it is a FormatError naming the file and line."""
    lo, hi = (ncols, ncols) if isinstance(ncols, int) else ncols
    rows = [[f.strip() for f in s.split(delimiter)] if delimiter else s.split() for s in lines]
    counts = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    bad = np.flatnonzero((counts < lo) | (counts > (hi if hi is not None else np.iinfo(np.int64).max)))
    if bad.size:
        k = int(bad[0])
        raise FormatError(f"expected {_columns(lo, hi)} ({what}), found {counts[k]}: '{lines[k][:80]}'",
                          path, numbers[k])
    return rows


def read_table(path: str | Path, ncols: int | tuple[int, int | None], what: str, delimiter: str | None = None,
               kind: str = "file") -> Table:
    """A text table: '#' comment lines and blank lines skipped, every row with ncols fields."""
    path = Path(path)
    lines, numbers, comments = data_lines(read_text(path, kind))
    rows = split_rows(lines, numbers, path, ncols, what, delimiter)
    return Table(path, np.asarray(numbers, dtype=np.int64), rows, comments)


def _cols(cols: slice | list[int], n: int) -> list[int]:
    return list(range(n))[cols] if isinstance(cols, slice) else list(cols)


def to_float(rows: list[list[str]], cols: slice | list[int], path: Path, lines: np.ndarray | list[int], what: str,
             finite: bool = False) -> np.ndarray:
    """(N, k) float64 array of the chosen columns; a non-number (and with `finite` a NaN or an
    infinity) is a FormatError naming its line."""
    if not rows:
        width = len(_cols(cols, cols.stop or 0)) if isinstance(cols, slice) else len(cols)
        return np.zeros((0, width))
    if len({len(r) for r in rows}) == 1:
        table = np.array(rows, dtype=str)  # rectangular: convert whole columns at once
    else:
        table = np.array([[r[c] for c in _cols(cols, len(r))] for r in rows], dtype=str)
        cols = slice(None)
    try:
        a = table[:, cols].astype(np.float64).reshape(len(rows), -1)
    except ValueError:
        for ln, r in zip(lines, rows):
            for c in _cols(cols, len(r)):
                try:
                    float(r[c])
                except ValueError:
                    raise FormatError(f"expected numbers ({what}), found '{r[c][:80]}'", path, int(ln)) from None
        raise
    if finite:
        ok = np.isfinite(a).all(axis=1)
        if not ok.all():
            k = int(np.flatnonzero(~ok)[0])
            raise FormatError(f"value is NaN or infinite ({what})", path, int(lines[k]))
    return a


def to_int64(rows: list[list[str]], col: int, path: Path, lines: np.ndarray | list[int], what: str) -> np.ndarray:
    """(N,) int64 of one integer column (EuRoC nanosecond timestamps, exact beyond float64)."""
    col_vals = [r[col] for r in rows]
    if not col_vals:
        return np.zeros(0, dtype=np.int64)
    try:
        return np.array(col_vals, dtype=str).astype(np.int64)
    except (ValueError, OverflowError):
        for ln, v in zip(lines, col_vals):
            if not re.fullmatch(r"[+-]?\d+", v):
                raise FormatError(f"expected an integer ({what}), found '{v}'", path, int(ln)) from None
        raise


# ---------------------------------------------------------------- writing


def _temporary(path: Path) -> Path:
    """A fresh hidden name beside path that keeps its suffix (libraries pick the format by it)."""
    return path.with_name(f".{path.stem}.{secrets.token_hex(4)}.tmp{path.suffix}")


@contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """A temporary path to write the file to (by any library); renamed onto `path` when the block
    ends without an exception, removed otherwise. The writer creates it, so the umask applies."""
    path = Path(path)
    tmp = _temporary(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write bytes through a temporary file created 0o666 & ~umask, then rename it onto path."""
    path = Path(path)
    tmp = _temporary(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the kernel applies the umask
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write UTF-8 text atomically (see write_bytes_atomic), so a failure never leaves a half-written file."""
    write_bytes_atomic(path, text.encode("utf-8"))
