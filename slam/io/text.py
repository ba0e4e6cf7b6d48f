"""Reading and writing whole text files with errors that name the file, and atomic writes."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from slam.errors import FormatError, InputError


def read_text(path: str | Path) -> str:
    """The whole file as text, with OS and encoding failures turned into errors naming the file."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("file not found", path) from None
    except UnicodeDecodeError as e:
        raise FormatError(f"not a text file (byte {e.start} is not UTF-8)", path) from None
    except OSError as e:
        raise InputError(f"cannot read the file: {e.strerror or e}", path) from None


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write through a temporary file and rename, so a failure never leaves a half-written file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
