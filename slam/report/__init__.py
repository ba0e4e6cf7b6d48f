"""Pictures of a run: top_view.png, error.png and a self-contained report.html in the run folder."""

from __future__ import annotations

import os
from pathlib import Path

from slam.report.figures import plot_errors, plot_top_view
from slam.report.html import render_html
from slam.report.run_data import load_run

TOP_VIEW, ERRORS, HTML = "top_view.png", "error.png", "report.html"


def write_run_report(folder: str | Path) -> list[Path]:
    """Draw the plots of a finished run folder and write report.html; returns the files written."""
    folder = Path(folder)
    data = load_run(folder)
    images: list[tuple[Path, str]] = []
    if plot_top_view(data, folder / TOP_VIEW):
        images.append((folder / TOP_VIEW, "Top view: trajectory against ground truth, loop closures in red"))
    if plot_errors(data, folder / ERRORS):
        images.append((folder / ERRORS, "Error over time: absolute (ATE) and frame-to-frame (RPE)"))
    _write_atomic(folder / HTML, render_html(data, images))
    return [p for p, _ in images] + [folder / HTML]


def _write_atomic(path: Path, text: str) -> None:
    """Through a temporary file and a rename; open() (not mkstemp) so the file's mode follows the umask."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
