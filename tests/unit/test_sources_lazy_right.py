"""Stereo file sources read and check the right image with the frame but decode it only when asked."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from slam.errors import FormatError
from slam.sources.base import Frame
from slam.sources.euroc import EurocSource
from slam.sources.kitti import KittiSource
from slam.synthetic import SyntheticSource
from slam.synthetic.writers import write_euroc, write_kitti


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """A 3-frame stereo EuRoC folder and a 3-frame KITTI folder rendered from the synthetic room."""
    root = tmp_path_factory.mktemp("lazy")
    write_euroc(SyntheticSource("room_loop", "stereo", frames=3), root / "euroc")
    write_kitti(SyntheticSource("street_loop", "kitti", frames=3), root / "kitti")
    return {"euroc": root / "euroc", "kitti": root / "kitti"}


def _right_file(kind: str, root: Path, i: int) -> Path:
    return sorted((root / "mav0" / "cam1" / "data").glob("*.png"))[i] if kind == "euroc" \
        else root / "image_1" / f"{i:06d}.png"


@pytest.mark.parametrize("kind", ["euroc", "kitti"])
def test_right_image_is_decoded_on_first_read_and_equals_an_eager_decode(folders, kind):
    src = (EurocSource if kind == "euroc" else KittiSource)(folders[kind])
    f = src.frame(1)
    assert f.has_right and f._right is None  # nothing decoded yet
    right = f.right
    assert f._right is right and f.right is right  # decoded once, then kept
    eager = cv2.imread(str(_right_file(kind, folders[kind], 1)), cv2.IMREAD_GRAYSCALE)
    if kind == "euroc":
        eager = src._remaps[1](eager)
    np.testing.assert_array_equal(right, eager)


@pytest.mark.parametrize("kind", ["euroc", "kitti"])
def test_bad_right_files_are_named(folders, kind, tmp_path):
    import shutil
    root = tmp_path / kind
    shutil.copytree(folders[kind], root)
    good = _right_file(kind, root, 0).read_bytes()
    _right_file(kind, root, 1).write_bytes(good[: len(good) // 2])
    # the bytes of a PNG's end but not an image: passes the truncation check, fails when decoded
    _right_file(kind, root, 2).write_bytes(b"garbage" * 100 + good[-16:])
    src = (EurocSource if kind == "euroc" else KittiSource)(root)
    with pytest.raises(FormatError, match="truncated PNG"):
        src.frame(1)  # a truncated file is reported with its frame, decoded or not
    f = src.frame(2)
    with pytest.raises(FormatError, match=rf"{_right_file(kind, root, 2).name}: not a readable image"):
        f.right


def test_frames_given_a_right_image_keep_it():
    img = np.zeros((4, 6), np.uint8)
    f = Frame(0, 0.0, img, right=img, right_loader=lambda: pytest.fail("loader called"))
    assert f.right is img and f.has_right
    g = Frame(0, 0.0, img)
    assert g.right is None and not g.has_right
    g.right = img
    assert g.right is img
