"""The one text/YAML reader and the atomic writers: errors name file and line, written files have
the mode the umask asks for (0o666 & ~umask, as `open(..., 'w')` gives), nothing is left half-written."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import cv2
import numpy as np
import pytest

from slam.cli import main
from slam.errors import FormatError, InputError
from slam.eval.synthetic_problems import grid_pose_graph
from slam.io.g2o import write_g2o
from slam.io.text import (atomic_output, data_lines, read_table, read_text, to_float, to_int64, write_bytes_atomic,
                          write_text_atomic)
from slam.io.yamlfile import read_yaml, read_yaml_lines


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(params=[0o022, 0o077, 0o002])
def umask(request: pytest.FixtureRequest):
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def test_writers_respect_the_umask(tmp_path: Path, umask: int) -> None:
    want = 0o666 & ~umask
    write_text_atomic(tmp_path / "a.txt", "x\n")
    write_bytes_atomic(tmp_path / "b.bin", b"\0\1")
    with atomic_output(tmp_path / "c.png") as tmp:
        assert cv2.imwrite(str(tmp), np.zeros((4, 4), np.uint8))
    for name in ("a.txt", "b.bin", "c.png"):
        assert _mode(tmp_path / name) == want, (name, oct(_mode(tmp_path / name)), oct(want))
    assert cv2.imread(str(tmp_path / "c.png")).shape == (4, 4, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.bin", "c.png"]  # no temporaries left


def test_slam_pgo_out_respects_the_umask(tmp_path: Path, umask: int) -> None:
    """`slam pgo --out` wrote mode 0600 (tempfile.mkstemp) whatever the umask."""
    graph, _ = grid_pose_graph(3, 1)
    write_g2o(tmp_path / "in.g2o", graph)
    out, stats = tmp_path / "out.g2o", tmp_path / "stats.json"
    assert main(["pgo", str(tmp_path / "in.g2o"), "--out", str(out), "--json", str(stats), "--quiet"]) == 0
    assert _mode(out) == _mode(stats) == 0o666 & ~umask


def test_replacing_a_file_is_atomic_and_a_failure_keeps_the_old_one(tmp_path: Path) -> None:
    target = tmp_path / "t.txt"
    write_text_atomic(target, "old\n")
    with pytest.raises(RuntimeError):
        with atomic_output(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("writer died")
    assert target.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["t.txt"]
    write_text_atomic(target, "new\n")
    assert target.read_text() == "new\n"


def _file(tmp_path: Path, name: str, text: str | bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return p


def test_table_errors_name_file_and_line(tmp_path: Path) -> None:
    p = _file(tmp_path, "t.csv", "# header\n1,2,3\n\n4,5\n")
    with pytest.raises(FormatError, match=r"t\.csv:4: expected 3 columns \(a, b, c\), found 2: '4,5'"):
        read_table(p, 3, "a, b, c", delimiter=",")
    t = read_table(p, (2, 3), "a, b[, c]", delimiter=",")
    assert t.lines.tolist() == [2, 4] and t.rows == [["1", "2", "3"], ["4", "5"]] and t.comments == ["# header"]
    p = _file(tmp_path, "n.txt", "1 2\n3 x\n")
    t = read_table(p, 2, "two numbers")
    with pytest.raises(FormatError, match=r"n\.txt:2: expected numbers \(two numbers\), found 'x'"):
        t.floats("two numbers")
    p = _file(tmp_path, "f.txt", "1 2\n3 nan\n")
    t = read_table(p, 2, "two numbers")
    assert np.isnan(t.floats("x")[1, 1])
    with pytest.raises(FormatError, match=r"f\.txt:2: value is NaN or infinite"):
        t.floats("two numbers", finite=True)
    with pytest.raises(FormatError, match=r"i\.txt:3: expected an integer \(ns\), found '1\.5'"):
        t = read_table(_file(tmp_path, "i.txt", "# t\n10\n1.5\n"), 1, "ns")
        to_int64(t.rows, 0, t.path, t.lines, "ns")
    with pytest.raises(FormatError, match=r"m\.txt:1: expected at least 3 columns"):
        read_table(_file(tmp_path, "m.txt", "1 2\n"), (3, None), "x")
    np.testing.assert_array_equal(to_float([["1", "2"], ["3", "4"]], [1], tmp_path, [1, 2], "x"), [[2.0], [4.0]])


def test_read_text_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nope\.txt: trajectory file not found"):
        read_text(tmp_path / "nope.txt", "trajectory file")
    with pytest.raises(InputError, match="expected a file, got a folder"):
        read_text(tmp_path)
    with pytest.raises(FormatError, match=r"b\.txt: not a text file \(byte 1 is not UTF-8\)"):
        read_text(_file(tmp_path, "b.txt", b"a\xff\n"))
    assert read_text(_file(tmp_path, "bom.txt", b"\xef\xbb\xbf1 2\n")) == "1 2\n"


def test_data_lines_with_inline_comments() -> None:
    text = "# head\nVERTEX 1 # first\n\n   # indented comment\nEDGE 1 2\n"
    assert data_lines(text) == (["VERTEX 1 # first", "EDGE 1 2"], [2, 5], ["# head", "# indented comment"])
    lines, numbers, _ = data_lines(text, inline_comments=True)
    assert (lines, numbers) == (["VERTEX 1", "EDGE 1 2"], [2, 5])


def test_yaml_errors_name_file_and_line(tmp_path: Path) -> None:
    p = _file(tmp_path, "c.yaml", "a: 1\nb: [1, 2\nc: 3\n")
    with pytest.raises(FormatError, match=r"c\.yaml:\d: invalid YAML"):
        read_yaml(p)
    with pytest.raises(FormatError, match=r"l\.yaml: expected a YAML mapping"):
        read_yaml(_file(tmp_path, "l.yaml", "- 1\n- 2\n"))
    with pytest.raises(InputError, match=r"none\.yaml: YAML file not found"):
        read_yaml(tmp_path / "none.yaml")
    # OpenCV's own YAML dialect, with the lines of the keys as in the file
    p = _file(tmp_path, "cv.yaml", "%YAML:1.0\nK: !!opencv-matrix\n  rows: 1\n  cols: 2\n  data: [1.5, 2]\nname: x\n")
    data, lines = read_yaml_lines(p)
    assert data["K"]["data"] == [1.5, 2] and lines[id(data)] == {"K": 2, "name": 6}
